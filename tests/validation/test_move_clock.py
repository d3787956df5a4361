"""The event-driven movement clock against the step-by-step rule it replaces.

:mod:`metacoop.kernels.move_clock` claims to be exact: in every step each cell
moves to each neighbour with the probability of the step-by-step rule
(:func:`metacoop.kernels.cells.decide_moves`), also when those probabilities
change between steps, as long as the site's ceiling bounds them. The tests
count moves over many steps and compare them with the sum of the exact
per-step probabilities, within ``Z`` binomial standard deviations
(``sqrt(sum p (1 - p))``), for both clocks; and they check the parts of the
clock a plain rate test would not reach: the per-cell counts are binomial
(no cell moves at a clock of its own), gaps longer than the 16-bit clock holds
and its wrap-around, cells that stop and restart, a ceiling that rises during
a run, and the parallel build.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import metacoop
from helpers.twins import chosen_moves, mover_lists
from metacoop.kernels.cells import DEAD, apply_moves, decide_moves
from metacoop.kernels.move_clock import (
    CLOCKED,
    LEVEL_BITS,
    LEVEL_SHIFT,
    LOW_LEVELS,
    MAX_GAP,
    ROLL,
    MoveBounds,
    decide_moves_clocked,
    ecm_bits,
    ecm_range,
    move_bound,
)
from metacoop.mechanisms import REGISTRY
from metacoop.mechanisms.movement import EVENT_MAX_CEILING

pytestmark = pytest.mark.validation

Z = 4.0
KEY, STREAM = 7, 3


def neighbours(pos: np.ndarray, nx: int) -> np.ndarray:
    """(n, 4) neighbour points of interior 2-D points in the kernels' order -x +x -y +y."""
    p = pos.astype(np.int64)
    return np.stack([p - 1, p + 1, p - nx, p + nx], axis=1)


def exact_move_probabilities(pos, clone, phen, nx, p_diff, p_hapt, ecm) -> np.ndarray:
    """(n, 4) exact per-step probability of each move of cells at interior points (upwind rule)."""
    g = np.maximum(ecm[neighbours(pos, nx)] - ecm[pos][:, None], 0.0)
    return p_diff[clone, phen][:, None] + p_hapt[clone, phen][:, None] * g


class Cells:
    """``n`` cells of one clone on a 2-D lattice, at fixed points unless moves are applied."""

    def __init__(self, n: int, shape=(41, 41), seed: int = 0, mesenchymal: float = 0.5):
        rng = np.random.default_rng(seed)
        self.ny, self.nx = shape
        self.dims = np.array([1, self.ny, self.nx], np.int64)
        # Interior points only, so every cell has its four neighbours.
        xs = rng.integers(1, self.nx - 1, n)
        ys = rng.integers(1, self.ny - 1, n)
        self.n = n
        self.pos = (xs + self.nx * ys).astype(np.int32)
        self.uid = np.arange(n, dtype=np.int64) * 3 + 11
        self.clone = np.zeros(n, np.int16)
        self.phen = (rng.random(n) < mesenchymal).astype(np.int8)
        self.state = np.zeros(n, np.uint8)
        self.flags = np.zeros(n, np.uint8)
        self.wake = np.zeros(n, np.uint16)
        self.target = np.full(n, -1, np.int64)

    def neighbours(self) -> np.ndarray:
        """(n, 4) neighbour points in the kernels' order -x +x -y +y."""
        return neighbours(self.pos, self.nx)

    def probabilities(self, p_diff, p_hapt, ecm) -> np.ndarray:
        """(n, 4) exact per-step probability of each move (upwind rule)."""
        return exact_move_probabilities(self.pos, self.clone, self.phen, self.nx, p_diff, p_hapt, ecm)

    def clocked(self, step, p_diff, p_hapt, ecm, ceiling, ceiling_low=0.0) -> np.ndarray:
        """One step of the event clock; returns (n,) the wanted direction 0..3 or -1, moves not applied."""
        decide_moves_clocked(self.n, self.uid, self.pos, self.clone, self.phen, self.state, self.flags,
                             self.wake, p_diff, p_hapt, ecm, self.dims, 2, True, KEY, STREAM, step,
                             self.target, None, None, None, None, ceiling, ceiling_low,
                             float(np.abs(p_hapt).max()), LOW_LEVELS, np.empty(self.n, np.uint8),
                             np.empty(self.n, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.uint8), 0,
                             False)
        return self._direction(chosen_moves(self.flags, self.target))

    def stepwise(self, step, p_diff, p_hapt, ecm) -> np.ndarray:
        """One step of the step-by-step rule; same return as :meth:`clocked`."""
        decide_moves(self.n, self.uid, self.pos, self.clone, self.phen, self.state, self.flags, p_diff,
                     p_hapt, ecm, self.dims, 2, True, KEY, STREAM, step, self.target, None, None, None, None,
                     np.empty(ecm.size), np.empty(self.n, np.uint8), *mover_lists(self.n))
        return self._direction(chosen_moves(self.flags, self.target))

    def _direction(self, target: np.ndarray) -> np.ndarray:
        d = np.full(self.n, -1)
        for k, nb in enumerate(self.neighbours().T):
            d[target == nb] = k
        return d


def tables(d_epi: float, d_mes: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    return np.array([[d_epi, d_mes]]), np.array([[h, h]])


def assert_counts(got: np.ndarray, p_sum: np.ndarray, var_sum: np.ndarray, what: str) -> None:
    """Every count within Z binomial standard deviations of its expectation."""
    z = (got - p_sum) / np.sqrt(var_sum)
    assert np.all(np.abs(z) < Z), f"{what}: {got.tolist()} against {p_sum.round(1).tolist()}: z {z.round(2)}"


@pytest.mark.parametrize("clock", ["event", "step"])
def test_moves_follow_the_step_probabilities_while_the_ecm_changes(clock):
    # 2000 cells at fixed points; the ECM is redrawn every step (so each cell's probabilities
    # change every step, up to the ceiling). Moves per phenotype and direction against the sum of
    # the exact per-step probabilities.
    cells = Cells(2000, seed=1)
    rng = np.random.default_rng(2)
    p_diff, p_hapt = tables(0.004, 0.008, 0.03)
    ceiling, _ = move_bound(p_diff, p_hapt, 0.0, 1.0, 2, True, None, None, None)
    steps = 400
    got = np.zeros((2, 4))
    p_sum = np.zeros((2, 4))
    var_sum = np.zeros((2, 4))
    for step in range(steps):
        ecm = rng.random(cells.nx * cells.ny) ** (1 + step % 3)
        p = cells.probabilities(p_diff, p_hapt, ecm)
        assert p.sum(axis=1).max() <= ceiling
        d = cells.clocked(step, p_diff, p_hapt, ecm, ceiling) if clock == "event" else \
            cells.stepwise(step, p_diff, p_hapt, ecm)
        for ph in (0, 1):
            sel = cells.phen == ph
            got[ph] += np.bincount(d[sel & (d >= 0)], minlength=4)
            p_sum[ph] += p[sel].sum(axis=0)
            var_sum[ph] += (p[sel] * (1 - p[sel])).sum(axis=0)
    assert got.sum() > 5000
    assert_counts(got.ravel(), p_sum.ravel(), var_sum.ravel(), f"{clock} clock, moves by phenotype and way")


def level_ceilings(ceiling: float, ceiling_low: float, p_hapt: np.ndarray) -> np.ndarray:
    """The ceiling of each level of the event clock (index 0: the site's ceiling), as the kernel sets them."""
    slope = float(np.abs(p_hapt).max())
    return np.minimum(ceiling, np.r_[ceiling, ceiling_low + slope * LOW_LEVELS * (1.0 + 1e-9)])


@pytest.mark.slow
def test_the_levels_keep_the_step_probabilities_while_the_ecm_falls():
    # Cells whose neighbours' ECM sums to at most LOW_LEVELS[k] draw their gaps at the ceiling of
    # level k + 1 (random motility plus |p_hapt| LOW_LEVELS[k]), the others at the site's ceiling.
    # The ECM starts as stripes of intact matrix and of matrix degraded to every extent from 0 to 0.5,
    # and only falls (random factors <= 1 each step), as the levels require; per phenotype and
    # direction the moves must match the exact per-step probabilities. Deciding a cell's candidates
    # at another level's ceiling would scale its moves by the ratio of the two ceilings (up to 5).
    cells = Cells(3000, seed=8)
    rng = np.random.default_rng(9)
    p_diff, p_hapt = tables(0.004, 0.008, 0.03)
    xs = np.arange(cells.nx * cells.ny) % cells.nx
    ecm = np.where((xs // 8) % 2 == 0, 1.0, 0.5 * rng.random(xs.size) ** 3)
    ceiling, ceiling_low = move_bound(p_diff, p_hapt, ecm.min(), ecm.max(), 2, True, None, None, None)
    at_level = level_ceilings(ceiling, ceiling_low, p_hapt)
    assert ceiling_low < ceiling / 4
    got = np.zeros((2, 4))
    p_sum = np.zeros((2, 4))
    var_sum = np.zeros((2, 4))
    below = 0
    levels_seen = set()
    for step in range(600):
        ecm = ecm * rng.uniform(0.995, 1.0, ecm.size)
        p = cells.probabilities(p_diff, p_hapt, ecm)
        d = cells.clocked(step, p_diff, p_hapt, ecm, ceiling, ceiling_low)
        level = (cells.flags & LEVEL_BITS) >> LEVEL_SHIFT
        below += int((at_level[level] < ceiling).sum())
        levels_seen.update(np.unique(level[at_level[level] < ceiling]).tolist())
        for ph in (0, 1):
            sel = cells.phen == ph
            got[ph] += np.bincount(d[sel & (d >= 0)], minlength=4)
            p_sum[ph] += p[sel].sum(axis=0)
            var_sum[ph] += (p[sel] * (1 - p[sel])).sum(axis=0)
    assert 0.5 < below / (600 * cells.n) < 0.99  # cells draw both below and at the site's ceiling
    assert len(levels_seen) >= 8, levels_seen  # on many levels of the ladder
    assert_counts(got.ravel(), p_sum.ravel(), var_sum.ravel(), "levels, moves by phenotype and way")


def test_each_cell_moves_a_binomial_number_of_times():
    # Constant probabilities: each cell's count over T steps is Binomial(T, p), so across cells the
    # mean is T p and the variance T p (1 - p); a clock that ran faster for some cells and slower for
    # others would inflate the variance. The sample variance of n counts has standard error
    # sigma^2 sqrt(2 / (n - 1)) (the binomial's excess kurtosis is negligible at T p = 48).
    cells = Cells(4000, seed=3, mesenchymal=1.0)
    p_diff, p_hapt = tables(0.0, 0.03, 0.0)
    ecm = np.ones(cells.nx * cells.ny)
    ceiling = 0.2  # above the true 0.12, so candidates are also rejected
    steps = 400
    counts = np.zeros(cells.n)
    for step in range(steps):
        counts += cells.clocked(step, p_diff, p_hapt, ecm, ceiling) >= 0
    p = 4 * 0.03
    mean, var = steps * p, steps * p * (1 - p)
    assert abs(counts.mean() - mean) < Z * math.sqrt(var / cells.n)
    assert abs(counts.var(ddof=1) - var) < Z * var * math.sqrt(2 / (cells.n - 1))


def test_gaps_longer_than_the_clock_holds_and_its_wrap_around():
    # A tiny move rate (C = 5e-5 per step): gaps average 20,000 steps and a fifth of them exceed
    # MAX_GAP, so they are cut and redrawn (the ROLL bit); 140,000 steps pass the 16-bit clock's
    # wrap twice. The number of moves must still be Binomial(n T, C).
    cells = Cells(400, seed=4, mesenchymal=1.0)
    c = 5e-5
    p_diff, p_hapt = tables(0.0, c / 4, 0.0)
    ecm = np.ones(cells.nx * cells.ny)
    steps = 140_000
    assert steps > 2 * 65_536 and 1 / c > MAX_GAP / 2
    moves = 0
    rolled = 0
    for step in range(steps):
        moves += int((cells.clocked(step, p_diff, p_hapt, ecm, c) >= 0).sum())
        if step % 1000 == 0:
            rolled += int(((cells.flags & ROLL) != 0).sum())
    assert rolled > 0
    mean = cells.n * steps * c
    assert abs(moves - mean) < Z * math.sqrt(mean * (1 - c)), (moves, mean)


@pytest.mark.slow
def test_cells_that_stop_and_restart_move_only_while_active():
    # Cells are arrested for 150 steps out of every 250. An arrested cell loses its clock, so when
    # it is active again it draws a new gap from that step: the moves are those of the active steps.
    # A clock kept through the arrest would ring on stale steps (or not for 65,536 steps).
    cells = Cells(3000, seed=5, mesenchymal=1.0)
    p_diff, p_hapt = tables(0.0, 0.01, 0.0)
    ecm = np.ones(cells.nx * cells.ny)
    ceiling = 0.05
    active_steps = 0
    moves = 0
    half = cells.uid % 2 == 0  # half the cells stop; the others keep moving (a control)
    moves_control = 0
    steps = 5000
    for step in range(steps):
        arrested = step % 250 < 150
        cells.state[half] = 1 if arrested else 0
        d = cells.clocked(step, p_diff, p_hapt, ecm, ceiling)
        assert not np.any(d[half] >= 0) or not arrested
        moves += int((d[half] >= 0).sum())
        moves_control += int((d[~half] >= 0).sum())
        active_steps += 0 if arrested else 1
    p = 4 * 0.01
    for got, n_steps in ((moves, active_steps), (moves_control, steps)):
        k = int(half.sum()) if got is moves else int((~half).sum())
        mean = k * n_steps * p
        assert abs(got - mean) < Z * math.sqrt(mean * (1 - p)), (got, mean)


@pytest.mark.parametrize("capacity", [255, 4])  # no point ever full / a crowded lattice, many moves cancelled
def test_every_build_and_applying_as_decided_give_the_same_moves(capacity):
    # The parallel build decides as the serial one; the serial build applying each move as it decides it
    # (apply_now) ends where deciding every cell and then applying in cell order (apply_moves) does.
    results = []
    for build, apply_now in ((decide_moves_clocked.serial, False), (decide_moves_clocked.parallel, False),
                             (decide_moves_clocked.serial, True)):
        cells = Cells(150_000, shape=(201, 201), seed=6)
        p_diff, p_hapt = tables(0.004, 0.008, 0.03)
        ecm = np.random.default_rng(7).random(201 * 201)
        occ = np.bincount(cells.pos, minlength=201 * 201).astype(np.uint8)
        mes = np.bincount(cells.pos[cells.phen == 1], minlength=201 * 201).astype(np.uint8)
        moved = 0
        for step in range(30):
            before = cells.pos.copy()
            left = build(cells.n, cells.uid, cells.pos, cells.clone, cells.phen, cells.state, cells.flags,
                         cells.wake, p_diff, p_hapt, ecm, cells.dims, 2, True, KEY, STREAM, step,
                         cells.target, None, None, None, None, 0.2, 0.05, 0.03, LOW_LEVELS,
                         np.empty(cells.n, np.uint8), np.empty(cells.n, np.int64), occ, mes, capacity,
                         apply_now)
            ecm *= 0.999
            assert left == 0 if apply_now else left > 0  # (moves left to apply)
            apply_moves(cells.n, cells.pos, cells.phen, cells.target, cells.flags, occ, mes, capacity,
                        np.empty(cells.n, np.int64))
            moved += int((cells.pos != before).sum())
        np.testing.assert_array_equal(occ, np.bincount(cells.pos, minlength=201 * 201))
        np.testing.assert_array_equal(mes, np.bincount(cells.pos[cells.phen == 1], minlength=201 * 201))
        results.append((cells.pos.copy(), cells.flags.copy(), cells.wake.copy(), occ.copy(), mes.copy()))
        assert moved > 10_000
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def movement_only(clock: str, **extra) -> metacoop.Simulation:
    """A primary site where only cells move: 3000 cells, capacity 64 (no point fills up), no vessels."""
    overrides = {f"mechanisms.{name}.enabled": name == "movement" for name in REGISTRY}
    overrides.update({
        "mechanisms.movement.clock": clock, "seed": 5, "duration_h": 30.0, "dt_h": 0.1,
        "primary.lattice.shape": [121, 121], "primary.lattice.capacity_cells_per_point": 64,
        "primary.vessels.normal": 0, "primary.vessels.ruptured": 0,
        "primary.fields": {"ecm": {"initial": 1.0}},
        "primary.initial_tumour.cells": 3000, "primary.initial_tumour.radius_um": 300.0,
        **extra,
    })
    return metacoop.Simulation(metacoop.load_scenario("invasion2d", overrides=overrides))


def count_moves(sim: metacoop.Simulation, before_step=None, after_step=None) -> tuple[float, float, float]:
    """Run ``sim`` to its end; return the moves made and the sum of p and of p (1 - p) over cells and steps.

    ``p`` is each cell's exact move probability at its point, computed before each step from the ECM
    (only movement acts, so the ECM the rule sees is the one before the step). ``before_step(step)``
    may change the ECM first; ``after_step()`` is called after each step.
    """
    site = sim.primary
    movement = next(m for m in sim.mechanisms if m.name == "movement")
    p_diff, p_hapt = movement.tables[site.name]
    nx = site.lattice.dims[2]
    moves = p_sum = var_sum = 0.0
    while sim.step_index < sim.n_steps:
        if before_step is not None:
            before_step(sim.step_index)
        c = site.cells
        pos = c.live("pos")
        x, y = pos % nx, pos // nx
        assert x.min() > 0 and x.max() < nx - 1 and y.min() > 0 and y.max() < nx - 1  # four neighbours each
        p = exact_move_probabilities(pos, c.live("clone"), c.live("phen"), nx, p_diff, p_hapt,
                               site.fields["ecm"].flat).sum(axis=1)
        before = c.live("pos").copy()
        sim.step()
        assert site.occ.max() < site.capacity
        moves += float((c.live("pos") != before).sum())
        p_sum += float(p.sum())
        var_sum += float((p * (1 - p)).sum())
        if after_step is not None:
            after_step()
    return moves, p_sum, var_sum


@pytest.mark.slow
@pytest.mark.parametrize("clock", ["event", "auto"])
def test_a_rising_ceiling_restarts_the_clocks_without_bias(clock):
    # Through the movement mechanism: uniform ECM (only diffusion, bound 4 p_diff = 0.04) until step
    # 100, then a steep ECM ramp makes haptotaxis possible and the site's ceiling must rise to about
    # 0.52: the event clock restarts every clock; "auto" hands over to the step clock (the ceiling
    # is above EVENT_MAX_CEILING). The moves made over the run, counted per step, against the sum
    # of every cell's exact move probability at its current point.
    sim = movement_only(clock, **{
        "clones.tumour.diffusion_um2_per_h": {"epithelial": 5.0, "mesenchymal": 10.0},
        "clones.tumour.haptotaxis_um2_per_h": {"epithelial": 150.0, "mesenchymal": 150.0}})
    site = sim.primary
    movement = next(m for m in sim.mechanisms if m.name == "movement")
    xs = np.arange(site.lattice.n_points) % site.lattice.dims[2]
    ceilings, clocked = [], []

    def ramp(step):
        if step == 100:
            site.fields["ecm"].flat[:] = 0.2 + 0.8 * (xs % 3 == 0)

    def record():
        ceilings.append(movement.ceiling[site.name])
        clocked.append(movement.clocked[site.name])

    moves, p_sum, var_sum = count_moves(sim, ramp, record)
    assert ceilings[99] < EVENT_MAX_CEILING < ceilings[100]  # the ceiling rose when the ramp appeared
    assert all(clocked[:100])
    assert all(clocked[100:]) if clock == "event" else not any(clocked[100:])
    assert abs(moves - p_sum) < Z * math.sqrt(var_sum), (moves, p_sum, math.sqrt(var_sum))


@pytest.mark.parametrize("rise", [False, True], ids=["falling", "rising"])
def test_cells_moving_between_degraded_and_intact_ecm_keep_the_step_probabilities(rise):
    # Stripes three points wide of degraded (0) and intact (1) ECM: a cell in the middle of a
    # degraded stripe sees no gradient and draws at the lowest level (0.05), but one step sideways
    # it sits next to intact ECM, where it moves with probability up to 0.17, so the class of its
    # next gap must come from where it is going. The stripes' ECM only falls (slowly), or, in the
    # second run, rises once at step 150, after which the site must stop using the low ceiling.
    sim = movement_only("event", **{
        "clones.tumour.diffusion_um2_per_h": {"epithelial": 5.0, "mesenchymal": 5.0},
        "clones.tumour.haptotaxis_um2_per_h": {"epithelial": 150.0, "mesenchymal": 150.0}})
    site = sim.primary
    movement = next(m for m in sim.mechanisms if m.name == "movement")
    ecm = site.fields["ecm"].flat
    xs = np.arange(site.lattice.n_points) % site.lattice.dims[2]
    ecm[:] = np.where((xs // 3) % 2 == 0, 0.0, 1.0)
    movement.previous_ecm[site.name][:] = ecm
    low_seen, monotone = [], []

    def change(step):
        ecm[:] *= 0.9995
        if rise and step == 150:
            ecm[::7] += 0.01

    def record():
        level = (site.cells.live("flags") & LEVEL_BITS) >> LEVEL_SHIFT
        low_seen.append(int((level == 1).sum()))  # (no ECM around: the lowest level)
        monotone.append(movement.monotone[site.name])

    moves, p_sum, var_sum = count_moves(sim, change, record)
    assert max(low_seen[:150]) > 300  # many cells (those in the middle of degraded stripes) draw low
    if rise:
        assert all(monotone[:150]) and not any(monotone[150:]) and max(low_seen[151:]) == 0
    else:
        assert all(monotone)
    assert abs(moves - p_sum) < Z * math.sqrt(var_sum), (moves, p_sum, math.sqrt(var_sum))


def test_clocks_do_not_restart_while_the_low_bound_sits_above_the_high_ceiling():
    # On uniform ECM the high ceiling is the motility alone, the low one's bound, so the low ceiling
    # is the high one (and so is every level's). A step without a rise keeps the
    # cells' clocks: only candidates draw a new gap. (A low bound compared uncapped restarted every
    # clock every step.)
    sim = movement_only("event")
    movement = next(m for m in sim.mechanisms if m.name == "movement")
    c = sim.primary.cells
    sim.step()
    sim.step()
    assert movement.ceiling_low["primary"] == movement.ceiling["primary"] > 0.0
    for _ in range(8):
        wake = c.live("wake").copy()
        sim.step()
        redrawn = np.mean(c.live("wake") != wake)
        assert redrawn < 2 * movement.ceiling["primary"] + 0.01, redrawn


@pytest.mark.parametrize("upwind", [True, False], ids=["upwind", "central"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_the_precomputed_bounds_are_move_bound_to_the_last_bit(upwind, ndim):
    # MoveBounds takes its plain-float shortcut without modifiers and calls move_bound with them;
    # either way the pair must be move_bound's, bit for bit (the ceilings are compared with it).
    rng = np.random.default_rng(ndim + 2 * upwind)
    p_diff, p_hapt = rng.random((3, 2)) * 0.01, (rng.random((3, 2)) - 0.3) * 0.05
    bounds = MoveBounds(p_diff, p_hapt, ndim, upwind)
    boost = 0.5 + rng.random(50)
    cues, sens = rng.random((2, 50)), rng.random((2, 3, 2)) - 0.5
    for lo, hi in [(0.0, 0.0), (0.0, 1.0), (0.3, 0.2), *rng.random((20, 2)).tolist()]:
        # (the shortcut keeps its last answer: the second call without modifiers reads it back)
        for mods in [(None, None, None), (None, None, None), (boost, None, None), (None, cues, sens),
                     (boost, cues, sens), (np.ones(0), np.zeros((0, 50)), np.zeros((0, 3, 2)))]:
            assert bounds(lo, hi, *mods) == move_bound(p_diff, p_hapt, lo, hi, ndim, upwind, *mods)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_pass_finds_a_rise_and_the_range_of_the_ecm(dtype):
    # The survey orders the densities by their bit patterns; its range must be NumPy's, bit for bit,
    # on values that include 0, -0, denormals and 1, and it must count a rise, a negative density and
    # a NaN as rises; the ECM is copied into `previous` whatever it finds.
    rng = np.random.default_rng(3)
    tiny = np.finfo(dtype).smallest_subnormal
    for ecm in [rng.random(1001), rng.random(7) ** 30, np.array([0.0, -0.0, tiny, 1.0]),
                np.array([-0.0, 0.0]), np.array([0.25]), np.full(5, 0.5)]:
        ecm = ecm.astype(dtype)
        previous = ecm + dtype(0.1)
        rose, lo, hi = ecm_range(ecm, previous)
        assert (rose, lo, hi) == (False, float(ecm.min()), float(ecm.max())), ecm
        np.testing.assert_array_equal(previous, ecm)
        assert ecm_range(ecm, previous, ecm_bits(ecm)) == (rose, lo, hi)  # (the view a caller keeps)
    previous = np.array([0.5, 0.5, 0.5], dtype)
    for ecm, rose in [([0.4, 0.5, 0.0], False), ([0.4, 0.6, 0.1], True), ([0.4, -1e-30, 0.1], True),
                      ([0.4, np.nan, 0.1], True), ([0.6, -0.5, 0.1], True)]:
        ecm = np.array(ecm, dtype)
        got = ecm_range(ecm, previous)
        np.testing.assert_array_equal(previous, ecm)
        assert got[0] is rose, ecm
        if not np.isnan(ecm).any():
            assert got[1:] == (float(ecm.min()), float(ecm.max()))  # (after a rise NumPy finds the range)
    assert ecm_range(np.array([0.7, 0.2]), None) == (False, 0.2, 0.7)
    assert ecm_range(np.zeros(0), np.zeros(0)) == (False, 0.0, 0.0)


def test_the_ceiling_rises_exactly_when_the_exact_bound_asks_while_the_ecm_falls():
    # Through the mechanism: the ECM falls at random points (its range grows and the ceiling rises
    # several times), and at step 60 one point rises above every value before it. The ceilings must
    # be those of the rule applied to NumPy's range of the ECM each step.
    sim = movement_only("event", **{
        "clones.tumour.diffusion_um2_per_h": {"epithelial": 5.0, "mesenchymal": 10.0},
        "clones.tumour.haptotaxis_um2_per_h": {"epithelial": 40.0, "mesenchymal": 40.0}})
    site = sim.primary
    movement = next(m for m in sim.mechanisms if m.name == "movement")
    p_diff, p_hapt = movement.tables[site.name]
    rng = np.random.default_rng(4)
    ecm = site.fields["ecm"]
    expected, got, monotone = 0.0, [], []
    for step in range(120):
        hit = rng.random(ecm.flat.size) < 0.01
        ecm.flat[hit] *= rng.uniform(0.5, 1.0, int(hit.sum()))
        if step == 60:
            ecm.flat[7] = 1.8
        high, _ = move_bound(p_diff, p_hapt, ecm.flat.min(), ecm.flat.max(), 2, True, None, None, None)
        if high > expected:
            expected = min(1.0, max(high, 1.25 * expected))
        sim.step()
        got.append((movement.ceiling[site.name], expected))
        monotone.append(movement.monotone[site.name])
    assert [g for g, _ in got] == [e for _, e in got]
    assert len(set(e for _, e in got)) >= 4  # the ceiling rose several times
    assert all(monotone[:60]) and not any(monotone[60:])


def test_a_cell_loses_its_clock_in_the_first_step_it_is_not_active():
    # Whatever its clock says, a cell that is not active is visited (its clock cleared) in the very
    # step it is found inactive; a dead cell is left as it is. (The kernel's branch-free screen marks
    # them: a screen that missed inactive cells would leave them clocked until their wake.)
    cells = Cells(4000, seed=12)
    p_diff, p_hapt = tables(0.004, 0.008, 0.03)
    ecm = np.full(cells.nx * cells.ny, 0.5)
    cells.clocked(0, p_diff, p_hapt, ecm, 0.05)
    assert ((cells.flags & CLOCKED) != 0).all()
    stopped = np.zeros(cells.n, bool)
    stopped[::3] = True
    cells.state[stopped] = 1
    dead = np.zeros(cells.n, bool)
    dead[1::3] = True
    cells.flags[dead] |= DEAD
    wake, flags = cells.wake.copy(), cells.flags.copy()
    cells.clocked(1, p_diff, p_hapt, ecm, 0.05)
    assert ((cells.flags[stopped] & CLOCKED) == 0).all()
    np.testing.assert_array_equal(cells.flags[dead], flags[dead])
    np.testing.assert_array_equal(cells.wake[dead | stopped], wake[dead | stopped])
