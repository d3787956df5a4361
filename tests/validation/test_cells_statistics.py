"""Cell rules through a real Simulation, against their rate laws.

Every test builds a scenario from the ``default`` preset with only the
mechanisms it is about switched on (the ``scenario`` fixture), runs it with a
fixed seed and compares a statistic with its theoretical value. Tolerances are
``Z = 4`` standard deviations of the statistic, derived in each test from the
distribution of the estimator (two-sided false-alarm probability 6e-5 per
assertion for a correct model), never adjusted to the observed value.
Preconditions that the derivation relies on (no crowding, no walls) are
asserted too, so that a failure says which assumption broke.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate, optimize, stats

import metacoop
from metacoop.core.clones import cycle_gamma
from metacoop.mechanisms import REGISTRY

pytestmark = pytest.mark.validation

Z = 4.0
#: Overrides shared by the single-mechanism scenarios: no vessels, and only the ECM field
#: (constant, no diffusion), so that nothing but the mechanism under test acts on the cells.
ISOLATED = {
    "primary.vessels.normal": 0,
    "primary.vessels.ruptured": 0,
    "primary.fields": {"ecm": {"initial": 1.0}},
}


def positions(sim) -> tuple[np.ndarray, np.ndarray]:
    """Live cells' uids and integer lattice coordinates, shape (n, 3) as (x, y, z), sorted by uid."""
    c = sim.primary.cells
    uid = c.live("uid").copy()
    xyz = np.stack(sim.primary.lattice.coords(c.live("pos")), axis=1)
    order = np.argsort(uid)
    return uid[order], xyz[order]


# -- movement --------------------------------------------------------------------------------------


def r2_variance(p: np.ndarray, n_steps: int, ndim: int) -> np.ndarray:
    """Variance of the squared displacement (lattice units^4) of one lattice walker.

    Each step the walker moves to one of its 2 ndim neighbours with probability p each.
    Per axis the step s has E s^2 = E s^4 = 2p; steps along different axes are exclusive,
    so E[s_a^2 s_b^2] = 0. With X_a the sum of n_steps steps, sigma^2 = 2 p n_steps:
    Var X_a^2 = 2 sigma^4 + n (2p - 12 p^2) and Cov(X_a^2, X_b^2) = -4 p^2 n.
    """
    s2 = 2 * p * n_steps
    return ndim * (2 * s2**2 + n_steps * (2 * p - 12 * p**2)) - ndim * (ndim - 1) * 4 * p**2 * n_steps


@pytest.mark.parametrize("ndim", [2, 3])
def test_unbiased_movement_msd_is_2_d_D_t(scenario, ndim):
    # 4000 cells, half of them mesenchymal (D = 36 µm²/h) and half epithelial (18 µm²/h), walk
    # for 50 h on uniform ECM. In 2-D the haptotactic sensitivity keeps its default (uniform ECM
    # gives no gradient); in 3-D it is set to 0 because the default breaks the upwind bound
    # 2 ndim (D + Phi) dt / dx^2 <= 1 at dt = 0.1 h.
    dx, dt, duration = 10.0, 0.1, 50.0
    diff = {"epithelial": 18.0, "mesenchymal": 36.0}
    overrides = {
        **ISOLATED,
        "seed": 11, "duration_h": duration, "dt_h": dt,
        "primary.lattice.shape": [201, 201] if ndim == 2 else [81, 81, 81],
        "primary.lattice.spacing_um": dx,
        "primary.lattice.capacity_cells_per_point": 32 if ndim == 2 else 16,
        "primary.initial_tumour.cells": 4000,
        "primary.initial_tumour.radius_um": 200.0 if ndim == 2 else 100.0,
        "primary.initial_tumour.mesenchymal_fraction": 0.5,
        "clones.tumour.diffusion_um2_per_h": diff,
    }
    if ndim == 3:
        overrides["clones.tumour.haptotaxis_um2_per_h"] = {"epithelial": 0.0, "mesenchymal": 0.0}
    sim = metacoop.Simulation(scenario(on=["movement"], overrides=overrides))
    cap = sim.primary.capacity
    uid0, x0 = positions(sim)
    phen = sim.primary.cells.live("phen")[np.argsort(sim.primary.cells.live("uid"))]
    d_cell = np.where(phen == 1, diff["mesenchymal"], diff["epithelial"])
    p = d_cell * dt / dx**2
    half = sim.n_steps // 2
    checked = 0
    while sim.step_index < sim.n_steps:
        sim.step()
        # No crowding: a move is cancelled only into a full point, and no point fills up.
        assert sim.primary.occ.max() < cap
        if sim.step_index not in (half, sim.n_steps):
            continue
        uid, x = positions(sim)
        np.testing.assert_array_equal(uid, uid0)
        disp = (x - x0)[:, :ndim]  # lattice units
        n = sim.step_index
        t = n * dt
        # Sum over cells of r^2 against sum of 2 d D t, with the exact per-cell variance.
        msd_sum = float((disp**2).sum()) * dx**2
        expect = float((2 * ndim * d_cell * t).sum())
        sd = math.sqrt(float(r2_variance(p, n, ndim).sum())) * dx**2
        assert abs(msd_sum - expect) < Z * sd, (msd_sum / expect, sd / expect)
        # Per phenotype too (the D table is indexed by phenotype).
        for ph in (0, 1):
            sel = phen == ph
            got = float((disp[sel] ** 2).sum()) * dx**2
            want = float((2 * ndim * d_cell[sel] * t).sum())
            sd_ph = math.sqrt(float(r2_variance(p[sel], n, ndim).sum())) * dx**2
            assert abs(got - want) < Z * sd_ph, (ph, got / want)
        # No drift along any axis: each displacement component has variance 2 p n.
        sd_mean = math.sqrt(float((2 * p * n).sum()))
        for a in range(ndim):
            assert abs(disp[:, a].sum()) < Z * sd_mean, (a, disp[:, a].mean())
        checked += 1
    assert checked == 2
    # No cell is at a wall (a wall cancels moves). The cells start 80 (2-D) or 30 (3-D)
    # points from the walls, more than 5 sd of their displacement (6 points) away.
    nz, ny, nx = sim.primary.lattice.dims
    _, x = positions(sim)
    dims_xyz = np.array([nx, ny, nz])[:ndim]
    assert (x[:, :ndim] >= 2).all() and (x[:, :ndim] <= dims_xyz - 3).all()


@pytest.mark.parametrize("scheme", ["upwind", "central"])
def test_haptotaxis_drifts_up_the_ecm_gradient(scenario, scheme):
    # ECM rises linearly along x, w = 0.5 + 0.004 (x - 120) on a 241-point-long lattice (so
    # w stays in [0.02, 0.98] and the gradient is the same everywhere). Per step, along x:
    #   upwind:  P(+x) = p_d + p_h dw,   P(-x) = p_d
    #   central: P(+x) = p_d + p_h dw/2, P(-x) = p_d - p_h dw/2
    # so the mean x step is p_h dw (lattice units) for both, and 0 along y; the x step has
    # variance 2 p_d + p_h dw - (p_h dw)^2 (upwind) or 2 p_d - (p_h dw)^2 (central).
    # With p_d = 0.045, p_h = 0.18 (D = 45, Phi = 180 µm²/h, dt = 0.1 h, dx = 10 µm;
    # central needs Phi <= 4 D), 16000 cells and 1000 steps: expected mean displacement
    # 0.72 points with standard error 0.075, a 9.6-sigma signal.
    dx, dt, n_cells, dw = 10.0, 0.1, 16000, 0.004
    d, phi = 45.0, 180.0
    overrides = {
        **ISOLATED,
        "seed": 3, "duration_h": 100.0, "dt_h": dt,
        "primary.lattice.shape": [241, 181],
        "primary.lattice.capacity_cells_per_point": 64,
        "primary.initial_tumour.cells": n_cells,
        "primary.initial_tumour.radius_um": 300.0,
        "clones.tumour.diffusion_um2_per_h": {"epithelial": d, "mesenchymal": d},
        "clones.tumour.haptotaxis_um2_per_h": {"epithelial": phi, "mesenchymal": phi},
        "mechanisms.movement.scheme": scheme,
    }
    sim = metacoop.Simulation(scenario(on=["movement"], overrides=overrides))
    nz, ny, nx = sim.primary.lattice.dims
    xs = np.arange(nx)
    sim.primary.fields["ecm"].values[...] = 0.5 + dw * (xs - (nx - 1) / 2)
    uid0, x0 = positions(sim)
    cap = sim.primary.capacity
    while sim.step_index < sim.n_steps:
        sim.step()
        assert sim.primary.occ.max() < cap  # no point fills up, so no move is cancelled
    uid, x1 = positions(sim)
    np.testing.assert_array_equal(uid, uid0)
    disp = x1 - x0
    # Cells stayed on the ramp and away from the walls.
    assert (x1[:, 0] >= 5).all() and (x1[:, 0] <= nx - 6).all()
    assert (x1[:, 1] >= 5).all() and (x1[:, 1] <= ny - 6).all()
    n = sim.n_steps
    pd, ph = d * dt / dx**2, phi * dt / dx**2
    drift = ph * dw
    var_x = n * ((2 * pd + (ph * dw if scheme == "upwind" else 0.0)) - drift**2)
    se_x = math.sqrt(var_x / n_cells)
    se_y = math.sqrt(n * 2 * pd / n_cells)
    mean_x, mean_y = disp[:, 0].mean(), disp[:, 1].mean()
    # Direction: up the gradient, far beyond noise.
    assert mean_x > Z * se_x, (mean_x, se_x)
    # Sign test on individual cells: more cells went up than down (binomial, p < 1e-4).
    up, down = int((disp[:, 0] > 0).sum()), int((disp[:, 0] < 0).sum())
    assert up > down
    assert stats.binomtest(up, up + down, 0.5, alternative="greater").pvalue < 1e-4
    # Magnitude: the drift of the rule, and no drift across the gradient.
    assert abs(mean_x - n * drift) < Z * se_x, (mean_x, n * drift, se_x)
    assert abs(mean_y) < Z * se_y, (mean_y, se_y)


# -- proliferation ---------------------------------------------------------------------------------


def theta_by_euler_lotka(doubling_time_h: float, k: float) -> float:
    """Gamma scale giving growth rate ln 2 / Td: solve 2 E[exp(-lambda T)] = 1 by quadrature."""
    lam = math.log(2) / doubling_time_h

    def excess(theta):
        laplace = integrate.quad(lambda t: math.exp(-lam * t) * stats.gamma.pdf(t, k, scale=theta),
                                 0, np.inf, epsabs=1e-13, epsrel=1e-12)[0]
        return 2 * laplace - 1

    return optimize.brentq(excess, 1e-3 * doubling_time_h, 10 * doubling_time_h, xtol=1e-12)


@pytest.mark.parametrize("cv", [0.25, 0.5, 1.0])
def test_cycle_gamma_solves_euler_lotka(cv):
    k, theta = cycle_gamma(10.0, cv)
    assert k == pytest.approx(1 / cv**2, rel=1e-12)
    assert theta == pytest.approx(theta_by_euler_lotka(10.0, k), rel=1e-9)
    # The mean cycle is longer than the doubling time (Jensen): a cycle drawn with mean Td
    # would grow more slowly than ln 2 / Td.
    assert k * theta > 10.0


def test_cycle_gamma_of_a_doubling_time_too_short_for_its_rate_is_a_cycle_of_zero_hours():
    # The schema takes any doubling time > 0 (the property tests give it 5e-324). ln 2 / Td then
    # overflows to inf, and the cycle is 0 h, for a NumPy scalar (as the clone table passes) without
    # NumPy's overflow warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cycle_gamma(np.float64(5e-324), 0.25) == (16.0, 0.0)
        assert cycle_gamma(np.float64(10.0), 0.25) == cycle_gamma(10.0, 0.25)


@pytest.mark.parametrize("cv", [0.25, 1.0])
def test_growth_rate_is_ln2_over_doubling_time(scenario, cv):
    # 2000 cells, Td = 10 h, grown for 6 doubling times with nothing else on, on a lattice big
    # enough (and capacity 255 per point) that no division is ever blocked (asserted).
    #
    # Expected: E N(t) = n0 exp(lambda t) exactly, lambda = ln 2 / Td. The initial clocks are
    # drawn from the stable age distribution (no start-up transient), and a clock that runs
    # out part-way through a step carries its overshoot into the new clocks, so the division
    # times are those of the continuous-time process, only applied at step ends; the count at
    # each step end is the continuous-time count. The cycle scale is solved here from
    # Euler-Lotka, independently of the package.
    #
    # Noise: given the population at t1, its N1 cells found independent subtrees, so
    # Var(ln N(t2) - ln N(t1)) ~ Var(W) / N1 with W the martingale limit of one cell's
    # progeny (relative variance 2 m2 / (1 - 2 m2) - 1, m2 = E[exp(-2 lambda T)], from
    # W = exp(-lambda T)(W' + W'')). We double it for the spread of the cells' ages at t1.
    td, dt, n0 = 10.0, 0.1, 2000
    t1, t2 = 30.0, 60.0
    k = 1 / cv**2
    lam = math.log(2) / td
    overrides = {
        **ISOLATED,
        "seed": 5, "duration_h": t2, "dt_h": dt,
        "primary.lattice.shape": [201, 201],
        "primary.lattice.capacity_cells_per_point": 255,
        "primary.initial_tumour.cells": n0,
        "primary.initial_tumour.radius_um": 500.0,
        "primary.initial_tumour.mesenchymal_fraction": 0.0,
        "clones.tumour.doubling_time_h": {"epithelial": td, "mesenchymal": td},
        "clones.tumour.cycle_cv": cv,
    }
    sim = metacoop.Simulation(scenario(on=["proliferation"], overrides=overrides))
    counts = [sim.primary.cells.n]
    while sim.step_index < sim.n_steps:
        sim.step()
        counts.append(sim.primary.cells.n)
        assert not (sim.primary.cells.live("cycle_h") < -dt).any(), "a division was blocked"
    counts = np.array(counts, dtype=np.float64)
    i1, i2 = round(t1 / dt), round(t2 / dt)
    observed = math.log(counts[i2] / counts[i1]) / (t2 - t1)

    theta = theta_by_euler_lotka(td, k)

    def laplace_t(s):  # E exp(-s T), T ~ Gamma(k, theta)
        return (1 + s * theta) ** -k

    m2 = laplace_t(2 * lam)
    var_w = 2 * m2 / (1 - 2 * m2) - 1
    tol = Z * math.sqrt(2 * var_w / counts[i1]) / (t2 - t1)
    assert abs(observed - lam) < tol, (observed / lam, tol / lam)
    # The count itself against n0 exp(lambda t). A founder with residual clock R has normalised
    # progeny Y = exp(-lambda R)(W' + W'') with W a newborn's limit: E W = w1, E W^2 = w2,
    # w2 = 2 m2 w1^2 / (1 - 2 m2) (from W = exp(-lambda T)(W' + W'')). Under the stable age
    # distribution E exp(-s R) = 2 lambda (1/2 - E exp(-s T)) / (s - lambda), and E Y = 1 fixes
    # w1 = 1 / (2 E exp(-lambda R)); Var Y = E exp(-2 lambda R) (2 w2 + 2 w1^2) - 1.
    def laplace_r(s):
        return 2 * lam * (0.5 - laplace_t(s)) / (s - lam)

    h = 1e-6 * lam
    laplace_r_lam = (laplace_r(lam + h) + laplace_r(lam - h)) / 2  # removable singularity at s = lambda
    w1 = 1 / (2 * laplace_r_lam)
    w2 = 2 * m2 * w1**2 / (1 - 2 * m2)
    var_founder = laplace_r(2 * lam) * (2 * w2 + 2 * w1**2) - 1
    for i in (i1, i2):
        mean = n0 * math.exp(lam * i * dt)
        rel = counts[i] / mean - 1
        assert abs(rel) < Z * math.sqrt(var_founder / n0), (i * dt, rel, math.sqrt(var_founder / n0))


# -- death and phenotype switching -------------------------------------------------------------------


def test_death_survival_is_exponential(scenario):
    # Constant hazard mu per phenotype: each cell survives n steps with probability
    # (exp(-mu dt))^n = exp(-mu t) exactly. Survivors of n0 cells are binomial:
    # sd sqrt(S (1 - S) / n0) of the fraction.
    mu = {"epithelial": 0.02, "mesenchymal": 0.06}
    dt = 0.1
    overrides = {
        **ISOLATED,
        "seed": 21, "duration_h": 10.0, "dt_h": dt,
        "primary.lattice.shape": [101, 101],
        "primary.initial_tumour.cells": 20000,
        "primary.initial_tumour.mesenchymal_fraction": 0.5,
        "clones.tumour.death_rate_per_h": mu,
    }
    sim = metacoop.Simulation(scenario(on=["death"], overrides=overrides))
    c = sim.primary.cells
    uid0 = c.live("uid").copy()
    phen0 = c.live("phen").copy()
    n_checked = 0
    while sim.step_index < sim.n_steps:
        sim.step()
        if sim.step_index % 50:
            continue
        t = sim.time_h
        alive = np.isin(uid0, c.live("uid"))
        for ph, name in enumerate(("epithelial", "mesenchymal")):
            sel = phen0 == ph
            n0 = int(sel.sum())
            s = math.exp(-mu[name] * t)
            frac = alive[sel].mean()
            assert abs(frac - s) < Z * math.sqrt(s * (1 - s) / n0), (name, t, frac, s)
        n_checked += 1
    assert n_checked == 2
    assert sim.primary.counters["died"].sum() == uid0.size - c.n


@pytest.mark.parametrize("direction", ["emt", "met"])
def test_phenotype_switch_fraction_is_1_minus_exp(scenario, direction):
    # All cells start epithelial (EMT at rate r, MET off) or mesenchymal (MET at rate r, EMT
    # off). With the reverse switch off, the fraction switched by t is 1 - exp(-r t) exactly
    # (per-step probability 1 - exp(-r dt)); binomial sd sqrt(P (1 - P) / n0).
    r, dt, n0 = 0.05, 0.1, 10000
    emt, met = (r, 0.0) if direction == "emt" else (0.0, r)
    overrides = {
        **ISOLATED,
        "seed": 8, "duration_h": 10.0, "dt_h": dt,
        "primary.lattice.shape": [101, 101],
        "primary.initial_tumour.cells": n0,
        "primary.initial_tumour.mesenchymal_fraction": 0.0 if direction == "emt" else 1.0,
        "clones.tumour.emt_rate_per_h": emt,
        "clones.tumour.met_rate_per_h": met,
    }
    sim = metacoop.Simulation(scenario(on=["phenotype_switch"], overrides=overrides))
    start = 0 if direction == "emt" else 1
    assert (sim.primary.cells.live("phen") == start).all()
    sim.run()
    switched = int((sim.primary.cells.live("phen") != start).sum())
    p = 1 - math.exp(-r * sim.time_h)
    assert abs(switched / n0 - p) < Z * math.sqrt(p * (1 - p) / n0), (switched / n0, p)
    assert sim.primary.counters[direction].sum() == switched
    assert sim.primary.counters["met" if direction == "emt" else "emt"].sum() == 0


# -- accounting --------------------------------------------------------------------------------------


TWO_CLONES = [
    {
        "name": "tumour",
        "emt_rate_per_h": 0.02, "met_rate_per_h": 0.02,
        "death_rate_per_h": {"epithelial": 0.01, "mesenchymal": 0.02},
        "doubling_time_h": {"epithelial": 20.0, "mesenchymal": 15.0},
        "leader": True, "csf1_secretion_per_h": 0.01,
        "egf_chemotaxis_um2_per_h": {"epithelial": 20.0, "mesenchymal": 40.0},
    },
    {
        "name": "helper",
        "emt_rate_per_h": 0.05, "met_rate_per_h": 0.01,
        "death_rate_per_h": {"epithelial": 0.02, "mesenchymal": 0.01},
        "doubling_time_h": {"epithelial": 12.0, "mesenchymal": 18.0},
        "cycle_cv": 0.5,
        "mmp2_secretion_per_h": {"epithelial": 0.01, "mesenchymal": 0.03},
        "gf_secretion_per_h": 0.01,
    },
]


@pytest.mark.parametrize("ndim", [2, 3])
def test_cell_accounting_holds_every_step_with_every_mechanism_on(ndim):
    # Every mechanism on, two clones, many vessel points near the tumour so that cells
    # intravasate within the run; Simulation(check=True) verifies the per-clone, per-compartment
    # invariant after every step and raises SimulationError if it breaks. On top, across
    # compartments: initial + born - died == cells in primary + cells in circulation.
    source = "invasion2d" if ndim == 2 else "invasion3d"
    overrides = {
        "seed": 4, "duration_h": 24.0, "dt_h": 0.03,
        "clones": TWO_CLONES,
        "primary.initial_tumour.clone_fractions": {"tumour": 0.7, "helper": 0.3},
        "primary.lattice.shape": [61, 61] if ndim == 2 else [41, 41, 41],
        "primary.vessels.normal": 600 if ndim == 2 else 3000,
        "primary.vessels.ruptured": 200 if ndim == 2 else 1000,
        "primary.vessels.min_distance_um": 60.0 if ndim == 2 else 40.0,
        "mechanisms.shedding_waves.waves_h": [[0.0, 12.0], [18.0, 24.0]],
        "mechanisms.diversification.new_clone_probability": 0.02,
        **{f"mechanisms.{name}.enabled": True for name in REGISTRY},
    }
    config = metacoop.load_scenario(source, overrides=overrides)
    assert all(getattr(config.mechanisms, name).enabled for name in type(config.mechanisms).model_fields)
    sim = metacoop.Simulation(config, check=True)
    site, circ = sim.primary, sim.circulation
    initial = int(site.counters["initial"].sum())
    while sim.step_index < sim.n_steps:
        sim.step()
        k = site.counters
        lost_in_blood = circ.counters["died"].sum()
        assert initial + k["born"].sum() - k["died"].sum() - lost_in_blood == site.cells.n + circ.cells.n
        assert k["emigrated"].sum() - lost_in_blood == circ.cells.n
    k = site.counters
    # The run exercised every way a cell can come and go.
    for kind in ("born", "died", "emigrated", "emt", "met"):
        assert (k[kind][:2] > 0).all(), (kind, k[kind])  # rows 2.. are room for new clones
    assert sim.clones.n_existing > 2  # diversification created clones, and their cells are counted
    assert circ.n_ctcs > 0
    # Every uid is unique across compartments and was issued by the simulation.
    uids = np.concatenate([site.cells.live("uid"), circ.cells.live("uid")])
    assert np.unique(uids).size == uids.size
    assert uids.min() >= 0 and uids.max() < site.next_uid  # every cell was issued by the primary
    assert site.next_uid == initial + k["born"].sum()
    # The circulation holds exactly the cells listed in the intravasation events, less those
    # listed in CTC death events.
    listed = [u for e in sim.events if e["event"] == "intravasation" for u in e["cell_uids"]]
    dead = {u for e in sim.events if e["event"] == "ctc_death" for u in e["cell_uids"]}
    assert sorted(u for u in listed if u not in dead) == sorted(circ.cells.live("uid").tolist())
