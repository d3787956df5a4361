"""Building blocks shared by every configuration model.

All configuration models forbid unknown keys, so a typo in a scenario file is
an error rather than a silently ignored setting. Numeric types carry their
admissible range; units are part of every field name or description.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

#: A rate (hazard) in events per hour; must be finite and non-negative.
RatePerHour = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
#: A probability, dimensionless, in [0, 1].
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
#: A finite non-negative real number.
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
#: A finite strictly positive real number.
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class StrictModel(BaseModel):
    """A pydantic model that refuses unknown keys and checks assignments."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)


class PerPhenotype(StrictModel):
    """A value given separately for epithelial and mesenchymal cells."""

    epithelial: NonNegative = Field(description="value for epithelial cells")
    mesenchymal: NonNegative = Field(description="value for mesenchymal cells")

    def as_tuple(self) -> tuple[float, float]:
        """Return ``(epithelial, mesenchymal)``, the order of the phenotype codes."""
        return (self.epithelial, self.mesenchymal)


class MechanismParams(StrictModel):
    """Parameters every mechanism has: an on/off switch.

    Each mechanism subclasses this with its own parameters (units in names).
    Setting ``enabled = false`` removes the mechanism from the schedule; the
    random draws of every other mechanism are unchanged.
    """

    enabled: bool = Field(True, description="include this mechanism in the schedule")
