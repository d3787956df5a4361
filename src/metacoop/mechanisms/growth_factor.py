"""Growth-factor public good: producer clones speed up the division of every nearby cell.

Cells of producer clones secrete a diffusible growth factor at their clone's
``gf_secretion_per_h``; the factor diffuses and decays. The cell-cycle clock
of every cell, producer or not, runs ``1 + max_speedup * g / (K + g)`` times
faster where the concentration is ``g`` (receptor occupancy with half
saturation ``K``). Non-producers therefore profit from producers nearby
(Axelrod et al. 2006; Marusyk et al. 2014).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from metacoop.config.base import MechanismParams, NonNegative, Positive, RatePerHour
from metacoop.core.modifiers import saturating_factor
from metacoop.core.schedule import Phase
from metacoop.mechanisms.base import Mechanism, StepContext


class GrowthFactorParams(MechanismParams):
    """Parameters of :class:`GrowthFactor`."""

    enabled: bool = Field(False, description="include this mechanism in the schedule")
    field: str = Field("gf", description="field holding the growth factor (normalised concentration)")
    max_speedup: NonNegative = Field(
        1.0, description="relative rise of the division rate at saturating growth factor, "
        "dimensionless (1: twice as fast; assumption of the order seen in Marusyk et al. 2014)",
    )
    half_saturation: Positive = Field(0.05, description="concentration giving half the speed-up, normalised")
    diffusion_um2_per_h: NonNegative = Field(
        3600.0, description="diffusion coefficient of the factor in tissue, µm²/h (1e-8 cm²/s)"
    )
    decay_per_h: RatePerHour = Field(0.1, description="decay (uptake and degradation) rate, 1/h")


class GrowthFactor(Mechanism):
    """Secretion by producers and a ``cycle_speed`` factor on every site."""

    name = "growth_factor"
    phase = Phase.CELL_RULES
    order = 55
    Params = GrowthFactorParams
    summary = (
        "cells of producer clones secrete a diffusible growth factor (gf_secretion_per_h); "
        "every nearby cell's cycle runs 1 + max_speedup * g/(half_saturation + g) times faster"
    )
    sources = (
        "Axelrod, Axelrod & Pienta 2006 PNAS 103:13474",
        "Marusyk et al. 2014 Nature 514:54 (non-cell-autonomous driving of tumour growth)",
    )

    @classmethod
    def site_fields(cls, params: GrowthFactorParams) -> dict[str, dict[str, dict]]:
        spec = {params.field: {"description": "growth factor made by producer clones, normalised",
                               "diffusion_um2_per_h": params.diffusion_um2_per_h,
                               "decay_per_h": params.decay_per_h}}
        return {"primary": spec, "organs": spec}

    def bind(self, sim) -> None:
        p = self.params
        self.refresh(sim)
        for site in sim.sites:
            speed = saturating_factor(site.fields[p.field], p.half_saturation, p.max_speedup)
            site.modifiers.add_factor("cycle_speed", self.name, speed)

    def refresh(self, sim) -> None:
        self.table = np.repeat(sim.clones.gf_secretion_per_h[:, None] * sim.dt_h, 2, axis=1)
        self.active = bool(np.any(self.table > 0))

    def step(self, ctx: StepContext) -> None:
        if not self.active:
            return
        for site in ctx.sim.sites:
            site.secrete(self.params.field, self.table)
