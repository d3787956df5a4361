"""Benchmark of the two builds of every sized kernel: serial against parallel, both on one thread.

On one thread (an ensemble's workers, ``NUMBA_NUM_THREADS=1``) every kernel
made by :func:`metacoop.kernels.dispatch.sized_kernel` runs its serial build
below ``PARALLEL_MIN_ITEMS`` items. The two builds compile the same source, but
numba lowers them differently: a ``prange`` loop becomes a separate function
in the parallel build, with its own optimisations. A serial build much slower
than the parallel one on one thread is therefore a code-generation problem
worth a look. Two were found that way: ``decide_moves``' serial build took
2.0 against 0.97 ms on the default scenario's arguments (a test of an empty
array written in an inlined helper; see ``_move_numbers``), and
``saturation``'s serial build made a temporary.

The scenario runs on one thread with every sized kernel wrapped: every
``every``-th call of a kernel (from its first) is timed ``reps`` times in each
build, alternating, each time on a fresh copy of its array arguments (kernels
write into them), and then made as usual. Results are those of the run
without the wrappers: the timed calls work on copies. A kernel whose caller
picks a build itself (the event clock's ``decide_moves_clocked``, whose serial
build also applies the moves) is not timed here: its builds do different work.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from statistics import median

import numpy as np

import metacoop
from metacoop.kernels import dispatch

#: Serial / parallel time above which a kernel is flagged (both on one thread).
GAP_FLAG = 1.3
#: Kernels whose serial build takes less than this a call (µs) are not flagged: timer and call noise.
GAP_MIN_US = 5.0
#: Kernels timed on fewer calls than this are not flagged: a first call pays for cold memory (the default
#: scenario's ECM survey, called 5 times in 2,760 steps, read 1.6x on its one timed call).
GAP_MIN_TIMED = 5
#: What :func:`~metacoop.kernels.dispatch.sized_kernel` sets on the wrappers it makes.
SIZED_ATTRIBUTES = ("serial", "parallel", "min_items", "size")


@dataclass
class KernelBuilds:
    """One kernel's timed calls: seconds per call of each build, the median of its repetitions."""

    name: str
    calls: int = 0
    serial_s: list[float] = field(default_factory=list)
    parallel_s: list[float] = field(default_factory=list)
    items: list[int] = field(default_factory=list)

    @property
    def serial_us(self) -> float:
        """Median over the timed calls of the serial build's time, µs."""
        return 1e6 * median(self.serial_s)

    @property
    def parallel_us(self) -> float:
        """Median over the timed calls of the parallel build's time on one thread, µs."""
        return 1e6 * median(self.parallel_s)

    @property
    def ratio(self) -> float:
        """Median over the timed calls of serial / parallel (above 1: the serial build is slower)."""
        return median(s / p for s, p in zip(self.serial_s, self.parallel_s, strict=True))

    @property
    def flagged(self) -> bool:
        """Whether the serial build is over :data:`GAP_FLAG` times the parallel one, on enough calls."""
        return self.ratio > GAP_FLAG and self.serial_us >= GAP_MIN_US and len(self.serial_s) >= GAP_MIN_TIMED

    def to_dict(self) -> dict:
        """The figures as plain values (for ``--json``)."""
        return {"name": self.name, "calls": self.calls, "timed": len(self.serial_s),
                "serial_us": self.serial_us, "parallel_us": self.parallel_us, "ratio": self.ratio,
                "median_items": float(np.median(self.items)), "flagged": self.flagged}


@dataclass
class BuildsResult:
    """Every sized kernel a scenario's run called, with its timed calls."""

    scenario: str
    n_steps: int
    every: int
    #: times each build of a sampled call is timed (its median is kept)
    reps: int
    kernels: list[KernelBuilds]
    #: :func:`state_digest` of the run at its end (the same as without the timed calls)
    digest: str = ""

    def to_dict(self) -> dict:
        """The figures as plain values (for ``--json``)."""
        return {"scenario": self.scenario, "n_steps": self.n_steps, "every": self.every, "reps": self.reps,
                "digest": self.digest, "kernels": [k.to_dict() for k in self.kernels]}


def state_digest(sim: metacoop.Simulation) -> str:
    """A hash of every site's live cells (id, point, clone, phenotype, state) and fields."""
    h = hashlib.sha256()
    for site in sim.sites:
        c = site.cells
        for a in (c.uid, c.pos, c.clone, c.phen, c.state):
            h.update(np.ascontiguousarray(a[: c.n]).tobytes())
        for name in sorted(site.fields):
            h.update(np.ascontiguousarray(site.fields[name].values).tobytes())
    return h.hexdigest()[:16]


def _copied(args: tuple) -> list:
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def _sized_kernels() -> list[tuple[object, str, object]]:
    """``(module, attribute, kernel)`` for every sized kernel bound in a loaded metacoop module."""
    found = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("metacoop.") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if callable(value) and all(hasattr(value, a) for a in SIZED_ATTRIBUTES):
                found.append((module, attr, value))
    return found


def builds_benchmark(name: str = "default", steps: int | None = None, every: int = 50,
                     reps: int = 3) -> BuildsResult:
    """Run ``name`` (cut to ``steps`` base steps if given) on one thread, timing both builds of kernels."""
    from bench_cases import scenario_config

    cfg, _ = scenario_config(name, steps)
    threads = dispatch.threads()
    dispatch.set_threads(1)
    kernels: dict[str, KernelBuilds] = {}
    patched = _sized_kernels()

    def wrapped(kernel, label):
        def call(*args):
            k = kernels.get(label)
            if k is None:
                k = kernels[label] = KernelBuilds(label)
            k.calls += 1
            if (k.calls - 1) % every == 0:
                s, p = [], []
                for _ in range(reps):
                    for build, times in ((kernel.serial, s), (kernel.parallel, p)):
                        copy = _copied(args)
                        t = time.perf_counter()
                        build(*copy)
                        times.append(time.perf_counter() - t)
                k.serial_s.append(median(s))
                k.parallel_s.append(median(p))
                k.items.append(kernel.size(*args))
            return kernel(*args)

        for a in SIZED_ATTRIBUTES:  # (callers pick builds and read thresholds through them)
            setattr(call, a, getattr(kernel, a))
        return call

    try:
        for module, attr, kernel in patched:
            setattr(module, attr, wrapped(kernel, attr))
        sim = metacoop.Simulation(cfg)
        while sim.step_index < cfg.n_steps:
            sim.step()
    finally:
        for module, attr, kernel in patched:
            setattr(module, attr, kernel)
        dispatch.set_threads(threads)
    timed = sorted((k for k in kernels.values() if k.serial_s), key=lambda k: -k.serial_us * k.calls)
    return BuildsResult(name, cfg.n_steps, every, reps, timed, state_digest(sim))

