"""The angiogenic switch: a micrometastasis recruits vessels and becomes a macrometastasis.

Until its switch a metastasis cannot grow beyond its organ's
``avascular_max_cells``. A founded metastasis of ``s >= angiogenic_min_cells``
cells switches at hazard ``angiogenic_switch_rate_per_h * s /
angiogenic_min_cells`` (size- and rate-dependent; infinite rate: at once),
times the mean ``angiogenesis`` modifier at its cells' points (endothelial
precursors recruited by a niche).
"""

from __future__ import annotations

import numpy as np

from metacoop.compartments.metastases import EXTINCT, S_DORMANT
from metacoop.core.schedule import Phase
from metacoop.core.state import ARRESTED
from metacoop.kernels.bookkeeping import switch_candidates
from metacoop.kernels.random import uniforms
from metacoop.mechanisms.base import Mechanism, StepContext


class AngiogenicSwitch(Mechanism):
    """Per-metastasis hazard of vascularisation (never of a metastasis whose cells all sleep)."""

    name = "angiogenic_switch"
    phase = Phase.ORGANS
    order = 30
    summary = (
        "a metastasis of at least angiogenic_min_cells cells switches to angiogenic growth at "
        "angiogenic_switch_rate_per_h times size/angiogenic_min_cells; before it, growth stops at "
        "avascular_max_cells"
    )
    sources = ("Folkman 1971 N Engl J Med 285:1182", "Naumov et al. 2006 J Natl Cancer Inst 98:316")

    def step(self, ctx: StepContext) -> None:
        reg = ctx.sim.metastases
        n = reg.n
        if n == 0:
            return
        t = ctx.time_h + ctx.dt_h
        out = np.empty(n, np.int64)
        for site in ctx.sim.organs:
            o = site.organ
            cand = out[: switch_candidates(n, site.organ_index, reg.organ, reg.founded_h, reg.switched_h,
                                           reg.status, reg.size, o.angiogenic_min_cells, EXTINCT, S_DORMANT,
                                           out)]
            if cand.size == 0:
                continue
            hazard = o.angiogenic_switch_rate_per_h * reg.size[cand] / o.angiogenic_min_cells
            c = site.cells
            tissue = (c.live("met") >= 0) & (c.live("state") != ARRESTED)
            factor = site.modifiers.factor_at("angiogenesis", ctx, c.live("pos")[tissue])
            if factor is not None:
                met = c.live("met")[tissue].astype(np.int64)
                total = np.bincount(met, factor, minlength=n)
                count = np.bincount(met, minlength=n)
                f = np.where(count[cand] > 0, total[cand] / np.maximum(count[cand], 1), 1.0)
                hazard = np.where(f == 1.0, hazard, hazard * f)
            p = -np.expm1(-hazard * ctx.dt_h)
            u = uniforms(site.streams.key, self.stream, ctx.step, cand.astype(np.int64), 0,
                         np.empty(cand.size))
            for m in cand[u < p]:
                reg.switched_h[m] = t
                if m < site.met_room.shape[0]:
                    site.met_room[m] = np.iinfo(np.int64).max // 2
                ctx.sim.events.append({"time_h": t, "step": ctx.step, "event": "angiogenic_switch",
                                       "compartment": site.name, "met_id": int(m),
                                       "size": int(reg.size[m])})
