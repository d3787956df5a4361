"""The circulation: CTC entities in transit between capillary beds.

A CTC entity is a single cell or a cluster travelling together. CTCs are rows
of a :class:`CtcArrays` table (id, size, age, time left to the next capillary
bed, destination organ, origin, route); their cells are kept in a
:class:`CirculatingCells` array with the id of the CTC each travels in.

Routing. Every CTC follows a *route* (a key of ``circulation.routes``): on
entering it, its destination organ is drawn from the route's blood-flow
fractions, and it reaches that organ's capillary bed after the transit time.
There it arrests (ARREST phase) or passes on into the organ's ``drains_to``
route. Fates in transit (death, disaggregation) are hazards per hour, so the
time step does not change their statistics.

Random draws are keyed by CTC id (or cell uid) and step, like every other
draw in metacoop.
"""

from __future__ import annotations

import json

import numpy as np

from metacoop.core.modifiers import product_of
from metacoop.core.state import CELL_COLUMNS, AgentArrays, CellArrays
from metacoop.errors import SimulationError
from metacoop.kernels.bookkeeping import (
    add_counts,
    advance_ctcs,
    arrived_slots,
    ctc_slots,
    route_destinations,
)
from metacoop.kernels.random import uniforms

#: Encodes an event's composition as ``json.dumps(composition, sort_keys=True)`` does; made once, as
#: ``json.dumps`` with any option builds a new encoder on every call.
COMPOSITION_JSON = json.JSONEncoder(sort_keys=True)


class CirculatingCells(CellArrays):
    """Cells in the circulation: the site columns plus the CTC each travels in."""

    COLUMNS = {**CELL_COLUMNS, "ctc": (np.int64, "id of the CTC entity the cell travels in")}
    ctc: np.ndarray


class CtcArrays(AgentArrays):
    """The CTC table, one row per entity, in order of creation (so ids are sorted)."""

    COLUMNS = {
        "id": (np.int64, "CTC id, unique within a run, increasing with creation"),
        "size": (np.int32, "cells in the CTC"),
        "start_h": (np.float64, "time the CTC entered the blood, h"),
        "age_h": (np.float64, "time since the CTC entered the blood, h"),
        "remaining_h": (np.float64, "time left until the next capillary bed, h (<= 0: arrived)"),
        "step_h": (np.float64, "time spent in the blood during the current step, h"),
        "exposed_h": (np.float64, "time exposed to the transit hazards in the current step, h"),
        "carry_h": (np.float64, "time in the blood after passing a bed last step, exposed this step, h"),
        "dest": (np.int16, "organ index of the next capillary bed, -1 for none"),
        "origin": (np.int16, "compartment index where the CTC entered the blood (-1 injected)"),
        "route": (np.int16, "index of the route the CTC follows"),
    }
    id: np.ndarray
    size: np.ndarray
    start_h: np.ndarray
    age_h: np.ndarray
    remaining_h: np.ndarray
    step_h: np.ndarray
    exposed_h: np.ndarray
    carry_h: np.ndarray
    dest: np.ndarray
    origin: np.ndarray
    route: np.ndarray


ROUTING_STREAM = 0x524F5554  # "ROUT"
TRANSIT_STREAM = 0x5452414E  # "TRAN"
#: Draw index of a routing or transit draw: 0 when a CTC enters the blood, 1 when it
#: passes on from an organ (a CTC can do both in one step).
ENTRY_DRAW, PASSAGE_DRAW = 0, 1
#: Round-off allowed when deciding that a CTC has reached its capillary bed, h.
ARRIVAL_EPS_H = 1e-9
#: What :meth:`Circulation.arrived` returns when there is no CTC (read-only, shared).
_NO_SLOTS = np.zeros(0, np.intp)
_NO_SLOTS.flags.writeable = False


def grouped(keys: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``keys`` (each in ``[0, n_groups)``) grouped by key, ascending within a group.

    Returns ``order`` and ``bounds`` such that the indices whose key is ``g``
    are ``order[bounds[g]:bounds[g + 1]]``.
    """
    order = np.argsort(keys, kind="stable")
    return order, np.searchsorted(keys[order], np.arange(n_groups + 1))


class Circulation:
    """CTCs in transit, the systemic factor levels, and the routing table.

    Attributes:
        cells: the circulating cells.
        ctcs: the CTC table.
        counters: per-clone ``injected``, ``immigrated``, ``died``, ``emigrated`` counts.
        n_ctcs: CTC entities created so far (the next id).
        levels: systemic factor levels by name, normalised.
        events: the run's event log (rows appended here).
    """

    name = "circulation"

    def __init__(self, config, organ_names: list[str], n_clones: int, key: int, events: list[dict]):
        circ = config.circulation
        self.cells = CirculatingCells(0)
        self.ctcs = CtcArrays(0)
        self.counters = {k: np.zeros(n_clones, np.int64) for k in ("injected", "immigrated", "died",
                                                                    "emigrated")}
        self.n_ctcs = 0
        self.events = events
        self.key = key
        self.transit_h = circ.transit_h
        self.exponential_transit = circ.transit_distribution == "exponential"
        self.levels = {name: 0.0 for name in circ.factors}
        self.organ_names = list(organ_names)
        self.route_names = list(circ.routes)
        # cumulative flow fractions per route over organ indices
        self.route_cdf = np.zeros((max(1, len(self.route_names)), max(1, len(organ_names))))
        self.route_empty = np.ones(max(1, len(self.route_names)), bool)
        for r, name in enumerate(self.route_names):
            fractions = np.array([circ.routes[name].get(o, 0.0) for o in organ_names])
            if fractions.sum() > 0:
                self.route_cdf[r] = np.cumsum(fractions) / fractions.sum()
                self.route_empty[r] = False
        self._n_clones = n_clones
        #: CTC hazard modifiers: (name, provider(ctx) -> factor per live CTC), multiplied together.
        self.hazard_modifiers: list[tuple[str, object]] = []

    def hazard_factor(self, ctx) -> np.ndarray | None:
        """Product of the registered CTC death-hazard factors per live CTC, or ``None``."""
        return product_of(self.hazard_modifiers, ctx)

    # -- entry ----------------------------------------------------------------
    def route_index(self, name: str) -> int:
        """Index of a route by name (-1 when the scenario has no such route)."""
        return self.route_names.index(name) if name in self.route_names else -1

    def add_ctcs(
        self,
        cells: dict[str, np.ndarray],
        group: np.ndarray,
        route: np.ndarray,
        origin: int,
        step: int,
        start_h: float,
        remaining_h: np.ndarray | float | None = None,
    ) -> np.ndarray:
        """Create one CTC per distinct value of ``group`` from the given cells.

        Args:
            cells: cell columns (as from :meth:`AgentArrays.take`).
            group: per cell, a group label (e.g. the vessel point entered); cells
                with equal labels travel together.
            route: per group (in the order of ``np.unique(group)``), the route index.
            origin: compartment index of origin (-1 for injections).
            step: current step (keys the routing draws).
            start_h: time the cells enter the blood, h (the end of the step for cells
                that intravasate, so they spend none of this step in transit).
            remaining_h: transit time to the first bed; ``None`` draws it.

        Returns:
            The ids of the new CTCs, in the order of ``np.unique(group)``.
        """
        uniq = np.unique(group)
        inv = np.searchsorted(uniq, group)  # (return_inverse=True costs several times more)
        k = uniq.size
        ids = self.n_ctcs + np.arange(k, dtype=np.int64)
        self.n_ctcs += k
        sizes = np.bincount(inv, minlength=k).astype(np.int32)
        route = np.asarray(route, dtype=np.int16)
        dest = self.draw_destinations(ids, route, step, ENTRY_DRAW)
        remaining = self.draw_transit(ids, step, ENTRY_DRAW) if remaining_h is None else np.broadcast_to(
            np.asarray(remaining_h, dtype=np.float64), (k,))
        self.ctcs.append({"id": ids, "size": sizes, "start_h": np.full(k, start_h), "age_h": np.zeros(k),
                          "remaining_h": remaining, "step_h": np.zeros(k), "exposed_h": np.zeros(k),
                          "carry_h": np.zeros(k), "dest": dest,
                          "origin": np.full(k, origin, np.int16), "route": route})
        columns = dict(cells)
        columns["ctc"] = ids[inv]
        columns["pos"] = np.full(inv.size, -1, np.int32)
        columns["flags"] = np.zeros(inv.size, np.uint8)
        columns["state"] = np.zeros(inv.size, np.uint8)
        self.cells.append(columns)
        return ids

    def draw_destinations(self, ids: np.ndarray, route: np.ndarray, step: int, draw: int) -> np.ndarray:
        """Organ index for each CTC entering ``route`` (multinomial on the flow fractions)."""
        dest = np.full(ids.size, -1, np.int16)
        if ids.size == 0:
            return dest
        u = uniforms(self.key, ROUTING_STREAM, step, np.asarray(ids, np.int64), draw, np.empty(ids.size))
        return route_destinations(u, np.asarray(route), self.route_cdf, self.route_empty,
                                  len(self.organ_names) - 1, dest)

    def draw_transit(self, ids: np.ndarray, step: int, draw: int) -> np.ndarray:
        """Transit time to the next capillary bed for each CTC, h."""
        if not self.exponential_transit:
            return np.full(ids.size, self.transit_h)
        u = uniforms(self.key, TRANSIT_STREAM, step, np.asarray(ids, np.int64), draw, np.empty(ids.size))
        return -self.transit_h * np.log1p(-u)

    # -- per-step -------------------------------------------------------------
    def advance(self, time_h: float, dt_h: float) -> None:
        """Move every CTC through the step ``[time_h, time_h + dt_h]``.

        A CTC that entered the blood during the step (``start_h`` after
        ``time_h``) travels only for the rest of it.

        Exposure to the transit hazards (:meth:`exposure_h`): a CTC that reaches
        its capillary bed part-way through the step is exposed until then; the
        rest of the step is carried to the next step, when it is exposed if
        the CTC passed on rather than arrested. Every hour in the blood is
        thus exposed exactly once, whatever the ratio of transit time to time
        step (a CTC passes at most one bed per step; with transits shorter
        than a step it falls behind and catches up on later, longer draws).
        """
        n = self.ctcs.n
        if n == 0:
            return  # no CTC: nothing moves (the common case, checked first as it is every step)
        c = self.ctcs
        advance_ctcs(n, time_h, dt_h, c.start_h, c.remaining_h, c.dest, c.exposed_h, c.carry_h, c.step_h,
                     c.age_h)

    def exposure_h(self) -> np.ndarray:
        """Time each CTC is exposed to the transit hazards in the current step, h (after :meth:`advance`)."""
        return self.ctcs.exposed_h[: self.ctcs.n].copy()

    def arrived(self) -> np.ndarray:
        """Slots of CTCs that have reached the capillary bed of an organ."""
        n = self.ctcs.n
        if n == 0:
            return _NO_SLOTS
        out = np.empty(n, np.intp)
        return out[: arrived_slots(n, self.ctcs.remaining_h, self.ctcs.dest, ARRIVAL_EPS_H, out)]

    def member_slots(self) -> np.ndarray:
        """For each circulating cell, the slot of its CTC in the CTC table."""
        out = np.empty(self.cells.n, np.intp)
        ctc_slots(self.ctcs.id, self.ctcs.n, self.cells.ctc, self.cells.n, out)
        return out

    def reroute(self, slots: np.ndarray, route: np.ndarray, step: int) -> None:
        """Send the CTCs in ``slots`` along ``route`` (one route index per CTC)."""
        ids = self.ctcs.id[slots]
        self.ctcs.route[slots] = route
        self.ctcs.dest[slots] = self.draw_destinations(ids, route, step, PASSAGE_DRAW)
        overshoot = np.minimum(self.ctcs.remaining_h[slots], 0.0)
        self.ctcs.remaining_h[slots] = self.draw_transit(ids, step, PASSAGE_DRAW) + overshoot

    def remove_ctcs(self, ctc_mask: np.ndarray, kind: str) -> dict[str, np.ndarray]:
        """Remove CTCs (mask over live CTC slots) with all their cells; return the cells.

        ``kind`` is the counter the cells are added to (``died`` or ``emigrated``).
        """
        cell_mask = ctc_mask[self.member_slots()] if self.cells.n else np.zeros(0, bool)
        leaving = self.cells.take(np.flatnonzero(cell_mask))
        add_counts(leaving["clone"], self.counters[kind])
        self.cells.remove(cell_mask)
        self.ctcs.remove(ctc_mask)
        return leaving

    def split_off(self, cell_mask: np.ndarray, step: int) -> np.ndarray:
        """Make each cell in ``cell_mask`` a single-cell CTC of its own; return the new ids.

        The new CTCs keep the age, route, destination and time to the next bed
        of the cluster they leave.
        """
        slots = np.flatnonzero(cell_mask)
        if slots.size == 0:
            return np.zeros(0, np.int64)
        parents = np.searchsorted(self.ctcs.id[: self.ctcs.n], self.cells.ctc[slots])
        k = slots.size
        ids = self.n_ctcs + np.arange(k, dtype=np.int64)
        self.n_ctcs += k
        np.subtract.at(self.ctcs.size, parents, 1)
        new = {name: self.ctcs.arrays()[name][parents].copy()
               for name in ("start_h", "age_h", "remaining_h", "step_h", "dest", "origin", "route")}
        new.update({"id": ids, "size": np.ones(k, np.int32)})
        self.ctcs.append(new)
        self.cells.ctc[slots] = ids
        return ids

    def members_by_slot(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell slots grouped by CTC.

        Returns ``order`` and ``bounds`` such that the cells of the CTC in slot
        ``s`` are ``order[bounds[s]:bounds[s + 1]]``.
        """
        return grouped(self.member_slots(), self.ctcs.n)

    def composition(self, cells: np.ndarray, clone_names) -> tuple[dict[str, int], int, int]:
        """Clone counts (in clone order), epithelial and mesenchymal counts of the cells in slots ``cells``.

        Counted in Python lists: a CTC holds a few cells, and NumPy's calls on
        arrays of a few entries cost 3x more (an event row is written for every CTC shed and lost).
        """
        clones = self.cells.clone[cells].tolist()
        phens = self.cells.phen[cells].tolist()
        per: dict[int, int] = {}
        for c in sorted(clones):
            per[c] = per.get(c, 0) + 1
        return {clone_names[c]: v for c, v in per.items()}, phens.count(0), phens.count(1)

    def ctc_event(self, kind: str, slot: int, time_h: float, step: int, clone_names,
                  members: np.ndarray | None = None, **extra) -> dict:
        """An event row describing the CTC in ``slot`` (call before removing it).

        ``members`` (cell slots of the CTC) saves a search when the caller has them.
        """
        cid = int(self.ctcs.id[slot])
        if members is None:
            members = np.flatnonzero(self.cells.live("ctc") == cid)
        comp, n_epi, n_mes = self.composition(members, clone_names)
        row = {"time_h": time_h, "step": step, "event": kind, "compartment": self.name,
               "ctc_id": cid, "size": int(self.ctcs.size[slot]), "n_epithelial": n_epi,
               "n_mesenchymal": n_mes, "composition": COMPOSITION_JSON.encode(comp),
               "age_h": float(self.ctcs.age_h[slot]),
               "cell_uids": self.cells.uid[members].tolist()}
        row.update(extra)
        return row

    def clone_counts(self) -> np.ndarray:
        """Circulating cells per clone."""
        return np.bincount(self.cells.live("clone"), minlength=self._n_clones)

    def check_accounting(self, time_h: float) -> None:
        """Raise unless injected + received - died - left equals present, per clone."""
        k = self.counters
        expected = k["injected"] + k["immigrated"] - k["died"] - k["emigrated"]
        present = self.clone_counts()
        if not np.array_equal(expected, present):
            raise SimulationError(
                f"cell accounting broken in circulation at t = {time_h:.4g} h: injected + received "
                f"- died - left = {expected.tolist()} but {present.tolist()} cells are present"
            )
        sizes = np.bincount(self.member_slots(), minlength=self.ctcs.n)
        if not np.array_equal(sizes, self.ctcs.live("size")):
            raise SimulationError(f"CTC sizes disagree with their cells at t = {time_h:.4g} h")
