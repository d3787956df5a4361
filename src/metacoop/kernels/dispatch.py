"""Serial or parallel: one kernel source, two compiled versions, chosen by work size.

:func:`sized_kernel` compiles the same Python function twice, with and
without ``parallel=True`` (``prange`` runs as ``range`` in the serial
version). Both versions give identical results: every kernel writes each
output element from one loop iteration. Which one runs is a matter of speed
only:

* From :data:`PARALLEL_MIN_ITEMS` (1e5) items on, the parallel build. Below
  it, most cell kernels were no faster on two threads, or slower (listing,
  clocks, vessel checks, and the scatter by points: 4x slower at 67,000
  cells; franssen2019 on 2 cores, the builds alternating call by call).
* Below that, the serial build, except for kernels given a lower threshold of
  their own, where the work per call is large enough for two threads to pay:
  the field kernels from :data:`FIELD_MIN_POINTS` (on a 201 x 201 lattice
  1.2-1.8x faster on two threads), the event clock's candidates (1.2x from
  2,000 cells, 1.5x from 16,000), the kernels that draw for every cell
  (:data:`~metacoop.kernels.cells.DRAW_MIN_CELLS`: death, EMT/MET and the
  step clock's moves, 1.25-2.4x at 2,000-4,000 cells) and the marking of
  due cells (:data:`~metacoop.kernels.cells.DUE_MIN_CELLS`: 1.25-1.5x from
  16,000 cells). These lower thresholds apply while numba has more than one
  thread and :class:`SmallWorkTrials` finds that whole steps run faster with
  them.

Why trials: a parallel region costs about a microsecond while the OpenMP
threads spin between regions (see :mod:`metacoop`'s note on
``OMP_WAIT_POLICY``), but tens of microseconds when a thread must be woken:
with ``OMP_WAIT_POLICY=PASSIVE``, on a machine whose other core is busy, and,
in the virtual machine we measured on, in phases of minutes where
franssen2019 took 8.5-10 s with the parallel builds of small work against
7.0-7.4 s without them (6.1-6.4 s with them outside those phases). Timing
single kernel calls did not show it (their parallel builds stayed fast; the
cost fell on the serial work around them), timing whole steps does.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from statistics import median_high

import numba
from numba import njit

#: Work (loop iterations) from which every kernel runs its parallel build. A test sets it to 1 to run
#: every parallel build.
PARALLEL_MIN_ITEMS = 100_000
#: Smallest lattice (points) whose field kernels may run on several threads (see :class:`SmallWorkTrials`).
FIELD_MIN_POINTS = 16_384
#: Whether numba runs more than one thread (see :func:`set_threads`). Kernels use their own lower
#: thresholds only then: on one thread the parallel builds of small work only cost (franssen2019 on one
#: thread: 7.0 s with the serial builds, 7.6 s with the parallel ones from the lower thresholds).
_MULTI = numba.config.NUMBA_NUM_THREADS > 1
#: Threads numba runs kernels on (as :func:`set_threads` last set them; numba starts with all).
_THREADS = numba.config.NUMBA_NUM_THREADS
#: Whether the lower thresholds are wanted (:func:`small_work_parallel`), and whether they apply.
_WANTED = True
_SMALL = _MULTI


def set_threads(n: int) -> int:
    """Run numba kernels on ``n`` threads (clipped to ``[1, NUMBA_NUM_THREADS]``); return the number set.

    Use this rather than ``numba.set_num_threads``: the kernels then also take
    their serial builds below :data:`PARALLEL_MIN_ITEMS` when ``n`` is 1.
    """
    global _MULTI, _SMALL, _THREADS
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    _THREADS = n
    _MULTI = n > 1
    _SMALL = _MULTI and _WANTED
    return n


class SmallWorkTrials:
    """Chooses, by timing whole steps, whether kernels use their lower parallel thresholds.

    Every :attr:`EVERY` steps (from step 0) a trial of ``2 * ROUNDS`` blocks
    of :attr:`BLOCK` steps alternates the two settings in the order on, off,
    off, on (repeated), and the setting with the lower median step time is
    kept until the next trial. That order gives both settings the same mean
    position in the trial, so a population growing during it weighs on both
    alike; medians ignore the odd slow step (a recording, a cache load).
    Blocks are long (at franssen2019's 70-500 µs a step, 18-130 ms) because
    OpenMP's threads spin for a few milliseconds after the last parallel
    region: the serial setting is only seen as it runs once they sleep. A
    trial costs at most the blocks of the slower setting (512 of 8,192
    steps). The setting changes speed only, never results.
    """

    #: Steps per block of one setting.
    BLOCK = 256
    #: Blocks per setting in a trial (an even number keeps the order balanced).
    ROUNDS = 2
    #: Steps from the start of one trial to the next.
    EVERY = 8_192

    def __init__(self) -> None:
        self.steps = 0
        self.times: tuple[list[float], list[float]] = ([], [])
        #: The setting found by the last trial (True: lower thresholds used).
        self.chosen = True

    def setting(self) -> bool:
        """The setting for the next step."""
        at = self.steps % self.EVERY
        if at < 2 * self.ROUNDS * self.BLOCK:
            return _trial_on(at // self.BLOCK)
        return self.chosen

    def record(self, seconds: float) -> None:
        """Count a step that took ``seconds`` with the :meth:`setting` it was given."""
        at = self.steps % self.EVERY
        trial = 2 * self.ROUNDS * self.BLOCK
        if at < trial:
            self.times[int(_trial_on(at // self.BLOCK))].append(seconds)
            if at == trial - 1:
                self.chosen = median_high(self.times[1]) <= median_high(self.times[0])
                self.times = ([], [])
        self.steps += 1


def _trial_on(block: int) -> bool:
    """Whether block ``block`` of a trial runs with the lower thresholds: on, off, off, on, ..."""
    return block % 4 in (0, 3)


def threads() -> int:
    """Threads numba runs kernels on, as :func:`set_threads` last set them (without numba's lock: 2 µs)."""
    return _THREADS


def multi_threaded() -> bool:
    """Whether numba runs more than one thread (as :func:`set_threads` last set it)."""
    return _MULTI


def small_work_parallel(on: bool) -> None:
    """Let kernels use their lower parallel thresholds (if numba has more than one thread), or not."""
    global _WANTED, _SMALL
    _WANTED = bool(on)
    _SMALL = _MULTI and _WANTED


def runs_parallel(n: int, min_items: int) -> bool:
    """Whether a sized kernel with threshold ``min_items`` runs its parallel build for ``n`` items now.

    The rule of :func:`sized_kernel`'s wrappers (which read it inline), for a caller that must know
    which build will run.
    """
    return n >= PARALLEL_MIN_ITEMS or (_SMALL and n >= min_items)


def _renamed(fn: Callable, suffix: str) -> Callable:
    """A copy of ``fn`` with its own qualified name (so numba caches it separately)."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__,
                              fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    copy.__doc__ = fn.__doc__
    return copy


def sized_kernel(size: Callable[..., int], min_items: int | None = None,
                 **options) -> Callable[[Callable], Callable]:
    """Decorator: compile serial and parallel versions; ``size(*args)`` picks one per call.

    The parallel version runs from :data:`PARALLEL_MIN_ITEMS` items on (also
    on one thread: some loops vectorise only in that build), and from
    ``min_items`` on while the lower thresholds apply (see the module).
    ``options`` go to ``njit`` for both builds (``error_model="numpy"`` for a
    loop whose divisions must not test for 0: the test keeps it from vectorising).
    """

    def wrap(fn: Callable) -> Callable:
        serial = njit(cache=True, **options)(_renamed(fn, "_serial"))
        parallel = njit(cache=True, parallel=True, **options)(_renamed(fn, "_parallel"))
        own = PARALLEL_MIN_ITEMS if min_items is None else min_items

        # The common work sizes are read inline: the wrapper runs before every kernel call.
        if size is first_arg:

            def call(*args):
                n = args[0]
                return (parallel if n >= PARALLEL_MIN_ITEMS or (_SMALL and n >= own) else serial)(*args)

        elif size is first_array:

            def call(*args):
                n = args[0].size
                return (parallel if n >= PARALLEL_MIN_ITEMS or (_SMALL and n >= own) else serial)(*args)

        else:

            def call(*args):
                n = size(*args)
                return (parallel if n >= PARALLEL_MIN_ITEMS or (_SMALL and n >= own) else serial)(*args)

        call = functools.wraps(fn)(call)
        call.serial = serial
        call.parallel = parallel
        call.min_items = own
        call.size = size
        return call

    return wrap


def first_arg(*args) -> int:
    """Work size of a cell kernel: its first argument, the number of cells."""
    return int(args[0])


def first_array(*args) -> int:
    """Work size of a field kernel: the number of elements of its first array."""
    return int(args[0].size)
