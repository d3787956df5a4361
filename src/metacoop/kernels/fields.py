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

The floor. The kernels that shrink values (a diffusion sub-step, scaling, ECM
degradation) store a result of magnitude below :data:`FIELD_FLOOR` (2**-100,
7.9e-31; fields are normalised to order 1) as +0. Without it, the tail of a
spreading field and the ECM under a tumour sink into the subnormal range
(below 1.2e-38 in float32), where x86 arithmetic takes microcode assists and
runs up to 100x slower. In franssen2019 the MMP-2 front's subnormal tail made
the degradation 10x slower over the first 1,500 steps (25 -> 240-560 µs a call
at steps 200-1,000; the run's first 2,000 steps 300 -> 108 µs each), and the
4,800 subnormal ECM points under the tumour at the end made it 2.7x slower
(24 -> 66 µs at step 27,000); the whole run took 6 % less time with the
floor. The floor sits well above the subnormal range so that the degradation's
MMP-2 term ``gamma_m m dt`` of a stored value stays normal too. Such values
are far below anything a rule can resolve: with and without the floor, eight
scenarios gave bit-identical cells (every column, occupancy and counter), and
franssen2019's whole run differed only in ECM values below the floor.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from metacoop.kernels.dispatch import FIELD_MIN_POINTS, first_array, sized_kernel

#: Values of magnitude below this (2**-100, 7.9e-31) that a sub-step, a scaling or the ECM degradation
#: computes are stored as +0 (see the module docstring).
FIELD_FLOOR = 2.0**-100
#: Smallest field (both of its buffers, bytes) whose sub-steps run as a wavefront in two blocks or more
#: (see :func:`diffuse_decay_steps`). A lattice this small stays in cache anyway, yet on two threads the
#: wavefront still gained from 201 x 201 float64 (646 KB: 126 -> 100 µs for 8 sub-steps).
WAVEFRONT_MIN_BYTES = 512 * 1024
#: The same in one block (one thread), which lost at 201 x 201 float64 (162 -> 188 µs) and gained only
#: on larger lattices (1024 x 1024 float64: 5.75 -> 5.08 ms).
WAVEFRONT_MIN_BYTES_ONE_BLOCK = 4 * 1024 * 1024


@njit(cache=True, inline="always")
def flush_small(v, floor):
    """``v``, or +0 where ``|v|`` is below ``floor`` (``v - v``, +0 for a finite ``v``); NaN is kept."""
    return v if not (abs(v) < floor) else v - v


@njit(cache=True, inline="always")
def _update(c, xm, xp, ym, yp, zm, zp, rr, f, floor):
    """One point of :func:`diffuse_decay_steps`: the six differences summed in this order, then the floor."""
    lap = (xm - c) + (xp - c) + (ym - c) + (yp - c) + (zm - c) + (zp - c)
    return flush_small((c + rr * lap) * f, floor)


@njit(cache=True, inline="always")
def _update_2d(c, xm, xp, ym, yp, rr, f, floor):
    """:func:`_update` on a 2-D lattice, without the two z differences (each ``c - c``, +0)."""
    lap = (xm - c) + (xp - c) + (ym - c) + (yp - c)
    return flush_small((c + rr * lap) * f, floor)


@sized_kernel(first_array, FIELD_MIN_POINTS)
def diffuse_decay_steps(u, out, r, decay, substeps, blocks):
    """Write ``substeps`` explicit diffusion + decay sub-steps of ``u``, into ``out`` and back.

    The result is in ``out`` after an odd number of sub-steps and in ``u``
    after an even one (the other array holds the sub-step before): one call,
    so a field with 8 sub-steps a step (the default scenario's fast signals)
    costs one dispatch from Python instead of 8.

    The two end points of each x-row are updated on their own, with the point
    itself as the missing neighbour; the interior of the row is a loop without
    a boundary test, which the compiler vectorises (4x faster than one loop
    with a test per point, on a 201 x 201 lattice). Every point gets the same
    operations in the same order as in the module docstring, so the result
    does not depend on this layout. On a 2-D lattice the two z differences,
    each ``c - c = +0``, are left out: adding +0 changes no value but -0,
    which a concentration that starts at +0 never becomes. That took a
    201 x 201 sub-step from 8.9 to 5.5 µs in float32 and from 16.1 to 8.7
    µs in float64 (one thread).

    Args:
        u: field, shape (nz, ny, nx), float32 or float64.
        out: array of the same shape and dtype (must not alias ``u``).
        r: ``D * dt_sub / dx**2``, dimensionless, at most ``1 / (2 ndim)``.
        decay: ``exp(-lambda * dt_sub)``, dimensionless in (0, 1].
        substeps: number of sub-steps (0 leaves both arrays as they are).
        blocks: blocks of the wavefront below: the threads the call runs on
            (1 for the serial build; below 1 counts as 1). The result does not
            depend on it.

    Wavefront. With two sub-steps or more on a field of at least
    :data:`WAVEFRONT_MIN_BYTES` (:data:`WAVEFRONT_MIN_BYTES_ONE_BLOCK` in one
    block), the sub-steps are not taken one after another over the whole
    lattice, each reading and writing every point in memory, but interleaved
    unit by unit (a unit is an x-row of a 2-D lattice, a z-plane of a 3-D
    one): see :func:`_wavefront`. The few units in flight stay in the
    processor's cache, so memory sees about one pass instead of two per
    sub-step. Each point gets the same operations on the same inputs, so both
    arrays end exactly as above. On 2 threads, three fields of 8 sub-steps
    taken in turn, per field: 2048 x 2048 float64 16.4 -> 11.1 ms, float32 7.6
    -> 5.5 ms; 1024 x 1024 float64 3.1-3.4 -> 2.4-2.5 ms; 201 x 201 float64
    125 -> 100 µs; 128**3 float32 with 3 sub-steps 2.2 -> 1.8 ms. The default
    scenario's FIELDS phase on a 2048 x 2048 lattice: 64 -> 48 ms a step.
    """
    nz = u.shape[0]
    units = u.shape[1] if nz == 1 else nz
    parts = max(blocks, 1)
    least = WAVEFRONT_MIN_BYTES if parts > 1 else WAVEFRONT_MIN_BYTES_ONE_BLOCK
    if substeps >= 2 and 2 * u.nbytes >= least and units >= 2 * substeps * parts:
        _wavefront(u, out, r, decay, substeps, parts)
        return
    a, b = u, out
    for _ in range(substeps):
        _sub_step(a, b, r, decay)
        a, b = b, a


@njit(cache=True, inline="always")
def _wavefront(u, out, r, decay, substeps, parts):
    """:func:`diffuse_decay_steps`' sub-steps, interleaved unit by unit in ``parts`` blocks of units.

    Sub-step ``k`` (from 1) reads the array sub-step ``k - 1`` wrote and
    overwrites sub-step ``k - 2`` there (``out`` for odd ``k``, ``u`` for
    even). Unit ``i`` of sub-step ``k`` needs units ``i - 1 .. i + 1`` of
    sub-step ``k - 1``, and the sub-step ``k - 2`` of unit ``i`` it overwrites
    is read only by those three. So it may run as soon as unit ``i + 1`` of
    sub-step ``k - 1`` has.

    1. Each block of units (one per thread) runs a wavefront: at time ``t``,
       unit ``t - k + 1`` of each sub-step ``k`` in turn, so that the few units
       in flight stay in cache. Away from the lattice's ends, sub-step ``k``
       leaves out the ``k - 1`` units at each end of the block (its inputs
       there are not known inside the block): a trapezoid. Blocks neither
       read nor write each other's units meanwhile.
    2. Between two blocks, the units left out (``k - 1`` on each side of the
       border for sub-step ``k``) are then taken sub-step by sub-step.

    Needs every block to hold at least ``2 * substeps`` units (so that these
    triangles neither overlap nor reach past the block's own trapezoid).
    """
    nz, ny, _ = u.shape
    units = ny if nz == 1 else nz
    rr = u.dtype.type(r)
    f = u.dtype.type(decay)
    floor = u.dtype.type(FIELD_FLOOR)
    for part in prange(parts):
        lo = units * part // parts
        hi = units * (part + 1) // parts
        for t in range(lo, hi + substeps - 1):
            for k in range(1, substeps + 1):
                i = t - (k - 1)
                if i < (lo + k - 1 if lo > 0 else 0) or i >= (hi - k + 1 if hi < units else units):
                    continue
                src, dst = (u, out) if k % 2 else (out, u)
                _unit_step(src, dst, i, rr, f, floor)
    for border in prange(1, parts):
        mid = units * border // parts
        for k in range(2, substeps + 1):
            src, dst = (u, out) if k % 2 else (out, u)
            for i in range(mid - k + 1, mid + k - 1):
                _unit_step(src, dst, i, rr, f, floor)


@njit(cache=True)
def _unit_step(u, out, i, rr, f, floor):
    """One sub-step of unit ``i``, ``u`` into ``out``: x-row ``i`` of a 2-D lattice, z-plane ``i`` of 3-D.

    Not inlined (a call per unit costs nothing next to the unit): inlined, it took the compile of
    :func:`diffuse_decay_steps`' parallel build from 5.3 to 10-11 s and of its serial build from 1.7 to
    5-7 s per type.
    """
    nz, ny, nx = u.shape
    last = nx - 1
    x1 = min(1, last)
    if nz == 1:
        _row_2d(u, out, np.int64(i), last, x1, rr, f, floor)
    else:
        for y in range(ny):
            _row_3d(u, out, np.int64(i), y, last, x1, rr, f, floor)


@njit(cache=True, inline="always")
def _row_2d(u, out, j, last, x1, rr, f, floor):
    """One sub-step of x-row ``j`` of a 2-D lattice (a missing neighbour row is the row itself)."""
    jm = j - 1 if j > 0 else j
    jp = j + 1 if j < u.shape[1] - 1 else j
    out[0, j, 0] = _update_2d(u[0, j, 0], u[0, j, 0], u[0, j, x1], u[0, jm, 0], u[0, jp, 0], rr, f, floor)
    for x in range(1, last):
        out[0, j, x] = _update_2d(u[0, j, x], u[0, j, x - 1], u[0, j, x + 1], u[0, jm, x], u[0, jp, x], rr, f,
                                  floor)
    if last > 0:
        out[0, j, last] = _update_2d(u[0, j, last], u[0, j, last - 1], u[0, j, last], u[0, jm, last],
                                     u[0, jp, last], rr, f, floor)


@njit(cache=True, inline="always")
def _row_3d(u, out, z, y, last, x1, rr, f, floor):
    """One sub-step of x-row ``(z, y)`` of a 3-D lattice (a missing neighbour row or plane is its own)."""
    nz, ny, _ = u.shape
    zm = z - 1 if z > 0 else z
    zp = z + 1 if z < nz - 1 else z
    ym = y - 1 if y > 0 else y
    yp = y + 1 if y < ny - 1 else y
    # x = 0 and x = nx - 1 use the point itself as their missing neighbour.
    out[z, y, 0] = _update(u[z, y, 0], u[z, y, 0], u[z, y, x1], u[z, ym, 0], u[z, yp, 0], u[zm, y, 0],
                           u[zp, y, 0], rr, f, floor)
    for x in range(1, last):
        out[z, y, x] = _update(u[z, y, x], u[z, y, x - 1], u[z, y, x + 1], u[z, ym, x], u[z, yp, x],
                               u[zm, y, x], u[zp, y, x], rr, f, floor)
    if last > 0:
        out[z, y, last] = _update(u[z, y, last], u[z, y, last - 1], u[z, y, last], u[z, ym, last],
                                  u[z, yp, last], u[zm, y, last], u[zp, y, last], rr, f, floor)


@njit(cache=True, inline="always")
def _sub_step(u, out, r, decay):
    """One sub-step of :func:`diffuse_decay_steps`, ``u`` into ``out`` (inlined into each build)."""
    nz, ny, nx = u.shape
    rr = u.dtype.type(r)
    f = u.dtype.type(decay)
    floor = u.dtype.type(FIELD_FLOOR)
    last = nx - 1
    x1 = min(1, last)
    if nz == 1:
        for row in prange(ny):
            # (the parallel build's index is unsigned; mixed with signed it typed as float)
            _row_2d(u, out, np.int64(row), last, x1, rr, f, floor)
    else:
        for row in prange(nz * ny):
            z = row // ny
            _row_3d(u, out, z, row - z * ny, last, x1, rr, f, floor)


def diffuse_decay_step_numpy(u: np.ndarray, r: float, decay: float) -> np.ndarray:
    """NumPy twin of one sub-step of :func:`diffuse_decay_steps` (reference for tests)."""
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
    out = ((c + u.dtype.type(r) * lap) * u.dtype.type(decay)).astype(u.dtype)
    out[np.abs(out) < FIELD_FLOOR] = 0.0
    return out


@sized_kernel(first_array, FIELD_MIN_POINTS)
def scale_inplace(u, factor):
    """Multiply every value of ``u`` (any shape, flattened view) by ``factor``, then apply the floor."""
    flat = u.reshape(-1)
    f = flat.dtype.type(factor)
    floor = flat.dtype.type(FIELD_FLOOR)
    for i in prange(flat.shape[0]):
        flat[i] = flush_small(flat[i] * f, floor)


@sized_kernel(first_array, FIELD_MIN_POINTS)
def add_inplace(u, deltas):
    """Add ``deltas`` to ``u`` point by point and zero ``deltas`` (both flat views)."""
    a = u.reshape(-1)
    d = deltas.reshape(-1)
    for i in prange(a.shape[0]):
        a[i] += d[i]
        d[i] = 0


@sized_kernel(first_array, FIELD_MIN_POINTS)
def add_scaled(out, x, a):
    """``out += x * a`` at every point, as NumPy computes it (flat arrays; the product in ``x``'s type).

    A field that feeds another's sources in proportion to its level (the
    organs' TNF-alpha from Kupffer-cell activation, then the adhesion
    molecules from TNF-alpha). One pass without a temporary: NumPy made one
    array in two passes. The loop is written out: as an array expression
    (``out[:] = out + x * a``) numba's serial build made a temporary too, 2.3
    times slower.
    """
    aa = x.dtype.type(a)
    for i in prange(out.shape[0]):
        out[i] += x[i] * aa


@sized_kernel(first_array, FIELD_MIN_POINTS)
def relax_toward(u, target, rate):
    """``u += (target - u) * rate`` at every point, as NumPy computes it (flat arrays of one type).

    A field recovering towards a resting state at a fraction ``rate`` per step
    (the ECM closing the tracks cells cut through it). One pass without
    temporaries: NumPy made two arrays in three passes. Written out as a loop
    (see :func:`add_scaled`).
    """
    r = u.dtype.type(rate)
    for i in prange(u.shape[0]):
        u[i] = u[i] + (target[i] - u[i]) * r


@njit(cache=True)
def count_points(n, pos, counts):
    """The distinct points of ``pos[:n]``, in the order they first occur, each counted in ``counts``.

    ``counts`` (int64 per lattice point, 0 at these points before) gets the
    number of agents at each point; :func:`add_counted` uses and clears them.
    Together they give ``points, k = np.unique(pos[:n], return_counts=True);
    deltas[points] += k * amount`` (up to the points' order), without
    NumPy's sort and small arrays: for 200 macrophages on 201 x 201 points
    11.5 -> 1.6 µs (the default scenario's paracrine slot 136 -> 86 µs a step).
    """
    points = np.empty(n, np.int64)
    k = 0
    for i in range(n):
        p = pos[i]
        if counts[p] == 0:
            points[k] = p
            k += 1
        counts[p] += 1
    return points[:k]


@njit(cache=True)
def add_counted(points, counts, amount, deltas):
    """``deltas[p] += counts[p] * amount`` (the product in float64), then ``counts[p] = 0``, at ``points``."""
    for j in range(points.shape[0]):
        p = points[j]
        deltas[p] += counts[p] * amount
        counts[p] = 0


@njit(cache=True)
def add_at_points(u, deltas, points):
    """:func:`add_inplace` where only ``points`` may hold a non-zero delta (flat views; repeats allowed).

    Each listed point's delta is added and zeroed; a repeat then adds +0. The
    other points would add +0 too, so the values are :func:`add_inplace`'s.
    """
    for j in range(points.shape[0]):
        p = points[j]
        u[p] += deltas[p]
        deltas[p] = 0


@njit(cache=True)
def clear_points(n, pos, out):
    """Set ``out[pos[i]] = 0`` for ``i < n``: undo a scatter of ``n`` cells without a lattice pass."""
    for i in range(n):
        out[pos[i]] = 0.0


@sized_kernel(first_array, FIELD_MIN_POINTS, error_model="numpy")
def saturation(x, half, a, b, out):
    """``out = a + b * (x / (half + x))`` at every point: a factor that saturates with a level (flat arrays).

    What mechanisms hand the movement, the cell cycle and the organs every
    step (a growth factor's speed-up, a cue's receptor occupancy, a niche's
    level). NumPy's operations in NumPy's order and in ``x``'s type (as NumPy
    takes Python numbers with an array), so its values bit for bit, with
    ``a = 0, b = 1`` for the plain saturation (a zero keeps NumPy's value
    but not the sign of a -0). One pass without temporaries: NumPy made
    three arrays in four passes. ``out`` has ``x``'s type; returns it.

    A loop compiled with NumPy's error model (a division by 0 gives an
    infinity or a NaN, as in NumPy): with Python's, each division tested its
    divisor, which kept the loop from vectorising, and written as an array
    expression instead, the serial build made a temporary. The serial build
    on 201 x 201 points went from 15.8 to 6.9 µs a call in float32 (the
    default scenario makes three calls a step) and from 29.0 to 21.9 µs in
    float64; the parallel build on one thread took 7.3 and 20.4 µs before.
    """
    T = x.dtype.type
    h, aa, bb = T(half), T(a), T(b)
    for i in prange(x.shape[0]):
        out[i] = aa + bb * (x[i] / (h + x[i]))
    return out


@njit(cache=True, inline="always")
def factor_or_one(factor, p):
    """``factor[p]``, or 1 where ``factor`` is empty (no modifier acts this step).

    For kernels that read a per-point (or per-CTC) factor given as an empty array when there is none.
    Keep the test in this helper: written inside a larger inlined helper (``_move_numbers`` of
    :mod:`~metacoop.kernels.cells`), it made the serial builds of its callers twice as slow.
    """
    if factor.shape[0] > 0:
        return factor[p]
    return 1.0


@njit(cache=True, inline="always")
def saturated(x, half, a, b):
    """:func:`saturation` at one point: ``a + b * (x / (half + x))``.

    ``half``, ``a`` and ``b`` are given in ``x``'s type. For a kernel that
    needs the factor at a few points only (the macrophages' walk reads the
    CSF-1 occupancy around each macrophage): the same bits as the
    whole-lattice array.
    """
    return a + b * (x / (half + x))


@njit(cache=True)
def saturation_at(x, points, half, a, b, out):
    """:func:`saturation` at listed points only: ``out[j]`` is its value at ``points[j]``, the same bits.

    For a factor read at a few cells' points (arrested cells in an organ): one
    :func:`saturated` per point instead of a pass over the lattice. ``out`` has
    ``x``'s type and ``points``' length; a negative point counts from the end,
    as NumPy's indexing of the whole array does. Returns ``out``.
    """
    T = x.dtype.type
    h, aa, bb = T(half), T(a), T(b)
    for j in range(points.shape[0]):
        out[j] = saturated(x[points[j]], h, aa, bb)
    return out


@sized_kernel(first_array, FIELD_MIN_POINTS)
def clipped_complement(x, a, b, out):
    """``out = a + b * clip(1 - x, 0, 1)`` at every point, as NumPy computes it (flat arrays; NaN stays NaN).

    The degraded fraction of the ECM, as a cue (``a = 0, b = 1``) or a
    motility factor; see :func:`saturation` for the types and the bits.
    Written out as a loop: as an array expression numba's serial build made a
    temporary, 2.5 times slower (201 x 201 float64: 21.6 -> 8.7 µs).
    """
    T = x.dtype.type
    aa, bb = T(a), T(b)
    for i in prange(x.shape[0]):
        out[i] = aa + bb * np.minimum(np.maximum(T(1.0) - x[i], T(0.0)), T(1.0))  # (NumPy's clip, NaN too)
    return out


#: Below this exponent :func:`degrade_exponential` evaluates exp(-x) by a polynomial.
SMALL_EXPONENT = 1e-2


@njit(cache=True, inline="always")
def exp_minus_small(x, T):
    """``exp(-x)`` for ``0 <= x < SMALL_EXPONENT`` by its Taylor polynomial of degree 6 (Horner), in ``T``.

    The remainder ``x**7 / 7! < 2e-18`` is far below double-precision rounding
    (1.1e-16), so the value is within rounding of ``exp(-x)``; the polynomial
    vectorises, where a call to ``exp`` does not. ``T`` (``numpy.float32`` or
    ``numpy.float64``, the field's type) is the type of the coefficients and so
    of the arithmetic: in float32 the vectors are twice as wide.
    """
    inner = T(1.0 / 24.0) - x * (T(1.0 / 120.0) - x * T(1.0 / 720.0))
    return T(1.0) - x * (T(1.0) - x * (T(0.5) - x * (T(1.0 / 6.0) - x * inner)))


#: Points per block of :func:`degrade_exponential`.
DEGRADE_BLOCK = 1024


@sized_kernel(first_array, FIELD_MIN_POINTS)
def degrade_exponential(w, m, cell_rate, gamma_m, dt, clear=False, rate_scale=1.0):
    """Exact exponential ECM degradation over one step.

    Solves ``dw/dt = -(gamma_m * m + k_cells) * w`` with ``m`` and ``k_cells``
    held constant over the step (Franssen et al. 2019, eq. for the ECM): with
    ``k = gamma_m * m + k_cells`` and ``x = k * dt``, a point with ``k > 0`` is
    multiplied by ``exp(-x)``, evaluated by its Taylor polynomial below
    :data:`SMALL_EXPONENT` (:func:`exp_minus_small`: within rounding of exp,
    and several times cheaper; in Franssen's scenario no point needs more);
    a point with ``k <= 0`` is left as it is (:func:`degrade_exponential_reference`).

    The points are taken in blocks of :data:`DEGRADE_BLOCK`. A first pass over
    a block has no branch, so the compiler vectorises it: it multiplies the
    points with ``0 < x < SMALL_EXPONENT`` by the polynomial and notes whether
    any has ``x >= SMALL_EXPONENT`` (a boolean OR: counting them kept the
    loop at half the vector width, 31 against 16 µs a call on franssen2019's
    late 201 x 201 MMP-2 without cells; the run's degradation slot 1.69 ->
    1.35 s). Only a block with such points (in Franssen's
    scenario, points holding a mesenchymal cell or much MMP-2) takes a second
    pass that lists them and multiplies each by ``exp(-x)``. Every point gets
    the same operations as in the reference, so the result is identical to
    the last bit. On a 201 x 201 lattice this is 4x faster than the reference
    while few points need ``exp`` (50 -> 12 µs with 500 cells), and as fast
    once most do (the time of ``exp`` itself is unchanged). With
    ``0 < dt < inf`` (always, in a run) ``x >= SMALL_EXPONENT`` holds exactly
    when ``k > 0`` and ``x`` is not below it; any other ``dt`` takes the reference.

    The arithmetic is in the ECM's own type (``gamma_m``, ``dt`` and the cell
    rates converted to it): for float32 fields the branch-free pass is 1.4x
    faster than in float64 (12.5 -> 8.9 µs on 201 x 201), and each step
    rounds in float32 (the polynomial's last subtraction and the product,
    each within half an ulp). A product below :data:`FIELD_FLOOR` is stored
    as +0 (the module docstring says why).

    Args:
        w: ECM density, flat array, normalised to [0, 1]; updated in place.
        m: MMP-2 concentration, flat array, same length (normalised).
        cell_rate: summed MT1-MMP degradation rate of the cells at each point, 1/h, times
            ``1 / rate_scale``: any numeric type, converted to the ECM's (a count of cells, uint8,
            with ``rate_scale`` the rate of one cell, reads as their summed rate).
        gamma_m: degradation rate per unit MMP-2 concentration, 1/h.
        dt: step, h.
        clear: set ``cell_rate`` to 0 on the way, each block once it is used
            (while it is in cache: cheaper than a separate pass to clear it).
        rate_scale: factor of ``cell_rate``, in the ECM's type (1 leaves the rates exact).
    """
    n = w.shape[0]
    if not (0.0 < dt < np.inf):
        degrade_exponential_reference(w, m, cell_rate, gamma_m, dt, rate_scale)
        if clear:
            cell_rate[:] = 0
        return
    T = w.dtype.type
    g = T(gamma_m)
    h = T(dt)
    scale = T(rate_scale)
    small = T(SMALL_EXPONENT)
    floor = T(FIELD_FLOOR)
    for block in prange((n + DEGRADE_BLOCK - 1) // DEGRADE_BLOCK):
        lo = block * DEGRADE_BLOCK
        hi = min(lo + DEGRADE_BLOCK, n)
        wb = w[lo:hi]
        mb = m[lo:hi]
        rb = cell_rate[lo:hi]
        large = False  # (an OR, not a count: see the docstring)
        for i in range(wb.shape[0]):
            k = g * mb[i] + scale * T(rb[i])
            x = k * h
            poly = exp_minus_small(x, T)
            v = wb[i]
            wb[i] = flush_small(v * poly, floor) if (k > T(0.0)) & (x < small) else v
            large |= x >= small
        if large:
            listed = np.empty(wb.shape[0], np.int64)
            count = 0
            for i in range(wb.shape[0]):
                listed[count] = i
                count += (g * mb[i] + scale * T(rb[i])) * h >= small
            for j in range(count):
                i = listed[j]
                x = (g * mb[i] + scale * T(rb[i])) * h
                wb[i] = flush_small(wb[i] * np.exp(-x), floor)
        if clear:
            for i in range(rb.shape[0]):
                rb[i] = 0


@njit(cache=True)
def degrade_exponential_reference(w, m, cell_rate, gamma_m, dt, rate_scale=1.0):
    """:func:`degrade_exponential` with one branch per point: the rule as stated, for any ``dt``.

    Its reference for tests, and what it runs for a ``dt`` outside ``(0, inf)``.
    The arithmetic is in the ECM's type, as there.
    """
    T = w.dtype.type
    g = T(gamma_m)
    h = T(dt)
    floor = T(FIELD_FLOOR)
    scale = T(rate_scale)
    for i in range(w.shape[0]):
        k = g * m[i] + scale * T(cell_rate[i])
        if k > T(0.0):
            x = k * h
            if x < T(SMALL_EXPONENT):
                w[i] = flush_small(w[i] * exp_minus_small(x, T), floor)
            else:
                w[i] = flush_small(w[i] * np.exp(-x), floor)
