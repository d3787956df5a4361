"""Death of CTCs in transit: shear, anoikis and immune killing, with cluster protection."""

from __future__ import annotations

import numpy as np

from metacoop.core.schedule import Phase
from metacoop.kernels.bookkeeping import ctc_death_candidates
from metacoop.kernels.random import uniforms
from metacoop.mechanisms.base import NO_FACTOR, Mechanism, StepContext

CAUSES = ("shear", "immune", "anoikis")


class CirculationDeath(Mechanism):
    """Each CTC dies as a whole at its total hazard; the cause is drawn by hazard share.

    The hazard acts only while the CTC is in transit (see ``Circulation.exposure_h``), so
    cells injected straight into an organ's afferent vessel are not exposed at all.
    """

    name = "circulation_death"
    phase = Phase.CIRCULATION
    order = 10
    summary = (
        "a CTC dies at the sum of shear, immune and anoikis hazards of a single cell, the anoikis "
        "hazard reduced by the cells' anoikis_resistance; clusters are protected only through "
        "emboli_protection"
    )
    sources = (
        "Franssen et al. 2019 Bull Math Biol 81:1965 (single-cell and cluster survival)",
        "Aceto et al. 2014 Cell 158:1110 (clusters are more efficient seeds)",
    )

    def bind(self, sim) -> None:
        self.cfg = sim.config.circulation
        self.clones = sim.clones

    def step(self, ctx: StepContext) -> None:
        circ = ctx.sim.circulation
        n = circ.ctcs.n
        if n == 0:
            return
        factor = circ.hazard_factor(ctx)
        ids = circ.ctcs.live("id")
        hazards, x, u = np.empty((n, 3)), np.empty(n), np.empty(n)
        cfg = self.cfg
        # In one pass each CTC's hazards (single-cell ones; anoikis scaled by 1 - the mean anoikis
        # resistance of its cells; all by the hazard modifiers' factor), x = total hazard * exposure, and
        # its draw; only a CTC with u < x can die (1 - exp(-x) < x), which in most steps none has.
        if not ctc_death_candidates(n, circ.member_slots(), circ.cells.clone, self.clones.anoikis_resistance,
                                    circ.ctcs.size, cfg.shear_death_rate_per_h, cfg.immune_death_rate_per_h,
                                    cfg.anoikis_death_rate_per_h, NO_FACTOR if factor is None else factor,
                                    circ.ctcs.exposed_h, ids, circ.key, self.stream, ctx.step, hazards, x, u):
            return
        dead = u < -np.expm1(-x)
        if not dead.any():
            return
        total = hazards.sum(axis=1)
        v = uniforms(circ.key, self.stream, ctx.step, ids, 1, np.empty(n))
        t = ctx.time_h + ctx.dt_h
        order, bounds = circ.members_by_slot()
        for slot in np.flatnonzero(dead):
            share = np.cumsum(hazards[slot]) / total[slot]
            cause = CAUSES[min(int(np.searchsorted(share, v[slot], side="right")), 2)]
            ctx.sim.events.append(circ.ctc_event("ctc_death", slot, t, ctx.step, self.clones.names,
                                                 members=order[bounds[slot] : bounds[slot + 1]],
                                                 cause=cause))
        circ.remove_ctcs(dead, "died")
