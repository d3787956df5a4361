"""Cell death at constant hazards that depend on the cell's state.

Active cells die at their clone's ``death_rate_per_h`` (per phenotype),
dormant cells at the clone's ``dormant_death_rate_per_h``, and cells arrested
in an organ's capillaries at the organ's ``arrested_death_rate_per_h``.
Active cells of an organ's metastases that have not passed their angiogenic
switch die at the organ's ``avascular_death_rate_per_h`` on top (a second,
independent draw). ``death`` modifiers (a niche) scale the hazard of arrested
and dormant cells at their point.
"""

from __future__ import annotations

import numpy as np

from metacoop.core.clones import per_step_probability
from metacoop.core.schedule import Phase
from metacoop.core.state import ACTIVE, ARRESTED, DORMANT
from metacoop.kernels.cells import DEAD, bernoulli_flag
from metacoop.kernels.metastases import avascular_death
from metacoop.mechanisms.base import NO_FACTOR, Mechanism, StepContext


def death_table(clones, dt_h: float, arrested_rate_per_h: float) -> np.ndarray:
    """Per-step death probability ``[state, clone, phenotype]``."""
    n = len(clones)
    table = np.zeros((3, n, 2))
    table[ACTIVE] = per_step_probability(clones.death_rate_per_h, dt_h)
    table[DORMANT] = per_step_probability(clones.dormant_death_rate_per_h, dt_h)[:, None]
    table[ARRESTED] = per_step_probability(arrested_rate_per_h, dt_h)
    return table


class Death(Mechanism):
    """Requests the death of each cell with probability ``1 - exp(-mu dt)`` per step."""

    name = "death"
    phase = Phase.CELL_RULES
    order = 20
    summary = (
        "each cell dies at a constant hazard: its clone's death_rate_per_h when active, "
        "dormant_death_rate_per_h when dormant, the organ's arrested_death_rate_per_h when "
        "arrested in a capillary; dead cells are removed at the end of the step"
    )

    def bind(self, sim) -> None:
        self.registry = sim.metastases
        self.avascular = {o.name: per_step_probability(o.organ.avascular_death_rate_per_h, sim.dt_h)
                          for o in sim.organs if o.organ.avascular_death_rate_per_h > 0}
        self.tables = {}
        for site in sim.sites:
            rate = site.organ.arrested_death_rate_per_h if site.organ is not None else 0.0
            table = death_table(sim.clones, sim.dt_h, rate)
            if (table > 0).any():
                self.tables[site.name] = table

    refresh = bind  # bind only derives tables from the clone traits

    def step(self, ctx: StepContext) -> None:
        for site in ctx.sim.sites:
            table = self.tables.get(site.name)
            if table is None:
                continue
            c = site.cells
            if c.n == 0:
                continue  # (an organ without cells: its factor, a pass over the lattice, is not needed)
            factor = site.modifiers.factor("death", ctx)
            bernoulli_flag(
                c.n, c.uid, c.clone, c.phen, c.state, table, site.streams.key, self.stream,
                ctx.step, c.flags, DEAD, c.pos, NO_FACTOR if factor is None else factor,
                site.scratch_mask(c.n),
            )
        for name, p in self.avascular.items():
            self._avascular_death(ctx, ctx.sim.site(name), float(p))

    def _avascular_death(self, ctx: StepContext, site, p: float) -> None:
        c, reg = site.cells, self.registry
        avascular_death(c.n, c.uid, c.met, c.state, c.flags, reg.founded_h, reg.switched_h, p,
                        site.streams.key, self.stream, ctx.step, 1)
