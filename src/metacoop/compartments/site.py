"""A lattice site: lattice, fields, vessel points and the cells living there.

The primary tumour site and every organ are :class:`Site` objects built by the
same code; an organ also carries its :class:`~metacoop.config.schema.OrganConfig`
(capillary bed, extravasation, angiogenesis). A site keeps per-clone counters
of every way a cell can arrive or leave (``born``, ``died``, ``emigrated``,
``immigrated``) so that the accounting invariant
``initial + born - died - emigrated + immigrated == present`` can be checked
per clone at any time.
"""

from __future__ import annotations

import math

import numpy as np

from metacoop.config.schema import OrganConfig, PrimaryConfig, SimulationConfig, SiteConfig
from metacoop.core.clones import CloneTable, stable_residual_cycles
from metacoop.core.field import SPARSE_SOURCES, Field, FieldSolver, make_solver
from metacoop.core.lattice import Lattice
from metacoop.core.modifiers import Modifiers
from metacoop.core.rng import CompartmentStreams
from metacoop.core.state import ACTIVE, CellArrays, StromalArrays, uid_base
from metacoop.core.vessels import LYMPHATIC_VESSEL, NORMAL_VESSEL, RUPTURED_VESSEL
from metacoop.errors import SimulationError
from metacoop.kernels.bookkeeping import add_counts, any_flag, flagged_slots, order_by_point, vacate
from metacoop.kernels.cells import DEAD, MESENCHYMAL, scatter_add

#: Per-clone event counters kept by every site. ``arrived`` counts cells reaching
#: an organ's capillary bed (including those that pass through), ``extravasated``
#: cells leaving its capillaries into the tissue.
COUNTERS = ("initial", "born", "died", "emigrated", "immigrated", "emt", "met", "arrived",
            "extravasated", "woke")



class Site:
    """One lattice compartment.

    Attributes:
        name: compartment name (``primary``).
        lattice: geometry.
        capacity: most cells per lattice point.
        fields: fields by name; values shaped ``lattice.dims``.
        solvers: the diffusion/decay solver of each field.
        occ: cells at each lattice point, uint8, flat.
        vessel: 0 none, 1 normal, 2 ruptured vessel, int8, flat.
        cells: the cells.
        counters: per-clone int64 counters, keys :data:`COUNTERS`.
        streams: random sources of this compartment.
        modifiers: effects of cooperating mechanisms on this site's rules.
        arrivals_pos, arrivals_clone: lattice points and clones of the cells that
            arrived (immigrated) during the current step.
    """

    def __init__(
        self,
        name: str,
        cfg: SiteConfig,
        config: SimulationConfig,
        clones: CloneTable,
        streams: CompartmentStreams,
        index: int = 0,
    ):
        self.name = name
        self.index = index
        self.config = cfg
        self.organ: OrganConfig | None = cfg if isinstance(cfg, OrganConfig) else None
        self.organ_index = -1
        self.lattice = Lattice(tuple(cfg.lattice.shape), cfg.lattice.spacing_um)
        self.capacity = cfg.lattice.capacity_cells_per_point
        self.streams = streams
        dims = self.lattice.dims
        dtype = np.dtype(config.field_precision)
        self.fields: dict[str, Field] = {}
        self.solvers: dict[str, FieldSolver] = {}
        for fname, fc in cfg.fields.items():
            f = Field(fname, np.full(dims, fc.initial, dtype), np.zeros(dims, dtype), zero=fc.initial == 0)
            self.fields[fname] = f
            self.solvers[fname] = make_solver(
                f.values, fc.diffusion_um2_per_h, fc.decay_per_h, config.dt_h,
                self.lattice.spacing_um, self.lattice.ndim, fc.substeps,
            )
        n = self.lattice.n_points
        self.occ = np.zeros(n, np.uint8)
        #: mesenchymal cells at each point (kept with :attr:`occ` by every rule that moves, adds, removes or
        #: switches a cell; :func:`~metacoop.kernels.cells.scatter_add` adds secretions from the two)
        self.mes_occ = np.zeros(n, np.uint8)
        self.vessel = np.zeros(n, np.int8)
        self.has_vessels = False
        self.blood_points = np.zeros(0, np.int64)
        #: every vessel point (their codes change, e.g. on rupture, but no point gains or loses a vessel)
        self.vessel_points = np.zeros(0, np.int64)
        self.met_room = np.zeros(0, np.int64)
        #: uid -> time since arrival, h, of cells arrested during the current step (their
        #: exposure to organ hazards in this step); emptied by the extravasation rule.
        self.arrival_exposure_h: dict[int, float] = {}
        self.cells = CellArrays(0)
        #: the next cell id this site issues, and the first it issued in the current step
        self.next_uid = uid_base(index)
        self.step_first_uid = self.next_uid
        self.modifiers = Modifiers()
        #: stromal agents by kind (``macrophages``), added by the mechanisms that use them
        self.agents: dict[str, StromalArrays] = {}
        self.arrivals_pos: list[np.ndarray] = []
        self.arrivals_clone: list[np.ndarray] = []
        self.counters = {k: np.zeros(len(clones), np.int64) for k in COUNTERS}
        self._n_clones = len(clones)
        self._int_scratch = np.empty(0, np.int64)
        self._mask_scratch = np.empty(0, np.uint8)
        self._float_scratch = np.empty(0, np.float64)
        self._slot_scratch = np.empty(0, np.int64)

    # -- set-up -------------------------------------------------------------
    @property
    def is_organ(self) -> bool:
        """Whether this site is a distant organ (as opposed to the primary site)."""
        return self.organ is not None

    @property
    def allows_intravasation(self) -> bool:
        """Whether cells on this site's vessel points may enter the blood."""
        return self.has_vessels and (self.organ is None or self.organ.reentry)

    def seed_tumour(self, cfg: SiteConfig, clones: CloneTable) -> int:
        """Place the initial tumour; return the number of cells placed (ids from the site's counter)."""
        if not isinstance(cfg, PrimaryConfig):
            return 0
        init = cfg.initial_tumour
        k = init.cells
        if k == 0:
            return 0
        rng = self.streams.generator
        dist = self.lattice.distance_from_centre_um()
        order = np.argsort(dist, kind="stable")
        if init.radius_um is None:
            region = order[: math.ceil(k / self.capacity)]
        else:
            region = order[dist[order] <= init.radius_um]
        slots = np.repeat(region, self.capacity)
        pos = np.sort(rng.choice(slots, size=k, replace=False))
        clone = np.repeat(np.arange(clones.n_existing, dtype=np.int16),
                          exact_counts(fractions_of(init.clone_fractions, clones), k))
        rng.shuffle(clone)
        phen = np.zeros(k, np.int8)
        phen[: round(init.mesenchymal_fraction * k)] = 1
        rng.shuffle(phen)
        cycle = stable_residual_cycles(rng, clones.cycle_shape[clone, phen],
                                       clones.cycle_scale_h[clone, phen], clones.doubling_time_h[clone, phen])
        uid = np.arange(self.next_uid, self.next_uid + k, dtype=np.int64)
        self.next_uid += k
        self.cells.append({
            "uid": uid, "parent": np.full(k, -1), "pos": pos, "lineage": uid, "met": np.full(k, -1),
            "birth_h": np.zeros(k), "cycle_h": cycle, "clone": clone, "phen": phen,
            "state": np.full(k, ACTIVE), "flags": np.zeros(k),
        })
        np.add.at(self.occ, pos, 1)
        np.add.at(self.mes_occ, pos, phen.astype(np.uint8))
        self.count("initial", clone)
        return k

    def place_vessels(self, cfg: SiteConfig) -> None:
        """Place vessel points at random, away from the centre and off the initial tumour."""
        v = cfg.vessels
        total = v.normal + v.ruptured + v.lymphatic
        if total == 0:
            return
        dist = self.lattice.distance_from_centre_um()
        free = np.flatnonzero((dist >= v.min_distance_um) & (self.occ == 0))
        if total > free.size:
            free = np.flatnonzero(dist >= v.min_distance_um)
        chosen = self.streams.generator.choice(free, size=total, replace=False)
        self.vessel[chosen[: v.ruptured]] = RUPTURED_VESSEL
        self.vessel[chosen[v.ruptured : v.ruptured + v.lymphatic]] = LYMPHATIC_VESSEL
        self.vessel[chosen[v.ruptured + v.lymphatic :]] = NORMAL_VESSEL
        self.refresh_vessels()

    def refresh_vessels(self) -> None:
        """Derive :attr:`has_vessels`, :attr:`blood_points` and :attr:`vessel_points` from :attr:`vessel`.

        Called after the vessels are placed or restored; whatever writes
        vessel points other than by switching a blood vessel between normal and
        ruptured (which keeps the sets) must call it too.
        """
        self.has_vessels = bool(self.vessel.any())
        self.blood_points = np.flatnonzero((self.vessel == NORMAL_VESSEL) | (self.vessel == RUPTURED_VESSEL))
        self.vessel_points = np.flatnonzero(self.vessel)

    # -- per-step helpers ----------------------------------------------------
    def scratch_int(self, n: int) -> np.ndarray:
        """An int64 scratch array of at least ``n`` entries (reused across steps)."""
        if self._int_scratch.shape[0] < n:
            self._int_scratch = np.empty(max(n, 2 * self._int_scratch.shape[0]), np.int64)
        return self._int_scratch

    def scratch_slots(self, n: int) -> np.ndarray:
        """A second int64 scratch array of at least ``n`` entries (reused across steps).

        For slot lists made while :meth:`scratch_int` is in use (the movement's targets).
        """
        if self._slot_scratch.shape[0] < n:
            self._slot_scratch = np.empty(max(n, 2 * self._slot_scratch.shape[0]), np.int64)
        return self._slot_scratch

    def scratch_float(self, n: int) -> np.ndarray:
        """A float64 scratch array of at least ``n`` entries (reused across steps)."""
        if self._float_scratch.shape[0] < n:
            self._float_scratch = np.empty(n, np.float64)
        return self._float_scratch

    def scratch_mask(self, n: int) -> np.ndarray:
        """A uint8 scratch array of at least ``n`` entries (reused across steps)."""
        if self._mask_scratch.shape[0] < n:
            self._mask_scratch = np.empty(max(n, 2 * self._mask_scratch.shape[0]), np.uint8)
        return self._mask_scratch

    def secrete(self, field: str, per_step: np.ndarray) -> None:
        """Add ``per_step[clone, phenotype]`` of every cell in the tissue to ``field``'s sources.

        The sources are applied by the next FIELDS phase (see :class:`~metacoop.core.field.Field`).
        """
        c = self.cells
        if c.n == 0:
            return
        f = self.fields[field]
        f.zero = False
        few = c.n * SPARSE_SOURCES < self.lattice.n_points  # (then the solver adds them at these points only)
        deltas = f.sources_at_points(c.pos[: c.n].copy() if few else None)
        scatter_add(c.n, c.pos, c.clone, c.phen, c.state, c.flags, per_step, deltas, self.occ, self.mes_occ)

    def set_phenotype(self, slots: np.ndarray, phen: int) -> None:
        """Give the cells in ``slots`` (distinct) phenotype ``phen``, keeping :attr:`mes_occ`."""
        c = self.cells
        np.subtract.at(self.mes_occ, c.pos[slots], c.phen[slots].astype(np.uint8))
        c.phen[slots] = phen
        np.add.at(self.mes_occ, c.pos[slots], np.uint8(phen == MESENCHYMAL))

    def count(self, kind: str, clone: np.ndarray) -> None:
        """Add one to ``counters[kind]`` for each entry of ``clone``."""
        if len(clone):
            add_counts(np.asarray(clone), self.counters[kind])

    def _remove(self, slots: np.ndarray, kind: str) -> None:
        """Remove the cells in ``slots`` (ascending), counting them under ``kind``."""
        c = self.cells
        if not len(slots):
            return
        self.count(kind, c.clone[slots])
        vacate(self.occ, self.mes_occ, c.pos, c.phen, slots)
        c.remove_slots(slots)

    def resolve_deaths(self) -> None:
        """Remove every cell whose death was requested this step.

        A site where no death was requested (most steps) is told by one pass
        over the flags; otherwise a second pass lists the dead cells' slots.
        """
        c = self.cells
        if not any_flag(c.n, c.flags, DEAD):
            return
        out = self.scratch_int(c.n)
        self._remove(out[: flagged_slots(c.n, c.flags, DEAD, out)], "died")

    def sort_cells(self) -> None:
        """Put the cells in the order of their lattice points (ties keep their order).

        Kernels read the lattice at each cell's point; in point order those reads
        follow memory. Births append daughters and removals fill holes from the
        end, so the order decays as a run goes on (at 1e6 cells a step took 20 ms
        in point order and 27 ms in random order).
        """
        c = self.cells
        order = self.scratch_int(c.n)[: c.n]
        order_by_point(c.n, c.pos, self.lattice.n_points, order)
        c.permute(order)

    def emigrate(self, slots: np.ndarray) -> None:
        """Remove the cells in ``slots`` (ascending) because they left the site (e.g. into a vessel)."""
        self._remove(slots, "emigrated")

    def immigrate(self, cells: dict[str, np.ndarray], near: int) -> np.ndarray:
        """Place arriving cells at and around lattice point ``near``; return their slots.

        Points are filled nearest first (Euclidean distance, ties by index)
        up to the capacity; the search widens until every cell has a place,
        so no cell is ever dropped. Raises :class:`SimulationError` if the
        whole lattice is full.
        """
        k = len(cells["uid"])
        pos = self._free_slots_near(near, k)
        cells = dict(cells)
        cells["pos"] = pos.astype(np.int32)
        slots = self.cells.append(cells)
        np.add.at(self.occ, pos, 1)
        np.add.at(self.mes_occ, pos, self.cells.phen[slots].astype(np.uint8))
        self.count("immigrated", cells["clone"])
        self.arrivals_pos.append(pos)
        self.arrivals_clone.append(np.asarray(cells["clone"]))
        return slots

    def _free_slots_near(self, near: int, k: int) -> np.ndarray:
        lat = self.lattice
        x0, y0, z0 = (int(c[0]) for c in lat.coords(np.array([near])))
        nz, ny, nx = lat.dims
        radius = 1
        while True:
            lo = [max(0, x0 - radius), max(0, y0 - radius), max(0, z0 - radius)]
            hi = [min(nx, x0 + radius + 1), min(ny, y0 + radius + 1), min(nz, z0 + radius + 1)]
            zz, yy, xx = np.meshgrid(np.arange(lo[2], hi[2]), np.arange(lo[1], hi[1]),
                                     np.arange(lo[0], hi[0]), indexing="ij")
            pts = lat.flat(xx.ravel(), yy.ravel(), zz.ravel())
            room = self.capacity - self.occ[pts].astype(np.int64)
            if room.sum() >= k or radius > max(nx, ny, nz):
                break
            radius *= 2
        d2 = (xx.ravel() - x0) ** 2 + (yy.ravel() - y0) ** 2 + (zz.ravel() - z0) ** 2
        order = np.lexsort((pts, d2))
        slots = np.repeat(pts[order], np.maximum(room[order], 0))
        if slots.size < k:
            raise SimulationError(f"{self.name} is full: no room for {k} arriving cells")
        return slots[:k]

    def clone_counts(self) -> np.ndarray:
        """Live cells per clone."""
        return np.bincount(self.cells.live("clone"), minlength=self._n_clones)

    def check_accounting(self, time_h: float) -> None:
        """Raise :class:`SimulationError` unless every cell is accounted for, per clone."""
        k = self.counters
        expected = k["initial"] + k["born"] - k["died"] - k["emigrated"] + k["immigrated"]
        present = self.clone_counts()
        if not np.array_equal(expected, present):
            raise SimulationError(
                f"cell accounting broken in {self.name} at t = {time_h:.4g} h: "
                f"initial + born - died - emigrated + immigrated = {expected.tolist()} "
                f"but {present.tolist()} cells are present (per clone)"
            )
        occ = np.bincount(self.cells.live("pos"), minlength=self.lattice.n_points)
        if not np.array_equal(occ, self.occ):
            bad = int(np.flatnonzero(occ != self.occ)[0])
            raise SimulationError(
                f"occupancy broken in {self.name} at t = {time_h:.4g} h: point {bad} "
                f"records {int(self.occ[bad])} cells but holds {int(occ[bad])}"
            )
        mes = self.count_mesenchymal()
        if not np.array_equal(mes, self.mes_occ):
            bad = int(np.flatnonzero(mes != self.mes_occ)[0])
            raise SimulationError(
                f"mesenchymal occupancy broken in {self.name} at t = {time_h:.4g} h: point {bad} "
                f"records {int(self.mes_occ[bad])} mesenchymal cells but holds {int(mes[bad])}"
            )

    def count_mesenchymal(self) -> np.ndarray:
        """Mesenchymal cells at each lattice point, counted from the cells (what :attr:`mes_occ` keeps)."""
        c = self.cells
        return np.bincount(c.live("pos")[c.live("phen") == MESENCHYMAL], minlength=self.lattice.n_points)


def fractions_of(fractions: dict[str, float], clones: CloneTable) -> np.ndarray:
    """Fractions per clone row from a name -> fraction table (empty: all of the first clone)."""
    if not fractions:
        out = np.zeros(clones.n_existing)
        out[0] = 1.0
        return out
    return np.array([fractions.get(name, 0.0) for name in clones.names])


def exact_counts(fractions: np.ndarray, k: int) -> np.ndarray:
    """Split ``k`` items by ``fractions`` with the largest-remainder rule (sums to ``k``)."""
    raw = fractions * k
    counts = np.floor(raw).astype(np.int64)
    short = k - int(counts.sum())
    if short > 0:
        counts[np.argsort(-(raw - counts), kind="stable")[:short]] += 1
    return counts
