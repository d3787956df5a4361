"""Arrest of CTCs in an organ's capillary bed: size restriction and adhesion.

A CTC reaching an organ arrests for certain if it has at least the organ's
``size_restriction_cells`` cells (it cannot pass the capillaries), otherwise
with the organ's ``arrest_probability`` (adhesion). Its cells are placed,
arrested, at and around a random blood-vessel point of the organ. If a
founded metastasis has a cell within the organ's ``join_radius_um`` of that
point, the arrested cells will join it; otherwise they open a new (pending)
metastasis whose founders they are. CTCs that do not arrest pass on (engine
task ``pass_through``). ``arrest`` modifiers of the organ (a niche, induced
E-selectin) multiply the arrest hazard at the vessel point the CTC reaches.
"""

from __future__ import annotations

import numpy as np

from metacoop.core.modifiers import hazard_scaled
from metacoop.core.schedule import Phase
from metacoop.core.state import ARRESTED
from metacoop.kernels.random import uniforms
from metacoop.mechanisms.base import Mechanism, StepContext


class Arrest(Mechanism):
    """Arrest of arriving CTCs and placement of their cells in the organ."""

    name = "arrest"
    phase = Phase.ARREST
    order = 10
    summary = (
        "a CTC arriving at an organ arrests if it has at least size_restriction_cells cells, "
        "otherwise with the organ's arrest_probability; arrested cells join a founded "
        "metastasis within join_radius_um or open a new one"
    )
    sources = ("Chambers, Groom & MacDonald 2002 Nat Rev Cancer 2:563 (arrest by size and adhesion)",)

    def bind(self, sim) -> None:
        self.organs = sim.organs
        self.p_arrest = np.array([o.organ.arrest_probability for o in sim.organs])
        self.restriction = np.array([o.organ.size_restriction_cells for o in sim.organs])

    def arrest_probability(self, ctx: StepContext, organ: np.ndarray, size: np.ndarray,
                           point: np.ndarray) -> np.ndarray:
        """Probability that each arriving CTC arrests at vessel point ``point`` of its organ."""
        p = np.where(size >= self.restriction[organ], 1.0, self.p_arrest[organ])
        for site in self.organs:
            here = organ == site.organ_index
            if not here.any():
                continue
            factor = site.modifiers.factor_at("arrest", ctx, point[here])
            if factor is not None:
                p[here] = hazard_scaled(p[here], factor)
        return p

    def arrival_points(self, organ: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The blood-vessel point each arriving CTC reaches, from its uniform draw ``v``."""
        point = np.empty(organ.size, np.int64)
        for site in self.organs:
            here = organ == site.organ_index
            points = site.blood_points
            point[here] = points[np.minimum((v[here] * points.size).astype(np.int64), points.size - 1)]
        return point

    def step(self, ctx: StepContext) -> None:
        sim = ctx.sim
        circ = sim.circulation
        slots = circ.arrived()
        if slots.size == 0:
            return
        organ = circ.ctcs.dest[slots].astype(np.int64)
        size = circ.ctcs.size[slots]
        ids = circ.ctcs.id[slots]
        u = uniforms(circ.key, self.stream, ctx.step, ids, 0, np.empty(slots.size))
        v = uniforms(circ.key, self.stream, ctx.step, ids, 1, np.empty(slots.size))
        arrival = self.arrival_points(organ, v)
        arrest = u < self.arrest_probability(ctx, organ, size, arrival)
        if not arrest.any():
            return
        t = ctx.time_h + ctx.dt_h
        order, bounds = circ.members_by_slot()
        nearby = {}
        ctc_mask = np.zeros(circ.ctcs.n, bool)
        since_arrival = np.clip(-circ.ctcs.remaining_h[slots], 0.0, ctx.dt_h)
        for j in np.flatnonzero(arrest):
            slot = int(slots[j])
            site = self.organs[organ[j]]
            point = int(arrival[j])
            if site.name not in nearby:
                nearby[site.name] = founded_cells(site, sim.metastases)
            met = join_target(site, nearby[site.name], point)
            members = order[bounds[slot] : bounds[slot + 1]]
            cells = circ.cells.take(members)
            if met < 0:
                met = sim.metastases.open(site.organ_index, t, cells["uid"], cells["clone"])
            sim.events.append(circ.ctc_event("arrest", slot, t, ctx.step, sim.clones.names,
                                             members=members, organ=site.name, met_id=met))
            cells["state"] = np.full(cells["uid"].size, ARRESTED, np.uint8)
            cells["met"] = np.full(cells["uid"].size, met, np.int32)
            site.immigrate(cells, point)
            site.arrival_exposure_h.update(dict.fromkeys(cells["uid"].tolist(), float(since_arrival[j])))
            ctc_mask[slot] = True
        circ.remove_ctcs(ctc_mask, "emigrated")


def founded_cells(site, registry) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (µm, shape (k, 3)) and metastasis ids of an organ's cells in founded metastases."""
    c = site.cells
    met = c.live("met")
    ok = (met >= 0) & (c.live("state") != ARRESTED)
    if ok.any():
        ok[ok] = ~np.isnan(registry.founded_h[met[ok]])
    x, y, z = site.lattice.coords(c.live("pos")[ok])
    return np.stack([x, y, z], axis=1) * site.lattice.spacing_um, met[ok]


def join_target(site, founded: tuple[np.ndarray, np.ndarray], point: int) -> int:
    """The founded metastasis nearest to ``point`` within the join radius, or -1."""
    xyz, met = founded
    if met.size == 0:
        return -1
    p = np.array([c[0] for c in site.lattice.coords(np.array([point]))]) * site.lattice.spacing_um
    d2 = ((xyz - p) ** 2).sum(axis=1)
    k = int(np.argmin(d2))
    return int(met[k]) if d2[k] <= site.organ.join_radius_um**2 else -1
