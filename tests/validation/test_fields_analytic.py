"""Fields against analytic solutions: Green's function, conservation, decay, ECM degradation.

Fields are arrays shaped ``(nz, ny, nx)`` (``nz == 1`` in 2-D) advanced by the
real solver, :func:`metacoop.core.field.make_solver`.

Error model of the diffusion scheme. One explicit sub-step
``u' = u + r * sum_nb (u_nb - u)`` is exactly the master equation of a lattice
random walk that jumps to each of the ``2 ndim`` neighbours with probability
``r = D dt_sub / dx**2``. A Gaussian initial condition evolved by the scheme is
therefore the law of (Gaussian + N independent lattice steps). The steps have
per-axis variance ``2 r dx**2``, so the covariance grows as ``2 D t`` exactly,
as in the continuum; the first discrepancy is in the fourth cumulants of the
accumulated steps:

* per axis  ``kappa4  = N * (2 r dx**4 - 3 (2 r dx**2)**2) = 2 D t dx**2 (1 - 6 r)``
  (the O(dx^2) truncation error of the Laplacian minus the O(dt) error of
  forward Euler, the classic ``1 - 6r`` factor),
* per pair of axes ``kappa22 = -N (2 r dx**2)**2 = -4 D**2 t dt_sub``.

The Edgeworth expansion then gives the leading error field, relative to the
Gaussian ``G`` of variance ``s2 = 2 D (t0 + t)`` per axis,

    E = G * [ sum_a kappa4 He4(x_a/s) / (24 s2**2) + sum_{a<b} kappa22 He2(x_a/s) He2(x_b/s) / (4 s2**2) ],

which is O(dx^2 / s2) relative to the peak. The next terms are O((dx^2/s2)^2),
i.e. a fraction ``dx^2/s2`` (< 4 % here) of the leading one; the tests allow
25 % above ``max|E|``. Float32 round-off (about 1e-6 of the peak after a few
hundred sub-steps) is far below that.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import metacoop
from metacoop.core.field import Field, make_solver
from metacoop.kernels.fields import degrade_exponential

pytestmark = pytest.mark.validation

DTYPES = [np.float32, np.float64]
#: Relative tolerance on conserved totals: see test_no_flux_diffusion_conserves_mass.
CONSERVATION_RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def _axes(shape, dx):
    """Coordinates (z, y, x) of every point, µm, from the lattice centre."""
    return np.meshgrid(*(dx * (np.arange(n) - (n - 1) / 2) for n in shape), indexing="ij")


def gaussian(shape, dx, diffusion, time_h, ndim):
    """Free-space Green's function of the diffusion equation after ``time_h``, unit mass."""
    z, y, x = _axes(shape, dx)
    r2 = x**2 + y**2 + (z**2 if ndim == 3 else 0.0)
    s2 = 2 * diffusion * time_h
    return np.exp(-r2 / (2 * s2)) / (2 * math.pi * s2) ** (ndim / 2)


def edgeworth_error(shape, dx, diffusion, t0, t, ndim, r, dt_sub):
    """Leading-order error field of the explicit scheme (module docstring)."""
    s2 = 2 * diffusion * (t0 + t)
    kappa4 = 2 * diffusion * t * dx**2 * (1 - 6 * r)
    kappa22 = -4 * diffusion**2 * t * dt_sub
    coords = _axes(shape, dx)[3 - ndim :]
    xi = [c / math.sqrt(s2) for c in coords]
    he2 = [v**2 - 1 for v in xi]
    he4 = [v**4 - 6 * v**2 + 3 for v in xi]
    corr = sum(kappa4 * h / (24 * s2**2) for h in he4)
    for a in range(ndim):
        for b in range(a + 1, ndim):
            corr = corr + kappa22 * he2[a] * he2[b] / (4 * s2**2)
    return gaussian(shape, dx, diffusion, t0 + t, ndim) * corr


def evolve_gaussian(ndim, n, dx, dtype, substeps=None):
    """Diffuse a Gaussian of sd 30 µm (3 or 6 points) for 8 h (2-D) or 3 h (3-D); return the error."""
    diffusion, dt = 360.0, 0.1  # the MMP-2 diffusion coefficient, µm²/h
    n_steps = 80 if ndim == 2 else 30
    shape = (1, n, n) if ndim == 2 else (n, n, n)
    t0 = 30.0**2 / (2 * diffusion)  # initial sd 30 µm
    u0 = gaussian(shape, dx, diffusion, t0, ndim).astype(dtype)
    f = Field("u", u0.copy(), np.zeros_like(u0))
    solver = make_solver(f.values, diffusion, 0.0, dt, dx, ndim, substeps)
    for _ in range(n_steps):
        solver.step(f)
    assert f.values.dtype == dtype
    t = n_steps * dt
    exact = gaussian(shape, dx, diffusion, t0 + t, ndim)
    err = np.abs(f.values.astype(np.float64) - exact).max() / exact.max()
    predicted = edgeworth_error(shape, dx, diffusion, t0, t, ndim, solver.r, dt / solver.substeps)
    # The domain is large enough for the boundaries not to matter: the Gaussian at the edge
    # is far below the error we test for.
    edge = max(exact[:, :, 0].max(), exact[:, 0, :].max())
    assert edge < 1e-6 * exact.max()
    return err, np.abs(predicted).max() / exact.max(), solver


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim", [2, 3])
def test_gaussian_matches_green_function(ndim, dtype):
    # 2-D: 133 x 133 points of 10 µm, final sd 82 µm (8.2 points), boundaries 8 sd away.
    # 3-D: 61**3 points, final sd 53 µm (5.3 points), boundaries 5.7 sd away.
    n = 133 if ndim == 2 else 61
    err, predicted, solver = evolve_gaussian(ndim, n, 10.0, dtype)
    # Leading error is 1.4e-3 (2-D) and 2.1e-3 (3-D) of the peak; tolerance 1.25x that (docstring).
    assert err < 1.25 * predicted, (err, predicted, solver.r)
    assert predicted < 5e-3  # the test is meaningful: a wrong scheme is off by O(1)


def test_diffusion_converges_at_second_order():
    # Same physical problem on 10 µm and 5 µm lattices with the same r = D dt_sub / dx^2
    # (2 and 8 sub-steps per 0.1 h step): both cumulant errors scale as dx^2, so the error
    # ratio is 4 up to a relative O(dx^2 / s2) ~ 2 % correction: observed order within 2 +- 0.1.
    coarse, _, s1 = evolve_gaussian(2, 133, 10.0, np.float64, substeps=2)
    fine, _, s2 = evolve_gaussian(2, 265, 5.0, np.float64, substeps=8)
    assert s1.r == pytest.approx(s2.r, rel=1e-12)
    order = math.log2(coarse / fine)
    assert 1.9 < order < 2.1, order


def _random_field(ndim, dtype, seed):
    shape = (1, 64, 64) if ndim == 2 else (20, 24, 28)
    return np.random.default_rng(seed).uniform(0.0, 1.0, shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim", [2, 3])
def test_no_flux_diffusion_conserves_mass(ndim, dtype):
    # A random field (so every wall and corner point carries mass) diffused over 16 (2-D) or
    # 24 (3-D) sub-steps per 1 h step for 20 h: a diffusion length of 12 points.
    # Round-off: each sub-step changes the total by a sum of N roundings of relative size
    # eps, of random sign, so after S sub-steps the relative drift is ~ eps sqrt(S c / N)
    # (c ~ 7 flops per update), i.e. ~1e-16 (float64) and ~3e-8 (float32); the tolerances
    # 1e-12 and 1e-5 leave a wide margin while catching any real leak at a wall
    # (one wall point losing a fraction r of its value per sub-step is a 1e-4 effect).
    dx, diffusion, dt = 10.0, 360.0, 1.0
    u0 = _random_field(ndim, dtype, 1 + ndim)
    deltas = np.zeros_like(u0)
    deltas[0, 0, 0] = 0.5  # a source in a corner, applied by the first step
    deltas[-1, -1, -1] = 0.25
    f = Field("u", u0.copy(), deltas)
    solver = make_solver(f.values, diffusion, 0.0, dt, dx, ndim)
    assert solver.substeps > 10
    total0 = math.fsum(u0.astype(np.float64).ravel()) + 0.75
    for _ in range(20):
        solver.step(f)
    total = math.fsum(f.values.astype(np.float64).ravel())
    assert total == pytest.approx(total0, rel=CONSERVATION_RTOL[dtype])
    # The field did diffuse (so conservation is not trivial) ...
    assert f.values.var() < 0.05 * u0.var()
    # ... and obeyed the maximum principle of a convex-combination scheme (r <= 1/(2 ndim)).
    eps = np.finfo(dtype).eps
    assert f.values.min() >= u0.min() * (1 - 10 * eps)
    assert f.values.max() <= (u0.max() + 0.5) * (1 + 10 * eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_decay_only_field_matches_exponential(dtype):
    # No diffusion: the solver scales by exp(-lambda dt) each step. The factor is rounded to
    # the field's dtype (relative error <= eps/2, the same every step) and each product is
    # rounded once (<= eps/2), so after S steps the relative error is at most S eps.
    lam, dt, n_steps = 0.3, 0.1, 100
    u0 = _random_field(2, dtype, 7) + dtype(0.1)
    f = Field("u", u0.copy(), np.zeros_like(u0))
    solver = make_solver(f.values, 0.0, lam, dt, 10.0, 2)
    for _ in range(n_steps):
        solver.step(f)
    expect = u0.astype(np.float64) * math.exp(-lam * n_steps * dt)
    np.testing.assert_allclose(f.values, expect, rtol=n_steps * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim", [2, 3])
def test_diffusion_with_decay_total_decays_exponentially(ndim, dtype):
    # With no-flux walls the total obeys dM/dt = -lambda M exactly, whatever the diffusion.
    # Tolerance: conservation round-off (above) plus the decay factor rounded to the dtype
    # once per sub-step (relative <= eps/2 each, systematic): S eps / 2 in all.
    lam, dt, n_steps = 0.05, 1.0, 20
    u0 = _random_field(ndim, dtype, 11)
    f = Field("u", u0.copy(), np.zeros_like(u0))
    solver = make_solver(f.values, 360.0, lam, dt, 10.0, ndim)
    for _ in range(n_steps):
        solver.step(f)
    expect = math.fsum(u0.astype(np.float64).ravel()) * math.exp(-lam * n_steps * dt)
    rtol = CONSERVATION_RTOL[dtype] + solver.substeps * n_steps * float(np.finfo(dtype).eps) / 2
    assert math.fsum(f.values.astype(np.float64).ravel()) == pytest.approx(expect, rel=rtol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_degrade_exponential_matches_closed_form(dtype):
    # dw/dt = -(gamma m + k) w with constant m, k: w(t) = w0 exp(-(gamma m + k) t). Each step
    # rounds one product to the dtype (<= eps/2) and the float64 factor (negligible), so after
    # S steps the relative error is at most S eps / 2; we allow S eps.
    rng = np.random.default_rng(5)
    n, gamma, dt, n_steps = 4096, 0.09, 0.1, 200
    w0 = rng.uniform(0.2, 1.0, n).astype(dtype)
    m = rng.uniform(0.0, 1.0, n).astype(dtype)
    k = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0.0, 0.5, n))
    w = w0.copy()
    for _ in range(n_steps):
        degrade_exponential(w, m, k, gamma, dt)
    rate = gamma * m.astype(np.float64) + k
    expect = w0.astype(np.float64) * np.exp(-rate * n_steps * dt)
    np.testing.assert_allclose(w, expect, rtol=n_steps * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_ecm_degradation_mechanism_matches_closed_form(scenario, precision):
    # Through the Simulation: constant MMP-2 (no diffusion, decay or secretion) and static cells
    # (every cell rule off), so each point's ECM decays at gamma m + sum over its cells of the
    # clone's MT1-MMP rate for the cell's phenotype: w = exp(-(gamma m + n_e G_e + n_m G_m) t).
    m0, gamma, g_e, g_m = 0.4, 0.3, 0.05, 0.2
    config = scenario(on=["ecm_degradation"], overrides={
        "duration_h": 10.0, "dt_h": 0.1, "field_precision": precision,
        "primary.lattice.shape": [41, 41],
        "primary.vessels.normal": 0, "primary.vessels.ruptured": 0,
        "primary.fields": {"ecm": {"initial": 1.0}, "mmp2": {"initial": m0}},
        "mechanisms.ecm_degradation.mmp2_rate_per_h": gamma,
        "clones.tumour.mt1mmp_degradation_per_h": {"epithelial": g_e, "mesenchymal": g_m},
    })
    sim = metacoop.Simulation(config)
    sim.run()
    site = sim.primary
    c = site.cells
    n_points = site.lattice.n_points
    n_e = np.bincount(c.live("pos")[c.live("phen") == 0], minlength=n_points)
    n_m = np.bincount(c.live("pos")[c.live("phen") == 1], minlength=n_points)
    assert n_e.max() > 0 and n_m.max() > 0 and (n_e + n_m == 0).any()
    m = float(np.dtype(precision).type(m0))  # the field holds m0 rounded to its dtype
    expect = np.exp(-(gamma * m + n_e * g_e + n_m * g_m) * sim.time_h)
    eps = np.finfo(precision).eps
    np.testing.assert_allclose(site.fields["ecm"].flat, expect, rtol=sim.n_steps * eps, atol=0)
    np.testing.assert_array_equal(site.fields["mmp2"].flat, np.float64(m))


def test_exponential_degradation_is_exact_to_rounding_on_both_sides_of_the_polynomial_branch():
    # degrade_exponential uses a Taylor polynomial of exp(-x) below SMALL_EXPONENT and exp above:
    # both must give w * exp(-(gamma m + k) dt) to within a couple of units in the last place.
    from metacoop.kernels.fields import SMALL_EXPONENT, degrade_exponential

    dt, gamma = 0.5, 0.09
    x = np.concatenate([np.linspace(0.0, 4 * SMALL_EXPONENT, 20001), [0.5, 3.0]])
    m = x / (gamma * dt)
    w0 = np.linspace(0.2, 1.0, x.size)
    w = w0.copy()
    degrade_exponential(w, m, np.zeros(x.size), gamma, dt)
    exact = w0 * np.exp(-gamma * m * dt)
    assert np.max(np.abs(w - exact) / np.spacing(exact)) <= 2.0
