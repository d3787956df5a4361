"""Numba kernels over plain arrays, each checked against a short NumPy reference twin.

The diffusion kernel's twin lives beside it; the cell kernels' twins are in
``tests/unit/test_kernel_twins.py``, transcribed from the kernels' docstrings.

Kernels take arrays and scalars, never objects. Random numbers come from the
counter-based hash in :mod:`metacoop.kernels.random`, keyed by
(compartment key, mechanism stream, step, cell id, draw index), so results do
not depend on thread count, on cell order or on which other mechanisms run.
"""

from metacoop.kernels import bookkeeping, cells, dispatch, fields, metastases, move_clock, random, vessels  # noqa: F401
from metacoop.kernels._cache import key_caches_by_sources

key_caches_by_sources()
