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

from pydantic import Field, create_model, model_validator

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
    anoikis_resistance: Probability = Field(
        0.0, description="fraction of the circulation's anoikis hazard a cell of this clone escapes"
    )
    cohesion: Probability = Field(
        1.0, description="cluster cohesion: scales the protection a cluster gives (1 full) and "
        "blocks disaggregation (1 never sheds), dimensionless",
    )
    extravasation_competence: NonNegative = Field(
        1.0, description="multiplier of an organ's extravasation_rate_per_h, dimensionless"
    )
    dormancy_probability: Probability = Field(
        0.0, description="probability that a cell becomes a solitary dormant cell on extravasation"
    )
    dormant_death_rate_per_h: RatePerHour = Field(0.0, description="hazard of death of dormant cells, 1/h")
    wake_rate_per_h: RatePerHour = Field(0.0, description="hazard of leaving dormancy, 1/h")
    leader: bool = Field(
        False, description="mesenchymal cells of this clone are leader cells that followers track "
        "(collective_migration)",
    )
    gf_secretion_per_h: NonNegative = Field(
        0.0, description="growth factor secreted per cell, normalised concentration per h "
        "(growth_factor; producers raise the division rate of every nearby cell)",
    )
    csf1_secretion_per_h: NonNegative = Field(
        0.0, description="CSF-1 secreted per cell, normalised concentration per h (paracrine: "
        "attracts macrophages)",
    )
    egf_chemotaxis_um2_per_h: PerPhenotype = _per_phen(
        0.0, 0.0, "chemotactic sensitivity to macrophage EGF, µm²/h per unit receptor occupancy "
        "(paracrine)"
    )
    eselectin_induction: NonNegative = Field(
        0.0, description="cytokine (TNF-alpha/IL-1) response triggered per cell arriving in an "
        "organ, normalised (adhesion_induction; 0: none, as non-metastatic M-27 in Khatib 1999)",
    )


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

    normal: int = Field(8, ge=0, le=1_000_000, description="normal blood-vessel points, count")
    ruptured: int = Field(2, ge=0, le=1_000_000, description="ruptured blood-vessel points, count")
    lymphatic: int = Field(0, ge=0, le=1_000_000, description="lymphatic vessel points, count")
    min_distance_um: NonNegative = Field(
        0.0, description="least distance of a vessel point from the site centre, µm "
        "(unset 0: anywhere outside the initial tumour)"
    )


class SiteConfig(StrictModel):
    """What every lattice site has: geometry, fields and vessel points."""

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
    vessels: VesselsConfig = Field(default_factory=VesselsConfig)


class PrimaryConfig(SiteConfig):
    """The primary tumour site."""

    initial_tumour: InitialTumourConfig = Field(default_factory=InitialTumourConfig)
    blood_route: Name = Field("primary", description="route (key of circulation.routes) of CTCs "
                              "entering blood vessels of the primary site")
    lymph_route: Name = Field("lymph", description="route of CTCs entering lymphatic vessel points")


class OrganConfig(SiteConfig):
    """A distant organ: a lattice site plus its capillary bed.

    Cells reach an organ's capillary bed in CTCs. A CTC of at least
    ``size_restriction_cells`` cells always arrests (size restriction);
    smaller ones arrest with ``arrest_probability`` (adhesion); the rest pass
    on along ``drains_to``. Arrested cells extravasate at
    ``extravasation_rate_per_h`` times their clone's competence or die at
    ``arrested_death_rate_per_h``.
    """

    description: str = Field("", description="what the organ stands for")
    vessels: VesselsConfig = Field(
        default_factory=lambda: VesselsConfig(normal=10, ruptured=0),
        description="vessel points where arriving cells arrest and extravasate",
    )
    drains_to: Name = Field("venous", description="route followed by CTCs leaving this organ's "
                            "capillary bed or re-entering the blood from it")
    arrest_probability: Probability = Field(
        1.0, description="probability that a CTC below the size restriction arrests in one passage"
    )
    size_restriction_cells: int = Field(
        2, ge=1, le=1_000_000, description="CTCs of at least this many cells always arrest, cells"
    )
    extravasation_rate_per_h: float = Field(
        math.inf, ge=0.0, description="hazard of extravasation of an arrested cell, 1/h (inf: at once)"
    )
    arrested_death_rate_per_h: RatePerHour = Field(
        0.0, description="hazard of death of a cell arrested in a capillary, 1/h"
    )
    met_on_extravasation: bool = Field(True, description="extravasated cells become epithelial (MET)")
    join_radius_um: NonNegative = Field(
        30.0, description="a CTC arresting within this distance of a founded metastasis joins it, µm"
    )
    avascular_death_rate_per_h: RatePerHour = Field(
        0.0, description="extra hazard of death of active cells in a founded metastasis that has "
        "not passed its angiogenic switch (hypoxia, nutrient limitation), 1/h",
    )
    avascular_max_cells: int = Field(
        1_000_000_000, ge=1, description="a metastasis stops growing at this size until its "
        "angiogenic switch, cells",
    )
    angiogenic_min_cells: int = Field(1, ge=1, description="smallest metastasis that can switch, cells")
    angiogenic_switch_rate_per_h: float = Field(
        math.inf, ge=0.0, description="hazard of the angiogenic switch per metastasis, 1/h, scaled by "
        "size / angiogenic_min_cells (inf: every metastasis is vascularised at once)",
    )
    reentry: bool = Field(False, description="cells on this organ's vessel points re-enter the blood")


class SystemicFactorConfig(StrictModel):
    """A factor secreted by the primary tumour into the blood."""

    secretion_per_cell_per_h: NonNegative = Field(
        1e-6, description="level added per primary-tumour cell per hour, normalised"
    )
    clearance_per_h: RatePerHour = Field(0.1, description="first-order clearance rate, 1/h")


class CirculationConfig(StrictModel):
    """Transit, fates and routing of CTCs. Defaults: Franssen et al. 2019.

    A CTC of ``s`` cells dies at hazard
    ``(shear + immune + anoikis * (1 - mean anoikis_resistance)) * g`` with
    ``g = 1 - cohesion * (1 - cluster_hazard_factor[s])`` (mean cohesion of
    its cells; the last factor applies to every larger size). Franssen's
    survival over the 2-h transit, 5e-4 for single cells and 2.5e-2 for
    clusters, gives a total single-cell hazard of 3.80 /h and a cluster
    factor of 0.485.
    """

    transit_h: Positive = Field(2.0, description="time from entering a route to the next capillary bed, h")
    transit_distribution: Literal["fixed", "exponential"] = Field(
        "fixed", description="transit time fixed, or exponential with mean transit_h"
    )
    shear_death_rate_per_h: RatePerHour = Field(1.9, description="single-cell hazard of shear death, 1/h")
    anoikis_death_rate_per_h: RatePerHour = Field(1.0, description="single-cell hazard of anoikis, 1/h")
    immune_death_rate_per_h: RatePerHour = Field(0.9, description="single-cell hazard of immune killing, 1/h")
    cluster_hazard_factor: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=lambda: [1.0, 0.485], min_length=1, max_length=1000,
        description="death hazard of a CTC of 1, 2, ... cells relative to a single cell",
    )
    disaggregation_rate_per_h: RatePerHour = Field(
        0.35, description="hazard that a cell leaves its cluster (times 1 - cohesion), 1/h "
        "(Franssen: 0.5 over 2 h)",
    )
    routes: dict[Name, dict[Name, Probability]] = Field(
        default_factory=dict,
        description="blood-flow fractions: for each route, the fraction of CTCs reaching each organ "
        "(fractions of a route sum to 1)",
    )
    factors: dict[Name, SystemicFactorConfig] = Field(
        default_factory=dict, description="systemic factors secreted by the primary tumour"
    )


class InjectionConfig(StrictModel):
    """Cells injected into a vessel (experimental metastasis: Fidler 1970, Luzzi 1998)."""

    vessel: Name = Field(description="route the cells enter (a key of circulation.routes), "
                         "e.g. portal_vein or tail_vein")
    time_h: NonNegative = Field(0.0, description="time of injection, h")
    cells: int = Field(ge=1, le=100_000_000, description="cells injected")
    clone_fractions: dict[str, Probability] = Field(
        default_factory=dict, description="fraction of cells of each clone; empty = all of the first clone"
    )
    mesenchymal_fraction: Probability = Field(0.0, description="fraction of mesenchymal cells")
    cluster_sizes: dict[Annotated[int, Field(ge=1, le=10_000)], Probability] = Field(
        default_factory=lambda: {1: 1.0},
        description="fraction of injected cells that travel in CTCs of each size (sums to 1)",
    )
    transit_h: NonNegative = Field(0.0, description="time from injection to the first capillary bed, h")


class OutputConfig(StrictModel):
    """What is recorded and how often."""

    record_every_h: Positive = Field(1.0, description="interval between time-series rows, h")
    snapshot_every_h: Positive = Field(24.0, description="interval between field snapshots, h")
    funnel_times_h: list[NonNegative] = Field(
        default_factory=list, description="times of the cascade funnel rows, h (the end is always added)"
    )
    checkpoint_every_h: NonNegative = Field(
        24.0, description="interval between checkpoints of a run written to a directory, h "
        "(0: none); `metacoop run --resume DIR` continues from the last one"
    )


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
    primary: PrimaryConfig | None = Field(None, description="the primary tumour site (none: injection only)")
    organs: dict[Name, OrganConfig] = Field(default_factory=dict, description="distant organs by name")
    circulation: CirculationConfig = Field(default_factory=CirculationConfig)
    injections: list[InjectionConfig] = Field(default_factory=list, description="cells injected into vessels")
    mechanisms: MechanismsConfig = Field(default_factory=MechanismsConfig)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _add_mechanism_needs(self) -> SimulationConfig:
        """Give sites the fields, and the circulation the factors, of every enabled mechanism.

        A field or factor the scenario defines itself is kept as written, so a
        scenario can change, say, the growth factor's diffusion coefficient.
        """
        for name, mech in REGISTRY.items():
            params = getattr(self.mechanisms, name)
            if not params.enabled:
                continue
            for kind, fields in mech.site_fields(params).items():
                if kind == "primary":
                    sites = [self.primary] if self.primary is not None else []
                else:
                    sites = list(self.organs.values())
                for site in sites:
                    for fname, settings in fields.items():
                        if fname not in site.fields:
                            site.fields[fname] = FieldConfig(**settings)
            for fname, settings in mech.systemic_factors(params).items():
                if fname not in self.circulation.factors:
                    self.circulation.factors[fname] = SystemicFactorConfig(**settings)
        return self

    @property
    def n_steps(self) -> int:
        """Number of base steps in the run."""
        return max(1, math.ceil(self.duration_h / self.dt_h - 1e-9))

    def sites(self) -> dict[str, SiteConfig]:
        """The lattice sites by compartment name: the primary (if any), then the organs."""
        out: dict[str, SiteConfig] = {"primary": self.primary} if self.primary is not None else {}
        out.update(self.organs)
        return out

    def clone_table(self) -> CloneTable:
        """The clone trait table as arrays, with room for the clones diversification may create."""
        div = getattr(self.mechanisms, "diversification", None)
        extra = div.max_new_clones if div is not None and div.enabled else 0
        return CloneTable.from_config(self.clones, capacity=len(self.clones) + extra)
