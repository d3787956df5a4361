"""A lattice site: lattice, fields, vessel points and the cells living there.

The primary tumour site is a :class:`Site`; organs will be built by the same
class. A site keeps per-clone counters of every way a cell can arrive or leave
(``born``, ``died``, ``emigrated``, ``immigrated``) so that the accounting
invariant ``initial + born - died - emigrated + immigrated == present`` can be
checked per clone at any time.
"""

from __future__ import annotations

import math

import numpy as np

from metacoop.config.schema import SimulationConfig, SiteConfig
from metacoop.core.clones import CloneTable
from metacoop.core.field import Field, FieldSolver, make_solver
from metacoop.core.lattice import Lattice
from metacoop.core.rng import CompartmentStreams
from metacoop.core.state import CellArrays
from metacoop.errors import SimulationError
from metacoop.kernels.cells import DEAD

#: Per-clone event counters kept by every site.
COUNTERS = ("initial", "born", "died", "emigrated", "immigrated", "emt", "met")

NO_VESSEL, NORMAL_VESSEL, RUPTURED_VESSEL = 0, 1, 2
VESSEL_NAMES = {NORMAL_VESSEL: "normal", RUPTURED_VESSEL: "ruptured"}


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
    """

    def __init__(
        self,
        name: str,
        cfg: SiteConfig,
        config: SimulationConfig,
        clones: CloneTable,
        streams: CompartmentStreams,
    ):
        self.name = name
        self.lattice = Lattice(tuple(cfg.lattice.shape), cfg.lattice.spacing_um)
        self.capacity = cfg.lattice.capacity_cells_per_point
        self.streams = streams
        dims = self.lattice.dims
        dtype = np.dtype(config.field_precision)
        self.fields: dict[str, Field] = {}
        self.solvers: dict[str, FieldSolver] = {}
        for fname, fc in cfg.fields.items():
            f = Field(fname, np.full(dims, fc.initial, dtype), np.zeros(dims, dtype))
            self.fields[fname] = f
            self.solvers[fname] = make_solver(
                f.values, fc.diffusion_um2_per_h, fc.decay_per_h, config.dt_h,
                self.lattice.spacing_um, self.lattice.ndim, fc.substeps,
            )
        n = self.lattice.n_points
        self.occ = np.zeros(n, np.uint8)
        self.vessel = np.zeros(n, np.int8)
        self.has_vessels = False
        self.cells = CellArrays(0)
        self.counters = {k: np.zeros(len(clones), np.int64) for k in COUNTERS}
        self._n_clones = len(clones)
        self._int_scratch = np.empty(0, np.int64)
        self._mask_scratch = np.empty(0, np.uint8)

    # -- set-up -------------------------------------------------------------
    def seed_tumour(self, cfg: SiteConfig, clones: CloneTable, first_uid: int) -> int:
        """Place the initial tumour; return the number of cells placed (uids from ``first_uid``)."""
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
        clone = np.repeat(np.arange(len(clones), dtype=np.int16),
                          _exact_counts(_fractions(init.clone_fractions, clones), k))
        rng.shuffle(clone)
        phen = np.zeros(k, np.int8)
        phen[: round(init.mesenchymal_fraction * k)] = 1
        rng.shuffle(phen)
        shape = clones.cycle_shape[clone, phen]
        scale = clones.cycle_scale_h[clone, phen]
        finite = np.isfinite(scale)
        cycle = np.full(k, np.inf)
        cycle[finite] = rng.gamma(shape[finite], scale[finite]) * rng.random(int(finite.sum()))
        uid = np.arange(first_uid, first_uid + k, dtype=np.int64)
        self.cells.append({
            "uid": uid, "parent": np.full(k, -1), "pos": pos, "lineage": uid, "birth_h": np.zeros(k),
            "cycle_h": cycle, "clone": clone, "phen": phen, "flags": np.zeros(k),
        })
        np.add.at(self.occ, pos, 1)
        self.count("initial", clone)
        return k

    def place_vessels(self, cfg: SiteConfig) -> None:
        """Place vessel points at random, away from the centre and off the initial tumour."""
        v = cfg.vessels
        total = v.normal + v.ruptured
        if total == 0:
            return
        dist = self.lattice.distance_from_centre_um()
        free = np.flatnonzero((dist >= v.min_distance_um) & (self.occ == 0))
        if total > free.size:
            free = np.flatnonzero(dist >= v.min_distance_um)
        chosen = self.streams.generator.choice(free, size=total, replace=False)
        self.vessel[chosen[: v.ruptured]] = RUPTURED_VESSEL
        self.vessel[chosen[v.ruptured :]] = NORMAL_VESSEL
        self.has_vessels = True

    # -- per-step helpers ----------------------------------------------------
    def scratch_int(self, n: int) -> np.ndarray:
        """An int64 scratch array of at least ``n`` entries (reused across steps)."""
        if self._int_scratch.shape[0] < n:
            self._int_scratch = np.empty(max(n, 2 * self._int_scratch.shape[0]), np.int64)
        return self._int_scratch

    def scratch_mask(self, n: int) -> np.ndarray:
        """A uint8 scratch array of at least ``n`` entries (reused across steps)."""
        if self._mask_scratch.shape[0] < n:
            self._mask_scratch = np.empty(max(n, 2 * self._mask_scratch.shape[0]), np.uint8)
        return self._mask_scratch

    def count(self, kind: str, clone: np.ndarray) -> None:
        """Add one to ``counters[kind]`` for each entry of ``clone``."""
        if len(clone):
            self.counters[kind] += np.bincount(clone, minlength=self._n_clones)

    def _remove(self, mask: np.ndarray, kind: str) -> None:
        c = self.cells
        if not mask.any():
            return
        self.count(kind, c.clone[: c.n][mask])
        np.subtract.at(self.occ, c.pos[: c.n][mask], 1)
        c.remove(mask)

    def resolve_deaths(self) -> None:
        """Remove every cell whose death was requested this step."""
        c = self.cells
        self._remove((c.flags[: c.n] & DEAD) != 0, "died")

    def emigrate(self, mask: np.ndarray) -> None:
        """Remove the cells in ``mask`` because they left the site (e.g. into a vessel)."""
        self._remove(mask, "emigrated")

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


def _fractions(fractions: dict[str, float], clones: CloneTable) -> np.ndarray:
    if not fractions:
        out = np.zeros(len(clones))
        out[0] = 1.0
        return out
    return np.array([fractions.get(name, 0.0) for name in clones.names])


def _exact_counts(fractions: np.ndarray, k: int) -> np.ndarray:
    """Split ``k`` items by ``fractions`` with the largest-remainder rule (sums to ``k``)."""
    raw = fractions * k
    counts = np.floor(raw).astype(np.int64)
    short = k - int(counts.sum())
    if short > 0:
        counts[np.argsort(-(raw - counts), kind="stable")[:short]] += 1
    return counts
