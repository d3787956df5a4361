"""Numba kernels against NumPy / plain-Python twins (Brian2-style ``maxrelerr`` checks).

``diffuse_decay_steps`` has its twin in the package; for the other kernels the
twin is written here, as a direct transcription of the rule in the kernel's
docstring. Random draws in the twins come from ``uniforms``, which
``tests/unit/test_random.py`` checks bit-for-bit against a pure-Python hash.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from helpers.twins import chosen_moves, decide_moves_twin, mover_lists
from metacoop.kernels.bookkeeping import LIST_BLOCK, list_blocks, list_flagged
from metacoop.kernels.cells import (
    COMPARED_POINTS,
    DEAD,
    DUE,
    MOVING,
    advance_cycle,
    apply_listed,
    apply_moves,
    bernoulli_flag,
    decide_moves,
    divide,
    largest,
    list_due,
    listed_near,
    lists_movers,
    mark_due,
    mark_room,
    scatter_add,
    select_on_vessels,
    switch_phenotype,
)
from metacoop.kernels.dispatch import PARALLEL_MIN_ITEMS
from metacoop.kernels.fields import (
    DEGRADE_BLOCK,
    FIELD_FLOOR,
    SMALL_EXPONENT,
    WAVEFRONT_MIN_BYTES,
    WAVEFRONT_MIN_BYTES_ONE_BLOCK,
    _wavefront,
    add_counted,
    add_inplace,
    add_scaled,
    clear_points,
    clipped_complement,
    count_points,
    degrade_exponential,
    degrade_exponential_reference,
    diffuse_decay_step_numpy,
    diffuse_decay_steps,
    relax_toward,
    saturated,
    saturation,
    scale_inplace,
)
from metacoop.kernels.move_clock import ecm_survey
from metacoop.kernels.random import gamma_variate, uniforms

DTYPES = [np.float32, np.float64]
# Keys are uint64 (uniform on [0, 2**64)), passed with that type as the kernels document.
KEY, STREAM, STEP = np.uint64(0x9E3779B97F4A7C15), 77, 5


def maxrelerr(a: np.ndarray, b: np.ndarray) -> float:
    """Largest elementwise relative error of ``a`` against reference ``b`` (Brian2's measure)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.finfo(np.float64).tiny)))


def field_shape(ndim: int) -> tuple[int, int, int]:
    # Odd, unequal sizes so that an axis mix-up cannot go unnoticed.
    return (1, 23, 37) if ndim == 2 else (7, 11, 13)


def _draws(uid: np.ndarray, stream: int = STREAM, step: int = STEP, k: int = 0) -> np.ndarray:
    return uniforms(KEY, stream, step, np.ascontiguousarray(uid, np.int64), k, np.empty(uid.size))


# -- field kernels -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("decay", [1.0, 0.97])
def test_diffuse_decay_step_matches_numpy_twin(ndim, dtype, decay):
    rng = np.random.default_rng(100 + ndim)
    u = rng.uniform(0.1, 1.0, field_shape(ndim)).astype(dtype)
    r = 0.9 / (2 * ndim)
    eps = np.finfo(dtype).eps
    out = np.empty_like(u)
    diffuse_decay_steps(u, out, r, decay, 1, 1)
    assert out.dtype == dtype
    # Same operations in the same order: equal up to a few roundings of one update (~7 flops).
    assert maxrelerr(out, diffuse_decay_step_numpy(u, r, decay)) <= 8 * eps
    # Chained over 50 sub-steps the rounding differences may add up, at most linearly.
    a, ref = u.copy(), u.copy()
    b = np.empty_like(u)
    for _ in range(50):
        diffuse_decay_steps(a, b, r, decay, 1, 1)
        a, b = b, a
        ref = diffuse_decay_step_numpy(ref, r, decay)
    assert maxrelerr(a, ref) <= 50 * 8 * eps


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 23, 37), (7, 11, 13), (1, 1, 5), (1, 5, 1), (3, 1, 1), (1, 1, 1)])
def test_diffuse_decay_step_equals_numpy_twin_bit_for_bit(shape, dtype, build):
    # The kernel updates the ends of each x-row apart from its interior (so that the interior
    # loop vectorises), but every point gets the twin's operations in the twin's order: the
    # results must be equal, not just close, on every shape including 1-point axes.
    u = np.random.default_rng(sum(shape)).uniform(0.0, 1.0, shape).astype(dtype)
    out = np.empty_like(u)
    getattr(diffuse_decay_steps, build)(u, out, 0.9 / 6, 0.97, 1, 1)
    np.testing.assert_array_equal(out, diffuse_decay_step_numpy(u, 0.9 / 6, 0.97))


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 23, 37), (7, 11, 13)])
@pytest.mark.parametrize("substeps", [0, 1, 2, 7, 8])
def test_diffuse_decay_steps_are_the_sub_steps_one_by_one(shape, dtype, build, substeps):
    # Several sub-steps in one call, back and forth between the two arrays: the twin applied that many
    # times, bit for bit, ending in `out` after an odd number and in `u` after an even one.
    u0 = np.random.default_rng(sum(shape) + substeps).uniform(0.0, 1.0, shape).astype(dtype)
    u, out = u0.copy(), np.full_like(u0, np.nan)
    getattr(diffuse_decay_steps, build)(u, out, 0.9 / 6, 0.97, substeps, 2)
    ref = u0
    for _ in range(substeps):
        ref = diffuse_decay_step_numpy(ref, 0.9 / 6, 0.97)
    np.testing.assert_array_equal(out if substeps % 2 else u, ref)


def _twin_steps(u0: np.ndarray, substeps: int) -> tuple[np.ndarray, np.ndarray]:
    """The NumPy twin applied ``substeps`` times: (the last sub-step, the one before)."""
    before, ref = None, u0
    for _ in range(substeps):
        before, ref = ref, diffuse_decay_step_numpy(ref, 0.9 / 6, 0.97)
    return ref, before


def _ends(u, out, substeps):
    """Where diffuse_decay_steps leaves (the last sub-step, the one before)."""
    return (out, u) if substeps % 2 else (u, out)


#: (shape, sub-steps, blocks) of the wavefront tests: every block holds at least 2 * sub-steps units.
WAVEFRONT_CASES = [
    (shape, substeps, parts)
    for shape in [(1, 24, 9), (1, 37, 5), (1, 48, 1), (24, 5, 6), (17, 3, 4), (16, 1, 1)]
    for substeps in (2, 3, 4, 8)
    for parts in (1, 2, 3, 4)
    if (shape[1] if shape[0] == 1 else shape[0]) >= 2 * substeps * parts
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "substeps", "parts"), WAVEFRONT_CASES)
def test_wavefront_is_the_sub_steps_one_by_one(shape, substeps, parts, dtype):
    # The wavefront interleaves the sub-steps unit by unit (x-rows in 2-D, z-planes in 3-D) in `parts`
    # blocks, then fills the triangles between blocks. Both arrays must end as after the sub-steps taken
    # one by one: the last sub-step in its array and the one before in the other, bit for bit, with
    # blocks of exactly 2 * substeps units (the smallest allowed) as well as larger ones.
    u0 = np.random.default_rng(sum(shape) + 10 * substeps + parts).uniform(0.0, 1.0, shape).astype(dtype)
    u, out = u0.copy(), np.full_like(u0, np.nan)
    _wavefront(u, out, 0.9 / 6, 0.97, substeps, parts)
    last, before = _ends(u, out, substeps)
    ref, ref_before = _twin_steps(u0, substeps)
    np.testing.assert_array_equal(last, ref)
    np.testing.assert_array_equal(before, ref_before)


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize(("shape", "dtype", "blocks"), [
    ((1, 300, 257), np.float32, 2), ((1, 256, 130), np.float64, 2), ((40, 41, 40), np.float64, 2),
    ((1, 512, 520), np.float64, 1), ((1, 512, 520), np.float64, 0), ((1, 512, 520), np.float64, 3),
])
@pytest.mark.parametrize("substeps", [2, 3, 8])
def test_large_fields_take_the_wavefront_with_the_same_result(shape, dtype, blocks, substeps, build):
    # A field of at least WAVEFRONT_MIN_BYTES (WAVEFRONT_MIN_BYTES_ONE_BLOCK in one block; 0 blocks count
    # as 1) takes the wavefront, whose blocks the parallel build runs at once: the same bits as the twin,
    # whatever the blocks and the build.
    u0 = np.random.default_rng(substeps).uniform(0.0, 1.0, shape).astype(dtype)
    units = shape[1] if shape[0] == 1 else shape[0]
    least = WAVEFRONT_MIN_BYTES if blocks > 1 else WAVEFRONT_MIN_BYTES_ONE_BLOCK
    assert 2 * u0.nbytes >= least and units >= 2 * substeps * max(blocks, 1)  # (the wavefront's case)
    u, out = u0.copy(), np.full_like(u0, np.nan)
    getattr(diffuse_decay_steps, build)(u, out, 0.9 / 6, 0.97, substeps, blocks)
    last, before = _ends(u, out, substeps)
    ref, ref_before = _twin_steps(u0, substeps)
    np.testing.assert_array_equal(last, ref)
    np.testing.assert_array_equal(before, ref_before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_and_add_inplace_match_numpy(dtype):
    rng = np.random.default_rng(3)
    u = rng.uniform(0.0, 1.0, (5, 6, 7)).astype(dtype)
    d = rng.uniform(-0.5, 0.5, u.shape).astype(dtype)
    expect = u + d
    add_inplace(u, d)
    np.testing.assert_array_equal(u, expect)
    assert not d.any(), "add_inplace must zero the deltas it applied"
    expect = u * dtype(0.8)
    scale_inplace(u, 0.8)
    assert maxrelerr(u, expect) <= np.finfo(dtype).eps


@pytest.mark.parametrize("dtype", DTYPES)
def test_degrade_exponential_matches_numpy(dtype):
    rng = np.random.default_rng(4)
    n = 1000
    w = rng.uniform(0.0, 1.0, n).astype(dtype)
    m = rng.uniform(0.0, 1.0, n).astype(dtype)
    rate = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.0, 0.3, n))
    m[:100] = 0.0
    rate[:100] = 0.0  # zero total rate: must be left exactly as is
    expect = (w * np.exp(-(0.09 * m.astype(np.float64) + rate) * 0.1)).astype(dtype)
    w0 = w.copy()
    degrade_exponential(w, m, rate, 0.09, 0.1)
    np.testing.assert_array_equal(w[:100], w0[:100])
    assert maxrelerr(w, expect) <= 2 * np.finfo(dtype).eps


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("a", "b"), [(0.0, 1.0), (1.0, 0.35), (1.0, -0.6)])
def test_point_maps_equal_the_numpy_expressions_they_replace_bit_for_bit(dtype, build, a, b):
    # The modifiers' per-point factors were NumPy expressions of a field with Python numbers, which
    # NumPy evaluates in the field's type; the kernels must give their bits, NaN and the clip's ends
    # included (values below 0 and above 1, and exactly 0 and 1).
    rng = np.random.default_rng(12)
    x = (rng.uniform(0.0, 3.0, 5000) * rng.choice([1e-6, 1e-2, 1.0], 5000)).astype(dtype)
    x[:6] = [0.0, 1.0, 2.0, np.nan, np.inf, 0.5]
    x[6:12] = -x[6:12]  # (an ECM over 1 or below 0 is clipped)
    half = 0.37
    x[-1] = -dtype(half)  # a divisor of 0: an infinity, as in NumPy (the kernel's divisions are not tested)
    got = getattr(saturation, build)(x, half, a, b, np.empty_like(x))
    with np.errstate(invalid="ignore", divide="ignore"):  # (inf / inf and -0.37 / 0, as in the kernel)
        want = x / (half + x) if (a, b) == (0.0, 1.0) else a + b * (x / (half + x))
    assert got.dtype == want.dtype == dtype
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
    # The one-point form kernels call where they need a few points (the macrophages' walk).
    one = np.array([saturated(v, dtype(half), dtype(a), dtype(b)) for v in x[:300]], dtype)
    np.testing.assert_array_equal(one.view(np.uint8), want[:300].view(np.uint8))
    got = getattr(clipped_complement, build)(x, a, b, np.empty_like(x))
    clip = np.clip(1.0 - x, 0.0, 1.0)
    want = clip if (a, b) == (0.0, 1.0) else a + b * clip
    assert got.dtype == want.dtype == dtype
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_field_updates_equal_the_numpy_expressions_they_replace_bit_for_bit(dtype, build):
    # The mechanisms' whole-lattice updates were NumPy expressions with Python numbers (in the
    # field's type) and an in-place add: a field feeding another's sources (add_scaled, also from a
    # field of the other type) and the ECM recovering towards its initial state (relax_toward).
    rng = np.random.default_rng(13)
    x = (rng.uniform(0.0, 3.0, 5000) * rng.choice([1e-6, 1e-2, 1.0], 5000)).astype(dtype)
    x[:4] = [0.0, np.nan, np.inf, 1.0]
    for deltas_type in DTYPES:
        out = rng.uniform(0.0, 1.0, x.size).astype(deltas_type)
        want = out.copy()
        want[:] += x * 0.37
        getattr(add_scaled, build)(out, x, 0.37)
        np.testing.assert_array_equal(out.view(np.uint8), want.view(np.uint8))
    u = rng.uniform(0.0, 1.0, x.size).astype(dtype)
    u[4:8] = [np.nan, np.inf, 0.0, 1.0]
    want = u.copy()
    with np.errstate(invalid="ignore"):  # (inf - inf, as in the kernel)
        want += (x - want) * 0.0123
    getattr(relax_toward, build)(u, x, 0.0123)
    np.testing.assert_array_equal(u.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("dtype", DTYPES)
def test_counted_sources_equal_numpys_unique_counts(dtype):
    # 300 agents on 40 of 1,000 points (many points holding several): each point gets its count
    # times the amount added once, as np.unique's counts gave it; the counts are left all 0.
    rng = np.random.default_rng(14)
    occupied = rng.choice(1000, 40, replace=False)
    pos = rng.choice(occupied, 300)
    deltas = rng.uniform(0.0, 1.0, 1000).astype(dtype)
    want = deltas.copy()
    points, k = np.unique(pos, return_counts=True)
    want[points] += k * 0.0171
    counts = np.zeros(1000, np.int64)
    first = count_points(250, pos, counts)  # (only pos[:n] counts)
    assert first.tolist() == list(dict.fromkeys(pos[:250].tolist()))
    assert counts.sum() == 250
    counts[:] = 0
    got_points = count_points(pos.size, pos, counts)
    assert sorted(got_points.tolist()) == points.tolist()
    assert list(dict.fromkeys(pos.tolist())) == got_points.tolist(), "points in the order they first occur"
    np.testing.assert_array_equal(counts[points], k)
    add_counted(got_points, counts, 0.0171, deltas)
    np.testing.assert_array_equal(deltas.view(np.uint8), want.view(np.uint8))
    assert not counts.any()


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_degrade_exponential_equals_its_one_branch_reference_bit_for_bit(dtype, build):
    # Blocks where no point needs exp (rate only from tiny MMP-2), some do and all do, a last
    # partial block, zero and negative total rates, and NaN / infinite inputs: the blocked
    # kernel must give the reference's bits everywhere, also for dt outside (0, inf).
    rng = np.random.default_rng(8)
    n = 3 * DEGRADE_BLOCK + 17
    w = rng.uniform(0.0, 1.0, n).astype(dtype)
    m = (rng.uniform(0.0, 1.0, n) * rng.choice([0.0, 1e-300, 1e-6, 1e-2, 1.0, 30.0], n)).astype(dtype)
    m[:DEGRADE_BLOCK] *= dtype(1e-4)
    rate = np.zeros(n)
    some = rng.random(n) < 0.2
    rate[some] = rng.choice([0.09, 0.18, 1e-4, -1.0], some.sum())
    rate[:DEGRADE_BLOCK] = 0.0
    rate[2 * DEGRADE_BLOCK : 3 * DEGRADE_BLOCK] = 5.0
    w[::97] = np.nan
    m[DEGRADE_BLOCK::89] = np.inf
    for dt in (0.1, 0.0111, 0.0, -0.5):
        got, want = w.copy(), w.copy()
        getattr(degrade_exponential, build)(got, m, rate, 0.09, dt)
        degrade_exponential_reference(want, m, rate, 0.09, dt)
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
        # Clearing the rates on the way (each block after its use, exp pass included) changes no bit.
        cleared, used = w.copy(), rate.copy()
        getattr(degrade_exponential, build)(cleared, m, used, 0.09, dt, True)
        np.testing.assert_array_equal(cleared.view(np.uint8), want.view(np.uint8))
        assert not used.any()
    x = (0.09 * m.astype(np.float64) + rate) * 0.1  # the three kinds of block are there
    assert (x[:DEGRADE_BLOCK] < SMALL_EXPONENT).all()
    assert (x[2 * DEGRADE_BLOCK : 3 * DEGRADE_BLOCK] >= SMALL_EXPONENT).all()
    # Rates given as counts of cells (uint8) times one cell's rate read as those products in the ECM's type.
    counts = np.round(np.abs(rate) * 3).astype(np.uint8)
    assert counts.max() > 1
    one = 0.09
    got, want, products = w.copy(), w.copy(), (dtype(one) * counts.astype(dtype))
    getattr(degrade_exponential, build)(got, m, counts, 0.09, 0.1, False, one)
    degrade_exponential_reference(want, m, products, 0.09, 0.1)
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
    assert (got != w)[counts > 0].any()


def _below_floor(u: np.ndarray) -> int:
    """How many values are non-zero with a magnitude below the floor."""
    return int(np.count_nonzero((u != 0) & (np.abs(u) < FIELD_FLOOR)))


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_spreading_front_leaves_zeros_not_values_below_the_floor(dtype, build):
    # A unit source at one end of a row: after k sub-steps the point k away holds about r**k, which
    # falls below the floor (and, in float32, towards the subnormals) near the front. Those points
    # must hold +0 in both the kernel and its NumPy twin, bit for bit, and every value above the
    # floor is kept.
    u = np.zeros((1, 3, 64), dtype)
    u[:, :, 0] = 1.0
    out = np.empty_like(u)
    ref = u.copy()
    r = 0.2
    for _ in range(60):
        getattr(diffuse_decay_steps, build)(u, out, r, 0.999, 1, 1)
        ref = diffuse_decay_step_numpy(ref, r, 0.999)
        np.testing.assert_array_equal(out.view(np.uint8), ref.view(np.uint8))
        assert _below_floor(out) == 0
        u, out = out, u
    # Without the floor the 60 sub-steps reach x = 60 (about r**60 = 1e-42 there); the floor stops
    # the front earlier, and what is left of it is unchanged.
    reach = int(np.count_nonzero(u[0, 0]))
    assert 40 < reach < 61
    assert (u[0, 0, :reach] >= FIELD_FLOOR).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_inplace_stores_values_below_the_floor_as_positive_zero(dtype):
    u = np.array([1e-29, 3e-30, 1.0, np.nan, -1e-31, 0.0, np.inf], dtype)
    scale_inplace(u, 0.1)
    want = np.array([dtype(1e-29) * dtype(0.1), 0.0, dtype(0.1), np.nan, 0.0, 0.0, np.inf], dtype)
    assert want[0] >= FIELD_FLOOR
    np.testing.assert_array_equal(u.view(np.uint8), want.view(np.uint8))  # (+0, not -0, for -1e-32)


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_degraded_ecm_reaches_zero_through_the_floor_in_both_branches(dtype, build):
    # ECM at 1e-29 degraded by cells whose exponent takes the polynomial (x = 0.0055) or exp
    # (x = 0.055): it must step from values above the floor to exactly 0, never holding a value
    # below the floor, in both branches and with the reference's bits at every step.
    n = 2 * DEGRADE_BLOCK
    w = np.full(n, 1e-29, dtype)
    m = np.zeros(n, dtype)
    rate = np.where(np.arange(n) < DEGRADE_BLOCK, 0.5, 5.0)
    dt = 0.0111
    assert rate[0] * dt < SMALL_EXPONENT <= rate[-1] * dt
    want = w.copy()
    for _ in range(600):
        getattr(degrade_exponential, build)(w, m, rate, 0.09, dt)
        degrade_exponential_reference(want, m, rate, 0.09, dt)
        np.testing.assert_array_equal(w.view(np.uint8), want.view(np.uint8))
        assert _below_floor(w) == 0
    # Without the floor, w would be 1e-29 exp(-3.3) = 3.7e-31 in the first block after 600 steps.
    assert not w.any()


def test_clear_points_undoes_a_scatter():
    rate = np.zeros(50)
    c = _cells(30, 50, 9)
    scatter_add(30, c["pos"], c["clone"], c["phen"], c["state"], c["flags"], np.full((3, 2), 0.09), rate)
    assert rate.any()
    clear_points(30, c["pos"], rate)
    assert not rate.any()


# -- cell kernels --------------------------------------------------------------------------------


def _cells(n: int, n_points: int, seed: int):
    rng = np.random.default_rng(seed)
    uid = rng.permutation(10 * n)[:n].astype(np.int64)
    return {
        "uid": uid,
        "pos": rng.integers(0, n_points, n).astype(np.int32),
        "clone": rng.integers(0, 3, n).astype(np.int16),
        "phen": rng.integers(0, 2, n).astype(np.int8),
        "flags": np.where(rng.random(n) < 0.1, DEAD, 0).astype(np.uint8),
        # mostly active (0), some arrested (1) and dormant (2)
        "state": rng.choice(np.array([0, 1, 2], np.uint8), n, p=[0.8, 0.1, 0.1]),
    }


@pytest.mark.parametrize("n", [5000, PARALLEL_MIN_ITEMS + 77])  # (from PARALLEL_MIN_ITEMS: screened first)
@pytest.mark.parametrize("build", ["serial", "parallel"])
def test_bernoulli_flag_matches_twin(n, build):
    c = _cells(n, 100, 1)
    p = np.random.default_rng(11).uniform(0, 1, (3, 3, 2)) ** 3
    flags = c["flags"].copy()
    kernel = getattr(bernoulli_flag, build)
    hits = kernel(n, c["uid"], c["clone"], c["phen"], c["state"], p, KEY, STREAM, STEP, flags, np.uint8(2),
                  c["pos"], np.zeros(0), np.empty(n, np.uint8))
    live = (c["flags"] & DEAD) == 0
    expect_hit = live & (_draws(c["uid"]) < p[c["state"], c["clone"], c["phen"]])
    np.testing.assert_array_equal((flags & 2) != 0, expect_hit)
    np.testing.assert_array_equal(flags & DEAD, c["flags"] & DEAD)
    assert hits == expect_hit.sum()


def test_switch_phenotype_matches_twin():
    n = 5000
    c = _cells(n, 100, 2)
    p_emt = np.array([0.2, 0.0, 0.9])
    p_met = np.array([0.5, 0.1, 0.0])
    phen = c["phen"].copy()
    switched = np.full(n, 7, np.uint8)
    k = switch_phenotype(n, c["uid"], c["clone"], phen, c["state"], c["flags"], p_emt, p_met, KEY,
                         STREAM, STEP, switched)
    live = ((c["flags"] & DEAD) == 0) & (c["state"] == 0)
    u = _draws(c["uid"])
    p = np.where(c["phen"] == 0, p_emt[c["clone"]], p_met[c["clone"]])
    expect = live & (u < p)
    np.testing.assert_array_equal(switched, expect.astype(np.uint8))
    assert k == expect.sum() and 0 < k < live.sum()
    np.testing.assert_array_equal(phen, np.where(expect, 1 - c["phen"], c["phen"]))


@pytest.mark.parametrize("m", [0, 1, 7, 8, 9, 40_401])
def test_largest_is_a_running_maximum_from_zero_bit_for_bit(m):
    # Eight running maxima give the single one's value for any length (whole lanes and a tail), with the
    # largest value anywhere (first, last, in the tail), NaNs among the values, and nothing above 0.
    rng = np.random.default_rng(m)

    def running(values):
        top = 0.0
        for v in values:
            if v > top:
                top = v
        return top

    cases = [rng.uniform(-1.0, 1.0, m), -rng.uniform(0.0, 1.0, m), np.full(m, -0.0)]
    if m:
        for at in {0, m - 1, m // 2}:
            x = rng.uniform(0.0, 0.5, m)
            x[at] = 0.75
            x[rng.integers(0, m, 1 + m // 10)] = np.nan
            x[at] = 0.75
            cases.append(x)
    for x in cases:
        got = largest(x)
        assert np.float64(got).tobytes() == np.float64(running(x)).tobytes()
    if m:
        assert largest(cases[-1]) == 0.75 and largest(cases[1]) == 0.0


def test_listed_near_lists_the_live_active_cells_not_leaving_on_marked_points_in_order():
    n = 4000
    c = _cells(n, 60, 21)
    rng = np.random.default_rng(21)
    near = np.where(rng.random(60) < 0.3, rng.integers(0, 60, 60), -1).astype(np.int64)
    leaving = rng.random(n) < 0.2
    out = np.full(n + 3, -7, np.int64)
    k = listed_near(n - 1, c["pos"], c["state"], c["flags"], leaving, near, out)  # (the last cell not asked)
    m = n - 1
    expect = np.flatnonzero((near[c["pos"][:m]] >= 0) & ~leaving[:m] & (c["state"][:m] == 0)
                            & ((c["flags"][:m] & DEAD) == 0))
    np.testing.assert_array_equal(out[:k], expect)
    assert (out[k:] == -7).all() and 0 < k < m
    # Every condition turned some cell away.
    on = near[c["pos"][:m]] >= 0
    assert (on & leaving[:m]).any() and (on & (c["state"][:m] != 0)).any()
    assert (on & (c["flags"][:m] != 0)).any()


def test_advance_cycle_and_scatter_add_match_twins():
    n = 3000
    c = _cells(n, 50, 3)
    rng = np.random.default_rng(5)
    cycle = rng.uniform(-0.05, 1.0, n).astype(np.float32)
    met = rng.integers(-1, 4, n).astype(np.int32)
    room = np.array([5, 0, 3, -1], np.int64)  # metastases 1 and 3 have no room left
    cycles = ((c["flags"] & DEAD) == 0) & (c["state"] == 0) & ~((met >= 0) & (room[met] <= 0))
    expect_cycle = np.where(cycles, (cycle - 0.1).astype(np.float32), cycle)
    due = advance_cycle(n, cycle, c["state"], met, c["flags"], room, 0.1, c["pos"], np.zeros(0))
    np.testing.assert_allclose(cycle, expect_cycle, rtol=0, atol=1e-7)
    assert due == int(((expect_cycle <= 0) & cycles).sum())
    table = rng.uniform(0, 1, (3, 2))
    out = np.zeros(50)
    scatter_add(n, c["pos"], c["clone"], c["phen"], c["state"], c["flags"], table, out)
    live = ((c["flags"] & DEAD) == 0) & (c["state"] != 1)  # arrested cells are inside capillaries
    expect = np.zeros(50)
    np.add.at(expect, c["pos"][live], table[c["clone"][live], c["phen"][live]])
    assert maxrelerr(out, expect) < 1e-12


def test_scatter_add_with_one_clone_reads_the_table_row_by_phenotype():
    # A one-row table takes a loop that does not read the clones: every cell must still add its phenotype's
    # entry (the clones here are all 0, as with one clone; phenotypes and states are mixed).
    n = 3000
    c = _cells(n, 50, 1)
    c["clone"][:] = 0
    table = np.array([[0.25, 3.0]])
    out = np.zeros(50)
    scatter_add(n, c["pos"], c["clone"], c["phen"], c["state"], c["flags"], table, out)
    live = ((c["flags"] & DEAD) == 0) & (c["state"] != 1)
    expect = np.zeros(50)
    np.add.at(expect, c["pos"][live], table[0, c["phen"][live]])
    np.testing.assert_array_equal(out, expect)  # (both add in cell order)
    assert 0 < (live & (c["phen"] == 0)).sum() < live.sum()


def _tallied(c, n_points):
    """Cells and mesenchymal cells per point, as a site keeps them (``occ``, ``mes_occ``)."""
    occ = np.bincount(c["pos"], minlength=n_points).astype(np.uint8)
    return occ, np.bincount(c["pos"][c["phen"] == 1], minlength=n_points).astype(np.uint8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scatter_add_from_the_counts_adds_what_the_cells_add(dtype):
    # From one cell per TALLY_POINTS_PER_CELL points on, a one-clone table is added from the per-point counts.
    # With entries exact in the output's type (dyadic, and sums of at most 255 of them) every sum is exact
    # both ways, so the two ways must agree to the bit; the output already holds values, which both add to.
    from metacoop.kernels.cells import TALLY_POINTS_PER_CELL, add_by_tally

    n_points = 400
    n = n_points // TALLY_POINTS_PER_CELL + 1
    c = _cells(n, n_points, 4)
    c["clone"][:], c["flags"][:], c["state"][:] = 0, 0, 0  # (none dead, none arrested)
    occ, mes = _tallied(c, n_points)
    assert occ.max() > 1 and 0 < mes.sum() < n
    table = np.array([[0.375, 2.0**-9]])
    start = np.random.default_rng(2).integers(0, 8, n_points).astype(dtype) / 4
    cells, counts, direct = start.copy(), start.copy(), start.copy()
    scatter_add(n, c["pos"], c["clone"], c["phen"], c["state"], c["flags"], table, cells)
    scatter_add(n, c["pos"], c["clone"], c["phen"], c["state"], c["flags"], table, counts, occ, mes)
    add_by_tally(occ, mes, table, direct)
    np.testing.assert_array_equal(counts, cells)
    np.testing.assert_array_equal(direct, cells)
    # With generic entries the counts make one product where the cells make k sums: within rounding.
    table = np.array([[0.0, 0.01755]])
    cells, counts = np.zeros(n_points, dtype), np.zeros(n_points, dtype)
    scatter_add(n, c["pos"], c["clone"], c["phen"], c["state"], c["flags"], table, cells)
    scatter_add(n, c["pos"], c["clone"], c["phen"], c["state"], c["flags"], table, counts, occ, mes)
    np.testing.assert_allclose(counts, cells, rtol=4 * np.finfo(dtype).eps, atol=0)
    assert (counts[mes == 0] == 0).all() and (counts[mes > 0] > 0).all()


@pytest.mark.parametrize("skip", ["dead", "arrested", "few", "clones"])
def test_scatter_add_takes_the_cells_where_the_counts_would_be_wrong_or_slower(skip):
    # The counts hold every cell at a point: with a dead or an arrested cell (which scatter_add skips), with
    # several clones (the counts hold no clone) or with few cells (slower), the cells are added one by one.
    # Counts made wrong on purpose show which way was taken.
    from metacoop.kernels.cells import TALLY_POINTS_PER_CELL

    n_points = 400
    n = n_points // TALLY_POINTS_PER_CELL + (-1 if skip == "few" else 1)
    c = _cells(n, n_points, 5)
    c["clone"][:], c["flags"][:], c["state"][:] = 0, 0, 0
    table = np.array([[0.5, 0.25]])
    if skip == "dead":
        c["flags"][7] = DEAD
    elif skip == "arrested":
        c["state"][7] = 1
    elif skip == "clones":
        c["clone"][7] = 1
        table = np.array([[0.5, 0.25], [1.0, 2.0]])
    live = ((c["flags"] & DEAD) == 0) & (c["state"] != 1)
    expect = np.zeros(n_points)
    np.add.at(expect, c["pos"][live], table[c["clone"][live], c["phen"][live]])
    wrong = np.zeros(n_points, np.uint8), np.zeros(n_points, np.uint8)  # (no cell anywhere)
    out = np.zeros(n_points)
    scatter_add(n, c["pos"], c["clone"], c["phen"], c["state"], c["flags"], table, out, *wrong)
    np.testing.assert_array_equal(out, expect)
    assert expect.any()


def _scattered_cells(n: int, seed: int, rows: int, skipped: str | None) -> dict[str, np.ndarray]:
    """Cells on 50 points for the scatter tests: none dead or arrested (dormant ones instead) but, with
    ``skipped``, the last one; all of clone 0 for a one-row table."""
    c = _cells(n, 50, seed)
    c["flags"][:] = 0
    c["state"][:] = np.where(c["state"] == 1, 2, c["state"])  # dormant cells still add
    if rows == 1:
        c["clone"][:] = 0
    if skipped == "dead":
        c["flags"][-1] = DEAD
    elif skipped == "arrested":
        c["state"][-1] = 1
    return c


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("skipped", [None, "dead", "arrested"])
def test_scatter_add_without_cells_to_skip_adds_every_cell_and_with_one_skips_only_it(rows, skipped):
    # Where no cell is dead or arrested the adding loop reads neither flags nor states; one such cell
    # anywhere (here the last) sends the call through the loop that tests every cell.
    n = 3000
    c = _scattered_cells(n, 7, rows, skipped)
    table = np.random.default_rng(2).uniform(0, 1, (rows, 2))
    out = np.zeros(50)
    scatter_add(n, c["pos"], c["clone"], c["phen"], c["state"], c["flags"], table, out)
    adds = n - (skipped is not None)
    expect = np.zeros(50)
    np.add.at(expect, c["pos"][:adds], table[c["clone"][:adds], c["phen"][:adds]])
    np.testing.assert_array_equal(out, expect)  # (both add in cell order)
    assert (c["state"] == 2).any()


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("skipped", [None, "dead", "arrested"])
@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_scatter_add_by_points_adds_in_cell_order_whatever_the_parts(parts, skipped, rows):
    # Each part owns a range of points and adds its cells in cell order, so every point's sum is
    # that of the serial loop, bit for bit (60 cells per point on average: the order shows), through
    # each of its loops: no cell to skip with one clone or several, or one cell to skip (the last).
    from metacoop.kernels.cells import scatter_add_by_points, scatter_add_serial

    n = 3000
    c = _scattered_cells(n, 4, rows, skipped)
    table = np.random.default_rng(6).uniform(0, 1, (3, 2)) * 10.0 ** np.arange(-3, 3).reshape(3, 2)
    table = np.ascontiguousarray(table[:rows])
    serial, split = np.full(50, 0.1), np.full(50, 0.1)
    scatter_add_serial(n, c["pos"], c["clone"], c["phen"], c["state"], c["flags"], table, serial)
    scatter_add_by_points(n, c["pos"], c["clone"], c["phen"], c["state"], c["flags"], table, split, parts)
    np.testing.assert_array_equal(split, serial)
    # Told whether a cell is to be skipped (as scatter_add tells them once it has looked), both add the same.
    known = int(skipped is not None)
    for build, extra in ((scatter_add_serial, ()), (scatter_add_by_points, (parts,))):
        told = np.full(50, 0.1)
        build(n, c["pos"], c["clone"], c["phen"], c["state"], c["flags"], table, told, *extra, known)
        np.testing.assert_array_equal(told, serial)
    shuffled = np.random.default_rng(7).permutation(n)
    other = np.full(50, 0.1)
    cols = [c[k][shuffled] for k in ("pos", "clone", "phen", "state", "flags")]
    scatter_add_serial(n, *cols, table, other)
    assert not np.array_equal(other, serial)  # (the test can tell a different order)


@pytest.mark.parametrize("upwind", [True, False], ids=["upwind", "central"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_decide_moves_matches_twin(ndim, upwind):
    dims = (1, 9, 11) if ndim == 2 else (5, 6, 7)
    n_points = int(np.prod(dims))
    n = 4000
    c = _cells(n, n_points, 10 + ndim)
    rng = np.random.default_rng(6)
    ecm = rng.uniform(0.0, 1.0, n_points)
    # Large enough that most cells move; central needs p_hapt <= 4 p_diff to stay non-negative.
    p_diff = np.array([[0.05, 0.08], [0.0, 0.1], [0.06, 0.0]])
    p_hapt = np.array([[0.15, 0.08], [0.0, 0.2], [0.2, 0.0]]) if upwind else np.minimum(
        4 * p_diff, np.array([[0.15, 0.08], [0.0, 0.2], [0.2, 0.0]]))
    target = np.full(n, -7, np.int64)
    flags_before = c["flags"].copy()
    k = decide_moves(n, c["uid"], c["pos"], c["clone"], c["phen"], c["state"], c["flags"], p_diff, p_hapt,
                     ecm, np.asarray(dims, np.int64), ndim, upwind, KEY, STREAM, STEP, target,
                     None, None, None, None, np.empty(n_points), np.empty(n, np.uint8),  # (no modifiers)
                     *mover_lists(n))
    expect = decide_moves_twin(c, _draws(c["uid"]), p_diff, p_hapt, ecm, dims, ndim, upwind)
    np.testing.assert_array_equal(chosen_moves(c["flags"], target), expect)
    np.testing.assert_array_equal(c["flags"], flags_before)  # only MOVING was set
    assert (target[expect < 0] == -7).all()  # stayers' targets untouched
    assert k == (expect >= 0).sum()
    assert n // 20 < k < n - n // 20  # the comparison exercised both moving and staying


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("boosted", [False, True], ids=["plain", "boost"])
def test_decide_moves_screens_the_bounds_at_parallel_sizes_as_the_twin_decides(build, boosted):
    # From PARALLEL_MIN_ITEMS cells on (without cues) a branch-free pass marks the cells whose draw
    # is below their bound before any is visited; either build must still decide as the twin. The
    # cells are packed (several per point), so the bound is taken and stops most of them.
    dims = (1, 120, 110)
    n_points = int(np.prod(dims))
    n = PARALLEL_MIN_ITEMS + 3001
    c = _cells(n, n_points, 17)
    rng = np.random.default_rng(18)
    ecm = rng.uniform(0.0, 1.0, n_points) ** 3
    p_diff = np.array([[0.01, 0.02], [0.0, 0.03], [0.02, 0.0]])
    p_hapt = np.array([[0.05, 0.02], [0.0, 0.04], [0.03, 0.0]])
    boost = rng.uniform(0.5, 1.5, n_points) if boosted else None
    target = np.full(n, -7, np.int64)
    slots, counts = mover_lists(n)
    k = getattr(decide_moves, build)(
        n, c["uid"], c["pos"], c["clone"], c["phen"], c["state"], c["flags"], p_diff, p_hapt, ecm,
        np.asarray(dims, np.int64), 2, True, KEY, STREAM, STEP, target, boost, None, None, None,
        np.empty(n_points), np.empty(n, np.uint8), slots, counts)
    expect = decide_moves_twin(c, _draws(c["uid"]), p_diff, p_hapt, ecm, dims, 2, True, boost)
    # It listed its movers block by block, in slot order, each with its destination beside it; no flag.
    assert lists_movers(n, n_points, False)
    at = np.concatenate([np.arange(b * LIST_BLOCK, b * LIST_BLOCK + counts[b]) for b in range(counts.size)])
    np.testing.assert_array_equal(slots[at], np.flatnonzero(expect >= 0))
    np.testing.assert_array_equal(target[at], expect[expect >= 0])
    assert not (c["flags"] & MOVING).any()
    assert k == (expect >= 0).sum() > n // 50


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("share", [0.5, 0.01])
@pytest.mark.parametrize("bit", [MOVING, DEAD])
@pytest.mark.parametrize("n", [3 * LIST_BLOCK + 13, 2 * LIST_BLOCK, 13])  # a tail after whole words / none
def test_list_flagged_lists_flatnonzero_block_by_block(build, share, bit, n):
    rng = np.random.default_rng(33)
    flags = rng.integers(0, 256, n).astype(np.uint8) & ~np.uint8(bit)
    flags[rng.random(n) < share] |= bit
    slots, counts = np.full(n, -1, np.int64), np.empty(list_blocks(n), np.int64)
    total = getattr(list_flagged, build)(n, flags, bit, slots, counts)
    got = np.concatenate([slots[b * LIST_BLOCK : b * LIST_BLOCK + counts[b]] for b in range(counts.size)])
    np.testing.assert_array_equal(got, np.flatnonzero(flags & bit))
    assert total == got.size
    assert counts.size == list_blocks(n) and (counts[: n // LIST_BLOCK] > 0).all()


@pytest.mark.parametrize("moving", [0.5, 0.02])  # most words of eight flags hold a mover / few do
@pytest.mark.parametrize("size", [2000, 3 * LIST_BLOCK + 5000])  # one block / several, listed on threads
def test_apply_moves_matches_twin(moving, size):
    n, n_points, cap = size, size // 5, 3
    rng = np.random.default_rng(8)
    pos = rng.integers(0, n_points, n).astype(np.int32)
    occ = np.zeros(n_points, np.uint8)
    # Respect the capacity at the start.
    for i in range(n):
        if occ[pos[i]] >= cap:
            pos[i] = -1
        else:
            occ[pos[i]] += 1
    keep = pos >= 0
    pos = pos[keep]
    n = pos.size
    phen = rng.integers(0, 2, n).astype(np.int8)
    mes = np.bincount(pos[phen == 1], minlength=n_points).astype(np.uint8)
    target = np.where(rng.random(n) < moving, rng.integers(0, n_points, n), -1).astype(np.int64)
    flags = np.where(target >= 0, MOVING, 0).astype(np.uint8) | rng.integers(0, 2, n).astype(np.uint8)
    flags_after = flags & ~MOVING
    target[target < 0] = n_points + 5  # a stayer's target is never read
    moved_ref = 0
    pos_ref, occ_ref = pos.copy(), occ.copy()
    for i in range(n):
        t = target[i]
        if flags[i] & MOVING and occ_ref[t] < cap:
            occ_ref[pos_ref[i]] -= 1
            occ_ref[t] += 1
            pos_ref[i] = t
            moved_ref += 1
    mes_ref = np.bincount(pos_ref[phen == 1], minlength=n_points)  # (mesenchymal cells follow their moves)
    # The same moves listed block by block with their destinations beside them (as decide_moves lists them).
    slots, counts = mover_lists(n)
    dest = np.empty(n, np.int64)
    for b in range(counts.size):
        movers = np.flatnonzero(flags[b * LIST_BLOCK : (b + 1) * LIST_BLOCK] & MOVING) + b * LIST_BLOCK
        at = slice(b * LIST_BLOCK, b * LIST_BLOCK + movers.size)
        slots[at], dest[at], counts[b] = movers, target[movers], movers.size
    pos_to, occ_to, mes_to = pos.copy(), occ.copy(), mes.copy()
    flags_to = flags.copy()
    assert apply_listed(pos_to, phen, dest, flags_to, occ_to, mes_to, cap, slots, counts, True) == moved_ref
    np.testing.assert_array_equal(flags_to, flags)  # (no flag touched)
    np.testing.assert_array_equal(pos_to, pos_ref)
    np.testing.assert_array_equal(occ_to, occ_ref)
    np.testing.assert_array_equal(mes_to, mes_ref)
    moved = apply_moves(n, pos, phen, target, flags, occ, mes, cap, np.empty(n, np.int64))
    np.testing.assert_array_equal(flags, flags_after)
    np.testing.assert_array_equal(pos, pos_ref)
    np.testing.assert_array_equal(occ, occ_ref)
    np.testing.assert_array_equal(mes, mes_ref)
    assert moved == moved_ref > 0
    assert occ.max() <= cap


@pytest.mark.parametrize("n_vessels", [COMPARED_POINTS, 24])  # cells found by comparisons / the vessel map
@pytest.mark.parametrize("build", ["serial", "parallel"])
def test_select_on_vessels_matches_twin(n_vessels, build):
    n, n_points = 4000, 60
    c = _cells(n, n_points, 9)
    rng = np.random.default_rng(9)
    vessel = np.zeros(n_points, np.int8)
    vessel[rng.permutation(n_points)[:n_vessels]] = rng.choice(np.array([1, 2, 3], np.int8), n_vessels)
    occupied = np.flatnonzero(vessel)  # (4,000 cells on 60 points: every point holds some)
    assert np.isin(occupied, c["pos"]).all()
    kernel = getattr(select_on_vessels, build)
    for p_enter in (0.3, 1.0):
        out = np.full(n, 9, np.uint8)
        k = kernel(n, c["uid"], c["pos"], c["phen"], c["state"], c["flags"], vessel, p_enter, KEY, STREAM,
                   STEP, out, np.zeros(0, np.uint8), occupied)
        v = vessel[c["pos"]]
        eligible = (((c["flags"] & DEAD) == 0) & (c["state"] == 0)
                    & ((v == 2) | (v == 3) | ((v == 1) & (c["phen"] == 1))))
        expect = eligible & ((p_enter >= 1.0) | (_draws(c["uid"]) < p_enter))
        np.testing.assert_array_equal(out, expect.astype(np.uint8))
        assert k == expect.sum() > 0
    # No occupied vessel point: no cell is marked (and marks left from before are cleared).
    assert kernel(n, c["uid"], c["pos"], c["phen"], c["state"], c["flags"], vessel, 1.0, KEY, STREAM, STEP,
                  out, np.zeros(0, np.uint8), np.zeros(0, np.int64)) == 0
    assert not out.any()


# -- thread-count independence ---------------------------------------------------------------------


def test_parallel_kernels_do_not_depend_on_thread_count():
    """The parallel build at 1 and at all threads, and the serial build, agree exactly.

    Every kernel that may take its parallel build below PARALLEL_MIN_ITEMS (chosen by timing, see
    metacoop.kernels.dispatch) is among them: the choice must change nothing but the speed.
    """
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs at least two numba threads")
    rng = np.random.default_rng(12)
    u = rng.uniform(0, 1, (9, 10, 11))
    n = 3000
    c = _cells(n, u.size, 12)
    ecm = rng.uniform(0, 1, u.size)
    p_diff = np.full((3, 2), 0.05)
    p_hapt = np.full((3, 2), 0.1)

    occ = rng.integers(0, 4, u.size).astype(np.uint8)
    mmp2, cell_rate = rng.uniform(0, 2, u.size), np.where(rng.random(u.size) < 0.3, 0.5, 0.0)
    previous = ecm + np.where(rng.random(u.size) < 0.001, -0.1, 0.1)  # a few points rose

    def run(build):
        out = np.empty_like(u)
        getattr(diffuse_decay_steps, build)(u, out, 0.15, 0.99, 1, 1)
        summed, deltas = u.copy(), out.copy()
        getattr(add_inplace, build)(summed, deltas)
        degraded = ecm.copy()
        getattr(degrade_exponential, build)(degraded, mmp2, cell_rate, 0.3, 0.1)
        room = np.empty(u.size, np.uint8)
        getattr(mark_room, build)(occ, 3, np.asarray(u.shape, np.int64), 3, room)
        seen = previous.copy()
        survey = np.array(getattr(ecm_survey, build)(ecm, ecm.view(np.int64), seen))
        target = np.empty(n, np.int64)
        getattr(decide_moves, build)(n, c["uid"], c["pos"], c["clone"], c["phen"], c["state"], c["flags"],
                                     p_diff, p_hapt, ecm, np.asarray(u.shape, np.int64), 3, True, KEY,
                                     STREAM, STEP, target, 1.0 + ecm, ecm[None, ::-1].copy(),
                                     np.full((1, 3, 2), 0.02), np.zeros(1, np.uint8), np.empty(u.size),
                                     np.empty(n, np.uint8), *mover_lists(n))
        return out, summed, deltas, degraded, room, seen, survey, chosen_moves(c["flags"], target)

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run("parallel")
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = run("parallel")
    finally:
        numba.set_num_threads(before)
    serial = run("serial")
    for a, b, s in zip(one, many, serial, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, s)



def _due(n, cycle, pos, room):
    """The due lists of ``n`` cells, as the proliferation mechanism makes them for :func:`divide`."""
    due, counts = np.empty(n, np.int64), np.empty(list_blocks(n), np.int64)
    list_due(n, cycle, pos, room, due, counts, np.empty(n, np.uint8))
    return due, counts


@pytest.mark.parametrize("dense", [False, True], ids=["two passes", "one pass"])
@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("with_room", [False, True], ids=["all", "room"])
@pytest.mark.parametrize("n", [3 * LIST_BLOCK + 5, 2 * LIST_BLOCK, 13])  # a tail after whole words / none
def test_list_due_lists_flatnonzero_block_by_block(build, with_room, n, dense):
    # Over several blocks (on several threads in the parallel build) the lists, read block by
    # block, are the due cells in slot order: cycle clock run out and, with a room map, room at
    # the cell's point; marked in two passes or (dense) in one.
    points = 500
    rng = np.random.default_rng(31)
    cycle = np.where(rng.random(n) < 0.4, -0.01, 1.0).astype(np.float32)
    pos = rng.integers(0, points, n).astype(np.int32)
    room = (rng.random(points) < 0.5).astype(np.uint8) if with_room else np.zeros(0, np.uint8)
    due, counts, marks = np.full(n, -1, np.int64), np.empty(list_blocks(n), np.int64), np.empty(n, np.uint8)
    getattr(mark_due, build)(n, cycle, pos, room, marks, dense)  # (what list_due runs, one build at a time)
    getattr(list_flagged, build)(n, marks, DUE, due, counts)
    got = np.concatenate([due[b * LIST_BLOCK : b * LIST_BLOCK + counts[b]] for b in range(counts.size)])
    want = (cycle <= 0.0) & (room[pos] != 0 if with_room else True)
    np.testing.assert_array_equal(got, np.flatnonzero(want))
    assert counts.size == list_blocks(n) and (counts[: n // LIST_BLOCK] > 0).all()


def test_divide_carries_the_overshoot_of_a_clock_that_ran_out_this_step():
    """Mother and daughter clocks start when the old clock ran out, not at the step's end.

    Cell 0's clock ran out 0.03 h before the end of this step (clock -0.03, dt 0.1): both new
    clocks are Gamma draws minus 0.03. Cell 1 waited for room for several steps (clock -0.5):
    its new cycles start now, with no carry.
    """
    dt = 0.1
    n = 2
    uid = np.array([10, 11, 0, 0], np.int64)
    pos = np.array([0, 8, 0, 0], np.int32)
    clone = np.zeros(4, np.int16)
    phen = np.zeros(4, np.int8)
    lineage = np.array([10, 11, 0, 0], np.int32)
    parent = np.full(4, -1, np.int64)
    met = np.full(4, -1, np.int32)
    birth = np.zeros(4, np.float32)
    cycle = np.array([-0.03, -0.5, 0, 0], np.float32)
    state = np.zeros(4, np.uint8)
    flags = np.zeros(4, np.uint8)
    occ = np.zeros(9, np.uint8)
    occ[[0, 8]] = 1
    mes = np.zeros(9, np.uint8)
    shape, scale = np.array([[16.0, 16.0]]), np.array([[0.7, 0.7]])
    due, counts = _due(n, cycle, pos, np.zeros(0, np.uint8))
    born = divide(n, uid, pos, clone, phen, lineage, parent, birth, cycle, state, met, flags,
                  np.zeros(0, np.int64), occ, mes, 4, np.array([1, 3, 3], np.int64), 2, shape, scale,
                  1.0, dt, 100, KEY, STREAM, STEP, due, counts)
    assert born == 2
    fresh = {u: gamma_variate(16.0, 0.7, KEY, STREAM, STEP, u, 1) for u in (10, 11, 100, 101)}
    np.testing.assert_allclose(cycle[:4], [fresh[10] - 0.03, fresh[11], fresh[100] - 0.03, fresh[101]],
                               rtol=1e-6)
    assert uid[2:].tolist() == [100, 101] and parent[2:].tolist() == [10, 11]


@pytest.mark.parametrize("ndim", [2, 3])
def test_mark_room_and_divide_with_the_room_map_change_nothing(ndim):
    # A crowded lattice where most cells are due: dividing with the room map gives the same
    # daughters, positions and clocks as dividing without it (the map only skips cells with
    # no room here or around, which the loop would have passed over).
    from metacoop.kernels.cells import mark_room

    rng = np.random.default_rng(7)
    dims = np.array([1, 12, 13] if ndim == 2 else [6, 7, 8], np.int64)
    points, capacity = int(np.prod(dims)), 2
    occ = rng.choice([capacity, capacity, capacity, 1, 0], size=points).astype(np.uint8)
    pos = np.repeat(np.arange(points), occ).astype(np.int32)
    n = pos.size
    room = np.zeros(points, np.uint8)
    mark_room(occ, capacity, dims, ndim, room)
    coords = np.array(np.unravel_index(np.arange(points), tuple(dims))).T
    nbrs = [np.flatnonzero(np.abs(coords - coords[p]).sum(axis=1) == 1) for p in range(points)]
    assert room.tolist() == [int(occ[p] < capacity or any(occ[q] < capacity for q in nbrs[p]))
                             for p in range(points)]

    def run(room_map):
        size = 2 * n
        arrays = dict(uid=np.zeros(size, np.int64), pos=np.zeros(size, np.int32),
                      clone=np.zeros(size, np.int16), phen=np.zeros(size, np.int8),
                      lineage=np.zeros(size, np.int32), parent=np.full(size, -1, np.int64),
                      birth=np.zeros(size, np.float32),
                      cycle=np.zeros(size, np.float32), state=np.zeros(size, np.uint8),
                      flags=np.zeros(size, np.uint8), met=np.full(size, -1, np.int32))
        arrays["uid"][:n] = np.arange(n)
        arrays["pos"][:n] = pos
        arrays["phen"][:n] = rng_phen
        arrays["cycle"][:n] = rng_cycle
        o = occ.copy()
        m = np.bincount(pos[rng_phen == 1], minlength=points).astype(np.uint8)
        due, counts = _due(n, arrays["cycle"], arrays["pos"], room_map)
        born = divide(n, arrays["uid"], arrays["pos"], arrays["clone"], arrays["phen"], arrays["lineage"],
                      arrays["parent"], arrays["birth"], arrays["cycle"], arrays["state"], arrays["met"],
                      arrays["flags"], np.zeros(0, np.int64), o, m, capacity, dims, ndim,
                      np.array([[4.0, 4.0]]), np.array([[5.0, 5.0]]), 1.0, 0.1, 1000, KEY, STREAM, STEP,
                      due, counts)
        after = {k: v[: n + born].copy() for k, v in arrays.items()}
        # The counts follow the daughters: every cell and every mesenchymal cell at its point.
        assert np.array_equal(o, np.bincount(after["pos"], minlength=points))
        assert np.array_equal(m, np.bincount(after["pos"][after["phen"] == 1], minlength=points))
        return born, o, after

    rng_cycle = np.where(rng.random(n) < 0.8, -0.05, 3.0).astype(np.float32)  # most cells due
    rng_phen = rng.integers(0, 2, n).astype(np.int8)
    born_a, occ_a, a = run(np.zeros(0, np.uint8))
    born_b, occ_b, b = run(room)
    assert born_a == born_b > 0 and np.array_equal(occ_a, occ_b)
    for k in a:
        assert np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("upwind", [True, False], ids=["upwind", "central"])
def test_decide_moves_with_few_cells_per_point_matches_twin(upwind):
    # Under one cell per BOUND_MIN_CELLS_PER_POINT points decide_moves skips the bound (and its pass
    # over the lattice) and looks at every cell's neighbours: the same rule either way.
    from metacoop.kernels.cells import BOUND_MIN_CELLS_PER_POINT

    dims, n = (1, 60, 70), 400
    assert n * BOUND_MIN_CELLS_PER_POINT < 60 * 70
    c = _cells(n, 60 * 70, 31)
    ecm = np.random.default_rng(9).uniform(0.0, 1.0, 60 * 70)
    p_diff = np.array([[0.05, 0.08], [0.0, 0.1], [0.06, 0.0]])
    p_hapt = np.minimum(4 * p_diff, 0.15)
    target = np.full(n, -7, np.int64)
    k = decide_moves(n, c["uid"], c["pos"], c["clone"], c["phen"], c["state"], c["flags"], p_diff, p_hapt,
                     ecm, np.asarray(dims, np.int64), 2, upwind, KEY, STREAM, STEP, target,
                     None, None, None, None, np.empty(60 * 70), np.empty(n, np.uint8), *mover_lists(n))
    expect = decide_moves_twin(c, _draws(c["uid"]), p_diff, p_hapt, ecm, dims, 2, upwind)
    np.testing.assert_array_equal(chosen_moves(c["flags"], target), expect)
    assert 0 < k == (expect >= 0).sum()
