"""Measurements behind ``benchmarks/run.py``: plain functions returning plain results.

Every function takes its sizes and repetition counts as arguments, so the
smoke test can run each one on a tiny case. Nothing here prints; ``run.py``
turns the results into tables.

Timing conventions:

* Wall time from :func:`time.perf_counter`. Numba kernels run synchronously,
  so a kernel call returns when its work is done.
* Warm-up steps run first, so loading compiled kernels from numba's on-disk
  cache (or compiling them when the cache is cold) and the first growth of the
  cell arrays fall outside the timed section.
* Every figure is kept per repetition; :class:`Stat` reduces a list of them to
  median, min and max.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numba
import numpy as np

import metacoop
from metacoop.core.field import Field, make_solver
from metacoop.core.schedule import Phase
from metacoop.core.state import CellArrays
from metacoop.kernels.fields import diffuse_decay_steps
from metacoop.mechanisms.base import StepContext

#: Phases whose slots count as "cell rules" (DESIGN: CELL_RULES, RESOLVE, INTRAVASATION).
CELL_PHASES = (Phase.CELL_RULES, Phase.RESOLVE, Phase.INTRAVASATION)
#: Phases whose slots count as "fields" (field solve and ECM degradation).
FIELD_PHASES = (Phase.FIELDS,)

#: Field parameters used by the solver benchmark: the default scenario's MMP-2 field.
MMP2_DIFFUSION_UM2_PER_H = 360.0
MMP2_DECAY_PER_H = 0.009
DEFAULT_DT_H = 0.1
#: Step of the 3-D cell benchmark, h (the default 0.1 h is refused in 3-D; see cell_scenario).
DT_3D_H = 0.05
DEFAULT_DX_UM = 10.0


# -- machine load ---------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU time used by the whole machine and by this process (and its finished children) at one instant."""

    wall: float
    machine_busy_s: float
    self_s: float

    @classmethod
    def now(cls) -> CpuSnapshot:
        """Read /proc/stat (busy = user+nice+system+irq+softirq+steal) and this process's CPU time."""
        busy = math.nan
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                parts = fh.readline().split()
            v = [int(x) for x in parts[1:9]]
            busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
        t = os.times()  # this process and its finished children (the peers of section 9 run as such)
        return cls(time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system)

    def others_share(self, later: CpuSnapshot) -> float:
        """Fraction of all CPUs used by other processes between ``self`` and ``later`` (nan if unknown)."""
        wall = later.wall - self.wall
        if wall <= 0 or not math.isfinite(self.machine_busy_s):
            return math.nan
        others = (later.machine_busy_s - self.machine_busy_s) - (later.self_s - self.self_s)
        return max(0.0, others) / (wall * (os.cpu_count() or 1))


@numba.njit(cache=True)
def _dependent_chain(n: int) -> int:
    """``n`` steps of a 48-bit linear congruential generator, each waiting for the last (one core's speed)."""
    x = 1
    s = 0
    for _ in range(n):
        x = (x * 25214903917 + 11) & 0xFFFFFFFFFFFF
        s ^= x
    return s


@dataclass(frozen=True)
class MachineProbe:
    """How fast this machine is right now, on three small fixed tasks (best of several tries).

    Figures measured on different days (or in different phases of a virtual
    machine) compare through these: ``python_ns`` per iteration of a plain
    Python loop (the interpreter: the engine's Python between kernels),
    ``compiled_ns`` per step of a dependent integer chain in numba (one core's
    clock), ``copy_gb_s`` copying 200 MB with NumPy (memory bandwidth, one core).
    """

    python_ns: float
    compiled_ns: float
    copy_gb_s: float

    @classmethod
    def now(cls, tries: int = 5) -> MachineProbe:
        """Run the three tasks ``tries`` times each (about 0.5 s in all) and keep the fastest of each."""
        _dependent_chain(10)  # (compiled or loaded before the timing)
        src = np.ones(25_000_000)
        dst = np.empty_like(src)
        np.copyto(dst, src)
        py = comp = copy = math.inf
        for _ in range(tries):
            t = time.perf_counter()
            total = 0
            for i in range(500_000):
                total += i
            py = min(py, (time.perf_counter() - t) / 500_000)
            t = time.perf_counter()
            _dependent_chain(20_000_000)
            comp = min(comp, (time.perf_counter() - t) / 20_000_000)
            t = time.perf_counter()
            np.copyto(dst, src)
            copy = min(copy, time.perf_counter() - t)
        return cls(py * 1e9, comp * 1e9, 2 * src.nbytes / copy / 1e9)

    def text(self) -> str:
        """One line: the three figures with their units."""
        return (f"Python loop {self.python_ns:.0f} ns/iteration, compiled chain {self.compiled_ns:.2f} "
                f"ns/step, copy {self.copy_gb_s:.1f} GB/s")


# -- statistics -----------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Median, min and max of repeated measurements of one figure."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        """Summarise ``values`` (at least one)."""
        a = np.asarray(values, dtype=np.float64)
        return cls(float(np.median(a)), float(a.min()), float(a.max()), int(a.size))

    def scaled(self, factor: float) -> Stat:
        """The same statistic multiplied by a positive ``factor``."""
        return Stat(self.median * factor, self.min * factor, self.max * factor, self.n)

    def inverse(self, numerator: float = 1.0) -> Stat:
        """``numerator / x`` of each summary (min and max swap)."""
        return Stat(numerator / self.median, numerator / self.max, numerator / self.min, self.n)

    def finite_positive(self) -> bool:
        """True when median, min and max are all finite and > 0."""
        return all(math.isfinite(v) and v > 0 for v in (self.median, self.min, self.max))


def ratio(big: Stat, small: Stat) -> Stat:
    """``big / small`` by medians, with the widest range the repetitions allow.

    The range is ``[big.min / small.max, big.max / small.min]``: every pairing
    of one repetition of each lies inside it.
    """
    return Stat(big.median / small.median, big.min / small.max, big.max / small.min, min(big.n, small.n))


# -- cell rules through the real engine -------------------------------------------


def lattice_shape(n_cells: int, ndim: int, cells_per_point: float = 2.0) -> list[int]:
    """Side lengths of a square (cubic) lattice holding ``n_cells`` at ``cells_per_point`` on average."""
    side = max(3, math.ceil((n_cells / cells_per_point) ** (1.0 / ndim) - 1e-9))
    return [side] * ndim


def cell_scenario(n_cells: int, ndim: int, overrides: dict | None = None) -> metacoop.SimulationConfig:
    """The default scenario with ``n_cells`` initial cells on a lattice of ``lattice_shape``.

    The initial tumour is seeded as the engine does it (the smallest disc or
    ball holding the cells at capacity 4, centred), so the lattice averages
    2 cells per point and the tumour is packed. Vessels may sit anywhere off
    the tumour (``min_distance_um = 0``: the 150 µm of the default does not
    fit on the smallest 3-D lattice). In 3-D the step is ``dt_h = 0.05`` (as
    in the ``invasion3d`` preset): the default 0.1 h breaks the movement bound
    ``2 ndim (D + Phi) dt / dx**2 <= 1`` in 3-D and the scenario is refused.
    Recording and accounting checks are pushed to the end of a very long run
    so that they never happen while a step is timed.
    """
    long_h = 1.0e5
    o = {
        "dt_h": DT_3D_H if ndim == 3 else DEFAULT_DT_H,
        "primary.lattice.shape": lattice_shape(n_cells, ndim),
        "primary.initial_tumour.cells": int(n_cells),
        "primary.vessels.min_distance_um": 0.0,
        "duration_h": long_h,
        "output.record_every_h": long_h,
        "output.snapshot_every_h": long_h,
    }
    o.update(overrides or {})
    return metacoop.load_scenario("invasion2d", overrides=o)


@dataclass
class SlotTimer:
    """Per-slot wall time accumulated by :func:`instrument`."""

    seconds: dict[str, float]
    phases: dict[str, Phase]

    def snapshot(self) -> dict[str, float]:
        """A copy of the running totals."""
        return dict(self.seconds)

    def names_in(self, phases: Sequence[Phase]) -> list[str]:
        """Slot names belonging to ``phases``, in plan order."""
        return [name for name, ph in self.phases.items() if ph in phases]


def instrument(sim: metacoop.Simulation) -> SlotTimer:
    """Wrap every slot of ``sim.plan`` so its wall time is accumulated per slot name.

    Only the benchmark's own Simulation object is changed (its ``plan`` list
    is replaced by timed copies of the same slots); the engine is not.
    """
    timer = SlotTimer({}, {})
    plan = []
    for slot in sim.plan:
        timer.seconds[slot.name] = 0.0
        timer.phases[slot.name] = slot.phase

        def timed(ctx, _run=slot.run, _name=slot.name, _acc=timer.seconds):
            t0 = time.perf_counter()
            _run(ctx)
            _acc[_name] += time.perf_counter() - t0

        plan.append(dataclasses.replace(slot, run=timed))
    sim.plan = plan
    return timer


def memory_of(sim: metacoop.Simulation) -> dict[str, float]:
    """Bytes held by the primary site, per cell: cell arrays, per-cell scratch, lattice arrays."""
    site = sim.primary
    c = site.cells
    n = max(c.n, 1)
    arrays = c.arrays()
    lattice = site.occ.nbytes + site.mes_occ.nbytes + site.vessel.nbytes
    for name, f in site.fields.items():
        lattice += f.values.nbytes + f.deltas.nbytes + site.solvers[name].scratch.nbytes
    for mech in sim.mechanisms:
        rates = getattr(mech, "rates", None)
        if isinstance(rates, dict) and site.name in rates:
            lattice += rates[site.name].nbytes
    # Scratch arrays the site keeps between steps (private attributes; read only).
    scratch = sum(getattr(site, a).nbytes for a in ("_int_scratch", "_slot_scratch", "_mask_scratch")
                  if hasattr(site, a))
    return {
        "cells": c.n,
        "capacity": c.capacity,
        "declared_per_cell": CellArrays.bytes_per_cell(),
        "live_per_cell": sum(a[: c.n].nbytes for a in arrays.values()) / n,
        "allocated_per_cell": sum(a.nbytes for a in arrays.values()) / n,
        "scratch_per_cell": scratch / n,
        "lattice_per_cell": lattice / n,
    }


@dataclass
class CellResult:
    """Timing of the cell rules (and the rest of the step) at one population size.

    Per-repetition lists have one entry per repetition of ``steps`` steps.
    """

    n_target: int
    ndim: int
    shape: list[int]
    threads: int
    steps: int
    warmup: int
    n_start: int = 0
    n_end: int = 0
    cell_steps: list[int] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)
    cell_s: list[float] = field(default_factory=list)
    field_s: list[float] = field(default_factory=list)
    slot_s: dict[str, list[float]] = field(default_factory=dict)
    cell_slots: list[str] = field(default_factory=list)
    field_slots: list[str] = field(default_factory=list)
    memory_built: dict[str, float] = field(default_factory=dict)
    memory_end: dict[str, float] = field(default_factory=dict)

    @property
    def mean_cells(self) -> float:
        """Mean live cells at the start of a timed step."""
        return sum(self.cell_steps) / (len(self.cell_steps) * self.steps)

    def _per_rep(self, seconds: list[float]) -> list[float]:
        return [cs / s for cs, s in zip(self.cell_steps, seconds, strict=True)]

    @property
    def cell_rate(self) -> Stat:
        """Cell-updates per second of the cell rules (CELL_RULES + RESOLVE + INTRAVASATION)."""
        return Stat.of(self._per_rep(self.cell_s))

    @property
    def step_rate(self) -> Stat:
        """Cell-updates per second of whole steps (fields included)."""
        return Stat.of(self._per_rep(self.step_s))

    @property
    def cell_per_step(self) -> Stat:
        """Seconds per step spent in the cell rules."""
        return Stat.of([s / self.steps for s in self.cell_s])

    @property
    def step_per_step(self) -> Stat:
        """Seconds per whole step."""
        return Stat.of([s / self.steps for s in self.step_s])

    @property
    def field_per_step(self) -> Stat:
        """Seconds per step in the FIELDS phase (field solve and ECM degradation)."""
        return Stat.of([s / self.steps for s in self.field_s])

    @property
    def other_per_step(self) -> Stat:
        """Seconds per step in slots that are neither cell rules nor fields (circulation, organs, ...)."""
        names = [k for k in self.slot_s if k not in self.cell_slots and k not in self.field_slots]
        return Stat.of([sum(self.slot_s[k][i] for k in names) / self.steps for i in range(len(self.step_s))])

    @property
    def bookkeeping_per_step(self) -> Stat:
        """Seconds per step outside every slot (the step loop itself, recorder checks)."""
        rest = [t - sum(v[i] for v in self.slot_s.values()) for i, t in enumerate(self.step_s)]
        return Stat.of([max(r, 0.0) / self.steps for r in rest])

    def slot_per_step(self, name: str) -> Stat:
        """Seconds per step in one slot."""
        return Stat.of([s / self.steps for s in self.slot_s[name]])

    def to_dict(self) -> dict:
        """Raw figures and summaries, JSON-ready."""
        d = dataclasses.asdict(self)
        d["summary"] = {
            "mean_cells": self.mean_cells,
            "cell_rate": dataclasses.asdict(self.cell_rate),
            "step_rate": dataclasses.asdict(self.step_rate),
            "cell_per_step_s": dataclasses.asdict(self.cell_per_step),
            "step_per_step_s": dataclasses.asdict(self.step_per_step),
            "field_per_step_s": dataclasses.asdict(self.field_per_step),
        }
        return d


def build_cell_sim(n_cells: int, ndim: int, overrides: dict | None = None) -> metacoop.Simulation:
    """Load the scenario of :func:`cell_scenario` and build the engine's Simulation."""
    return metacoop.Simulation(cell_scenario(n_cells, ndim, overrides))


def time_steps(
    sim: metacoop.Simulation, timer: SlotTimer, result: CellResult, steps: int, warmup: int
) -> None:
    """Warm up, then time one repetition of ``steps`` calls to ``sim.step()``; append it to ``result``."""
    for _ in range(warmup):
        sim.step()
    result.cell_slots = timer.names_in(CELL_PHASES)
    result.field_slots = timer.names_in(FIELD_PHASES)
    for name in timer.seconds:
        result.slot_s.setdefault(name, [])
    if not result.step_s:
        result.n_start = _live(sim)
    gc.collect()
    before = timer.snapshot()
    cell_steps = 0
    total = 0.0
    for _ in range(steps):
        cell_steps += _live(sim)
        t0 = time.perf_counter()
        sim.step()
        total += time.perf_counter() - t0
    delta = {k: timer.seconds[k] - before[k] for k in timer.seconds}
    result.cell_steps.append(cell_steps)
    result.step_s.append(total)
    result.cell_s.append(sum(delta[k] for k in result.cell_slots))
    result.field_s.append(sum(delta[k] for k in result.field_slots))
    for k, v in delta.items():
        result.slot_s[k].append(v)
    result.n_end = _live(sim)


def _live(sim: metacoop.Simulation) -> int:
    return sum(s.cells.n for s in sim.sites)


def set_threads(n: int) -> None:
    """Run numba on ``n`` threads as metacoop's engine is told to (its kernels' lower thresholds need it)."""
    try:
        from metacoop.kernels.dispatch import set_threads as engine_threads
    except ImportError:  # (an older metacoop)
        engine_threads = numba.set_num_threads
    engine_threads(n)


def _one_repetition(result: CellResult, overrides: dict | None, threads: int | None) -> None:
    """Build a fresh Simulation, warm it up and time one repetition into ``result``."""
    old = numba.get_num_threads()
    if threads is not None:
        set_threads(threads)
    try:
        sim = build_cell_sim(result.n_target, result.ndim, overrides)
        if not result.step_s:
            result.shape = list(sim.primary.lattice.shape)
            result.memory_built = memory_of(sim)
        timer = instrument(sim)
        time_steps(sim, timer, result, result.steps, result.warmup)
        result.memory_end = memory_of(sim)
        sim.check_accounting()
    finally:
        set_threads(old)
    del sim
    gc.collect()


def cell_benchmark(
    n_cells: int,
    ndim: int,
    steps: int = 10,
    reps: int = 5,
    warmup: int = 3,
    threads: int | None = None,
    overrides: dict | None = None,
) -> CellResult:
    """Cell-updates per second of a primary site seeded with ``n_cells`` cells.

    Every repetition builds a fresh Simulation from the same scenario and
    seed, takes ``warmup`` untimed steps, then times ``steps`` steps. The engine
    is deterministic for a given seed whatever the thread count, so every
    repetition (and every thread count) does exactly the same work, and the
    population cannot drift from one repetition to the next.

    Args:
        n_cells: initial cells (the lattice is sized for 2 cells per point on average).
        ndim: 2 or 3.
        steps: timed steps per repetition.
        reps: repetitions.
        warmup: untimed steps before the timed ones, in every repetition.
        threads: numba threads (restored afterwards); None keeps the current number.
        overrides: extra scenario overrides (dotted keys).
    """
    result = CellResult(n_cells, ndim, [], threads or numba.get_num_threads(), steps, warmup)
    for _ in range(reps):
        _one_repetition(result, overrides, threads)
    return result


def thread_benchmark(
    n_cells: int,
    ndim: int,
    thread_counts: Sequence[int] = (1, 2),
    steps: int = 10,
    reps: int = 5,
    warmup: int = 3,
) -> dict[int, CellResult]:
    """:func:`cell_benchmark` at each thread count (counts above numba's maximum are skipped).

    Repetitions of the thread counts are interleaved (1, 2, 1, 2, ...) so that
    slow drift of the machine affects them alike.
    """
    counts = [t for t in thread_counts if 1 <= t <= numba.config.NUMBA_NUM_THREADS]
    results = {t: CellResult(n_cells, ndim, [], t, steps, warmup) for t in counts}
    for _ in range(reps):
        for t in counts:
            _one_repetition(results[t], None, t)
    return results


# -- fields --------------------------------------------------------------------------


@dataclass
class FieldResult:
    """Voxel-updates per second of one field on one grid."""

    dims: tuple[int, int, int]
    dtype: str
    substeps: int
    build: str = "-"
    solver_s: list[float] = field(default_factory=list)
    kernel_s: list[float] = field(default_factory=list)
    calls: int = 0

    @property
    def voxels(self) -> int:
        """Voxels of the grid."""
        return math.prod(self.dims)

    @property
    def solver_rate(self) -> Stat:
        """Voxel-updates per second of ``FieldSolver.step`` (deltas added, all sub-steps)."""
        return Stat.of([self.voxels * self.substeps * self.calls / s for s in self.solver_s])

    @property
    def kernel_rate(self) -> Stat:
        """Voxel-updates per second of one sub-step of ``diffuse_decay_steps`` alone."""
        return Stat.of([self.voxels * self.calls / s for s in self.kernel_s])

    def bandwidth(self, rate: Stat) -> Stat:
        """Least memory traffic implied by ``rate``: one read and one write per voxel, GB/s."""
        return rate.scaled(2 * np.dtype(self.dtype).itemsize / 1e9)

    def to_dict(self) -> dict:
        """Raw figures and summaries, JSON-ready."""
        d = dataclasses.asdict(self)
        d["summary"] = {"solver_rate": dataclasses.asdict(self.solver_rate),
                        "kernel_rate": dataclasses.asdict(self.kernel_rate)}
        return d


def field_benchmark(
    dims: tuple[int, int, int],
    dtype: str,
    reps: int = 5,
    min_rep_s: float = 0.2,
    seed: int = 0,
) -> FieldResult:
    """Time the diffusion solver of one field shaped ``dims`` = (nz, ny, nx).

    The field has the default scenario's MMP-2 parameters (D = 360 µm²/h,
    decay 0.009 /h, dt 0.1 h, dx 10 µm), so the solver takes 2 sub-steps per
    step in 2-D and 3 in 3-D. Each repetition makes enough calls to last about
    ``min_rep_s`` seconds.
    """
    ndim = 2 if dims[0] == 1 else 3
    rng = np.random.default_rng(seed)
    values = rng.random(dims).astype(dtype)
    f = Field("bench", values, np.zeros(dims, dtype))
    solver = make_solver(values, MMP2_DIFFUSION_UM2_PER_H, MMP2_DECAY_PER_H, DEFAULT_DT_H,
                         DEFAULT_DX_UM, ndim)
    result = FieldResult(tuple(int(d) for d in dims), str(np.dtype(dtype)), solver.substeps,
                         kernel_build(diffuse_decay_steps, values.size))
    other = np.empty_like(values)

    def solver_call() -> None:
        solver.step(f)

    def kernel_call() -> None:
        diffuse_decay_steps(f.values, other, solver.r, solver.decay, 1, 1)

    solver_call()
    kernel_call()  # warm-up (loads or compiles the kernels for this dtype)
    calls = _calls_for(solver_call, min_rep_s)
    result.calls = calls
    for _ in range(reps):
        result.solver_s.append(_time_calls(solver_call, calls))
        result.kernel_s.append(_time_calls(kernel_call, calls * solver.substeps) / solver.substeps)
    return result


@dataclass
class SiteFieldResult:
    """Voxel-updates per second of every field of one site together (the FIELDS phase)."""

    shape: list[int]
    fields: list[str]
    substeps: dict[str, int]
    #: the fields' type (the scenario's ``field_precision``: float32 in the default preset)
    dtype: str = "float64"
    seconds: list[float] = field(default_factory=list)
    calls: int = 0

    @property
    def points(self) -> int:
        """Lattice points of the site."""
        return math.prod(self.shape)

    @property
    def updates_per_step(self) -> int:
        """Voxel-updates of one step, counted as section 3 counts them for one field.

        Points x the sub-steps of every field; one for a field that only degrades or stays (the ECM).
        """
        return self.points * sum(self.substeps.values())

    @property
    def rate(self) -> Stat:
        """Voxel-updates per second of the whole FIELDS phase."""
        return Stat.of([self.updates_per_step * self.calls / s for s in self.seconds])

    @property
    def point_rate(self) -> Stat:
        """Lattice points per second of the whole FIELDS phase (all fields of a point = one)."""
        return Stat.of([self.points * self.calls / s for s in self.seconds])

    def to_dict(self) -> dict:
        """Raw figures and the summary, JSON-ready."""
        return {**dataclasses.asdict(self), "rate": dataclasses.asdict(self.rate),
                "point_rate": dataclasses.asdict(self.point_rate)}


def site_fields_benchmark(shape: Sequence[int] = (2048, 2048), reps: int = 5, min_rep_s: float = 0.3,
                          seed: int = 0) -> SiteFieldResult:
    """Time the FIELDS phase of the default scenario's primary site on a ``shape`` lattice.

    That phase is every field's solver (deltas, diffusion sub-steps, decay) and
    the ECM degradation by MMP-2 and by the cells. The site holds a single cell
    and every field is filled with random positive values, so every field is
    updated at every point (an all-zero field would be skipped); the organs'
    fields stay zero and cost nothing.
    """
    o = {"primary.lattice.shape": list(shape), "primary.initial_tumour.cells": 1,
         "primary.vessels.min_distance_um": 0.0, "duration_h": 1.0e5, "output.record_every_h": 1.0e5,
         "output.snapshot_every_h": 1.0e5}
    sim = metacoop.Simulation(metacoop.load_scenario("default", overrides=o))
    site = sim.primary
    rng = np.random.default_rng(seed)
    for f in site.fields.values():
        f.values[...] = rng.uniform(0.1, 1.0, f.values.shape)
        f.zero = False
    slots = [s for s in sim.plan if s.phase in FIELD_PHASES]
    ctx = StepContext(sim, 0, 0.0, sim.dt_h)

    def phase() -> None:
        for slot in slots:
            slot.run(ctx)

    phase()  # warm-up
    result = SiteFieldResult([int(x) for x in shape], list(site.fields),
                             {k: v.substeps for k, v in site.solvers.items()}, sim.config.field_precision)
    result.calls = _calls_for(phase, min_rep_s)
    for _ in range(reps):
        result.seconds.append(_time_calls(phase, result.calls))
    return result


def kernel_build(kernel: Callable, items: int) -> str:
    """Which build of a kernel the engine runs for ``items`` of work: "serial", "parallel", "either" or "-".

    Follows :mod:`metacoop.kernels.dispatch` when the kernel has serial and
    parallel builds ("either": parallel while whole steps run faster so, see
    :class:`~metacoop.kernels.dispatch.SmallWorkTrials`); a plain numba kernel
    reports its own ``parallel`` option.
    """
    try:
        from metacoop.kernels import dispatch
    except ImportError:
        dispatch = None
    if dispatch is not None and hasattr(kernel, "min_items") and items < dispatch.PARALLEL_MIN_ITEMS:
        return "either" if items >= kernel.min_items and dispatch.multi_threaded() else "serial"
    if dispatch is not None and hasattr(kernel, "serial") and hasattr(kernel, "parallel"):
        return "parallel" if items >= getattr(dispatch, "PARALLEL_MIN_ITEMS", 0) else "serial"
    opts = getattr(kernel, "targetoptions", None)
    if isinstance(opts, dict):
        return "parallel" if opts.get("parallel") else "serial"
    return "-"


def _calls_for(fn: Callable[[], None], min_s: float) -> int:
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    return max(1, min(10_000, math.ceil(min_s / one)))


def _time_calls(fn: Callable[[], None], calls: int) -> float:
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - t0


# -- whole scenario -----------------------------------------------------------------------


@dataclass
class ScenarioResult:
    """Wall time of ``metacoop.simulate`` on a whole scenario.

    ``full_n_steps`` is the scenario's own length when the run was shortened
    (by a ``duration_h`` override), else equal to ``n_steps``.
    """

    name: str
    duration_h: float
    n_steps: int
    wall_s: list[float] = field(default_factory=list)
    cells_final: int = 0
    #: CTCs shed into the circulation: the number of "intravasation" events (one per CTC).
    ctcs: int = 0
    #: events of the run by kind ("intravasation", "ctc_death", "arrest", ...).
    events: dict[str, int] = field(default_factory=dict)
    full_n_steps: int = 0
    threads: int = 0
    #: digest of the run's outcome (see :func:`outcome_digest`), the same for every repetition.
    digest: str = ""
    #: seconds from a new process to its first step (section 5 only), or None.
    startup: Stat | None = None
    #: wall seconds of the whole run in a new process, start-up included (section 7 only).
    process_s: list[float] = field(default_factory=list)

    @property
    def shortened(self) -> bool:
        """True when fewer steps than the scenario's own were run."""
        return bool(self.full_n_steps) and self.n_steps < self.full_n_steps

    @property
    def wall(self) -> Stat:
        """Wall seconds per run."""
        return Stat.of(self.wall_s)

    @property
    def process(self) -> Stat | None:
        """Wall seconds of the whole run in a new process (start-up included), or None."""
        return Stat.of(self.process_s) if self.process_s else None

    @property
    def process_adds(self) -> Stat | None:
        """Seconds a new process adds to the run (imports, loading the kernels, exit), or None.

        Each new-process run less the in-process run timed just before it.
        """
        if not self.process_s:
            return None
        return Stat.of([p - w for p, w in zip(self.process_s, self.wall_s, strict=True)])

    @property
    def steps_per_s(self) -> Stat:
        """Base steps per wall second."""
        return self.wall.inverse(self.n_steps)

    @property
    def days_per_minute(self) -> Stat:
        """Simulated days per wall minute."""
        return Stat.of([(self.duration_h / 24.0) / (w / 60.0) for w in self.wall_s])

    def to_dict(self) -> dict:
        """Raw figures and summaries, JSON-ready."""
        d = dataclasses.asdict(self)
        d["summary"] = {"wall_s": dataclasses.asdict(self.wall),
                        "steps_per_s": dataclasses.asdict(self.steps_per_s),
                        "days_per_minute": dataclasses.asdict(self.days_per_minute)}
        if self.process_s:
            d["summary"]["process_s"] = dataclasses.asdict(self.process)
            d["summary"]["process_adds_s"] = dataclasses.asdict(self.process_adds)
        return d


def outcome_digest(res: metacoop.Result) -> str:
    """A short digest of a run's outcome: final cells, event counts and the whole time series.

    Two runs of the same configuration and seed give the same digest (the
    engine is deterministic); used to check that instrumentation did not
    change what the simulation did.
    """
    import hashlib

    import pandas as pd

    h = hashlib.sha1()
    h.update(str(int(res.manifest["cells_final"])).encode())
    h.update(repr(sorted(res.events["event"].value_counts().items())).encode())
    h.update(pd.util.hash_pandas_object(res.timeseries, index=False).to_numpy().tobytes())
    return h.hexdigest()[:12]


def _event_counts(res: metacoop.Result) -> dict[str, int]:
    return {str(k): int(v) for k, v in res.events["event"].value_counts().items()}


#: A whole run in a fresh process: ``metacoop.simulate`` with the overrides given as JSON.
_WHOLE_RUN = ("import json, sys, metacoop; "
              "metacoop.simulate(metacoop.load_scenario(sys.argv[1], overrides=json.loads(sys.argv[2]))); "
              "print('done', flush=True)")


def process_runs(name: str, reps: int, overrides: dict | None = None) -> list[float]:
    """Wall seconds of ``reps`` whole runs of ``name``, each in a new Python process.

    Start-up included (imports, numba loading its cached kernels, building
    the simulation): what the performance issue's target for the full
    ``franssen2019`` run counts. The cache is warm (the caller ran the
    scenario in this process first).
    """
    cmd = [sys.executable, "-c", _WHOLE_RUN, name, json.dumps(overrides or {})]
    return _timed_processes(cmd, reps, "done")


def _timed_processes(cmd: list[str], reps: int, says: str) -> list[float]:
    """Wall seconds of ``reps`` runs of ``cmd``, each of which must print ``says``."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        assert says in out.stdout, out.stdout
    return times


#: What a fresh process does before its first step, as ``metacoop run`` does it.
_FIRST_STEP = ("import metacoop, sys; sim = metacoop.Simulation(metacoop.load_scenario(sys.argv[1])); "
               "sim.step(); print('stepped', flush=True)")


def startup_benchmark(name: str = "franssen2019", reps: int = 3) -> Stat:
    """Seconds from starting a new Python process until it has taken the first step of ``name``.

    The process imports metacoop, loads and checks the scenario, builds the simulation (the
    compiled kernels come from numba's on-disk cache) and takes one step: what a second
    ``metacoop run`` does before it simulates. One untimed process first fills the cache.
    """
    cmd = [sys.executable, "-c", _FIRST_STEP, name]
    subprocess.run(cmd, check=True, capture_output=True)
    return Stat.of(_timed_processes(cmd, reps, "stepped"))


def scenario_benchmark(name: str = "default", reps: int = 3, overrides: dict | None = None) -> ScenarioResult:
    """Wall time of ``metacoop.simulate(load_scenario(name, overrides))`` with no output directory.

    A one-hour run of the same scenario comes first, untimed, so that kernels
    are loaded from numba's cache before the timed runs.
    """
    cfg = metacoop.load_scenario(name, overrides=dict(overrides or {}))
    short = {**(overrides or {}), "duration_h": min(1.0, cfg.duration_h)}
    warm = metacoop.load_scenario(name, overrides=short)
    metacoop.simulate(warm)
    result = ScenarioResult(cfg.name, cfg.duration_h, cfg.n_steps, full_n_steps=cfg.n_steps,
                            threads=numba.get_num_threads())
    for _ in range(reps):
        _time_run(cfg, result)
    return result


def _time_run(cfg: metacoop.SimulationConfig, result: ScenarioResult) -> None:
    """Time one ``metacoop.simulate(cfg)`` into ``result`` (wall time, final cells, events, digest)."""
    gc.collect()
    t0 = time.perf_counter()
    res = metacoop.simulate(cfg)
    result.wall_s.append(time.perf_counter() - t0)
    result.cells_final = int(res.manifest["cells_final"])
    result.events = _event_counts(res)
    result.ctcs = result.events.get("intravasation", 0)
    result.digest = outcome_digest(res)


# -- cascade scenarios: whole runs and where their time goes --------------------------

#: Phases attributed to the compartment "sites" (lattice work, in every lattice site).
SITE_PHASES = (Phase.FIELDS, Phase.CELL_RULES, Phase.RESOLVE, Phase.INTRAVASATION)
#: Phases attributed to "circulation".
CIRCULATION_PHASES = (Phase.CIRCULATION, Phase.ARREST)
#: Phases attributed to "organs".
ORGAN_PHASES = (Phase.ORGANS,)
#: Compartments of the time-share table, in display order.
COMPARTMENTS = ("sites", "circulation", "organs", "recording & other")

#: Slots whose whole work is one pass over ``sim.sites`` with nothing outside the loop, so
#: that running them once per site (``sim.sites`` set to that one site) does the same work.
#: Checked against src/metacoop/core/simulation.py and src/metacoop/mechanisms/*. ``death`` is
#: not here: after its loop over the sites it runs the avascular death of organ metastases.
PER_SITE_SLOTS = frozenset({"fields", "ecm_degradation", "phenotype_switch", "movement",
                            "proliferation", "mmp2_secretion", "resolve", "intravasation"})

#: Parts of a run outside the plan's slots (all attributed to "recording & other").
RECORDER = "recorder.after_step"
ACCOUNTING = "check_accounting"
STEP_LOOP = "(step loop: Simulation.step/run outside the slots)"
BUILD = "(build: Simulation(config))"
FINISH = "(simulate() after the steps: result tables, manifest)"


def compartment_of(phase: Phase) -> str:
    """The compartment a slot of ``phase`` is attributed to."""
    if phase in SITE_PHASES:
        return "sites"
    if phase in CIRCULATION_PHASES:
        return "circulation"
    if phase in ORGAN_PHASES:
        return "organs"
    return "recording & other"


def scenario_config(name: str, steps: int | None = None,
                    overrides: dict | None = None) -> tuple[metacoop.SimulationConfig, int]:
    """``load_scenario(name, overrides)``, cut to ``steps`` base steps if given and shorter.

    Returns the configuration and the scenario's own number of steps (before the cut).
    """
    cfg = metacoop.load_scenario(name, overrides=dict(overrides or {}))
    full = cfg.n_steps
    if steps is not None and steps < full:
        cfg = metacoop.load_scenario(name, overrides={**(overrides or {}), "duration_h": steps * cfg.dt_h})
        if cfg.n_steps != steps:
            raise RuntimeError(f"{name}: asked for {steps} steps, the configuration has {cfg.n_steps}")
    return cfg, full


def cascade_benchmark(name: str, reps: int = 3, steps: int | None = None,
                      overrides: dict | None = None) -> ScenarioResult:
    """:func:`scenario_benchmark` on ``name``, optionally shortened to ``steps`` base steps.

    The result's ``full_n_steps`` is the scenario's own length, so a
    shortened run says so. Each of the ``reps`` repetitions times the run in
    this process and then in a new one, start-up included
    (:func:`process_runs`), so that their difference (what a new process
    adds) is measured in the same minutes: whole runs on a shared virtual
    machine drift by 20-40 % over minutes.
    """
    cfg, full = scenario_config(name, steps, overrides)
    o = {**(overrides or {}), "duration_h": cfg.duration_h}
    result = scenario_benchmark(name, 0, o)  # (the warm-up run only)
    result.full_n_steps = full
    for _ in range(reps):
        _time_run(cfg, result)
        result.process_s += process_runs(name, 1, o)
    return result


@dataclass
class BreakdownResult:
    """Where one ``metacoop.simulate`` run spends its wall time, by slot, phase, site and compartment.

    Seconds are totals over the whole run. ``site_s[slot][site]`` exists for
    the slots of :data:`PER_SITE_SLOTS`, which were run once per site.
    """

    name: str
    duration_h: float
    n_steps: int
    full_n_steps: int
    threads: int
    sites: list[str]
    total_s: float = 0.0
    build_s: float = 0.0
    run_s: float = 0.0
    slot_s: dict[str, float] = field(default_factory=dict)
    slot_phase: dict[str, str] = field(default_factory=dict)
    site_s: dict[str, dict[str, float]] = field(default_factory=dict)
    hook_s: dict[str, float] = field(default_factory=dict)
    cells_final: int = 0
    digest: str = ""

    @property
    def finish_s(self) -> float:
        """simulate() after the last step: result tables and manifest."""
        return max(self.total_s - self.build_s - self.run_s, 0.0)

    @property
    def loop_s(self) -> float:
        """Time inside ``Simulation.run`` outside every slot and hook."""
        return max(self.run_s - sum(self.slot_s.values()) - sum(self.hook_s.values()), 0.0)

    def parts(self) -> list[tuple[str, str, str, float]]:
        """Every timed part: (compartment, phase, name, seconds), in plan order, the rest last."""
        rows = [(compartment_of(Phase[ph]), ph, name, self.slot_s[name])
                for name, ph in self.slot_phase.items()]
        rest = "recording & other"
        rows += [(rest, "-", RECORDER, self.hook_s.get(RECORDER, 0.0)),
                 (rest, "-", ACCOUNTING, self.hook_s.get(ACCOUNTING, 0.0)),
                 (rest, "-", STEP_LOOP, self.loop_s),
                 (rest, "-", BUILD, self.build_s),
                 (rest, "-", FINISH, self.finish_s)]
        return rows

    def by_compartment(self) -> dict[str, float]:
        """Seconds per compartment (:data:`COMPARTMENTS`); they add up to ``total_s``."""
        out = dict.fromkeys(COMPARTMENTS, 0.0)
        for comp, _, _, s in self.parts():
            out[comp] += s
        return out

    def by_phase(self) -> dict[str, float]:
        """Seconds per phase of the plan (plan order)."""
        out: dict[str, float] = {}
        for name, ph in self.slot_phase.items():
            out[ph] = out.get(ph, 0.0) + self.slot_s[name]
        return out

    def by_site(self) -> dict[str, float]:
        """Seconds of the "sites" compartment per lattice site; "(not split)" holds the rest."""
        out = dict.fromkeys(self.sites, 0.0)
        unsplit = 0.0
        for name, ph in self.slot_phase.items():
            if compartment_of(Phase[ph]) != "sites":
                continue
            if name in self.site_s:
                for site, s in self.site_s[name].items():
                    out[site] += s
            else:
                unsplit += self.slot_s[name]
        if unsplit:
            out["(not split)"] = unsplit
        return out

    def share(self, seconds: float) -> float:
        """``seconds`` as a fraction of the run's wall time."""
        return seconds / self.total_s if self.total_s > 0 else math.nan

    def to_dict(self) -> dict:
        """Raw figures and summaries, JSON-ready."""
        d = dataclasses.asdict(self)
        d["summary"] = {"finish_s": self.finish_s, "loop_s": self.loop_s,
                        "by_compartment_s": self.by_compartment(), "by_phase_s": self.by_phase(),
                        "by_site_s": self.by_site()}
        return d


def instrument_cascade(sim: metacoop.Simulation, split_sites: bool = True) -> BreakdownResult:
    """Wrap every slot of ``sim.plan``, ``sim.recorder.after_step`` and ``sim.check_accounting`` with timers.

    Like :func:`instrument`, only this Simulation object is changed: its
    ``plan`` list is replaced by timed copies of the same slots, and two bound
    methods are shadowed by timed wrappers on the instance. With
    ``split_sites``, each slot of :data:`PER_SITE_SLOTS` runs once per lattice
    site, with ``sim.sites`` set to that single site for the call (restored
    afterwards), so its time is split by site. The sites draw from their own
    random streams and are visited in the same order, so the run is unchanged
    (the benchmark checks this with :func:`outcome_digest`).
    """
    cfg = sim.config
    result = BreakdownResult(cfg.name, cfg.duration_h, cfg.n_steps, cfg.n_steps, numba.get_num_threads(),
                             [s.name for s in sim.sites])
    all_sites = sim.sites
    singles = [(s.name, [s]) for s in all_sites]
    plan = []
    for slot in sim.plan:
        name = slot.name
        result.slot_s[name] = 0.0
        result.slot_phase[name] = slot.phase.name
        if split_sites and name in PER_SITE_SLOTS and slot.phase in SITE_PHASES:
            per = result.site_s[name] = {s.name: 0.0 for s in all_sites}

            def timed(ctx, _run=slot.run, _name=name, _per=per):
                t_start = time.perf_counter()
                try:
                    for site_name, only in singles:
                        sim.sites = only
                        t0 = time.perf_counter()
                        _run(ctx)
                        _per[site_name] += time.perf_counter() - t0
                finally:
                    sim.sites = all_sites
                result.slot_s[_name] += time.perf_counter() - t_start
        else:
            def timed(ctx, _run=slot.run, _name=name):
                t0 = time.perf_counter()
                _run(ctx)
                result.slot_s[_name] += time.perf_counter() - t0

        plan.append(dataclasses.replace(slot, run=timed))
    sim.plan = plan
    for owner, attr, key in ((sim.recorder, "after_step", RECORDER), (sim, "check_accounting", ACCOUNTING)):
        result.hook_s[key] = 0.0
        original = getattr(owner, attr)

        def hook(*args, _orig=original, _key=key, **kwargs):
            t0 = time.perf_counter()
            try:
                return _orig(*args, **kwargs)
            finally:
                result.hook_s[_key] += time.perf_counter() - t0

        setattr(owner, attr, hook)
    return result


def cascade_breakdown(name: str, steps: int | None = None, overrides: dict | None = None,
                      split_sites: bool = True, warmup_h: float = 1.0) -> BreakdownResult:
    """One instrumented ``metacoop.simulate`` run of ``name`` (cut to ``steps`` if given).

    The run goes through the real ``simulate()`` (build, steps, result tables),
    with ``metacoop.api.Simulation`` replaced, for this one call only, by a
    subclass that instruments itself (:func:`instrument_cascade`) once built
    and times its own build and ``run()``. A short untimed run comes first so
    that kernels are loaded.
    """
    import metacoop.api as api

    cfg, full = scenario_config(name, steps, overrides)
    warm = metacoop.load_scenario(name, overrides={**(overrides or {}),
                                                   "duration_h": min(warmup_h, cfg.duration_h)})
    metacoop.simulate(warm)
    built: list[BreakdownResult] = []

    class TimedSimulation(api.Simulation):
        def __init__(self, config, check: bool = False):
            t0 = time.perf_counter()
            super().__init__(config, check=check)
            build_s = time.perf_counter() - t0
            self.bench = instrument_cascade(self, split_sites)
            self.bench.build_s = build_s
            built.append(self.bench)

        def run(self, *args, **kwargs) -> None:
            t0 = time.perf_counter()
            try:
                super().run(*args, **kwargs)
            finally:
                self.bench.run_s += time.perf_counter() - t0

    original = api.Simulation
    api.Simulation = TimedSimulation
    try:
        gc.collect()
        t0 = time.perf_counter()
        res = api.simulate(cfg)
        total = time.perf_counter() - t0
    finally:
        api.Simulation = original
    if len(built) != 1:
        raise RuntimeError(f"expected simulate() to build one Simulation, it built {len(built)}")
    result = built[0]
    result.total_s = total
    result.full_n_steps = full
    result.cells_final = int(res.manifest["cells_final"])
    result.digest = outcome_digest(res)
    return result


# -- field precision: float32 against float64 over seeds --------------------------------

#: The precisions compared by :func:`precision_benchmark`, the reference (float64) first.
PRECISIONS = ("float64", "float32")


def precision_outcomes(res: metacoop.Result, site: str = "primary") -> dict[str, float]:
    """What a run ended with at ``site``: cells by phenotype, ECM left, MMP-2, CTCs shed, metastases."""
    cells = res.cells(site).iloc[-1].groupby(level="phenotype").sum()  # (the last record: the run's end)
    ts = res.timeseries
    last = ts[(ts["time_h"] == ts["time_h"].max()) & (ts["compartment"] == site)]

    def value(quantity: str) -> float:
        return float(last[last["quantity"] == quantity]["value"].sum())

    events = _event_counts(res)
    return {"epithelial cells": float(cells.get("epithelial", 0.0)),
            "mesenchymal cells": float(cells.get("mesenchymal", 0.0)),
            "ECM mean": value("ecm.mean"), "MMP-2 total": value("mmp2.total"),
            "CTCs shed": float(events.get("intravasation", 0)),
            "metastases founded": float(events.get("metastasis_founded", 0))}


@dataclass
class OutcomeComparison:
    """One outcome over seeds in both precisions: mean and standard error of each, Welch's test."""

    outcome: str
    mean: dict[str, float]
    sem: dict[str, float]
    #: two-sided p-value of Welch's t-test of equal means (NaN where both samples are constant).
    p: float


@dataclass
class PrecisionResult:
    """Whole runs of one scenario over seeds, in float32 and in float64 fields, seed by seed."""

    name: str
    n_steps: int
    full_n_steps: int
    seeds: list[int]
    #: per precision, wall seconds of each seed's run (in this process, after a warm-up run)
    wall_s: dict[str, list[float]] = field(default_factory=dict)
    #: per precision, each seed's :func:`precision_outcomes`
    outcomes: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    @property
    def shortened(self) -> bool:
        """True when fewer steps than the scenario's own were run."""
        return self.n_steps < self.full_n_steps

    def wall(self, precision: str) -> Stat:
        """Wall seconds of the runs in ``precision``, over the seeds."""
        return Stat.of(self.wall_s[precision])

    @property
    def speedup(self) -> Stat:
        """float64 wall time over float32, seed by seed (both runs of a seed back to back)."""
        return Stat.of([a / b for a, b in zip(self.wall_s["float64"], self.wall_s["float32"], strict=True)])

    def comparisons(self) -> list[OutcomeComparison]:
        """Every outcome of :func:`precision_outcomes`, compared between the precisions."""
        from scipy import stats

        out = []
        for name in self.outcomes[PRECISIONS[0]][0]:
            samples = {p: np.array([o[name] for o in self.outcomes[p]]) for p in PRECISIONS}
            n = len(self.seeds)
            sem = {p: float(s.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan for p, s in samples.items()}
            constant = all(s.min() == s.max() for s in samples.values())
            p = math.nan if constant or n < 2 else float(
                stats.ttest_ind(samples["float64"], samples["float32"], equal_var=False).pvalue)
            out.append(OutcomeComparison(name, {k: float(s.mean()) for k, s in samples.items()}, sem, p))
        return out

    def to_dict(self) -> dict:
        """Raw figures and summaries, JSON-ready."""
        d = dataclasses.asdict(self)
        d["summary"] = {"speedup": dataclasses.asdict(self.speedup),
                        "wall_s": {p: dataclasses.asdict(self.wall(p)) for p in PRECISIONS},
                        "comparisons": [dataclasses.asdict(c) for c in self.comparisons()]}
        return d


def precision_benchmark(name: str = "franssen2019", seeds: Sequence[int] = range(1, 9),
                        steps: int | None = None) -> PrecisionResult:
    """Run ``name`` for every seed with float64 and with float32 fields: outcomes and wall times.

    Whether float32 fields change what a run ends with is a question about
    the distribution over seeds (a run's path changes with the last bit of a
    field, as it does with the seed), so each outcome is compared by Welch's
    t-test. The two runs of a seed are timed back to back (which precision
    runs first alternates from seed to seed), and their ratio is the speed-up.
    A one-hour run in each precision comes first, untimed (kernel loading).
    """
    cfg, full = scenario_config(name, steps)
    result = PrecisionResult(name, cfg.n_steps, full, list(seeds), {p: [] for p in PRECISIONS},
                             {p: [] for p in PRECISIONS})
    for p in PRECISIONS:
        metacoop.simulate(metacoop.load_scenario(name, overrides={"field_precision": p,
                                                                  "duration_h": min(1.0, cfg.duration_h)}))
    for k, seed in enumerate(result.seeds):
        for p in (PRECISIONS if k % 2 == 0 else PRECISIONS[::-1]):
            run = metacoop.load_scenario(name, overrides={"field_precision": p, "seed": seed,
                                                          "duration_h": cfg.duration_h})
            gc.collect()
            t0 = time.perf_counter()
            res = metacoop.simulate(run)
            result.wall_s[p].append(time.perf_counter() - t0)
            result.outcomes[p].append(precision_outcomes(res))
    return result
