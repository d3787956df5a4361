"""EMT and MET: cells switch between epithelial and mesenchymal phenotypes."""

from __future__ import annotations

import numpy as np

from metacoop.core.clones import per_step_probability
from metacoop.core.schedule import Phase
from metacoop.kernels.bookkeeping import tally_switched
from metacoop.kernels.cells import EPITHELIAL, MESENCHYMAL, switch_phenotype
from metacoop.mechanisms.base import Mechanism, StepContext


class PhenotypeSwitch(Mechanism):
    """Each cell undergoes EMT (or MET) at its clone's constant hazard per hour."""

    name = "phenotype_switch"
    phase = Phase.CELL_RULES
    order = 10
    summary = (
        "epithelial cells become mesenchymal at the clone's emt_rate_per_h and "
        "mesenchymal cells revert at met_rate_per_h (constant hazards)"
    )
    sources = ("Franssen et al. 2019 Bull Math Biol 81:1965 (two phenotypes)",)

    def bind(self, sim) -> None:
        self.p_emt = per_step_probability(sim.clones.emt_rate_per_h, sim.dt_h)
        self.p_met = per_step_probability(sim.clones.met_rate_per_h, sim.dt_h)
        self.active = bool(np.any(self.p_emt > 0) or np.any(self.p_met > 0))

    refresh = bind  # bind only derives tables from the clone traits

    def step(self, ctx: StepContext) -> None:
        if not self.active:
            return
        for site in ctx.sim.sites:
            c = site.cells
            switched = site.scratch_mask(c.n)
            if switch_phenotype(c.n, c.uid, c.clone, c.phen, c.state, c.flags, self.p_emt, self.p_met,
                                site.streams.key, self.stream, ctx.step, switched):
                counts = np.zeros((2, site.counters["emt"].size), np.int64)  # [phenotype now, clone]
                tally_switched(c.n, switched, c.clone, c.phen, counts, c.pos, site.mes_occ)
                site.counters["emt"] += counts[MESENCHYMAL]
                site.counters["met"] += counts[EPITHELIAL]
