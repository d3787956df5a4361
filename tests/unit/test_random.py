"""Counter-based random numbers (``metacoop.kernels.random``).

Statistical assertions use a fixed set of coordinates, so each test is
deterministic; the thresholds are set from the sampling distribution before
looking at the data. Means and variances are checked at ``Z = 4`` standard
errors (two-sided false-alarm probability 6e-5 per assertion for a correct
generator); goodness-of-fit tests require ``p > P_MIN = 1e-4``.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from scipy import stats

from metacoop.kernels.random import (
    draw_prefix,
    gamma_variate,
    hash_below,
    hash_draw,
    mix64,
    standard_normal,
    uniform,
    uniform_after,
    uniforms,
    unit_threshold,
    unit_thresholds,
)

Z = 4.0
P_MIN = 1e-4
KEY = 0xD1B54A32D192ED03  # a key >= 2**63, as compartment keys often are
STREAM = 0x1234ABCD
N_UNIFORM = 1 << 20

MASK = (1 << 64) - 1


def _mix64_reference(x: int) -> int:
    """SplitMix64 finaliser on Python integers (Steele, Lea & Flood 2014)."""
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def _hash_reference(key: int, stream: int, step: int, uid: int, k: int) -> int:
    h = _mix64_reference(key ^ stream)
    h = _mix64_reference(h ^ step)
    h = _mix64_reference(h ^ uid)
    return _mix64_reference(h ^ k)


def _draw(uids, key=KEY, stream=STREAM, step=0, k=0) -> np.ndarray:
    # Coordinates are passed as uint64, the type the kernels document.
    uids = np.ascontiguousarray(uids, dtype=np.int64)
    out = np.empty(uids.shape[0])
    return uniforms(np.uint64(key), np.uint64(stream), np.uint64(step), uids, np.uint64(k), out)


@njit(cache=True)
def _along(axis, n, key, stream, step, uid, k):
    """Uniforms varying one coordinate (0 key, 1 stream, 2 step, 3 uid, 4 k) from the base."""
    out = np.empty(n)
    for i in range(n):
        c = [key, stream, step, uid, k]
        c[axis] += np.uint64(i)
        out[i] = uniform(c[0], c[1], c[2], c[3], c[4])
    return out


@njit(cache=True)
def _gammas(shape, scale, key, stream, step, n):
    out = np.empty(n)
    for i in range(n):
        out[i] = gamma_variate(shape, scale, key, stream, step, i, 0)
    return out


@njit(cache=True)
def _normals(key, stream, step, n):
    out = np.empty(n)
    for i in range(n):
        out[i] = standard_normal(key, stream, step, i, 0)
    return out


def test_mix64_matches_splitmix64_reference_output():
    # SplitMix64 seeded with 0 returns 0xE220A8397B1DCDAF first (Vigna's splitmix64.c);
    # mix64(0) is that output, since mix64 adds the golden gamma before finalising.
    assert int(mix64(0)) == 0xE220A8397B1DCDAF
    for x in (1, 12345, 2**63, MASK):
        assert int(mix64(np.uint64(x))) == _mix64_reference(x)


@pytest.mark.parametrize(
    "coords",
    [(0, 0, 0, 0, 0), (KEY, STREAM, 7, 123456789, 3), (1, 2**32 - 1, 10**9, 2**62, 64), (MASK, 5, 0, 1, 0)],
)
def test_hash_draw_matches_python_reference(coords):
    assert int(hash_draw(*[np.uint64(c) for c in coords])) == _hash_reference(*coords)
    # uniform takes the top 53 bits of the hash.
    assert uniform(*[np.uint64(c) for c in coords]) == (_hash_reference(*coords) >> 11) * 2.0**-53
    # and the split form the branch-free kernels use gives the same bits
    key, stream, step, uid, k = (np.uint64(c) for c in coords)
    prefix = np.uint64(draw_prefix(key, stream, step))
    assert uniform_after(prefix, uid, k) == (_hash_reference(*coords) >> 11) * 2.0**-53


@njit(cache=True)
def _below_both_ways(hashes, probabilities):
    """For each (hash, probability) pair: the float comparison ``u < p`` and the integer one, as uint8."""
    out = np.empty((2, hashes.shape[0], probabilities.shape[0]), np.uint8)
    for j in range(probabilities.shape[0]):
        p = probabilities[j]
        t = unit_threshold(p)
        for i in range(hashes.shape[0]):
            h = hashes[i]
            out[0, i, j] = np.float64(h >> np.uint64(11)) * 2.0**-53 < p
            out[1, i, j] = hash_below(h, t)
    return out


def test_integer_threshold_compares_exactly_as_the_uniform_does():
    """``hash_below(h, unit_threshold(p))`` is ``u < p`` for every hash and probability, edges included."""
    tiny = np.nextafter(0.0, 1.0)  # the smallest subnormal
    probabilities = np.array([
        0.0, -0.5, np.nan, -np.inf, np.inf, tiny, 2.0**-53, 3 * 2.0**-54, 2.0**-60, 1e-300, 0.016, 0.5,
        0.1, 1.0 / 3.0, np.nextafter(1.0, 0.0), 1.0, 1.5,
    ])
    rng = np.random.default_rng(7)
    probabilities = np.concatenate([probabilities, rng.random(200), rng.random(50) * 1e-6])
    # Hashes whose 53 high bits sit exactly at, just below and just above each probability's scaled value,
    # with random low bits (which the comparison must ignore), plus random and extreme hashes.
    finite = probabilities[np.isfinite(probabilities) & (probabilities >= 0) & (probabilities < 1)]
    m = np.floor(finite * 2.0**53).astype(np.uint64)
    near = np.concatenate([m, m + np.uint64(1), np.where(m > 0, m - np.uint64(1), m)])
    low = rng.integers(0, 2**11, near.size, dtype=np.uint64)
    hashes = np.concatenate([
        (near << np.uint64(11)) | low, near << np.uint64(11),
        rng.integers(0, 2**63, 500, dtype=np.uint64) * np.uint64(2),
        np.array([0, 1, 2**11 - 1, 2**11, 2**64 - 1, 2**64 - 2**11], np.uint64),
    ])
    got = _below_both_ways(hashes, probabilities)
    np.testing.assert_array_equal(got[1], got[0])
    assert got[0].any() and not got[0].all()  # both outcomes occur
    # The array form gives each entry's threshold; 2**53 from p = 1 on, 0 for p <= 0 and NaN.
    table = unit_thresholds(probabilities[:17].reshape(1, 17), np.empty((1, 17), np.int64))[0]
    assert table.tolist() == [0, 0, 0, 0, 2**53, 1, 1, 2, 1, 1, int(np.ceil(0.016 * 2.0**53)), 2**52,
                              int(np.ceil(0.1 * 2.0**53)), int(np.ceil(2.0**53 / 3)), 2**53 - 1, 2**53, 2**53]


def test_same_coordinates_give_same_value():
    uids = np.arange(1000, dtype=np.int64) * 7919
    a = _draw(uids, step=42, k=2)
    b = _draw(uids, step=42, k=2)
    np.testing.assert_array_equal(a, b)
    # The vectorised fill equals the scalar function, and the order of the uids does not matter.
    assert all(a[i] == uniform(*map(np.uint64, (KEY, STREAM, 42, uids[i], 2))) for i in range(0, 1000, 97))
    perm = np.random.default_rng(0).permutation(uids.size)
    np.testing.assert_array_equal(_draw(uids[perm], step=42, k=2), a[perm])
    coords = tuple(map(np.uint64, (KEY, STREAM, 5, 17, 1)))
    assert gamma_variate(2.0, 3.0, *coords) == gamma_variate(2.0, 3.0, *coords)


def test_uniform_range_and_resolution():
    u = _draw(np.arange(N_UNIFORM))
    assert u.min() >= 0.0 and u.max() < 1.0
    # 53-bit resolution: every value is an integer multiple of 2**-53.
    scaled = u * 2.0**53
    np.testing.assert_array_equal(scaled, np.floor(scaled))


def test_uniform_mean_and_variance_within_clt_bounds():
    n = N_UNIFORM
    u = _draw(np.arange(n), step=3)
    # Mean of n U(0,1): sd sqrt(1/12 / n) = 2.8e-4 for n = 2**20.
    assert abs(u.mean() - 0.5) < Z * np.sqrt(1 / 12 / n)
    # Sample variance: Var(s^2) ~ (mu4 - sigma^4) / n with mu4 = 1/80, sigma^2 = 1/12.
    assert abs(u.var() - 1 / 12) < Z * np.sqrt((1 / 80 - 1 / 144) / n)


@pytest.mark.parametrize("axis", [0, 1, 2, 3, 4], ids=["key", "stream", "step", "uid", "k"])
def test_uniform_ks_along_each_coordinate(axis):
    # Consecutive values of each coordinate (the worst case for a weak mixer) must give
    # a sample indistinguishable from U(0, 1) by Kolmogorov-Smirnov at n = 2**17.
    u = _along(axis, 1 << 17, np.uint64(KEY), np.uint64(STREAM), np.uint64(11), np.uint64(1000), np.uint64(0))
    assert stats.kstest(u, "uniform").pvalue > P_MIN


@pytest.mark.parametrize("axis", [2, 3, 4], ids=["step", "uid", "k"])
def test_consecutive_draws_are_independent(axis):
    # Pairs (u_i, u_{i+1}) binned on a 10 x 10 grid: chi-square with 99 degrees of freedom
    # under independence (expected count 2**17 / 100 = 1311 per cell, so the chi-square
    # approximation is accurate).
    u = _along(axis, (1 << 17) + 1, np.uint64(KEY), np.uint64(STREAM), np.uint64(11), np.uint64(1000),
               np.uint64(0))
    a = np.minimum((u[:-1] * 10).astype(int), 9)
    b = np.minimum((u[1:] * 10).astype(int), 9)
    counts = np.bincount(a * 10 + b, minlength=100)
    assert stats.chisquare(counts).pvalue > P_MIN


@pytest.mark.parametrize(
    "change",
    [dict(key=KEY + 1), dict(stream=STREAM + 1), dict(step=1), dict(k=1)],
    ids=["key", "stream", "step", "k"],
)
def test_draws_differ_and_decorrelate_across_coordinates(change):
    n = 1 << 18
    uids = np.arange(n)
    base = _draw(uids)
    other = _draw(uids, **change)
    # Two independent 53-bit uniforms coincide with probability 2**-53: never, here.
    assert not np.any(base == other)
    # Pearson correlation of independent samples has sd 1 / sqrt(n).
    assert abs(np.corrcoef(base, other)[0, 1]) < Z / np.sqrt(n)
    # Changing the uid (a different cell) also gives a different number.
    assert not np.any(base[1:] == base[:-1])


def test_standard_normal_moments_and_ks():
    n = 1 << 18
    x = _normals(np.uint64(KEY), np.uint64(STREAM), np.uint64(0), n)
    assert abs(x.mean()) < Z / np.sqrt(n)
    # Var(s^2) = (mu4 - 1) / n = 2 / n for a standard normal.
    assert abs(x.var() - 1.0) < Z * np.sqrt(2 / n)
    assert stats.kstest(x, "norm").pvalue > P_MIN


@pytest.mark.parametrize("shape", [0.5, 1.0, 16.0])
def test_gamma_variate_mean_variance_and_distribution(shape):
    scale = 2.5
    n = 200_000
    g = _gammas(shape, scale, np.uint64(KEY), np.uint64(STREAM), np.uint64(9), n)
    assert g.min() > 0.0
    mean, var = shape * scale, shape * scale**2
    # Sample mean: sd sqrt(k theta^2 / n).
    assert abs(g.mean() - mean) < Z * np.sqrt(var / n)
    # Sample variance: Var(s^2) ~ (mu4 - sigma^4) / n, and for Gamma(k) the fourth central
    # moment is sigma^4 (3 + 6 / k), so Var(s^2) ~ sigma^4 (2 + 6 / k) / n.
    assert abs(g.var() - var) < Z * var * np.sqrt((2 + 6 / shape) / n)
    assert stats.kstest(g, stats.gamma(shape, scale=scale).cdf).pvalue > P_MIN
