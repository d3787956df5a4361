"""The scenario schema: every key a scenario file may hold, with units and defaults.

A scenario is a TOML file validated by :class:`SimulationConfig`. Unknown keys
are errors. Units are in field names (``_h``, ``_per_h``, ``_um``,
``_um2_per_h``) or, for normalised quantities, in the description. Checks that
involve several keys (numerical stability, clone names, memory) run in
:mod:`metacoop.config.checks` after this schema has accepted the types and
ranges.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, create_model

from metacoop.config.base import (
    NonNegative,
    PerPhenotype,
    Positive,
    Probability,
    RatePerHour,
    StrictModel,
)
from metacoop.core.clones import CloneTable
from metacoop.mechanisms import REGISTRY

Name = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=64)]


class DoublingTime(StrictModel):
    """Population doubling time at low density per phenotype, h (``inf``: never divides)."""

    epithelial: float = Field(gt=0.0, description="epithelial cells, h")
    mesenchymal: float = Field(gt=0.0, description="mesenchymal cells, h")

    def as_tuple(self) -> tuple[float, float]:
        """Return ``(epithelial, mesenchymal)``."""
        return (self.epithelial, self.mesenchymal)


def _per_phen(e: float, m: float, text: str):
    return Field(default_factory=lambda: PerPhenotype(epithelial=e, mesenchymal=m), description=text)


class CloneConfig(StrictModel):
    """One clone: a row of the trait table. Defaults: Franssen et al. 2019 in physical units.

    Franssen's non-dimensional units are L = 2 mm and tau = 4e4 s (11.1 h); the
    defaults below are their published values converted with those scales.
    """

    name: Name = Field(description="clone name, used in outputs and overrides")
    description: str = Field("", description="free text")
    doubling_time_h: DoublingTime = Field(
        default_factory=lambda: DoublingTime(epithelial=33.3, mesenchymal=22.2),
        description="population doubling time at low density, h (Franssen: 3000 and 2000 steps of 40 s)",
    )
    cycle_cv: float = Field(
        0.25, ge=0.01, le=1.0,
        description="coefficient of variation of cycle durations (Gamma distributed), dimensionless",
    )
    death_rate_per_h: PerPhenotype = _per_phen(0.0, 0.0, "hazard of death, 1/h")
    diffusion_um2_per_h: PerPhenotype = _per_phen(
        18.0, 36.0, "random motility coefficient D, µm²/h (Franssen: 5e-11 and 1e-10 cm²/s)"
    )
    haptotaxis_um2_per_h: PerPhenotype = _per_phen(
        180.0, 180.0, "haptotactic sensitivity Phi, µm²/h per unit ECM density (Franssen: 5e-4)"
    )
    mmp2_secretion_per_h: PerPhenotype = _per_phen(
        0.0, 0.01755, "MMP-2 secreted per cell, normalised concentration per h (Franssen: Theta = 0.195)"
    )
    mt1mmp_degradation_per_h: PerPhenotype = _per_phen(
        0.0, 0.09, "ECM degradation rate by membrane MT1-MMP per cell at a point, 1/h (Franssen: Gamma_1 = 1)"
    )
    emt_rate_per_h: RatePerHour = Field(0.0, description="hazard of EMT (epithelial -> mesenchymal), 1/h")
    met_rate_per_h: RatePerHour = Field(0.0, description="hazard of MET (mesenchymal -> epithelial), 1/h")


class LatticeConfig(StrictModel):
    """Geometry of a site."""

    shape: list[Annotated[int, Field(ge=3, le=1_000_000)]] = Field(
        min_length=2, max_length=3, description="points along x, y (and z for 3-D), count"
    )
    spacing_um: Positive = Field(10.0, description="distance between lattice points, µm (about one cell)")
    capacity_cells_per_point: int = Field(4, ge=1, le=255, description="most cells one point holds, cells")


class FieldConfig(StrictModel):
    """A reaction-diffusion field. Concentrations are normalised (dimensionless)."""

    description: str = Field("", description="what the field is")
    initial: NonNegative = Field(0.0, description="initial value everywhere, normalised")
    diffusion_um2_per_h: NonNegative = Field(0.0, description="diffusion coefficient, µm²/h")
    decay_per_h: RatePerHour = Field(0.0, description="first-order decay rate, 1/h")
    substeps: int | None = Field(
        None, ge=1, le=100_000,
        description="explicit sub-steps per base step; unset = chosen from the stability bound",
    )


class InitialTumourConfig(StrictModel):
    """Cells placed at t = 0 in a disc (ball in 3-D) at the centre of the site."""

    cells: int = Field(388, ge=0, le=100_000_000, description="number of cells, cells")
    radius_um: Positive | None = Field(
        None, description="radius of the seeded region, µm; unset = smallest that holds the cells"
    )
    mesenchymal_fraction: Probability = Field(0.6, description="fraction of mesenchymal cells")
    clone_fractions: dict[str, Probability] = Field(
        default_factory=dict,
        description="fraction of cells of each clone (must sum to 1); empty = all of the first clone",
    )


class VesselsConfig(StrictModel):
    """Vessel points placed at random at t = 0 outside the initial tumour."""

    normal: int = Field(8, ge=0, le=1_000_000, description="normal vessel points, count")
    ruptured: int = Field(2, ge=0, le=1_000_000, description="ruptured vessel points, count")
    min_distance_um: NonNegative = Field(
        0.0, description="least distance of a vessel point from the site centre, µm "
        "(unset 0: anywhere outside the initial tumour)"
    )


class SiteConfig(StrictModel):
    """A lattice site (the primary tumour site; organs reuse it in later versions)."""

    lattice: LatticeConfig
    fields: dict[Name, FieldConfig] = Field(
        default_factory=lambda: {
            "ecm": FieldConfig(description="extracellular matrix density", initial=1.0),
            "mmp2": FieldConfig(
                description="MMP-2 concentration", diffusion_um2_per_h=360.0, decay_per_h=0.009
            ),
        },
        description="fields by name (ECM and MMP-2 by default, Franssen 2019 values)",
    )
    initial_tumour: InitialTumourConfig = Field(default_factory=InitialTumourConfig)
    vessels: VesselsConfig = Field(default_factory=VesselsConfig)


class OutputConfig(StrictModel):
    """What is recorded and how often."""

    record_every_h: Positive = Field(1.0, description="interval between time-series rows, h")
    snapshot_every_h: Positive = Field(24.0, description="interval between field snapshots, h")


def _mechanisms_model():
    fields = {name: (m.Params, Field(default_factory=m.Params)) for name, m in REGISTRY.items()}
    model = create_model(
        "MechanismsConfig",
        __base__=StrictModel,
        __doc__="Every mechanism's parameters, by mechanism name; each has `enabled`.",
        **fields,
    )
    return model


MechanismsConfig = _mechanisms_model()


class SimulationConfig(StrictModel):
    """A whole scenario."""

    name: Name = Field("scenario", description="scenario name")
    description: str = Field("", description="one line shown by `metacoop scenarios`")
    seed: int = Field(0, ge=0, lt=2**63, description="root random seed")
    duration_h: Positive = Field(description="simulated time, h")
    dt_h: Positive = Field(1.0 / 90.0, description="base time step of the cell rules, h (Franssen: 40 s)")
    field_precision: Literal["float32", "float64"] = Field(
        "float64", description="floating-point type of fields"
    )
    output: OutputConfig = Field(default_factory=OutputConfig)
    clones: list[CloneConfig] = Field(min_length=1, max_length=32_000, description="the clone trait table")
    primary: SiteConfig
    mechanisms: MechanismsConfig = Field(default_factory=MechanismsConfig)  # type: ignore[valid-type]

    @property
    def n_steps(self) -> int:
        """Number of base steps in the run."""
        return max(1, math.ceil(self.duration_h / self.dt_h - 1e-9))

    def sites(self) -> dict[str, SiteConfig]:
        """The lattice sites by compartment name."""
        return {"primary": self.primary}

    def clone_table(self) -> CloneTable:
        """The clone trait table as arrays."""
        return CloneTable.from_config(self.clones)
