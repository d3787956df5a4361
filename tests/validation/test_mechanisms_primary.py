"""Cooperation mechanisms of the primary site, through a real Simulation.

For each of collective_migration, protease_public_good, paracrine, growth_factor,
vessel_disruption and shedding_waves:

(a) a minimal scenario in which switching the mechanism on moves its documented observable
    in the documented direction by more than replicate noise;
(b) zero strength gives bit-identical cells and events to the mechanism switched off;
(c) common random numbers: switching one mechanism off leaves the other rules' draws as they
    were (the same cells switch phenotype, die and divide).

Replicate rule (``assert_raised``): with ``n`` independent seeds per arm, the mean of the
observable with the mechanism on must exceed the mean with it off by more than
``Z * sqrt(s_on**2 / n + s_off**2 / n)``, ``s`` the replicate sample standard deviations
(Welch's standard error of the difference), ``Z = 4``. With ``n = 4`` runs per arm (about 6
degrees of freedom) a true null passes with probability below 0.5 %; the effects below are
several times that bound. Where the sign of the effect is certain (a rule that cannot act
without the mechanism) one run is used and the assertion is exact.

Single-mechanism scenarios are raw tables written out in full here (small lattices, clone
tables that switch off every trait the test does not need), so that only the mechanism under
test differs between the arms; the combined runs of (b) and (c) shrink ``classaction``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import metacoop
from metacoop.mechanisms import COOPERATION

pytestmark = pytest.mark.validation

Z = 4.0
INF = math.inf
SEEDS = (1, 2, 3, 4)
SEEDS_16 = tuple(range(1, 17))
RUPTURED = 2


# -- scenario builders -----------------------------------------------------------------------------


def clone(name: str, *, D=(0.0, 0.0), phi=(0.0, 0.0), doubling=(INF, INF), mmp2=(0.0, 0.0), mt1=(0.0, 0.0),
          **traits) -> dict:
    """A clone that by default neither moves, divides, secretes nor degrades anything."""

    def per(v):
        return {"epithelial": v[0], "mesenchymal": v[1]}

    return {"name": name, "doubling_time_h": per(doubling), "diffusion_um2_per_h": per(D),
            "haptotaxis_um2_per_h": per(phi), "mmp2_secretion_per_h": per(mmp2),
            "mt1mmp_degradation_per_h": per(mt1), **traits}


def scenario(clones: list[dict], on=(), *, seed=1, duration_h=10.0, dt_h=0.1, shape=(61, 61), cells=200,
             radius_um=None, mesenchymal=0.0, fractions=None, normal=0, ruptured=0, params=None, **extra):
    """A checked config: one 2-D primary site (no organs) with only the cooperation mechanisms in ``on``.

    The table is written out here (Franssen's ECM and MMP-2 fields, upwind movement, the rules
    of the cascade at their defaults) so that it does not follow changes of the presets.
    ``params`` maps a mechanism name to its parameter overrides; ``extra`` are dotted overrides.
    """
    initial = {"cells": cells, "mesenchymal_fraction": mesenchymal,
               "clone_fractions": fractions or {clones[0]["name"]: 1.0}}
    if radius_um is not None:
        initial["radius_um"] = radius_um
    table = {
        "name": "primary_mechanisms", "seed": seed, "duration_h": duration_h, "dt_h": dt_h,
        "output": {"record_every_h": duration_h, "snapshot_every_h": duration_h},
        "clones": clones,
        "primary": {
            "lattice": {"shape": list(shape), "spacing_um": 10.0, "capacity_cells_per_point": 4},
            "initial_tumour": initial,
            "vessels": {"normal": normal, "ruptured": ruptured, "min_distance_um": 0.0},
            "fields": {"ecm": {"initial": 1.0},
                       "mmp2": {"diffusion_um2_per_h": 360.0, "decay_per_h": 0.009}},
        },
        "mechanisms": {"movement": {"scheme": "upwind"},
                       **{name: {"enabled": name in on, **(params or {}).get(name, {})}
                          for name in COOPERATION}},
    }
    return metacoop.load_scenario(table, overrides=extra)


def run(cfg, check=False) -> metacoop.Simulation:
    sim = metacoop.Simulation(cfg, check=check)
    sim.run()
    return sim


def assert_raised(on: list[float], off: list[float], what: str) -> None:
    """Mean of ``on`` exceeds mean of ``off`` by more than Z Welch standard errors (module docstring)."""
    on, off = np.asarray(on, float), np.asarray(off, float)
    se = math.sqrt(on.var(ddof=1) / on.size + off.var(ddof=1) / off.size)
    diff = on.mean() - off.mean()
    assert diff > Z * se, f"{what}: on {on.round(4).tolist()} vs off {off.round(4).tolist()}: " \
                          f"difference {diff:.4g} not above {Z} x {se:.3g}"


def displacement_sq_um2(sim, uid0: np.ndarray, xyz0: np.ndarray) -> np.ndarray:
    """Squared displacement, µm², of the cells ``uid0`` (all still present) from ``xyz0``."""
    c, lat = sim.primary.cells, sim.primary.lattice
    order = np.argsort(c.live("uid"))
    uid = c.live("uid")[order]
    idx = np.searchsorted(uid, uid0)
    assert np.array_equal(uid[idx], uid0), "a tracked cell is gone"
    xyz = np.stack(lat.coords(c.live("pos")[order][idx]), axis=1)
    return (((xyz - xyz0) * lat.spacing_um) ** 2).sum(axis=1)


def tracked(sim, clone_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Uids (sorted) and coordinates of the live primary cells of one clone."""
    c, lat = sim.primary.cells, sim.primary.lattice
    sel = c.live("clone") == clone_index
    uid = c.live("uid")[sel]
    order = np.argsort(uid)
    return uid[order].copy(), np.stack(lat.coords(c.live("pos")[sel][order]), axis=1)


def intravasations(sim) -> list[dict]:
    return [e for e in sim.events if e["event"] == "intravasation"]


# -- protease public good --------------------------------------------------------------------------

#: A helper clone that stays put and degrades the ECM (MT1-MMP and lots of MMP-2) and a free
#: clone that moves (D = 36 µm²/h, no haptotaxis) and has no protease at all, mixed 1:1 in a
#: sparse disc (300 cells within 150 µm) so that free cells have room to move.
PROTEASE_CLONES = [clone("helper", mmp2=(0.5, 0.5), mt1=(0.5, 0.5)), clone("free", D=(36.0, 36.0))]


def protease_msd(on: bool, seed: int, clones=PROTEASE_CLONES, gain=2.0) -> float:
    cfg = scenario(clones, ("protease_public_good",) if on else (), seed=seed, duration_h=20.0, cells=300,
                   radius_um=150.0, fractions={c["name"]: 1 / len(clones) for c in clones},
                   params={"protease_public_good": {"motility_gain": gain}})
    sim = metacoop.Simulation(cfg)
    uid0, xyz0 = tracked(sim, len(clones) - 1)
    sim.run()
    return float(displacement_sq_um2(sim, uid0, xyz0).mean())


def test_protease_public_good_non_producer_moves_farther_where_a_helper_degrades_ecm():
    # Without the mechanism free cells spread as 2 ndim D t = 2880 µm²; with it their motility is
    # D (1 + 2 (1 - w)) in the degraded zone around the helpers, up to three times as large.
    off = [protease_msd(False, s) for s in SEEDS]
    on = [protease_msd(True, s) for s in SEEDS]
    assert_raised(on, off, "mean squared displacement of the non-producer, µm²")
    assert np.mean(on) < 3.0 * np.mean(off) * 1.2  # never more than the largest factor allows (+20 %)


def test_protease_public_good_needs_a_producer():
    """Without any protease the ECM stays intact, the factor is exactly 1 and nothing changes."""
    lonely = [clone("free", D=(36.0, 36.0))]
    assert protease_msd(True, 5, clones=lonely) == protease_msd(False, 5, clones=lonely)


# -- growth factor ---------------------------------------------------------------------------------


def growth_fold(on: bool, seed: int, secretion=0.05, speedup=1.0) -> np.ndarray:
    """Fold change of each clone's count over 30 h; producer and taker both double every 20 h."""
    clones = [clone("producer", doubling=(20.0, 20.0), gf_secretion_per_h=secretion),
              clone("taker", doubling=(20.0, 20.0))]
    cfg = scenario(clones, ("growth_factor",) if on else (), seed=seed, duration_h=30.0, cells=200,
                   radius_um=150.0, fractions={"producer": 0.5, "taker": 0.5},
                   params={"growth_factor": {"max_speedup": speedup}})
    sim = metacoop.Simulation(cfg)
    n0 = sim.primary.clone_counts().copy()
    sim.run()
    return sim.primary.clone_counts() / n0


def test_growth_factor_non_producer_grows_faster_next_to_producers():
    # Off: both clones grow 2**(30/20) = 2.8-fold. On, the factor near saturation doubles the
    # clock's speed of every cell, so the taker (which makes none) grows faster too.
    off = [growth_fold(False, s)[1] for s in SEEDS]
    on = [growth_fold(True, s)[1] for s in SEEDS]
    assert_raised(on, off, "fold growth of the non-producer")
    assert abs(np.mean(off) - 2 ** 1.5) < 0.3  # the control grows at its own rate


def test_growth_factor_needs_a_producer():
    """No producer: the field stays 0, the clock speed is exactly 1 and growth is unchanged."""
    np.testing.assert_array_equal(growth_fold(True, 5, secretion=0.0), growth_fold(False, 5, secretion=0.0))


# -- collective migration --------------------------------------------------------------------------

#: Only the follower cues of collective_migration (no escorts, no track recovery).
CUES_ONLY = {"escort_probability": 0.0, "track_recovery_per_h": 0.0}


def follower_msd(on: bool, seed: int, leaders: bool = True) -> float:
    """Mean squared displacement of followers that have no motility of their own.

    30 % of the cells belong to a clone whose cells turn mesenchymal at once (EMT 50/h) and then
    move (D 36, Phi 180), degrade the ECM and, with ``leaders``, are leader cells; the other
    70 % are followers with D = Phi = 0, so they move only by climbing the cues.
    """
    clones = [clone("leader", D=(0.0, 36.0), phi=(0.0, 180.0), mmp2=(0.0, 0.01755), mt1=(0.0, 0.09),
                    leader=leaders, emt_rate_per_h=50.0),
              clone("follower")]
    cfg = scenario(clones, ("collective_migration",) if on else (), seed=seed, duration_h=24.0, dt_h=0.05,
                   cells=200, radius_um=150.0, fractions={"leader": 0.3, "follower": 0.7},
                   params={"collective_migration": CUES_ONLY})
    sim = metacoop.Simulation(cfg)
    uid0, xyz0 = tracked(sim, 1)
    sim.run()
    return float(displacement_sq_um2(sim, uid0, xyz0).mean())


def test_collective_migration_followers_move_farther_with_leaders():
    # Switched off, followers cannot move at all: exactly zero displacement.
    assert follower_msd(False, 1) == 0.0
    # On, they climb degraded-ECM tracks and the leaders' signal; with leader cells present they
    # move farther than when the same cells degrade the ECM but are not leaders (tracks only).
    # The effect (about 150 µm²) is under two single-run standard deviations (about 85 µm²), so this
    # test uses 16 seeds per arm: with 4 it sat at the 4-SE bound (4.4 SE with the step-by-step
    # movement clock, 3.8 with the event clock), with 8 it gave 3.2 SE under the auto clock; with 16
    # it is 6.1 SE.
    with_leaders = [follower_msd(True, s) for s in SEEDS_16]
    tracks_only = [follower_msd(True, s, leaders=False) for s in SEEDS_16]
    assert min(tracks_only) > 0.0
    assert_raised(with_leaders, tracks_only, "follower mean squared displacement, µm²")


ESCORT_ONLY = {"track_following_um2_per_h": 0.0, "leader_attraction_um2_per_h": 0.0,
               "track_recovery_per_h": 0.0, "escort_probability": 1.0}


def ctc_sizes(on: bool, seed: int, cohesion: float = 1.0) -> np.ndarray:
    """Sizes of the CTCs intravasating in 4 h from a sparse mesenchymal tumour among 400 ruptured points."""
    clones = [clone("tumour", D=(36.0, 36.0), cohesion=cohesion)]
    cfg = scenario(clones, ("collective_migration",) if on else (), seed=seed, duration_h=4.0, shape=(41, 41),
                   cells=200, radius_um=120.0, mesenchymal=1.0, ruptured=400,
                   params={"collective_migration": ESCORT_ONLY})
    return np.array([e["size"] for e in intravasations(run(cfg, check=True))])


def test_collective_migration_escorts_make_intravasating_ctcs_larger():
    # Movement is unchanged (no cue acts); only escorts add the neighbours of cells entering a
    # vessel point to their CTC (probability escort_probability * cohesion = 1).
    off = [ctc_sizes(False, s) for s in SEEDS]
    on = [ctc_sizes(True, s) for s in SEEDS]
    assert all(s.size >= 20 for s in off + on)
    assert_raised([s.mean() for s in on], [s.mean() for s in off], "mean intravasating CTC size, cells")
    # With cohesion 0 nobody is escorted: the same CTCs as without the mechanism.
    np.testing.assert_array_equal(ctc_sizes(True, 1, cohesion=0.0), ctc_sizes(False, 1, cohesion=0.0))


def intravasations_per_step(sim):
    """Run ``sim`` to the end; after each step with intravasations, yield that step's events."""
    while sim.step_index < sim.n_steps:
        seen = len(sim.events)
        sim.step()
        new = [e for e in sim.events[seen:] if e["event"] == "intravasation"]
        if new:
            yield new


def test_collective_migration_escort_probability_one_takes_every_neighbour():
    """Escort probability 1, cohesion 1: no active cell is left next to a point cells just entered."""
    cfg = scenario([clone("tumour", D=(36.0, 36.0), cohesion=1.0)], ("collective_migration",), seed=2,
                   duration_h=2.0, shape=(41, 41), cells=200, radius_um=120.0, mesenchymal=1.0, ruptured=400,
                   params={"collective_migration": ESCORT_ONLY})
    sim = metacoop.Simulation(cfg, check=True)
    lat = sim.primary.lattice
    groups = 0
    for new in intravasations_per_step(sim):
        entry = lat.flat(np.array([e["x"] for e in new]), np.array([e["y"] for e in new]))
        nb = lat.neighbours(entry)
        around = np.zeros(lat.n_points, bool)
        around[nb[nb >= 0]] = True
        around[entry] = False
        # Nothing moves after intravasation within a step: these are the positions it saw.
        assert not around[sim.primary.cells.live("pos")].any()
        groups += sum(e["size"] > 1 for e in new)
    assert groups >= 10


# -- paracrine -------------------------------------------------------------------------------------


def csf1_rise(seed: int, chemotaxis: float, macrophages: int = 1000) -> float:
    """Rise of the mean CSF-1 receptor occupancy at macrophage positions from 5 h to 60 h.

    Immobile tumour cells secrete CSF-1 (0.05 per h per cell; decay 1/h, so the field is at
    steady state by 5 h); macrophages start uniformly at random, diffuse slowly (10 µm²/h) and
    climb the occupancy with ``chemotaxis`` µm²/h.
    """
    k = 0.02
    cfg = scenario([clone("tumour", csf1_secretion_per_h=0.05)], ("paracrine",), seed=seed, duration_h=60.0,
                   shape=(41, 41), cells=200,
                   params={"paracrine": {"macrophages": macrophages, "macrophage_diffusion_um2_per_h": 10.0,
                                         "macrophage_chemotaxis_um2_per_h": chemotaxis,
                                         "csf1_half_saturation": k}},
                   **{"primary.fields.csf1": {"diffusion_um2_per_h": 3600.0, "decay_per_h": 1.0}})
    sim = metacoop.Simulation(cfg)
    site = sim.primary
    early = round(5.0 / cfg.dt_h)

    def mean_occupancy():
        c = site.fields["csf1"].flat
        return float((c / (k + c))[site.agents["macrophages"].live("pos")].mean())

    for _ in range(early):
        sim.step()
    start = mean_occupancy()
    sim.run()
    return mean_occupancy() - start


def test_paracrine_macrophages_gather_where_csf1_is():
    # Same macrophage placement and walk draws in both arms (chemotaxis only adds probability).
    on = [csf1_rise(s, 230.0) for s in SEEDS]
    off = [csf1_rise(s, 0.0) for s in SEEDS]
    assert min(on) > 0
    assert_raised(on, off, "rise of mean CSF-1 occupancy at macrophages")


def test_macrophages_add_egf_at_their_points_in_proportion_to_their_number():
    # Immobile macrophages (no diffusion, no chemotaxis), 300 on a 21 x 21 lattice so that many share
    # a point, and an EGF field that neither diffuses nor decays: each step's secretion is applied by
    # the next step's FIELDS phase, so after n steps every point holds (n - 1) * its macrophages *
    # rate * dt, and a point without one holds exactly 0.
    rate, steps = 0.2, 12
    cfg = scenario([clone("tumour")], ("paracrine",), seed=5, duration_h=steps * 0.1, shape=(21, 21),
                   cells=50,
                   params={"paracrine": {"macrophages": 300, "egf_secretion_per_h": rate,
                                         "macrophage_diffusion_um2_per_h": 0.0,
                                         "macrophage_chemotaxis_um2_per_h": 0.0}},
                   **{"primary.fields.egf": {"diffusion_um2_per_h": 0.0, "decay_per_h": 0.0}})
    sim = run(cfg)
    site = sim.primary
    count = np.bincount(site.agents["macrophages"].live("pos"), minlength=site.lattice.n_points)
    assert count.max() >= 3 and count.sum() == 300
    egf = site.fields["egf"].flat
    np.testing.assert_allclose(egf, (steps - 1) * count * rate * cfg.dt_h, rtol=1e-5)
    assert not egf[count == 0].any()


def epithelial_normal_entries(seed: int, on: bool, macrophages: int) -> tuple[int, int]:
    """Epithelial cells entering normal vessel points in 4 h; and how many did so away from a macrophage.

    All cells are epithelial (no EMT) and move; the only vessels are 400 normal points.
    """
    cfg = scenario([clone("tumour", D=(36.0, 36.0))], ("paracrine",) if on else (), seed=seed, duration_h=4.0,
                   shape=(41, 41), cells=200, radius_um=120.0, normal=400,
                   params={"paracrine": {"macrophages": macrophages}})
    sim = metacoop.Simulation(cfg, check=True)
    site, lat = sim.primary, sim.primary.lattice
    entered = stray = 0
    for new in intravasations_per_step(sim):
        # Macrophages do not move after intravasation within a step: the doorways are as now.
        here = np.zeros(lat.n_points, bool)
        if on:
            here[site.agents["macrophages"].live("pos")] = True
        door = here.copy()  # the macrophages' points and their neighbours
        nb = lat.neighbours(np.flatnonzero(here))
        door[nb[nb >= 0]] = True
        for e in new:
            assert e["vessel"] == "normal"
            if e["n_epithelial"]:
                entered += e["n_epithelial"]
                stray += int(not door[lat.flat(e["x"], e["y"])])
    return entered, stray


def test_paracrine_epithelial_cells_enter_normal_vessels_only_with_macrophages():
    assert epithelial_normal_entries(1, on=False, macrophages=0) == (0, 0)
    assert epithelial_normal_entries(1, on=True, macrophages=0) == (0, 0)
    entered, stray = epithelial_normal_entries(1, on=True, macrophages=500)
    assert entered >= 20
    assert stray == 0  # every entry was at a point with a macrophage on it or next to it


# -- vessel disruption -----------------------------------------------------------------------------


def disruption(on: bool, seed: int = 1, repair: float = 0.0):
    """Counts of ruptured points every 2 h over 12 h, the events, the sim and the initial vessel map.

    Epithelial cells (no EMT) secreting MMP-2 grow in a crowded disc among 200 normal vessel
    points; damage follows the stimulus within 1 h and a fully damaged point ruptures at 2 /h.
    """
    cfg = scenario([clone("tumour", D=(18.0, 36.0), mmp2=(0.1, 0.1), doubling=(20.0, 20.0))],
                   ("vessel_disruption",) if on else (), seed=seed, duration_h=12.0, shape=(41, 41),
                   cells=200, radius_um=100.0, normal=200,
                   params={"vessel_disruption": {"memory_h": 1.0, "rupture_rate_per_h": 2.0,
                                                 "repair_rate_per_h": repair}})
    sim = metacoop.Simulation(cfg, check=True)
    vessel0 = sim.primary.vessel.copy()
    series = []
    while sim.step_index < sim.n_steps:
        sim.step()
        if sim.step_index % 20 == 0:
            series.append(int((sim.primary.vessel == RUPTURED).sum()))
    return series, sim, vessel0


def test_vessel_disruption_ruptures_vessels_only_when_on():
    series, sim, vessel0 = disruption(False)
    assert series == [0] * 6
    np.testing.assert_array_equal(sim.primary.vessel, vessel0)
    assert not [e for e in sim.events if e["event"].startswith("vessel_")]
    assert not intravasations(sim)  # epithelial cells and normal vessels only: nobody gets in

    series, sim, vessel0 = disruption(True)
    lat = sim.primary.lattice
    ruptures = [e for e in sim.events if e["event"] == "vessel_rupture"]
    assert series == sorted(series) and series[-1] >= 50  # no repair: the count only rises
    assert not [e for e in sim.events if e["event"] == "vessel_repair"]
    points = lat.flat(np.array([e["x"] for e in ruptures]), np.array([e["y"] for e in ruptures]))
    assert np.unique(points).size == len(ruptures) == series[-1]
    assert (vessel0[points] == 1).all()  # only normal points rupture
    changed = np.flatnonzero(sim.primary.vessel != vessel0)
    np.testing.assert_array_equal(np.sort(points), changed)
    # Ruptured points let epithelial cells in.
    assert sum(e["n_epithelial"] for e in intravasations(sim) if e["vessel"] == "ruptured") > 0


def test_vessel_disruption_repairs_points_it_ruptured():
    series, sim, vessel0 = disruption(True, repair=0.5)
    lat = sim.primary.lattice
    rows = [e for e in sim.events if e["event"] in ("vessel_rupture", "vessel_repair")]
    kinds = [e["event"] for e in rows]
    assert kinds.count("vessel_repair") >= 10
    # Replaying the events in order gives the final map; a point is repaired only while ruptured.
    state = vessel0.copy()
    for e in rows:
        p = int(lat.flat(e["x"], e["y"]))
        if e["event"] == "vessel_rupture":
            assert state[p] == 1
            state[p] = RUPTURED
        else:
            assert state[p] == RUPTURED
            state[p] = 1
    np.testing.assert_array_equal(state, sim.primary.vessel)
    assert series[-1] == kinds.count("vessel_rupture") - kinds.count("vessel_repair")


# -- shedding waves --------------------------------------------------------------------------------

WAVES = [[0.5, 1.0], [2.0, 2.55]]


def shedding(on: bool, dt_h: float = 0.1) -> list[float]:
    """Times of the intravasation events in 3 h (mesenchymal cells among 400 ruptured points)."""
    cfg = scenario([clone("tumour", D=(36.0, 36.0))], ("shedding_waves",) if on else (), seed=1,
                   duration_h=3.0, dt_h=dt_h, shape=(41, 41), cells=200, radius_um=120.0, mesenchymal=1.0,
                   ruptured=400, params={"shedding_waves": {"waves_h": WAVES}})
    return [e["time_h"] for e in intravasations(run(cfg))]


def in_window(t: float) -> bool:
    return any(a <= t < b for a, b in WAVES)


def test_shedding_waves_close_intravasation_between_waves():
    dt = 0.1
    off = shedding(False, dt)
    # Without the gate cells leave all the time, between the waves too.
    assert sum(not in_window(t - dt + 1e-9) for t in off) >= 10
    on = shedding(True, dt)
    # Events are stamped at the end of the step in which cells entered, the time the gate is
    # evaluated at, and both waves shed.
    assert all(in_window(t) for t in on)
    for a, b in WAVES:
        assert any(a < t <= b + dt for t in on)


@pytest.mark.parametrize("dt_h", [0.1, 0.05])
def test_shedding_waves_every_intravasation_time_lies_inside_a_wave(dt_h):
    times = shedding(True, dt_h)
    assert times
    outside = [t for t in times if not in_window(t)]
    assert not outside, f"intravasation events outside every wave window {WAVES}: {outside}"


# -- (b) zero strength is switched off, bit for bit ------------------------------------------------

#: classaction (every cooperation mechanism on) shrunk: 61 x 61 primary with 180 vessel points
#: around a sparse tumour, 31 x 31 organs, 12 h with a 0.5-h transit, so that cells move,
#: divide, intravasate, die in the blood, arrest and extravasate within the run.
RICH = {
    "seed": 7, "duration_h": 12.0,
    "primary.lattice.shape": [61, 61], "organs.lung.lattice.shape": [31, 31],
    "organs.liver.lattice.shape": [31, 31],
    "primary.initial_tumour.cells": 200, "primary.initial_tumour.radius_um": 120.0,
    "primary.vessels.normal": 150, "primary.vessels.ruptured": 30, "primary.vessels.min_distance_um": 0.0,
    "circulation.transit_h": 0.5,
    "output.record_every_h": 12.0, "output.snapshot_every_h": 12.0,
}
NO_PARACRINE_TRAITS = {
    "clones.metastatic.csf1_secretion_per_h": 0.0,
    "clones.metastatic.egf_chemotaxis_um2_per_h": {"epithelial": 0.0, "mesenchymal": 0.0},
}

#: mechanism -> (parameters of zero strength, other overrides of both arms, parameters that act)
ZERO = {
    "protease_public_good": ({"motility_gain": 0.0}, {}, {"motility_gain": 2.0}),
    "growth_factor": ({"max_speedup": 0.0}, {}, {"max_speedup": 1.0}),
    "collective_migration": ({"track_following_um2_per_h": 0.0, "leader_attraction_um2_per_h": 0.0,
                              "escort_probability": 0.0, "track_recovery_per_h": 0.0}, {},
                             {"escort_probability": 1.0}),
    "vessel_disruption": ({"rupture_rate_per_h": 0.0}, {}, {"rupture_rate_per_h": 5.0, "memory_h": 1.0}),
    "paracrine": ({"macrophages": 0}, NO_PARACRINE_TRAITS, {"macrophages": 2000}),
    # A wave that covers the whole run never closes the gate.
    "shedding_waves": ({"waves_h": [[0.0, 1e6]]}, {}, {"waves_h": [[0.0, 3.0]]}),
}


def rich(overrides=None) -> metacoop.Simulation:
    return run(metacoop.load_scenario("classaction", overrides={**RICH, **(overrides or {})}))


def outputs(sim) -> dict:
    """Every cell of every compartment (all columns, live slots in order), the events and the metastases."""
    out = {}
    for site in sim.sites:
        for name, arr in site.cells.arrays().items():
            out[f"{site.name}.{name}"] = arr[: site.cells.n].copy()
        out[f"{site.name}.occ"] = site.occ.copy()
        out[f"{site.name}.vessel"] = site.vessel.copy()
    for name, arr in sim.circulation.cells.arrays().items():
        out[f"circulation.{name}"] = arr[: sim.circulation.cells.n].copy()
    out["events"] = sim.events
    out["metastases"] = sim.metastases_rows()
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k
        else:  # lists of row dicts; repr so that NaN (a metastasis not yet switched) equals NaN
            assert len(a[k]) == len(b[k]) and repr(a[k]) == repr(b[k]), k


@pytest.mark.parametrize("name", list(ZERO))
def test_zero_strength_is_bit_identical_to_switched_off(name):
    zero, both, acting = ZERO[name]
    params = {f"mechanisms.{name}.{k}": v for k, v in zero.items()}
    off = outputs(rich({**both, f"mechanisms.{name}.enabled": False}))
    nil = outputs(rich({**both, **params}))
    # The comparison is not vacuous: cells divided, moved and left, and events happened.
    kinds = {e["event"] for e in off["events"]}
    assert {"intravasation", "ctc_death", "arrest"} <= kinds
    assert off["primary.uid"].size > 200
    assert_same(nil, off)
    # ... and the same mechanism at a strength that acts changes the outcome.
    act = outputs(rich({**both, **{f"mechanisms.{name}.{k}": v for k, v in acting.items()}}))
    assert any(not np.array_equal(act[k], off[k]) if isinstance(off[k], np.ndarray) else
               repr(act[k]) != repr(off[k]) for k in off if k in act)


# -- (c) common random numbers ---------------------------------------------------------------------

#: RICH with fast phenotype switching, death and division, so that many cells switch, die and
#: divide in each step (draws of phenotype_switch, death and proliferation).
BUSY = {
    **RICH, "duration_h": 2.0, "primary.initial_tumour.cells": 400, "primary.initial_tumour.radius_um": 200.0,
    **{f"clones.{c}.{k}": v for c in ("metastatic", "nonmetastatic") for k, v in (
        ("emt_rate_per_h", 1.0), ("met_rate_per_h", 1.0),
        ("death_rate_per_h", {"epithelial": 0.5, "mesenchymal": 0.5}),
        ("doubling_time_h", {"epithelial": 1.5, "mesenchymal": 1.5}))},
}


def first_step(sim) -> dict[str, set[int]]:
    """Uids of the primary cells that switch phenotype, die and divide in the next step."""
    c = sim.primary.cells
    before = dict(zip(c.live("uid").tolist(), c.live("phen").tolist(), strict=True))
    first_new, seen = sim.primary.next_uid, len(sim.events)
    sim.step()
    left = {u for e in sim.events[seen:] if e["event"] == "intravasation" for u in e["cell_uids"]}
    c = sim.primary.cells
    after = dict(zip(c.live("uid").tolist(), c.live("phen").tolist(), strict=True))
    return {
        "switched": {u for u, p in after.items() if u in before and before[u] != p},
        "died": set(before) - set(after) - left,
        "divided": set(c.live("parent")[c.live("uid") >= first_new].tolist()),
    }


def fates(sim) -> tuple[dict[int, int], set[int], set[int]]:
    """Phenotypes of initial cells still in the primary, initial cells gone, cells that intravasated."""
    c = sim.primary.cells
    initial = c.live("uid") < 400
    phen = dict(zip(c.live("uid")[initial].tolist(), c.live("phen")[initial].tolist(), strict=True))
    gone = set(range(400)) - set(phen)
    left = {u for e in intravasations(sim) for u in e["cell_uids"]}
    return phen, gone, left


@pytest.mark.parametrize("name", ["protease_public_good", "growth_factor", "collective_migration",
                                  "paracrine", "vessel_disruption", "shedding_waves"])
def test_switching_a_mechanism_off_keeps_the_other_draws(name):
    everything = metacoop.Simulation(metacoop.load_scenario("classaction", overrides=BUSY))
    without = metacoop.Simulation(metacoop.load_scenario(
        "classaction", overrides={**BUSY, f"mechanisms.{name}.enabled": False}))
    a, b = first_step(everything), first_step(without)
    assert len(a["switched"]) >= 10 and len(a["died"]) >= 5 and len(a["divided"]) >= 5
    assert a == b
    # Over the whole run (trajectories diverge after the first step), initial cells that never
    # left the primary in either run switch phenotype and die at the same steps in both.
    everything.run()
    without.run()
    pa, gone_a, left_a = fates(everything)
    pb, gone_b, left_b = fates(without)
    stayed = set(range(400)) - left_a - left_b
    assert len(stayed) > 300
    assert gone_a & stayed == gone_b & stayed and len(gone_a & stayed) > 50
    assert {u: pa[u] for u in stayed - gone_a} == {u: pb[u] for u in stayed - gone_b}
