"""Intravasation: cells on vessel points enter the circulation (Franssen 2019).

Mesenchymal cells can enter through any vessel point, epithelial cells only
through ruptured or lymphatic ones. Every eligible cell enters at hazard
``rate_per_h`` (the default, infinity, reproduces Franssen's rule that a cell
on a vessel point enters at once). All cells entering from one vessel point in
one step form one CTC entity: a single cell or a cluster. CTCs from blood
vessels of the primary site follow its ``blood_route``, those from lymphatic
points its ``lymph_route``; cells leaving an organ (where it allows re-entry)
follow the organ's ``drains_to`` route.

Modifiers of the site (see :mod:`metacoop.core.modifiers`): gates close
intravasation outside shedding waves (a step is open when its end, the time
cells enter, is); doorways open normal vessel points to
epithelial cells (macrophage-assisted entry); escorts add neighbours of the
entering cells to their group (collective detachment).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from metacoop.compartments.circulation import grouped
from metacoop.config.base import MechanismParams
from metacoop.core.clones import per_step_probability
from metacoop.core.schedule import Phase
from metacoop.core.vessels import LYMPHATIC_VESSEL, VESSEL_NAMES
from metacoop.kernels.bookkeeping import add_counts, flagged_slots, occupied_points
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
        "epithelial only through ruptured or lymphatic ones); cells entering from one point "
        "together form one CTC"
    )
    sources = ("Franssen et al. 2019 Bull Math Biol 81:1965 (intravasation rules)",)

    def bind(self, sim) -> None:
        self.p_enter = float(per_step_probability(self.params.rate_per_h, sim.dt_h))
        circ = sim.circulation
        self.routes = {}
        for site in sim.sites:
            if site.organ is not None:
                blood = lymph = circ.route_index(site.organ.drains_to)
            else:
                blood = circ.route_index(site.config.blood_route)
                lymph = circ.route_index(site.config.lymph_route)
            self.routes[site.name] = (blood, lymph)

    def step(self, ctx: StepContext) -> None:
        sim = ctx.sim
        for site in sim.sites:
            if not site.allows_intravasation:
                continue
            c = site.cells
            mods = site.modifiers
            if c.n == 0 or not mods.open(ctx.time_h + ctx.dt_h):  # cells enter at the step's end
                continue
            occupied = site.scratch_slots(site.vessel_points.shape[0])  # (free once the cells are marked)
            held = occupied_points(site.occ, site.vessel_points, occupied)
            if not held:  # no cell on a vessel: none can enter
                continue
            mask = site.scratch_mask(c.n)
            k = select_on_vessels(
                c.n, c.uid, c.pos, c.phen, c.state, c.flags, site.vessel, self.p_enter,
                site.streams.key, self.stream, ctx.step, mask,
                mods.doorway_mask(ctx, site.lattice.n_points), occupied[:held],
            )
            if not k:
                continue
            if mods.escorts:
                leaving_mask = mask[: c.n].astype(bool)
                group_point = np.where(leaving_mask, c.pos[: c.n], -1).astype(np.int64)
                for _, escort in mods.escorts:
                    escort(ctx, site, leaving_mask, group_point)
                slots = np.flatnonzero(leaving_mask)
                points = group_point[slots]
            else:  # (the same slots and points without two passes over every cell)
                slots = site.scratch_int(c.n)
                slots = slots[: flagged_slots(c.n, mask, np.uint8(1), slots)]
                points = c.pos[slots].astype(np.int64)
            leaving = c.take(slots)
            site.emigrate(slots)
            uniq = np.unique(points)
            blood, lymph = self.routes[site.name]
            route = np.where(site.vessel[uniq] == LYMPHATIC_VESSEL, lymph, blood)
            circ = sim.circulation
            n_before = circ.ctcs.n
            ids = circ.add_ctcs(leaving, points, route, site.index, ctx.step, ctx.time_h + ctx.dt_h)
            add_counts(leaving["clone"], circ.counters["immigrated"])
            x, y, z = site.lattice.coords(uniq)
            t = ctx.time_h + ctx.dt_h
            first = circ.cells.n - len(leaving["uid"])
            order, bounds = grouped(np.searchsorted(uniq, points), ids.size)  # each CTC's cells
            for g in range(ids.size):
                sim.events.append(circ.ctc_event(
                    "intravasation", n_before + g, t, ctx.step, sim.clones.names,
                    members=first + order[bounds[g] : bounds[g + 1]],
                    compartment=site.name, x=int(x[g]), y=int(y[g]), z=int(z[g]),
                    vessel=VESSEL_NAMES[int(site.vessel[uniq[g]])],
                    route=circ.route_names[route[g]] if route[g] >= 0 else None,
                ))
