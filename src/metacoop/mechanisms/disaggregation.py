"""Disaggregation: cells leave their cluster and travel on as single-cell CTCs."""

from __future__ import annotations

import numpy as np

from metacoop.core.schedule import Phase
from metacoop.kernels.random import uniforms
from metacoop.mechanisms.base import Mechanism, StepContext


class Disaggregation(Mechanism):
    """Each cell of a cluster leaves it at ``disaggregation_rate_per_h * (1 - cohesion)``."""

    name = "disaggregation"
    phase = Phase.CIRCULATION
    order = 20
    summary = (
        "each cell of a circulating cluster leaves it at the circulation's "
        "disaggregation_rate_per_h times (1 - its clone's cohesion) and travels on as a single "
        "cell along the same route; a cluster never loses its last cell this way"
    )
    sources = ("Franssen et al. 2019 Bull Math Biol 81:1965 (disaggregation probability)",)

    def bind(self, sim) -> None:
        self.rate = sim.config.circulation.disaggregation_rate_per_h * (1.0 - sim.clones.cohesion)
        self.active = bool((self.rate > 0).any())
        self.names = sim.clones.names

    refresh = bind  # bind only derives tables from the clone traits

    def step(self, ctx: StepContext) -> None:
        circ = ctx.sim.circulation
        # A CTC holds at least one cell and the sizes add up to the cells (Circulation.check_accounting),
        # so as many cells as CTCs means every CTC is a single cell: no cluster to shed from.
        if not self.active or circ.cells.n == circ.ctcs.n:
            return
        slots = circ.member_slots()
        in_cluster = circ.ctcs.size[slots] > 1
        if not in_cluster.any():
            return
        cells = circ.cells
        u = uniforms(circ.key, self.stream, ctx.step, cells.live("uid"), 0, np.empty(cells.n))
        exposure = circ.exposure_h()[slots]
        leave = in_cluster & (u < -np.expm1(-self.rate[cells.live("clone")] * exposure))
        if not leave.any():
            return
        # a cluster whose every cell would leave keeps its first cell
        leaving_per = np.bincount(slots[leave], minlength=circ.ctcs.n)
        emptied = np.flatnonzero(leaving_per == circ.ctcs.size[: circ.ctcs.n])
        for s in emptied:
            leave[np.flatnonzero(slots == s)[0]] = False
        t = ctx.time_h + ctx.dt_h
        parent_ids = cells.ctc[: cells.n][leave].copy()
        new_ids = circ.split_off(leave, ctx.step)
        for pid in np.unique(parent_ids):
            shed = new_ids[parent_ids == pid]
            slot = int(np.searchsorted(circ.ctcs.id[: circ.ctcs.n], pid))
            ctx.sim.events.append(circ.ctc_event(
                "disaggregation", slot, t, ctx.step, self.names,
                shed_ctc_ids=shed.tolist(),
            ))
