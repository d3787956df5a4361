"""Field kernels: explicit diffusion with decay, and ECM degradation.

Fields are arrays of shape ``(nz, ny, nx)``; a 2-D lattice has ``nz == 1`` and
the same code runs for both. Boundaries are no-flux: a missing neighbour is
replaced by the point itself, so its difference term vanishes and the scheme
conserves mass to round-off when there is no decay.

The explicit update of one sub-step is, with ``r = D dt / dx**2``,

    u' = (u + r * sum_nb (u_nb - u)) * exp(-lambda dt)

stable for ``r <= 1 / (2 ndim)`` (the caller chooses the number of sub-steps
from this bound). Decay is applied as its exact exponential factor, so it adds
no stability limit.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from metacoop.kernels.dispatch import first_array, sized_kernel


@sized_kernel(first_array)
def diffuse_decay_step(u, out, r, decay):
    """Write one explicit diffusion + decay sub-step of ``u`` into ``out``.

    Args:
        u: field, shape (nz, ny, nx), float32 or float64.
        out: output array of the same shape and dtype (must not alias ``u``).
        r: ``D * dt_sub / dx**2``, dimensionless, at most ``1 / (2 ndim)``.
        decay: ``exp(-lambda * dt_sub)``, dimensionless in (0, 1].
    """
    nz, ny, nx = u.shape
    rr = u.dtype.type(r)
    f = u.dtype.type(decay)
    for row in prange(nz * ny):
        z = row // ny
        y = row - z * ny
        ym = y - 1 if y > 0 else y
        yp = y + 1 if y < ny - 1 else y
        zm = z - 1 if z > 0 else z
        zp = z + 1 if z < nz - 1 else z
        # x = 0 and x = nx - 1 use the point itself as their missing neighbour.
        for x in range(nx):
            xm = x - 1 if x > 0 else x
            xp = x + 1 if x < nx - 1 else x
            c = u[z, y, x]
            lap = (
                (u[z, y, xm] - c)
                + (u[z, y, xp] - c)
                + (u[z, ym, x] - c)
                + (u[z, yp, x] - c)
                + (u[zm, y, x] - c)
                + (u[zp, y, x] - c)
            )
            out[z, y, x] = (c + rr * lap) * f


def diffuse_decay_step_numpy(u: np.ndarray, r: float, decay: float) -> np.ndarray:
    """NumPy twin of :func:`diffuse_decay_step` (reference for tests)."""
    p = np.pad(u, 1, mode="edge")
    c = u
    lap = (
        (p[1:-1, 1:-1, :-2] - c)
        + (p[1:-1, 1:-1, 2:] - c)
        + (p[1:-1, :-2, 1:-1] - c)
        + (p[1:-1, 2:, 1:-1] - c)
        + (p[:-2, 1:-1, 1:-1] - c)
        + (p[2:, 1:-1, 1:-1] - c)
    )
    return ((c + u.dtype.type(r) * lap) * u.dtype.type(decay)).astype(u.dtype)


@sized_kernel(first_array)
def scale_inplace(u, factor):
    """Multiply every value of ``u`` (any shape, flattened view) by ``factor``."""
    flat = u.reshape(-1)
    f = flat.dtype.type(factor)
    for i in prange(flat.shape[0]):
        flat[i] *= f


@sized_kernel(first_array)
def add_inplace(u, deltas):
    """Add ``deltas`` to ``u`` point by point and zero ``deltas`` (both flat views)."""
    a = u.reshape(-1)
    d = deltas.reshape(-1)
    for i in prange(a.shape[0]):
        a[i] += d[i]
        d[i] = 0


#: Below this exponent :func:`degrade_exponential` evaluates exp(-x) by a polynomial.
SMALL_EXPONENT = 1e-3


@sized_kernel(first_array)
def degrade_exponential(w, m, cell_rate, gamma_m, dt):
    """Exact exponential ECM degradation over one step.

    Solves ``dw/dt = -(gamma_m * m + k_cells) * w`` with ``m`` and ``k_cells``
    held constant over the step (Franssen et al. 2019, eq. for the ECM).

    Args:
        w: ECM density, flat array, normalised to [0, 1]; updated in place.
        m: MMP-2 concentration, flat array, same length (normalised).
        cell_rate: summed MT1-MMP degradation rate of the cells at each point, 1/h.
        gamma_m: degradation rate per unit MMP-2 concentration, 1/h.
        dt: step, h.
    """
    for i in prange(w.shape[0]):
        k = gamma_m * m[i] + cell_rate[i]
        if k > 0.0:
            x = k * dt
            if x < SMALL_EXPONENT:
                # exp(-x) by its Taylor polynomial: the remainder x**5/120 < 1e-17 is below
                # double-precision rounding, and the polynomial is several times cheaper
                w[i] = w[i] * (1.0 - x * (1.0 - x * (0.5 - x * (1.0 / 6.0 - x * (1.0 / 24.0)))))
            else:
                w[i] = w[i] * np.exp(-x)
