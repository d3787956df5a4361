"""Cell death at a constant hazard per clone and phenotype."""

from __future__ import annotations

from metacoop.core.clones import per_step_probability
from metacoop.core.schedule import Phase
from metacoop.kernels.cells import DEAD, bernoulli_flag
from metacoop.mechanisms.base import Mechanism, StepContext


class Death(Mechanism):
    """Requests the death of each cell with probability ``1 - exp(-mu dt)`` per step."""

    name = "death"
    phase = Phase.CELL_RULES
    order = 20
    summary = (
        "each cell dies at its clone's death_rate_per_h (constant hazard); "
        "dead cells are removed at the end of the step"
    )

    def bind(self, sim) -> None:
        self.p = per_step_probability(sim.clones.death_rate_per_h, sim.dt_h)
        self.active = bool((self.p > 0).any())

    def step(self, ctx: StepContext) -> None:
        if not self.active:
            return
        for site in ctx.sim.sites:
            c = site.cells
            bernoulli_flag(
                c.n, c.uid, c.clone, c.phen, self.p, site.streams.key, self.stream,
                ctx.step, c.flags, DEAD,
            )
