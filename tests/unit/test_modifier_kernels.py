"""Modifier arguments of the cell kernels against plain-Python twins, compared exactly.

The cooperation mechanisms act on the cell rules only through the kernels' modifier
arguments (see :mod:`metacoop.core.modifiers`): a ``boost`` of the random motility and
climbing ``cues`` in ``decide_moves``, a ``speed`` of the cycle clock in ``advance_cycle``,
a ``doorway`` mask in ``select_on_vessels``, a hazard ``factor`` in ``bernoulli_flag``,
and the stromal agents' ``random_walk``. Each twin below is a direct transcription of the
rule in the kernel's docstring, evaluated in the same floating-point order, and uses the
same counter-based uniforms (``uniforms``, checked bit for bit in ``test_random.py``), so
the comparisons are exact: any difference is a different rule, not rounding.

The geometry helpers the mechanisms use (``Lattice.neighbours``, ``mark_near``) and
``hazard_scaled`` are checked against brute force and the closed form.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from helpers.twins import chosen_moves, decide_moves_twin, mover_lists, neighbours
from metacoop.core.field import Field
from metacoop.core.lattice import Lattice
from metacoop.core.modifiers import hazard_scaled, product_at, product_of, saturating_factor
from metacoop.kernels.cells import (
    DEAD,
    advance_cycle,
    bernoulli_flag,
    decide_moves,
    mark_near,
    random_walk,
    select_on_vessels,
)
from metacoop.kernels.random import uniforms

KEY, STREAM, STEP = np.uint64(0xD1B54A32D192ED03), 91, 17
NO_FACTOR = np.zeros(0, np.float64)
NO_MASK = np.zeros(0, np.uint8)


def _draws(uid: np.ndarray, stream: int = STREAM, step: int = STEP, k: int = 0) -> np.ndarray:
    return uniforms(KEY, stream, step, np.ascontiguousarray(uid, np.int64), k, np.empty(uid.size))


def _cells(n: int, n_points: int, seed: int, n_clones: int = 3) -> dict[str, np.ndarray]:
    """Random cells: 10 % flagged dead, 80 % active, 10 % arrested, 10 % dormant."""
    rng = np.random.default_rng(seed)
    return {
        "uid": rng.permutation(10 * n)[:n].astype(np.int64),
        "pos": rng.integers(0, n_points, n).astype(np.int32),
        "clone": rng.integers(0, n_clones, n).astype(np.int16),
        "phen": rng.integers(0, 2, n).astype(np.int8),
        "flags": np.where(rng.random(n) < 0.1, DEAD, 0).astype(np.uint8),
        "state": rng.choice(np.array([0, 1, 2], np.uint8), n, p=[0.8, 0.1, 0.1]),
    }


def _dims(ndim: int) -> tuple[int, int, int]:
    # Odd, unequal sizes so that an axis mix-up cannot go unnoticed.
    return (1, 9, 11) if ndim == 2 else (5, 6, 7)


# -- decide_moves: boost and cues -----------------------------------------------------------------


@pytest.mark.parametrize("n_cues", [1, 2])
@pytest.mark.parametrize("upwind", [True, False], ids=["upwind", "central"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_decide_moves_with_boost_and_cues_matches_twin(ndim, upwind, n_cues):
    dims = _dims(ndim)
    n_points = int(np.prod(dims))
    n = 4000
    c = _cells(n, n_points, 20 + ndim, n_clones=4)
    rng = np.random.default_rng(30 + ndim + 2 * n_cues)
    ecm = rng.uniform(0.0, 1.0, n_points)
    # Boost in [0, 2.5] with exact 1s (no change) and exact 0s (motility switched off) mixed in.
    boost = rng.uniform(0.0, 2.5, n_points)
    boost[rng.random(n_points) < 0.2] = 1.0
    boost[rng.random(n_points) < 0.1] = 0.0
    cues = rng.uniform(0.0, 1.0, (n_cues, n_points))
    # Clone 3 neither diffuses nor climbs the ECM: it moves only because of the cues (and not
    # at all as epithelial, whose sensitivity is 0 too). Clone 1 epithelial has no cue.
    p_diff = np.array([[0.02, 0.03], [0.0, 0.025], [0.03, 0.0], [0.0, 0.0]])
    p_hapt = np.array([[0.03, 0.02], [0.0, 0.03], [0.04, 0.0], [0.0, 0.0]])
    if not upwind:  # central needs p_hapt <= 4 p_diff to stay non-negative
        p_hapt = np.minimum(p_hapt, 4 * p_diff)
    cue_sens = rng.uniform(0.005, 0.03, (n_cues, 4, 2))
    cue_sens[:, 1, 0] = 0.0
    cue_sens[:, 3, 0] = 0.0
    level = np.zeros(n_cues, np.uint8)
    if n_cues == 2:
        cue_sens[1, 0, :] = 0.0  # one cue that a clone ignores while it climbs the other
        level[1] = 1  # and a level cue (tracks) beside a gradient cue
    # Every move probability stays a probability (the stability bound the config check enforces).
    assert (2 * ndim * (p_diff * boost.max() + p_hapt + cue_sens.sum(axis=0))).max() <= 1.0

    target = np.full(n, -7, np.int64)
    decide_moves(n, c["uid"], c["pos"], c["clone"], c["phen"], c["state"], c["flags"], p_diff, p_hapt,
                 ecm, np.asarray(dims, np.int64), ndim, upwind, KEY, STREAM, STEP, target, boost, cues,
                 cue_sens, level, np.empty(n_points), np.empty(n, np.uint8), *mover_lists(n))
    target = chosen_moves(c["flags"], target)
    k = int((target >= 0).sum())
    expect = decide_moves_twin(c, _draws(c["uid"]), p_diff, p_hapt, ecm, dims, ndim, upwind, boost, cues,
                               cue_sens, level)
    np.testing.assert_array_equal(target, expect)
    assert k == (expect >= 0).sum()
    assert n // 50 < k < n - n // 50  # both moving and staying were exercised

    # The modifiers mattered: without them (empty boost, no cue) the decisions differ, and cells
    # of clone 3 (no diffusion, no haptotaxis) moved only because of the cues.
    plain = np.empty(n, np.int64)
    decide_moves(n, c["uid"], c["pos"], c["clone"], c["phen"], c["state"], c["flags"], p_diff, p_hapt, ecm,
                 np.asarray(dims, np.int64), ndim, upwind, KEY, STREAM, STEP, plain, NO_FACTOR,
                 np.zeros((0, n_points)), np.zeros((0, 4, 2)), np.zeros(0, np.uint8), np.empty(n_points),
                 np.empty(n, np.uint8), *mover_lists(n))
    plain = chosen_moves(c["flags"], plain)
    assert (plain != target).sum() > n // 50
    cue_only = c["clone"] == 3
    assert (target[cue_only & (c["phen"] == 1)] >= 0).any()
    assert (target[cue_only & (c["phen"] == 0)] == -1).all()
    assert (plain[cue_only] == -1).all()


def test_decide_moves_unit_boost_and_zero_cues_change_nothing():
    """A boost of exactly 1 and cues of zero sensitivity give the unmodified decisions, bit for bit."""
    dims = _dims(3)
    n_points = int(np.prod(dims))
    n = 3000
    c = _cells(n, n_points, 41)
    rng = np.random.default_rng(41)
    ecm = rng.uniform(0.0, 1.0, n_points)
    p_diff = np.full((3, 2), 0.03)
    p_hapt = np.full((3, 2), 0.05)
    args = (n, c["uid"], c["pos"], c["clone"], c["phen"], c["state"], c["flags"], p_diff, p_hapt, ecm,
            np.asarray(dims, np.int64), 3, True, KEY, STREAM, STEP)
    plain, modified = np.empty(n, np.int64), np.empty(n, np.int64)
    decide_moves(*args, plain, NO_FACTOR, np.zeros((0, n_points)), np.zeros((0, 3, 2)), np.zeros(0, np.uint8),
                 np.empty(n_points), np.empty(n, np.uint8), *mover_lists(n))
    plain = chosen_moves(c["flags"], plain)
    decide_moves(*args, modified, np.ones(n_points), rng.uniform(0, 1, (2, n_points)), np.zeros((2, 3, 2)),
                 np.array([0, 1], np.uint8), np.empty(n_points), np.empty(n, np.uint8), *mover_lists(n))
    np.testing.assert_array_equal(chosen_moves(c["flags"], modified), plain)
    # and the version compiled without modifiers (None), the one movement runs when none are registered
    bare = np.empty(n, np.int64)
    decide_moves(*args, bare, None, None, None, None, np.empty(n_points), np.empty(n, np.uint8),
                 *mover_lists(n))
    np.testing.assert_array_equal(chosen_moves(c["flags"], bare), plain)
    assert (plain >= 0).any()


# -- advance_cycle: speed --------------------------------------------------------------------------


@pytest.mark.parametrize("metastases", [True, False], ids=["organ", "primary"])
def test_advance_cycle_with_speed_matches_twin(metastases):
    # In an organ (metastases, some without room) the kernel's loop has branches; in a primary site (no
    # metastases) it has none and tells a due clock from its stored value: the same clocks and count.
    n, n_points, dt = 3000, 50, 0.1
    c = _cells(n, n_points, 3)
    rng = np.random.default_rng(7)
    cycle = rng.uniform(-0.05, 0.5, n).astype(np.float32)
    if metastases:
        met = rng.integers(-1, 4, n).astype(np.int32)
        room = np.array([5, 0, 3, -1], np.int64)  # metastases 1 and 3 have no room: their clocks stop
    else:
        met, room = np.full(n, -1, np.int32), np.zeros(0, np.int64)
    speed = rng.uniform(0.0, 3.0, n_points)
    speed[::7] = 1.0
    speed[3::11] = 0.0  # a stopped clock
    if not metastases:
        # Clocks at float32's least subnormal whose float64 result is positive: 4e-46 rounds to 0 on the
        # store (due), 9e-46 to the least subnormal again (not due).
        cycle[:4] = np.float32(2.0**-149)
        c["pos"][:4] = [0, 0, 1, 1]
        c["flags"][:4], c["state"][:4] = 0, 0
        speed[:2] = [1e-44, 5e-45]
    cycles = ((c["flags"] & DEAD) == 0) & (c["state"] == 0)
    if metastases:
        cycles &= ~((met >= 0) & (room[met] <= 0))
    # float32 clock, float64 arithmetic, rounded once on the store (as the kernel's `-=`).
    expect = np.where(cycles, (cycle.astype(np.float64) - dt * speed[c["pos"]]).astype(np.float32), cycle)
    before = cycle.copy()
    due = advance_cycle(n, cycle, c["state"], met, c["flags"], room, dt, c["pos"], speed)
    np.testing.assert_array_equal(cycle, expect)
    assert due == int((cycles & (expect <= 0)).sum())
    # Exercised: sped-up, slowed and stopped clocks all occurred among cycling cells.
    s = speed[c["pos"]][cycles]
    assert (s > 1).any() and (0 < s).any() and (s < 1).any() and (s == 0).any()
    stopped = cycles & (speed[c["pos"]] == 0)
    np.testing.assert_array_equal(cycle[stopped], before[stopped])
    if not metastases:
        assert cycle[:4].tolist() == [0.0, 0.0, 2.0**-149, 2.0**-149]


def test_advance_cycle_unit_speed_is_no_speed():
    n, n_points = 2000, 40
    c = _cells(n, n_points, 4)
    rng = np.random.default_rng(4)
    cycle = rng.uniform(-0.05, 0.5, n).astype(np.float32)
    met = np.full(n, -1, np.int32)
    a, b = cycle.copy(), cycle.copy()
    da = advance_cycle(n, a, c["state"], met, c["flags"], np.zeros(0, np.int64), 0.07, c["pos"], NO_FACTOR)
    db = advance_cycle(n, b, c["state"], met, c["flags"], np.zeros(0, np.int64), 0.07, c["pos"],
                       np.ones(n_points))
    np.testing.assert_array_equal(a, b)
    assert da == db


# -- select_on_vessels: doorway ---------------------------------------------------------------------


@pytest.mark.parametrize("p_enter", [0.4, 1.0])
def test_select_on_vessels_with_doorway_matches_twin(p_enter):
    n, n_points = 5000, 80
    c = _cells(n, n_points, 9)
    rng = np.random.default_rng(19)
    vessel = rng.choice(np.array([0, 1, 2, 3], np.int8), n_points, p=[0.3, 0.4, 0.2, 0.1])
    doorway = (rng.random(n_points) < 0.5).astype(np.uint8)
    doorway[vessel == 0] = 1  # a doorway off any vessel opens nothing
    occupied = np.flatnonzero(vessel)  # (5,000 cells on 80 points: every point holds some)
    out = np.full(n, 9, np.uint8)
    k = select_on_vessels(n, c["uid"], c["pos"], c["phen"], c["state"], c["flags"], vessel, p_enter, KEY,
                          STREAM, STEP, out, doorway, occupied)
    v, door, mes = vessel[c["pos"]], doorway[c["pos"]] == 1, c["phen"] == 1
    live = ((c["flags"] & DEAD) == 0) & (c["state"] == 0)
    eligible = live & ((v == 2) | (v == 3) | ((v == 1) & (mes | door)))
    expect = eligible & ((p_enter >= 1.0) | (_draws(c["uid"]) < p_enter))
    np.testing.assert_array_equal(out.astype(bool), expect)
    assert k == expect.sum()
    # Epithelial cells entered normal vessel points, and only through doorways.
    epi_normal = out.astype(bool) & ~mes & (v == 1)
    assert epi_normal.any() and door[epi_normal].all()
    # Without doorways (empty mask or all zeros) no epithelial cell enters a normal point.
    for closed in (NO_MASK, np.zeros(n_points, np.uint8)):
        shut = np.empty(n, np.uint8)
        select_on_vessels(n, c["uid"], c["pos"], c["phen"], c["state"], c["flags"], vessel, p_enter, KEY,
                          STREAM, STEP, shut, closed, occupied)
        np.testing.assert_array_equal(shut.astype(bool), expect & ~(~mes & (v == 1)))


# -- bernoulli_flag: hazard factor -------------------------------------------------------------------


def _flag_twin(c, p_table, factor):
    """``p -> 1 - (1 - p)**f`` at the cell's point for cells that are not active; p as is otherwise."""
    u = _draws(c["uid"])
    hit = np.zeros(c["uid"].size, bool)
    for i in range(c["uid"].size):
        if c["flags"][i] & DEAD:
            continue
        p = p_table[c["state"][i], c["clone"][i], c["phen"][i]]
        if c["state"][i] != 0:
            f = factor[c["pos"][i]]
            if f == 0.0:
                p = 0.0  # 1 - (1 - p)**0, a certain event included
            elif f != 1.0 and p < 1.0:
                p = -math.expm1(f * math.log1p(-p))
        hit[i] = u[i] < p
    return hit


def test_bernoulli_flag_with_factor_matches_twin():
    n, n_points = 6000, 100
    c = _cells(n, n_points, 1)
    rng = np.random.default_rng(21)
    p = rng.uniform(0, 0.6, (3, 3, 2))
    p[1, 0, 1] = 1.0  # a certain event stays certain under any positive factor
    p[2, 1, 0] = 0.0
    factor = rng.uniform(0.0, 4.0, n_points)
    factor[::5] = 1.0
    factor[1::13] = 0.0
    flags = c["flags"].copy()
    hits = bernoulli_flag(n, c["uid"], c["clone"], c["phen"], c["state"], p, KEY, STREAM, STEP, flags,
                          np.uint8(4), c["pos"], factor, np.empty(n, np.uint8))
    expect = _flag_twin(c, p, factor)
    np.testing.assert_array_equal((flags & 4) != 0, expect)
    np.testing.assert_array_equal(flags & DEAD, c["flags"] & DEAD)  # other bits untouched
    assert hits == expect.sum()
    # Active cells ignore the factor; cells that are not active see it: compare with no factor.
    plain = c["flags"].copy()
    bernoulli_flag(n, c["uid"], c["clone"], c["phen"], c["state"], p, KEY, STREAM, STEP, plain, np.uint8(4),
                   c["pos"], NO_FACTOR, np.empty(n, np.uint8))
    active = c["state"] == 0
    np.testing.assert_array_equal(((flags & 4) != 0)[active], ((plain & 4) != 0)[active])
    assert (((flags & 4) != 0) != ((plain & 4) != 0))[~active].any()
    # The per-cell probability agrees with hazard_scaled (where p < 1), up to the last bit of
    # NumPy's expm1/log1p against the C library's (2 ulp).
    sel = (~active) & (p[c["state"], c["clone"], c["phen"]] < 1.0)
    pp = p[c["state"], c["clone"], c["phen"]][sel]
    ff = factor[c["pos"]][sel]
    twin = np.array([q if f == 1.0 else -math.expm1(f * math.log1p(-q)) for q, f in zip(pp, ff, strict=True)])
    np.testing.assert_allclose(hazard_scaled(pp, ff), twin, rtol=2 * np.finfo(float).eps, atol=0)


# hazard_scaled must not warn about the 0 * log1p(-1) intermediate of p = 1, f = 0.
IGNORE_NAN_WARNING = pytest.mark.filterwarnings("error:invalid value encountered in multiply:RuntimeWarning")


@IGNORE_NAN_WARNING
def test_bernoulli_flag_certain_event_with_zero_factor_agrees_with_hazard_scaled():
    # An arrested cell whose per-step probability is 1 (an infinite hazard) at a point whose
    # factor is 0. The documented rule 1 - (1 - p)**f gives 1 - 0**0 = 0, as hazard_scaled does.
    uid = np.array([5], np.int64)
    p = np.ones((3, 1, 1))
    flags = np.zeros(1, np.uint8)
    bernoulli_flag(1, uid, np.zeros(1, np.int16), np.zeros(1, np.int8), np.ones(1, np.uint8), p, KEY, STREAM,
                   STEP, flags, np.uint8(2), np.zeros(1, np.int32), np.zeros(1), np.empty(1, np.uint8))
    assert hazard_scaled(np.array([1.0]), np.array([0.0]))[0] == 0.0
    assert flags[0] & 2 == 0


# -- random_walk ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ndim", [2, 3])
def test_random_walk_matches_twin(ndim, dtype):
    # The walk climbs the receptor occupancy of a signal, which the kernel computes at the points it
    # looks at: the twin takes it from NumPy's expression over the whole lattice, in the signal's type.
    dims = _dims(ndim)
    n_points = int(np.prod(dims))
    n = 3000
    rng = np.random.default_rng(50 + ndim)
    uid = rng.permutation(5 * n)[:n].astype(np.int64)
    pos = rng.integers(0, n_points, n).astype(np.int32)
    signal = (rng.uniform(0.0, 3.0, n_points) * rng.choice([1e-3, 1.0], n_points)).astype(dtype)
    half = 0.3
    cue = signal / (half + signal)
    p_diff, p_chem = 0.04, 0.08
    assert 2 * ndim * (p_diff + p_chem) <= 1.0
    u = _draws(uid)
    expect = pos.astype(np.int64).copy()
    for i in range(n):
        p = int(pos[i])
        acc = 0.0
        for nb in neighbours(p, dims, ndim):
            if nb < 0:
                continue
            acc += p_diff + p_chem * max(0.0, cue[nb] - cue[p])
            if u[i] < acc:
                expect[i] = nb
                break
    start = pos.copy()
    dims_array = np.asarray(dims, np.int64)
    moved = random_walk(n, uid, pos, p_diff, p_chem, signal, half, dims_array, ndim, KEY, STREAM, STEP)
    np.testing.assert_array_equal(pos, expect)
    assert moved == (expect != start).sum()
    assert n // 20 < moved < n - n // 20
    # Chemotaxis: moves up the cue are more frequent than moves down it.
    up = (cue[pos] > cue[start]).sum()
    down = (cue[pos] < cue[start]).sum()
    assert up > down


# -- hazard_scaled ----------------------------------------------------------------------------------


def test_hazard_scaled_unit_factor_is_identity_bit_for_bit():
    rng = np.random.default_rng(2)
    # Values where -expm1(log1p(-p)) does not round-trip: tiny, large and arbitrary p.
    p = np.concatenate([rng.uniform(0, 1, 500), 10.0 ** -rng.uniform(5, 300, 200), [0.0, 1.0, 1 - 2**-53]])
    out = hazard_scaled(p, np.ones(p.size))
    assert out.tobytes() == p.tobytes()
    assert hazard_scaled(p, None) is p
    # Mixed: only points with a factor != 1 change.
    f = np.where(np.arange(p.size) % 3 == 0, 1.0, 2.0)
    mixed = hazard_scaled(p, f)
    assert mixed[f == 1.0].tobytes() == p[f == 1.0].tobytes()
    # The input is not modified in place.
    assert mixed is not p


def test_hazard_scaled_matches_closed_form():
    rng = np.random.default_rng(3)
    p = rng.uniform(1e-4, 0.999, 2000)
    f = rng.uniform(0.0, 5.0, 2000)
    out = hazard_scaled(p, f)
    # 1 - (1 - p)**f evaluated directly loses ~eps / (1 - (1-p)**f) relative precision;
    # with p >= 1e-4 and f >= 1e-3 (below, the value is ~f p) that is < 1e-8 relative.
    ok = f > 1e-3
    np.testing.assert_allclose(out[ok], 1.0 - (1.0 - p[ok]) ** f[ok], rtol=1e-8, atol=0)
    np.testing.assert_allclose(out[~ok], f[~ok] * -np.log1p(-p[~ok]), rtol=1e-2)
    # Composition: scaling by a then b is scaling by a * b (hazards multiply).
    a, b = f[:1000], f[1000:]
    np.testing.assert_allclose(hazard_scaled(hazard_scaled(p[:1000], a), b), hazard_scaled(p[:1000], a * b),
                               rtol=1e-9, atol=1e-15)
    # Factor 0 removes the hazard; probabilities stay in [0, 1] and increase with the factor.
    assert (hazard_scaled(p, np.zeros_like(p)) == 0).all()
    assert ((out >= 0) & (out <= 1)).all()
    lo, hi = hazard_scaled(p, f), hazard_scaled(p, f + 0.5)
    assert (hi >= lo).all()


@IGNORE_NAN_WARNING
def test_hazard_scaled_certain_and_impossible_events():
    f = np.array([0.5, 1.0, 2.0, 1e-300, 7.0])
    np.testing.assert_array_equal(hazard_scaled(np.ones(5), f), np.ones(5))  # p = 1 stays 1
    np.testing.assert_array_equal(hazard_scaled(np.zeros(5), f), np.zeros(5))  # p = 0 stays 0
    assert hazard_scaled(np.array([1.0]), np.array([0.0]))[0] == 0.0  # 1 - 0**0
    # A scalar probability broadcasts over the factor's points.
    out = hazard_scaled(0.2, np.array([1.0, 2.0, 0.0]))
    np.testing.assert_allclose(out, [0.2, 1 - 0.8**2, 0.0], rtol=1e-15)
    assert out[0] == 0.2


# -- Lattice.neighbours and mark_near --------------------------------------------------------------


LATTICES = [Lattice((11, 7), 10.0), Lattice((3, 3), 5.0), Lattice((6, 5, 4), 10.0), Lattice((3, 4, 3), 2.0)]


def _brute_neighbours(lat: Lattice, p: int) -> list[int]:
    """The 2 ndim von Neumann neighbours of ``p`` by coordinates, -1 past an edge."""
    nz, ny, nx = lat.dims
    x, y, z = p % nx, (p // nx) % ny, p // (nx * ny)
    out = []
    axes = 3 if lat.ndim == 3 else 2
    for axis in range(axes):
        for step in (-1, 1):
            q = [x, y, z]
            q[axis] += step
            inside = 0 <= q[0] < nx and 0 <= q[1] < ny and 0 <= q[2] < nz
            out.append(q[0] + nx * (q[1] + ny * q[2]) if inside else -1)
    return out


@pytest.mark.parametrize("lat", LATTICES, ids=lambda lat: "x".join(map(str, lat.shape)))
def test_lattice_neighbours_match_brute_force(lat):
    pts = np.arange(lat.n_points)
    nb = lat.neighbours(pts)
    assert nb.shape == (lat.n_points, 2 * lat.ndim)
    for p in pts:
        assert nb[p].tolist() == _brute_neighbours(lat, int(p)), p
    # And the kernels' neighbour order (the one the twins above use).
    for p in pts:
        assert nb[p].tolist() == neighbours(int(p), lat.dims, lat.ndim)
    # Any subset, in any order, with repeats.
    rng = np.random.default_rng(lat.n_points)
    sub = rng.integers(0, lat.n_points, 40)
    np.testing.assert_array_equal(lat.neighbours(sub), nb[sub])


@pytest.mark.parametrize("lat", LATTICES, ids=lambda lat: "x".join(map(str, lat.shape)))
def test_mark_near_marks_the_points_and_their_neighbours_where_the_code_is(lat):
    # Against brute force: sets of points from sparse to every point, none, each corner alone and
    # repeated points; with `keep` at the code everywhere (the von Neumann dilation itself) and at
    # random; whatever `out` held before.
    n = lat.n_points
    rng = np.random.default_rng(7 * n)
    masks = [rng.random(n) < q for q in (0.05, 0.2, 0.5)] + [np.zeros(n, bool), np.ones(n, bool)]
    for corner in itertools.product(*[(0, s - 1) for s in lat.shape]):
        m = np.zeros(n, bool)
        m[lat.flat(*corner)] = True
        masks.append(m)
    for mask in masks:
        dilated = mask.copy()
        for p in np.flatnonzero(mask):
            for q in _brute_neighbours(lat, int(p)):
                if q >= 0:
                    dilated[q] = True
        points = np.flatnonzero(mask).astype(np.int32)
        for keep in (np.ones(n, np.int8), rng.integers(0, 3, n).astype(np.int8)):
            want = (dilated & (keep == 1)).astype(np.uint8)
            for pts in (points, np.repeat(points, 2)[::-1].copy()):
                out = np.full(n, 7, np.uint8)
                got = mark_near(pts, lat.dims_array, lat.ndim, keep, 1, out)
                assert got is out
                np.testing.assert_array_equal(got, want)


def test_product_of_leaves_out_providers_of_exactly_1_and_keeps_their_order():
    # A provider returning None stands for a factor of 1 everywhere: the product is that of the
    # others, with their multiplications in the same order (so the same bits), and the first
    # provider's array is not written to; None when every provider gives None.
    rng = np.random.default_rng(3)
    a, b, c = rng.random(50), rng.random(50), rng.random(50).astype(np.float32)
    kept = a.copy()
    one = ("one", lambda ctx: None)
    assert product_of([one], None) is None and product_of([], None) is None
    assert product_of([one, ("a", lambda ctx: a), one], None) is a
    got = product_of([("a", lambda ctx: a), one, ("b", lambda ctx: b), one, ("c", lambda ctx: c)], None)
    want = a.copy()
    want *= b
    want *= c
    assert got.dtype == np.float64 and got.tobytes() == want.tobytes()
    np.testing.assert_array_equal(a, kept)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_product_at_gives_the_products_bits_at_the_points(dtype):
    # What arrest, extravasation and the angiogenic switch read: the factor at a few cells' points,
    # from saturating factors evaluated there alone, and any other provider indexed. The same bits
    # as the product over the lattice indexed at the points: repeated points, the last point, a
    # negative point (counted from the end, as NumPy indexes), and none.
    rng = np.random.default_rng(5)
    shape = (1, 13, 11)
    niche, cam = (Field(name, np.zeros(shape, dtype), np.zeros(shape, dtype)) for name in ("bmdc", "cam"))
    niche.values[:] = rng.random(shape) * 3
    cam.values[:] = rng.random(shape)
    cam.values.flat[:7] = 0.0
    other = rng.random(niche.values.size).astype(dtype)
    providers = [("niche", saturating_factor(niche, 0.4, 2.5)), ("one", lambda ctx: None),
                 ("cam", saturating_factor(cam, 0.15, -0.7)), ("other", lambda ctx: other)]
    n = niche.values.size
    whole = product_of(providers, None)
    for points in (np.array([3, 3, n - 1, 0, 5], np.int32), np.arange(n, dtype=np.int64),
                   np.array([-1, 2], np.int64), np.zeros(0, np.int32)):
        got = product_at(providers, None, points)
        assert got.dtype == np.float64 and got.tobytes() == whole[points].tobytes()
        for k in range(1, len(providers) + 1):  # every prefix, the first alone included
            want = product_of(providers[:k], None)[points]
            assert product_at(providers[:k], None, points).tobytes() == want.tobytes()
    assert product_at([("one", lambda ctx: None)], None, np.arange(3)) is None
    assert product_at([], None, np.arange(3)) is None
    # not vacuous: the gains moved the factor away from 1, both ways
    assert whole.max() > 1.5 and whole.min() < 0.5
