"""The orchestration kernels against the NumPy expressions they replaced, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from metacoop.compartments.circulation import ARRIVAL_EPS_H, Circulation
from metacoop.compartments.metastases import EXTINCT, S_DORMANT
from metacoop.kernels import bookkeeping as k
from metacoop.kernels.cells import DEAD
from metacoop.kernels.dispatch import PARALLEL_MIN_ITEMS

RNG = np.random.default_rng(20240611)


@pytest.mark.parametrize("n", [0, 1, 7, 64, 1000])
def test_any_flag_tells_whether_some_live_cell_has_the_bit(n):
    flags = np.zeros(n + 5, np.uint8)
    flags[n:] = DEAD  # slots past n are not live
    assert not k.any_flag(n, flags, DEAD)
    if n:
        flags[: n] = RNG.integers(0, 256, n).astype(np.uint8) & ~np.uint8(DEAD)
        assert not k.any_flag(n, flags, DEAD)
        flags[RNG.integers(n)] |= DEAD
        assert k.any_flag(n, flags, DEAD)
        assert k.any_flag(n, flags, DEAD) == bool(((flags[:n] & DEAD) != 0).any())


@pytest.mark.parametrize("n", [0, 1, 7, 1000, 3 * k.LIST_BLOCK + 5, PARALLEL_MIN_ITEMS + 9])  # several blocks
def test_flagged_slots_match_flatnonzero(n):
    flags = RNG.integers(0, 256, n + 5).astype(np.uint8)
    flags[n:] |= DEAD  # slots past n are not live
    out = np.empty(n + 5, np.int64)
    got = out[: k.flagged_slots(n, flags, DEAD, out)]
    np.testing.assert_array_equal(got, np.flatnonzero(flags[:n] & DEAD))


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 1000])
@pytest.mark.parametrize("share", [0.0, 0.003, 0.5, 1.0])
def test_tally_switched_counts_as_bincount_per_phenotype_and_moves_the_point_counts(n, share):
    marked = (RNG.random(n + 70) < share).astype(np.uint8) * RNG.integers(1, 256, n + 70).astype(np.uint8)
    marked[n:] = 1  # slots past n are not counted
    clone = RNG.integers(0, 3, n + 70).astype(np.int16)
    phen = RNG.integers(0, 2, n + 70).astype(np.int8)  # (after the switch)
    pos = RNG.integers(0, 40, n + 70).astype(np.int32)
    before = np.where(marked[:n] != 0, 1 - phen[:n], phen[:n])
    mes = np.bincount(pos[:n][before == 1], minlength=40).astype(np.uint8)
    counts = np.full((2, 3), 5, np.int64)  # added to
    k.tally_switched(n, marked, clone, phen, counts, pos, mes)
    idx = np.flatnonzero(marked[:n])
    for ph in (0, 1):
        want = 5 + np.bincount(clone[idx[phen[idx] == ph]], minlength=3)
        np.testing.assert_array_equal(counts[ph], want)
    np.testing.assert_array_equal(mes, np.bincount(pos[:n][phen[:n] == 1], minlength=40))


@pytest.mark.parametrize("n", [0, 1, 7, 1000])
def test_order_by_point_is_a_stable_argsort(n):
    pos = RNG.integers(0, 37, n + 3).astype(np.int32)
    out = np.full(n + 3, -1, np.int64)
    k.order_by_point(n, pos, 37, out)
    np.testing.assert_array_equal(out[:n], np.argsort(pos[:n], kind="stable"))
    assert (out[n:] == -1).all()


@pytest.mark.parametrize("n", [0, 1, 5, 200])
def test_arrived_slots_match_flatnonzero(n):
    remaining = RNG.choice([-1.0, -0.0, 0.0, ARRIVAL_EPS_H, 2 * ARRIVAL_EPS_H, 0.3], size=n + 3)
    dest = RNG.integers(-1, 3, n + 3).astype(np.int16)
    out = np.empty(n + 3, np.intp)
    got = out[: k.arrived_slots(n, remaining, dest, ARRIVAL_EPS_H, out)]
    want = np.flatnonzero((remaining[:n] <= ARRIVAL_EPS_H) & (dest[:n] >= 0))
    np.testing.assert_array_equal(got, want)


def _advance_twin(n, time_h, dt_h, start, remaining, dest, exposed, carry, step, age):
    """``Circulation.advance`` as it was written with NumPy."""
    elapsed = np.clip(time_h + dt_h - np.maximum(start[:n], time_h), 0.0, dt_h)
    before = np.maximum(remaining[:n], 0.0)
    in_transit = np.where(dest[:n] < 0, elapsed, np.minimum(elapsed, before))
    exposed[:n] = in_transit + carry[:n]
    carry[:n] = elapsed - in_transit
    step[:n] = elapsed
    age[:n] += elapsed
    remaining[:n] -= elapsed


@pytest.mark.parametrize("seed", range(5))
def test_advance_ctcs_matches_the_numpy_update(seed):
    rng = np.random.default_rng(seed)
    n, dt = 300, 1 / 90
    time_h = 17 * dt
    start = time_h + dt * rng.choice([-5.0, -1.0, 0.0, 0.3, 1.0, 2.0], size=n + 2)
    start[:4] = [time_h, time_h + dt, 18 * dt, 16 * dt]
    remaining = rng.choice([-0.5, 0.0, 0.001, dt / 2, dt, 3.0], size=n + 2) * rng.random(n + 2)
    state = {
        "remaining": remaining,
        "dest": rng.integers(-1, 2, n + 2).astype(np.int16),
        "exposed": rng.random(n + 2),
        "carry": rng.random(n + 2) * dt,
        "step": rng.random(n + 2),
        "age": rng.random(n + 2) * 50,
    }
    want = {key: v.copy() for key, v in state.items()}
    _advance_twin(n, time_h, dt, start, want["remaining"], want["dest"], want["exposed"], want["carry"],
                  want["step"], want["age"])
    k.advance_ctcs(n, time_h, dt, start, state["remaining"], state["dest"], state["exposed"], state["carry"],
                   state["step"], state["age"])
    for key in state:
        assert state[key].tobytes() == want[key].tobytes(), key


@pytest.mark.parametrize("seed", range(5))
def test_switch_candidates_match_the_numpy_selection(seed):
    rng = np.random.default_rng(seed)
    n = 60
    organ = rng.integers(0, 3, n).astype(np.int16)
    founded = np.where(rng.random(n) < 0.7, rng.random(n), np.nan)
    switched = np.where(rng.random(n) < 0.3, rng.random(n), np.nan)
    status = rng.integers(0, 6, n).astype(np.int8)
    size = rng.integers(0, 12, n).astype(np.int64)
    out = np.empty(n, np.int64)
    for organ_index in range(3):
        for min_cells in (1, 5, 20):
            got = out[: k.switch_candidates(n, organ_index, organ, founded, switched, status, size, min_cells,
                                            EXTINCT, S_DORMANT, out)]
            want = np.flatnonzero((organ == organ_index) & ~np.isnan(founded) & np.isnan(switched)
                                  & (status != EXTINCT) & (status != S_DORMANT) & (size >= min_cells))
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(5))
def test_per_ctc_means_and_cluster_factor_match_bincount(seed):
    rng = np.random.default_rng(seed)
    n_ctcs = 40
    size = rng.integers(1, 9, n_ctcs).astype(np.int32)
    member = np.repeat(np.arange(n_ctcs), size)
    rng.shuffle(member)  # cells need not be grouped by CTC
    clone = rng.integers(0, 4, member.size).astype(np.int16)
    table = rng.random(4)
    got = k.per_ctc_mean(n_ctcs, member, clone, table, size, np.full(n_ctcs, 7.0))
    want = np.bincount(member, table[clone], minlength=n_ctcs) / size
    assert got.tobytes() == want.tobytes()
    hazard_table = np.array([1.0, 0.4, 0.1])
    got = k.cluster_hazard_factor(n_ctcs, member, clone, table, size, hazard_table, np.empty(n_ctcs))
    f = hazard_table[np.minimum(size, hazard_table.size) - 1]
    want = 1.0 - want * (1.0 - f)
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("with_factor", [False, True], ids=["no factor", "factor"])
def test_ctc_death_candidates_match_the_numpy_rule_and_hold_every_death(with_factor):
    # The hazards, x = total hazard * exposure and the draws must be the NumPy expressions' bits
    # (the hazard table below, its sum over causes, uniforms), and every CTC the rule kills
    # (u < 1 - exp(-x), with NumPy's expm1) must be among the candidates. Exposures are long enough
    # that some die.
    from metacoop.kernels.random import uniforms

    rng = np.random.default_rng(11 + with_factor)
    n_ctcs = 400
    size = rng.integers(1, 6, n_ctcs).astype(np.int32)
    member = np.repeat(np.arange(n_ctcs), size)
    rng.shuffle(member)
    clone = rng.integers(0, 3, member.size).astype(np.int16)
    resistance = rng.random(3)
    exposed = rng.uniform(0.0, 0.05, n_ctcs)
    ids = np.sort(rng.choice(10 * n_ctcs, n_ctcs, replace=False)).astype(np.int64)
    factor = rng.uniform(0.3, 1.0, n_ctcs) if with_factor else None

    hazards, x, u = np.empty((n_ctcs, 3)), np.empty(n_ctcs), np.empty(n_ctcs)
    found = k.ctc_death_candidates(n_ctcs, member, clone, resistance, size, 1.9, 0.9, 1.0,
                                   np.zeros(0) if factor is None else factor, exposed, ids, 5, 3, 77,
                                   hazards, x, u)
    mean = k.per_ctc_mean(n_ctcs, member, clone, resistance, size, np.empty(n_ctcs))
    f = 1.0 if factor is None else factor  # (x * 1.0 is x exactly)
    want_h = np.empty((n_ctcs, 3))
    want_h[:, 0] = 1.9 * f
    want_h[:, 1] = 0.9 * f
    want_h[:, 2] = 1.0 * (1.0 - mean) * f
    assert hazards.tobytes() == want_h.tobytes()
    assert x.tobytes() == (want_h.sum(axis=1) * exposed).tobytes()
    assert u.tobytes() == uniforms(5, 3, 77, ids, 0, np.empty(n_ctcs)).tobytes()
    candidate = u < x * (1.0 + 1e-12)
    dead = u < -np.expm1(-x)
    assert found == candidate.sum() and 0 < dead.sum() <= found
    assert not np.any(dead & ~candidate)


def test_a_site_without_requested_deaths_keeps_every_cell(scenario):
    from metacoop.core.simulation import Simulation

    sim = Simulation(scenario(()))
    site = sim.sites[0]
    c = site.cells
    n = c.n
    assert n > 2
    uid = c.live("uid").copy()
    died = site.counters["died"].copy()
    site.resolve_deaths()
    assert c.n == n and np.array_equal(c.live("uid"), uid)
    c.flags[[0, n - 1]] |= DEAD
    site.resolve_deaths()
    # the hole at slot 0 takes the last survivor (slot n - 2; slot n - 1 died too)
    assert c.n == n - 2 and np.array_equal(c.live("uid"), np.r_[uid[n - 2], uid[1:-2]])
    assert site.counters["died"].sum() == died.sum() + 2
    site.check_accounting(0.0)


def test_arrived_is_empty_without_ctcs_and_lists_ctcs_at_their_bed():
    circ = Circulation.__new__(Circulation)
    from metacoop.compartments.circulation import CtcArrays

    circ.ctcs = CtcArrays(0)
    assert circ.arrived().size == 0
    circ.ctcs.append({"id": np.arange(4), "remaining_h": np.array([0.0, 0.5, -0.1, 0.0]),
                      "dest": np.array([0, 1, 1, -1], np.int16)})
    np.testing.assert_array_equal(circ.arrived(), [0, 2])


def test_occupied_points_lists_only_the_given_points_that_hold_cells():
    occ = np.zeros(50, np.uint8)
    points = np.array([3, 17, 40, 44], np.int64)
    out = np.full(4, -1, np.int64)
    assert k.occupied_points(occ, points, out) == 0
    occ[[4, 16, 41]] = 2  # next to every point, never on one
    assert k.occupied_points(occ, points, out) == 0
    occ[[44, 17]] = 1
    assert k.occupied_points(occ, points, out) == 2
    np.testing.assert_array_equal(out[:2], [17, 44])  # in the order of `points`
    assert k.occupied_points(occ, np.zeros(0, np.int64), out) == 0


@pytest.mark.parametrize("dtype", [np.int16, np.int64])
def test_add_counts_adds_what_bincount_counts(dtype):
    clone = np.random.default_rng(5).integers(0, 4, 500).astype(dtype)
    counts = np.array([7, 0, 3, 1, 0], np.int64)
    expect = counts + np.bincount(clone, minlength=5)
    k.add_counts(clone, counts)
    np.testing.assert_array_equal(counts, expect)
    k.add_counts(clone[:0], counts)  # nothing to count
    np.testing.assert_array_equal(counts, expect)
    for bad in (5, -1):  # a clone outside the counters is an error, not a write past them
        with pytest.raises(IndexError):
            k.add_counts(np.array([1, bad], dtype), counts)


def test_ctc_slots_is_searchsorted():
    rng = np.random.default_rng(8)
    ids = np.unique(rng.integers(0, 500, 60)).astype(np.int64)
    n_ctcs = ids.size - 5  # (entries past n_ctcs are not searched)
    ids[n_ctcs:] = -1
    ctc = np.concatenate([rng.choice(ids[:n_ctcs], 200), [ids[0], ids[n_ctcs - 1], -3, 10_000, 250]])
    out = np.full(ctc.size + 3, -7, np.intp)
    k.ctc_slots(ids, n_ctcs, ctc, ctc.size, out)
    np.testing.assert_array_equal(out[: ctc.size], np.searchsorted(ids[:n_ctcs], ctc))
    assert (out[ctc.size :] == -7).all()
    k.ctc_slots(ids, 0, ctc, ctc.size, out)  # no CTC: every cell at slot 0, as searchsorted on nothing
    np.testing.assert_array_equal(out[: ctc.size], np.searchsorted(ids[:0], ctc))


def test_vacate_is_subtract_at():
    pos = RNG.integers(0, 30, 200).astype(np.int32)
    occ = np.bincount(pos, minlength=30).astype(np.uint8)
    again = 4 + np.flatnonzero(pos[4:] == pos[3])[0]  # a second cell at slot 3's point
    slots = np.array([0, 3, again, 150, 199], np.int64)
    phen = RNG.integers(0, 2, 200).astype(np.int8)
    mes = np.bincount(pos[phen == 1], minlength=30).astype(np.uint8)
    want, want_mes = occ.copy(), mes.copy()
    np.subtract.at(want, pos[slots], 1)
    np.subtract.at(want_mes, pos[slots], phen[slots].astype(np.uint8))
    assert (want_mes != mes).any()  # (some removed cell is mesenchymal)
    k.vacate(occ, mes, pos, phen, slots)
    np.testing.assert_array_equal(occ, want)
    np.testing.assert_array_equal(mes, want_mes)


@pytest.mark.parametrize("seed", range(3))
def test_route_destinations_match_the_numpy_loop_over_routes(seed):
    # Three routes over four organs, the third reaching none; CTCs on no route (-1) keep their -1.
    rng = np.random.default_rng(seed)
    cdf = np.zeros((3, 4))
    for r in range(2):
        f = rng.random(4) * (rng.random(4) < 0.7)
        f[r] += 0.1
        cdf[r] = np.cumsum(f) / f.sum()
    empty = np.array([False, False, True])
    route = rng.integers(-1, 3, 300).astype(np.int16)
    u = rng.random(300)
    u[:4] = [0.0, cdf[0, 0], cdf[1, 1], np.nextafter(1.0, 0.0)]  # draws on the steps of the CDFs
    route[:4] = [0, 0, 1, 1]
    want = np.full(300, -1, np.int16)
    for r in np.unique(route):  # the NumPy rule the kernel replaced
        if r < 0 or empty[r]:
            continue
        sel = route == r
        want[sel] = np.minimum(np.searchsorted(cdf[r], u[sel], side="right"), 3)
    got = k.route_destinations(u, route, cdf, empty, 3, np.full(300, -1, np.int16))
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(got[route == 2])) == {-1} and set(np.unique(got[route == -1])) == {-1}
