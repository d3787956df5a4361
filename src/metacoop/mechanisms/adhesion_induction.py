"""Endothelial adhesion induction: arriving tumour cells make the organ's vessels stickier.

Each tumour cell arriving in an organ triggers a cytokine response of
strength equal to its clone's ``eselectin_induction`` at its lattice point
(non-metastatic lines induce none, Khatib et al. 1999). The response is a
linear cascade of three organ fields: activated Kupffer cells (``kupffer``,
rate ``activation_decay_per_h``), TNF-alpha/IL-1 (``tnf``, diffusing, rate
``cytokine_decay_per_h``) and E-selectin on the endothelium (``cam``, rate
``eselectin_decay_per_h``); each stage passes on what it loses, so after one
arrival the organ's E-selectin is a sum of three exponentials. With the
defaults it is detectable (a quarter of its peak) after about 1.5 h, peaks at 6.4 h and is
back below a tenth of its peak by 23 h (Khatib et al. 1999: onset 2 h, peak
6-8 h, basal by 24 h; TNF mRNA peaks at 4 h here, 4-6 h there). E-selectin
at level ``c`` multiplies the arrest hazard of later CTCs by
``1 + arrest_gain c/(K + c)`` and the extravasation hazard by
``1 + extravasation_gain c/(K + c)``.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from metacoop.config.base import MechanismParams, NonNegative, Positive
from metacoop.core.modifiers import saturating_factor
from metacoop.core.schedule import Phase
from metacoop.kernels.fields import add_scaled
from metacoop.mechanisms.base import Mechanism, StepContext


class InductionParams(MechanismParams):
    """Parameters of :class:`AdhesionInduction`."""

    enabled: bool = Field(False, description="include this mechanism in the schedule")
    activation_decay_per_h: Positive = Field(
        0.25, description="rate at which activated Kupffer cells pass the signal on, 1/h"
    )
    cytokine_decay_per_h: Positive = Field(
        0.25, description="rate at which TNF-alpha/IL-1 induce E-selectin and vanish, 1/h"
    )
    eselectin_decay_per_h: Positive = Field(0.5, description="decay rate of induced E-selectin, 1/h")
    cytokine_diffusion_um2_per_h: NonNegative = Field(
        3600.0, description="diffusion of the cytokines in the organ, µm²/h"
    )
    half_saturation: Positive = Field(
        0.002, description="E-selectin level giving half the effect, normalised"
    )
    arrest_gain: NonNegative = Field(
        3.0, description="relative rise of the arrest hazard at saturating E-selectin (assumption)"
    )
    extravasation_gain: NonNegative = Field(
        1.0, description="relative rise of the extravasation hazard at saturating E-selectin (assumption)"
    )


class AdhesionInduction(Mechanism):
    """Cytokine cascade fields in organs and the ``arrest`` and ``extravasation`` factors of E-selectin."""

    name = "adhesion_induction"
    phase = Phase.ORGANS
    order = 40
    Params = InductionParams
    summary = (
        "each tumour cell arriving in an organ triggers (clone trait eselectin_induction) a "
        "Kupffer-cell -> TNF/IL-1 -> E-selectin cascade: onset ~2 h, peak 6-8 h, basal by 24 h; "
        "E-selectin raises arrest and extravasation of later cells"
    )
    sources = (
        "Khatib et al. 1999 Cancer Res 59:1356 (E-selectin induction by metastatic H-59 cells)",
        "Khatib et al. 2005 Am J Pathol 167:749 (TNF-alpha from Kupffer cells)",
    )
    FIELDS = ("kupffer", "tnf", "cam")

    @classmethod
    def site_fields(cls, params: InductionParams) -> dict[str, dict[str, dict]]:
        return {"organs": {
            "kupffer": {"description": "activated Kupffer cells (cytokine response stage 1), normalised",
                        "decay_per_h": params.activation_decay_per_h},
            "tnf": {"description": "TNF-alpha/IL-1 (stage 2), normalised",
                    "diffusion_um2_per_h": params.cytokine_diffusion_um2_per_h,
                    "decay_per_h": params.cytokine_decay_per_h},
            "cam": {"description": "E-selectin induced on the endothelium (stage 3), normalised",
                    "decay_per_h": params.eselectin_decay_per_h},
        }}

    def bind(self, sim) -> None:
        p = self.params
        self.induction = sim.clones.eselectin_induction
        dt = sim.dt_h
        self.pass_a = -math.expm1(-p.activation_decay_per_h * dt)
        self.pass_b = -math.expm1(-p.cytokine_decay_per_h * dt)
        self.organs = list(sim.organs)
        for organ in self.organs:
            cam, k = organ.fields["cam"], p.half_saturation
            for kind, gain in (("arrest", p.arrest_gain), ("extravasation", p.extravasation_gain)):
                organ.modifiers.add_factor(kind, self.name, saturating_factor(cam, k, gain))

    def step(self, ctx: StepContext) -> None:
        for organ in self.organs:
            kup, tnf, cam = (organ.fields[n] for n in self.FIELDS)
            if organ.arrivals_pos:
                pos = np.concatenate(organ.arrivals_pos)
                strength = self.induction[np.concatenate(organ.arrivals_clone)]
                if strength.any():
                    kup.zero = False
                    np.add.at(kup.flat_deltas, pos, strength)
            if not kup.zero:
                tnf.zero = False
                add_scaled(tnf.flat_deltas, kup.flat, self.pass_a)
            if not tnf.zero:
                cam.zero = False
                add_scaled(cam.flat_deltas, tnf.flat, self.pass_b)
