"""Keep glibc from handing freed memory back to the system after every step.

A step allocates and frees temporary arrays of up to a few hundred KB
(NumPy calls between the kernels). glibc's allocator returns the free top of
its heap to the system as soon as more than 128 KB lie there, and takes
fresh pages again at the next step: 1.4 million page faults in one run of
the default scenario (about 280 per step), whose first run in a process took
9.0-9.5 s against 6.7-7.0 s with the thresholds below (same peak memory,
318 MB; new processes, alternating). glibc adapts its thresholds as it sees
large frees, so later runs in the same process suffered less.

:func:`keep_freed_memory` runs once, when metacoop is imported. It changes
nothing where the allocator is not glibc's, or where the user set
``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_MMAP_THRESHOLD_`` (Dask sets the
first in its workers unless told not to; see the experiments section of the
README).
"""

from __future__ import annotations

import ctypes
import os
import platform

#: glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Free memory kept at the top of the heap before it is returned to the system, bytes.
TRIM_THRESHOLD = 256 << 20
#: Allocations from this size on get their own mapping (glibc's largest allowed value on 64-bit).
MMAP_THRESHOLD = 32 << 20
#: Environment variables by which the user (or Dask) chose these thresholds already.
USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds (see the module); True if they were set."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
