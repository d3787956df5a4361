"""The pre-metastatic niche: the primary tumour prepares distant organs before cells arrive.

The primary tumour secretes a systemic factor (``factor``, a key of
``circulation.factors``; VEGF-A/PlGF-like) in proportion to its burden. At
every blood-vessel point of an organ, bone-marrow-derived cells are recruited
from the blood at

* VEGFR1+ BMDCs: ``bmdc_recruitment_per_h * tropism * L/(K + L) * (1 - vegfr1_blockade)``;
* endothelial precursors: ``epc_recruitment_per_h * tropism * L/(K + L)``

(normalised densities per h, ``L`` the factor level); both fields spread
slowly and decay (the niche fades when the factor goes). With niche levels
``b = B/(K_n + B)`` and ``e = E/(K_n + E)`` at a point, the niche multiplies
the arrest hazard by ``1 + arrest_gain b``, the extravasation hazard by
``1 + extravasation_gain b``, the death hazard of arrested and dormant
(solitary) cells by ``1 - survival_gain b``, and the angiogenic-switch
hazard by ``1 + angiogenesis_gain e``. Blocking VEGFR1 removes the BMDC part
only, so it reduces the niche without abolishing it (Kaplan 2005 vs
Dawson 2009). An organ's niche is *formed* when its mean ``b`` over vessel
points first exceeds ``formed_at`` (event ``niche_formed``).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from metacoop.config.base import MechanismParams, NonNegative, Positive, Probability
from metacoop.core.modifiers import saturating_factor
from metacoop.core.schedule import Phase
from metacoop.errors import Problem
from metacoop.mechanisms.base import Mechanism, StepContext


class NicheParams(MechanismParams):
    """Parameters of :class:`Niche`."""

    enabled: bool = Field(False, description="include this mechanism in the schedule")
    factor: str = Field(
        "vegf", description="systemic factor driving recruitment (key of circulation.factors)"
    )
    factor_half_saturation: Positive = Field(
        0.005, description="factor level giving half-maximal recruitment, normalised"
    )
    bmdc_recruitment_per_h: NonNegative = Field(
        0.2, description="VEGFR1+ BMDC density recruited per vessel point per h at saturation, normalised "
        "(set so that the niche forms within a day in the lung, Kaplan 2005 order; assumption)"
    )
    epc_recruitment_per_h: NonNegative = Field(
        0.1, description="endothelial-precursor density recruited per vessel point per h at saturation"
    )
    tropism: dict[str, NonNegative] = Field(
        default_factory=dict, description="relative recruitment per organ (missing organs: 1), dimensionless"
    )
    vegfr1_blockade: Probability = Field(
        0.0, description="fraction of VEGFR1+ BMDC recruitment blocked (anti-VEGFR1 antibody: 1)"
    )
    niche_half_saturation: Positive = Field(
        0.05, description="BMDC or EPC density giving half the niche effect"
    )
    arrest_gain: NonNegative = Field(
        2.0, description="relative rise of the arrest hazard in a full niche (assumption)"
    )
    extravasation_gain: NonNegative = Field(
        1.0, description="relative rise of the extravasation hazard in a full niche (assumption)"
    )
    survival_gain: Probability = Field(
        0.5, description="fraction of the death hazard of arrested and dormant cells removed in a "
        "full niche (assumption)",
    )
    angiogenesis_gain: NonNegative = Field(
        4.0, description="relative rise of the angiogenic-switch hazard where precursors saturate "
        "(assumption)"
    )
    formed_at: Probability = Field(
        0.5, description="mean BMDC niche level at vessel points that counts as formed"
    )
    bmdc_field: str = Field("bmdc", description="organ field of recruited VEGFR1+ BMDCs")
    epc_field: str = Field("epc", description="organ field of recruited endothelial precursors")


class Niche(Mechanism):
    """Recruitment into organ fields; the niche's factors on arrest, extravasation, death, angiogenesis."""

    name = "niche"
    phase = Phase.SYSTEMIC
    order = 10
    Params = NicheParams
    summary = (
        "a systemic factor made in proportion to the primary burden recruits VEGFR1+ BMDCs and "
        "endothelial precursors to organ vessels (with tropism) before tumour cells arrive; the "
        "niche raises arrest, extravasation, survival of solitary cells and the angiogenic switch"
    )
    sources = (
        "Kaplan et al. 2005 Nature 438:820 (VEGFR1+ BMDC clusters precede tumour cells)",
        "Dawson et al. 2009 PLoS One 4:e6525 (VEGFR1 blockade does not prevent metastasis)",
        "Psaila & Lyden 2009 Nat Rev Cancer 9:285 (the metastatic niche)",
    )

    @classmethod
    def site_fields(cls, params: NicheParams) -> dict[str, dict[str, dict]]:
        return {"organs": {
            params.bmdc_field: {"description": "recruited VEGFR1+ bone-marrow-derived cells, normalised",
                                "diffusion_um2_per_h": 36.0, "decay_per_h": 0.01},
            params.epc_field: {"description": "recruited endothelial precursor cells, normalised",
                               "diffusion_um2_per_h": 36.0, "decay_per_h": 0.01},
        }}

    @classmethod
    def systemic_factors(cls, params: NicheParams) -> dict[str, dict]:
        return {params.factor: {"secretion_per_cell_per_h": 1e-6, "clearance_per_h": 0.1}}

    def bind(self, sim) -> None:
        p = self.params
        self.organs = list(sim.organs)
        self.formed = {o.name: False for o in self.organs}
        for organ in self.organs:
            bmdc, epc = organ.fields[p.bmdc_field], organ.fields[p.epc_field]
            gains = (("arrest", bmdc, p.arrest_gain), ("extravasation", bmdc, p.extravasation_gain),
                     ("death", bmdc, -p.survival_gain), ("angiogenesis", epc, p.angiogenesis_gain))
            for kind, f, gain in gains:
                factor = saturating_factor(f, p.niche_half_saturation, gain)
                organ.modifiers.add_factor(kind, self.name, factor)

    def checkpoint(self):
        return {}, {"formed": self.formed}

    def restore(self, arrays, state) -> None:
        self.formed.update(state.get("formed", {}))

    def niche_level(self, organ) -> float:
        """Mean BMDC niche level ``B/(K + B)`` over the organ's blood-vessel points."""
        b = organ.fields[self.params.bmdc_field].flat[organ.blood_points]
        return float(np.mean(b / (self.params.niche_half_saturation + b))) if b.size else 0.0

    def step(self, ctx: StepContext) -> None:
        p = self.params
        level = ctx.sim.circulation.levels[p.factor]
        drive = level / (p.factor_half_saturation + level)
        t = ctx.time_h + ctx.dt_h
        for organ in self.organs:
            tropism = p.tropism.get(organ.name, 1.0)
            pts = organ.blood_points
            for fname, rate in ((p.bmdc_field, p.bmdc_recruitment_per_h * (1.0 - p.vegfr1_blockade)),
                                (p.epc_field, p.epc_recruitment_per_h)):
                amount = rate * tropism * drive * ctx.dt_h
                if amount > 0 and pts.size:
                    f = organ.fields[fname]
                    f.zero = False
                    f.flat_deltas[pts] += amount
            if not self.formed[organ.name] and self.niche_level(organ) > p.formed_at:
                self.formed[organ.name] = True
                ctx.sim.events.append({"time_h": t, "step": ctx.step, "event": "niche_formed",
                                       "compartment": organ.name})

    @classmethod
    def check(cls, params: NicheParams, config) -> list[Problem]:
        organs = list(config.organs)
        return [
            Problem(f"mechanisms.{cls.name}.tropism.{name}", value,
                    f"no organ is called {name!r}; organs are: {', '.join(organs) or 'none defined'}")
            for name, value in params.tropism.items() if name not in organs
        ]
