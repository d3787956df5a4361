"""The registry's per-step update kernel against the plain NumPy rule it replaced."""

from __future__ import annotations

import numpy as np

from metacoop.compartments import metastases as registry
from metacoop.core import state as cell_state
from metacoop.kernels import metastases as kernel
from metacoop.kernels.cells import DEAD
from metacoop.kernels.random import uniforms


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
    assert (kernel._ACTIVE, kernel._ARRESTED, kernel._DORMANT) == (cell_state.ACTIVE, cell_state.ARRESTED,
                                                                    cell_state.DORMANT)
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


def test_avascular_death_flags_the_cells_numpys_masks_chose():
    # The NumPy rule it replaced: live active cells of founded, unswitched metastases, each dying
    # when its draw (index 1 of the stream) is below p. 2,000 cells on 12 metastases of every kind,
    # some cells already dead, some of no metastasis; about p of the candidates die.
    rng = np.random.default_rng(21)
    n, n_met, p = 2000, 12, 0.3
    founded_h = np.where(rng.random(n_met) < 0.75, rng.random(n_met), np.nan)
    switched_h = np.where(rng.random(n_met) < 0.4, rng.random(n_met), np.nan)
    founded_h[:2], switched_h[:2] = 0.5, np.nan  # (at least two avascular metastases)
    met = rng.integers(-1, n_met, n).astype(np.int32)
    state = rng.choice([cell_state.ACTIVE, cell_state.ARRESTED, cell_state.DORMANT], n, p=[0.7, 0.15, 0.15])
    state = state.astype(np.uint8)
    flags = (np.where(rng.random(n) < 0.1, DEAD, 0) | rng.choice([0, 2, 4], n)).astype(np.uint8)
    uid = rng.permutation(10 * n)[:n].astype(np.int64)
    key, stream, step = 99, 7, 1234
    cand = np.flatnonzero((met >= 0) & (state == cell_state.ACTIVE) & ((flags & DEAD) == 0))
    m = met[cand]
    cand = cand[np.isnan(switched_h[m]) & ~np.isnan(founded_h[m])]
    u = uniforms(key, stream, step, uid[cand], 1, np.empty(cand.size))
    want = flags.copy()
    want[cand[u < p]] |= DEAD
    got = flags.copy()
    k = kernel.avascular_death(n, uid, met, state, got, founded_h, switched_h, p, key, stream, step, 1)
    np.testing.assert_array_equal(got, want)
    assert k == (u < p).sum()
    assert abs(k - p * cand.size) < 4 * np.sqrt(cand.size * p * (1 - p)), (k, cand.size)
