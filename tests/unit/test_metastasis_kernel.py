"""The registry's per-step update kernel against the plain NumPy rule it replaced."""

from __future__ import annotations

import numpy as np

from metacoop.compartments import metastases as registry
from metacoop.core import state as cell_state
from metacoop.kernels import metastases as kernel


def update_twin(organ_index, met, state, n, organ, founded_h, switched_h, status, size, max_size, cap):
    """The statuses, sizes and room of the previous NumPy implementation."""
    status, size, max_size = status.copy(), size.copy(), max_size.copy()
    mine = organ[:n] == organ_index
    tissue = (met >= 0) & (state != cell_state.ARRESTED)
    cells = np.bincount(met[tissue], minlength=n)[:n]
    awake = np.bincount(met[tissue & (state != cell_state.DORMANT)], minlength=n)[:n]
    founded = ~np.isnan(founded_h[:n])
    new = np.full(n, registry.PENDING, np.int8)
    new[founded & (cells == 0)] = registry.EXTINCT
    new[founded & (cells > 0) & (awake == 0)] = registry.S_DORMANT
    new[founded & (cells == 1) & (awake == 1)] = registry.SOLITARY
    new[founded & (cells >= 2) & (awake > 0)] = registry.MICRO
    new[founded & (cells > 0) & ~np.isnan(switched_h[:n])] = registry.MACRO
    changed = [(int(m), int(status[m]), int(new[m])) for m in np.flatnonzero(mine & (new != status[:n]))]
    status[:n][mine] = new[mine]
    size[:n][mine] = cells[mine]
    max_size[:n] = np.maximum(max_size[:n], size[:n])
    room = np.full(n, kernel.NO_LIMIT, np.int64)
    avascular = mine & np.isnan(switched_h[:n])
    room[avascular] = cap - size[:n][avascular]
    return changed, status, size, max_size, room


def test_the_kernel_uses_the_registry_and_cell_state_codes():
    assert (kernel._ARRESTED, kernel._DORMANT) == (cell_state.ARRESTED, cell_state.DORMANT)
    assert (kernel._PENDING, kernel._S_DORMANT, kernel._SOLITARY, kernel._MICRO, kernel._MACRO,
            kernel._EXTINCT) == (registry.PENDING, registry.S_DORMANT, registry.SOLITARY, registry.MICRO,
                                 registry.MACRO, registry.EXTINCT)


def test_update_statuses_matches_the_numpy_rule():
    rng = np.random.default_rng(3)
    for trial in range(30):
        n = int(rng.integers(1, 40))
        cap = n + 2  # arrays with spare capacity, as the registry grows them
        organ = rng.integers(0, 2, cap).astype(np.int16)
        founded_h = np.where(rng.random(cap) < 0.7, rng.random(cap), np.nan)
        switched_h = np.where(rng.random(cap) < 0.3, rng.random(cap), np.nan)
        status = rng.integers(0, 6, cap).astype(np.int8)
        size = rng.integers(0, 5, cap).astype(np.int64)
        max_size = size + rng.integers(0, 3, cap)
        k = int(rng.integers(0, 60))
        met = rng.integers(-1, n, k).astype(np.int32)
        met[rng.random(k) < 0.1] = -1
        state = rng.integers(0, 3, k).astype(np.uint8)
        expect = update_twin(trial % 2, met, state, n, organ, founded_h, switched_h, status, size, max_size,
                             16)
        room = np.empty(n, np.int64)
        got = kernel.update_statuses(trial % 2, met, state, n, organ, founded_h, switched_h, status, size,
                                     max_size, 16, room)
        assert [tuple(r) for r in got.tolist()] == expect[0]
        for a, b in zip((status, size, max_size, room), expect[1:], strict=True):
            np.testing.assert_array_equal(a, b)
