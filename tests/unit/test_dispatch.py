"""Which build of a kernel runs: by work size, by thread count, and by measured speed in between."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from numba import prange

from metacoop.kernels.dispatch import (
    PARALLEL_MIN_ITEMS,
    SmallWorkTrials,
    first_arg,
    multi_threaded,
    runs_parallel,
    set_threads,
    sized_kernel,
    small_work_parallel,
    threads,
)


def _trial_settings(trials: SmallWorkTrials, seconds_with, seconds_without, steps: int) -> list[bool]:
    """Run ``steps`` steps whose time depends on the setting; return the setting of each."""
    seen = []
    for _ in range(steps):
        on = trials.setting()
        seen.append(on)
        trials.record(seconds_with if on else seconds_without)
    return seen


@pytest.mark.parametrize("faster", [True, False])
def test_the_trials_keep_the_setting_whose_steps_ran_faster(faster):
    trials = SmallWorkTrials()
    block, rounds, every = trials.BLOCK, trials.ROUNDS, trials.EVERY
    fast, slow = 1e-4, 3e-4
    seen = _trial_settings(trials, fast if faster else slow, slow if faster else fast, 2 * every)
    trial = 2 * rounds * block
    # Each trial runs blocks of the two settings in the order on, off, off, on (balanced in time).
    for start in (0, every):
        expect = [b % 4 in (0, 3) for b in range(2 * rounds) for _ in range(block)]
        assert seen[start : start + trial] == expect
        assert sum(expect) == rounds * block
    # Between trials the faster setting runs, every step.
    assert set(seen[trial:every]) == {faster} and set(seen[every + trial :]) == {faster}
    assert trials.chosen is faster


def test_a_trial_follows_a_change_and_ignores_odd_slow_steps():
    trials = SmallWorkTrials()
    _trial_settings(trials, 1e-4, 2e-4, trials.EVERY)
    assert trials.chosen
    # Now the lower thresholds cost: the next trial turns them off, although a few steps of the
    # other setting are very slow (a recording, a cache load): medians, not means.
    seen = []
    for k in range(trials.EVERY):
        on = trials.setting()
        seen.append(on)
        odd = k in (trials.BLOCK + 8, trials.BLOCK + 9, 2 * trials.BLOCK + 5)  # steps of the off blocks
        trials.record(3e-4 if on else (5e-2 if odd else 2e-4))
    assert seen[: trials.BLOCK] == [True] * trials.BLOCK  # (the trial starts with them on)
    assert not trials.chosen and not seen[-1]


@sized_kernel(first_arg, 1_000)
def _count(n, out):
    """Adds 1 to ``out[0]``."""
    for _ in prange(1):
        out[0] += 1.0


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba has a single thread here")
def test_sizes_thread_counts_and_trials_route_to_the_builds():
    # Below the kernel's own threshold the serial build runs; from PARALLEL_MIN_ITEMS on the parallel
    # build; in between the parallel build while the lower thresholds apply (several threads, and
    # the trials want them). A dispatcher lists a signature once it has run it in this process, so
    # each build's first use shows.
    out = np.zeros(1)
    before = numba.get_num_threads()

    def builds_after(n):
        parallel = runs_parallel(n, _count.min_items)  # (what a caller is told runs)
        seen = bool(_count.parallel.signatures)
        _count(n, out)
        assert bool(_count.parallel.signatures) == (seen or parallel)
        return bool(_count.serial.signatures), bool(_count.parallel.signatures)

    try:
        set_threads(2)
        assert threads() == numba.get_num_threads() == 2
        small_work_parallel(False)
        assert builds_after(10) == (True, False)
        assert builds_after(5_000) == (True, False)  # not wanted
        set_threads(1)
        small_work_parallel(True)
        assert not multi_threaded() and threads() == numba.get_num_threads() == 1
        assert builds_after(5_000) == (True, False)  # one thread
        set_threads(2)
        assert multi_threaded()
        assert builds_after(999) == (True, False)
        assert builds_after(1_000) == (True, True)
        assert not runs_parallel(999, 1_000) and runs_parallel(1_000, 1_000)
        small_work_parallel(False)
        assert not runs_parallel(5_000, 1_000) and runs_parallel(PARALLEL_MIN_ITEMS, 1_000)
        small_work_parallel(True)
        assert set_threads(10 ** 6) == numba.config.NUMBA_NUM_THREADS  # clipped
    finally:
        set_threads(before)
        small_work_parallel(True)
    assert out[0] == 5
