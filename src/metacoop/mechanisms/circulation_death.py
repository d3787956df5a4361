"""Death of CTCs in transit: shear, anoikis and immune killing, with cluster protection."""

from __future__ import annotations

import numpy as np

from metacoop.core.schedule import Phase
from metacoop.kernels.random import uniforms
from metacoop.mechanisms.base import Mechanism, StepContext

CAUSES = ("shear", "immune", "anoikis")


def ctc_hazards(circ_cfg, clones, size, mean_resistance, mean_cohesion) -> np.ndarray:
    """Death hazards ``[ctc, cause]`` (shear, immune, anoikis), 1/h.

    A CTC of ``s`` cells has its single-cell hazards scaled by
    ``g = 1 - cohesion * (1 - cluster_hazard_factor[s])``; the anoikis hazard is
    further scaled by ``1 - mean anoikis_resistance`` of its cells.
    """
    table = np.asarray(circ_cfg.cluster_hazard_factor, dtype=np.float64)
    f = table[np.minimum(size, table.size) - 1]
    g = 1.0 - mean_cohesion * (1.0 - f)
    return np.stack([
        circ_cfg.shear_death_rate_per_h * g,
        circ_cfg.immune_death_rate_per_h * g,
        circ_cfg.anoikis_death_rate_per_h * (1.0 - mean_resistance) * g,
    ], axis=1)


class CirculationDeath(Mechanism):
    """Each CTC dies as a whole at its total hazard; the cause is drawn by hazard share.

    The hazard acts only while the CTC is in transit (see ``Circulation.exposure_h``), so
    cells injected straight into an organ's afferent vessel are not exposed at all.
    """

    name = "circulation_death"
    phase = Phase.CIRCULATION
    order = 10
    summary = (
        "a CTC dies at the sum of shear, immune and anoikis hazards of a single cell, reduced "
        "for clusters by cluster_hazard_factor (scaled by the cells' cohesion) and for anoikis "
        "by the cells' anoikis_resistance (multicellular resistance)"
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
        slots = circ.member_slots()
        clone = circ.cells.live("clone")
        size = circ.ctcs.live("size")
        res = np.bincount(slots, self.clones.anoikis_resistance[clone], minlength=n) / size
        coh = np.bincount(slots, self.clones.cohesion[clone], minlength=n) / size
        hazards = ctc_hazards(self.cfg, self.clones, size, res, coh)
        total = hazards.sum(axis=1)
        ids = circ.ctcs.live("id")
        u = uniforms(circ.key, self.stream, ctx.step, ids, 0, np.empty(n))
        dead = u < -np.expm1(-total * circ.exposure_h())
        if not dead.any():
            return
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
