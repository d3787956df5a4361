"""Death of CTCs in transit: shear, anoikis and immune killing, with cluster protection."""

from __future__ import annotations

import numpy as np

from metacoop.core.schedule import Phase
from metacoop.kernels.bookkeeping import per_ctc_mean
from metacoop.kernels.random import uniforms
from metacoop.mechanisms.base import Mechanism, StepContext

CAUSES = ("shear", "immune", "anoikis")


def ctc_hazards(circ_cfg, size, mean_resistance, factor: np.ndarray | None) -> np.ndarray:
    """Death hazards ``[ctc, cause]`` (shear, immune, anoikis), 1/h.

    Single-cell hazards; the anoikis hazard is scaled by ``1 - mean
    anoikis_resistance`` of the CTC's cells, and every hazard by ``factor``
    (the product of the circulation's CTC hazard modifiers, e.g. emboli
    protection of clusters), when there is one.
    """
    f = 1.0 if factor is None else factor  # (x * 1.0 is x exactly)
    out = np.empty((size.shape[0], 3))
    out[:, 0] = circ_cfg.shear_death_rate_per_h * f
    out[:, 1] = circ_cfg.immune_death_rate_per_h * f
    out[:, 2] = circ_cfg.anoikis_death_rate_per_h * (1.0 - mean_resistance) * f
    return out


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
        size = circ.ctcs.live("size")
        res = per_ctc_mean(n, circ.member_slots(), circ.cells.clone, self.clones.anoikis_resistance, size,
                           np.empty(n))
        hazards = ctc_hazards(self.cfg, size, res, circ.hazard_factor(ctx))
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
