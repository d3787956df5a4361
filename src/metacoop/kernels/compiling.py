"""Seeing numba compile: which kernel, and for how long.

Kernels come from numba's on-disk cache (see :mod:`metacoop.kernels._cache`)
except on the first run after metacoop is installed or updated, when numba
compiles each kernel as the run first calls it: a pause of a second or more
per kernel, tens of seconds in all, at moments the run does not choose (a
parallel build first runs when the tumour passes a size). :func:`watch_compiles`
lets a caller say so while it happens (``metacoop run`` names the kernel in
its progress bar) and tells how many kernels were compiled and in how long.

It listens to numba's ``numba:compile`` event, which numba raises only when a
kernel is compiled, never when one is loaded from the cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from numba.core import event


class CompileWatch(event.Listener):
    """Counts the kernels numba compiles and the seconds it takes (see :func:`watch_compiles`).

    A kernel compiled while another compiles (a helper it calls) counts with
    that one: ``kernels`` and ``seconds`` are of the outermost compiles only.
    """

    def __init__(self, started: Callable[[str], None] | None = None,
                 ended: Callable[[], None] | None = None):
        self.started, self.ended = started, ended
        #: Kernels compiled (outermost only) and the wall seconds they took.
        self.kernels = 0
        self.seconds = 0.0
        #: Names of the kernels compiled, in order.
        self.names: list[str] = []
        self._depth = 0
        self._t0 = 0.0

    def on_start(self, ev: event.Event) -> None:
        """Called as numba begins compiling a kernel."""
        self._depth += 1
        if self._depth > 1:
            return
        self._t0 = time.perf_counter()
        name = kernel_name(ev.data["dispatcher"])
        self.names.append(name)
        if self.started is not None:
            self.started(name)

    def on_end(self, ev: event.Event) -> None:
        """Called when numba has compiled it (or failed to)."""
        self._depth -= 1
        if self._depth > 0:
            return
        self.kernels += 1
        self.seconds += time.perf_counter() - self._t0
        if self.ended is not None:
            self.ended()

    def summary(self) -> str:
        """One sentence for the user, or "" when nothing was compiled."""
        if not self.kernels:
            return ""
        return (f"numba compiled {self.kernels} kernel{'s' if self.kernels != 1 else ''} in "
                f"{self.seconds:.1f} s (a first run after installing or updating metacoop; "
                "later runs load them from the cache)")


def kernel_name(dispatcher) -> str:
    """The kernel's name without the suffix of its serial or parallel build."""
    name = getattr(dispatcher, "py_func", dispatcher).__name__
    for suffix in ("_serial", "_parallel"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@contextmanager
def watch_compiles(started: Callable[[str], None] | None = None,
                   ended: Callable[[], None] | None = None) -> Iterator[CompileWatch]:
    """Within the block, call ``started(kernel name)`` and ``ended()`` around every kernel numba compiles.

    Yields the :class:`CompileWatch`, whose ``kernels``, ``seconds`` and
    ``names`` say what was compiled. Loading a kernel from the cache calls
    neither.
    """
    watch = CompileWatch(started, ended)
    with event.install_listener("numba:compile", watch):
        yield watch
