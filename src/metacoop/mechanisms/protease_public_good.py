"""Protease public good: degraded ECM raises the motility of every nearby cell.

MMP-2 (diffusible) and MT1-MMP (membrane-bound) secretion are clone traits;
the ECM they degrade is shared. Where the ECM density is ``w`` (normalised,
1 intact), the random motility of every cell at that point, whatever its
clone, is ``D (1 + motility_gain (1 - w))``: a clone that secretes no
protease moves faster through matrix another clone has degraded.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from metacoop.config.base import MechanismParams, NonNegative
from metacoop.core.schedule import Phase
from metacoop.errors import Problem
from metacoop.kernels.fields import clipped_complement
from metacoop.mechanisms.base import Mechanism, StepContext, field_problems


class ProteaseParams(MechanismParams):
    """Parameters of :class:`ProteasePublicGood`."""

    enabled: bool = Field(False, description="include this mechanism in the schedule")
    motility_gain: NonNegative = Field(
        2.0, description="relative rise of random motility where the ECM is fully degraded, "
        "dimensionless (2: three times faster; assumption, order of the MMP-dependent speed-up "
        "in 3-D matrix, Wolf et al. 2003)",
    )
    ecm_field: str = Field("ecm", description="field whose degradation is shared (normalised density)")


class ProteasePublicGood(Mechanism):
    """Registers a ``motility`` factor ``1 + gain (1 - w)`` on every site."""

    name = "protease_public_good"
    phase = Phase.CELL_RULES
    order = 29
    Params = ProteaseParams
    summary = (
        "ECM degraded by any clone's MMP-2 or MT1-MMP raises the random motility of every cell "
        "at that point: D (1 + motility_gain (1 - w)), w the local ECM density"
    )
    sources = (
        "Bidard et al. 2008 Cancer Metastasis Rev 27:5 (proteases as a public good)",
        "Wolf et al. 2003 J Cell Biol 160:267 (protease-dependent migration in 3-D matrix)",
    )

    def bind(self, sim) -> None:
        gain = self.params.motility_gain
        for site in sim.sites:
            ecm = site.fields[self.params.ecm_field]

            def factor(ctx, ecm=ecm):
                e = ecm.flat
                return clipped_complement(e, 1.0, gain, np.empty_like(e))  # 1 + gain clip(1 - w, 0, 1)

            site.modifiers.add_factor("motility", self.name, factor)

    def step(self, ctx: StepContext) -> None:
        """Nothing to do each step: the factor is read by movement."""

    @classmethod
    def motility_terms(cls, params: ProteaseParams, config, site: str):
        return 1.0 + params.motility_gain, None

    @classmethod
    def check(cls, params: ProteaseParams, config) -> list[Problem]:
        return field_problems(cls.name, params, ("ecm_field",), config)
