"""Intravasation: cells on vessel points enter the circulation (Franssen 2019).

Mesenchymal cells can enter through any vessel point, epithelial cells only
through ruptured ones. Every eligible cell enters at hazard ``rate_per_h``
(the default, infinity, reproduces Franssen's rule that a cell on a vessel
point enters at once). All cells entering from one vessel point in one step
form one circulating tumour cell (CTC) entity: a single cell or a cluster.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from metacoop.config.base import MechanismParams
from metacoop.core.clones import per_step_probability
from metacoop.core.schedule import Phase
from metacoop.kernels.cells import select_on_vessels
from metacoop.mechanisms.base import Mechanism, StepContext


class IntravasationParams(MechanismParams):
    """Parameters of :class:`Intravasation`."""

    rate_per_h: float = Field(
        math.inf, ge=0.0,
        description="hazard at which an eligible cell on a vessel point enters it, 1/h "
        "(inf: at once, as in Franssen 2019)",
    )


class Intravasation(Mechanism):
    """Moves cells from vessel points into the circulation, grouped into CTCs."""

    name = "intravasation"
    phase = Phase.INTRAVASATION
    order = 10
    Params = IntravasationParams
    summary = (
        "cells on a vessel point enter the circulation (mesenchymal through any vessel, "
        "epithelial only through ruptured ones); cells entering from one point together "
        "form one CTC"
    )
    sources = ("Franssen et al. 2019 Bull Math Biol 81:1965 (intravasation rules)",)

    def bind(self, sim) -> None:
        self.p_enter = float(per_step_probability(self.params.rate_per_h, sim.dt_h))

    def step(self, ctx: StepContext) -> None:
        sim = ctx.sim
        for site in sim.sites:
            if not site.has_vessels:
                continue
            c = site.cells
            mask = site.scratch_mask(c.n)
            k = select_on_vessels(
                c.n, c.uid, c.pos, c.phen, c.flags, site.vessel, self.p_enter,
                site.streams.key, self.stream, ctx.step, mask,
            )
            if not k:
                continue
            slots = np.flatnonzero(mask[: c.n])
            points = c.pos[slots].astype(np.int64)
            leaving = c.take(slots)
            site.emigrate(mask[: c.n].astype(bool))
            sim.circulation.receive(
                leaving, points, origin=site.name, vessel_state=site.vessel[points],
                time_h=ctx.time_h + ctx.dt_h, step=ctx.step, clone_names=sim.clones.names,
                lattice=site.lattice,
            )
