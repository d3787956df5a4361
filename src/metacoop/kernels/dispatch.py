"""Serial or parallel: one kernel source, two compiled versions, chosen by work size.

A numba parallel region costs a few microseconds on an idle machine but can
cost a scheduler time slice (milliseconds) when another process holds a core,
which is the usual state of a shared laptop or CI runner. Small work (a
201 x 201 field, a few thousand cells) is therefore faster on one thread.
:func:`sized_kernel` compiles the same Python function twice, with and
without ``parallel=True`` (``prange`` runs as ``range`` in the serial
version), and calls the parallel one only when the work is at least
:data:`PARALLEL_MIN_ITEMS` items. Both versions give identical results: every
kernel writes each output element from one loop iteration.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable

from numba import njit

#: Smallest amount of work (loop iterations) run on several threads.
PARALLEL_MIN_ITEMS = 100_000


def _renamed(fn: Callable, suffix: str) -> Callable:
    """A copy of ``fn`` with its own qualified name (so numba caches it separately)."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__,
                              fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    copy.__doc__ = fn.__doc__
    return copy


def sized_kernel(size: Callable[..., int]) -> Callable[[Callable], Callable]:
    """Decorator: compile serial and parallel versions; ``size(*args)`` picks one per call."""

    def wrap(fn: Callable) -> Callable:
        serial = njit(cache=True)(_renamed(fn, "_serial"))
        parallel = njit(cache=True, parallel=True)(_renamed(fn, "_parallel"))

        # The common work sizes are read inline: the wrapper runs before every kernel call.
        if size is first_arg:

            def call(*args):
                return (parallel if args[0] >= PARALLEL_MIN_ITEMS else serial)(*args)

        elif size is first_array:

            def call(*args):
                return (parallel if args[0].size >= PARALLEL_MIN_ITEMS else serial)(*args)

        else:

            def call(*args):
                return (parallel if size(*args) >= PARALLEL_MIN_ITEMS else serial)(*args)

        call = functools.wraps(fn)(call)

        call.serial = serial
        call.parallel = parallel
        return call

    return wrap


def first_arg(*args) -> int:
    """Work size of a cell kernel: its first argument, the number of cells."""
    return int(args[0])


def first_array(*args) -> int:
    """Work size of a field kernel: the number of elements of its first array."""
    return int(args[0].size)
