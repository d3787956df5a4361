"""Cell-rule kernels over struct-of-arrays cell state.

Conventions shared by every kernel here:

* ``n`` cells occupy slots ``0..n-1`` of each array; ``uid`` is the cell's
  permanent id and keys its random draws (see :mod:`metacoop.kernels.random`).
* ``flags[i] & DEAD`` marks a cell whose death was requested this step; every
  later rule of the step skips it. Deaths and births are applied once per step.
* ``state[i]`` is 0 (active), 1 (arrested in a capillary) or 2 (dormant); only
  active cells switch phenotype, move, divide and intravasate.
* ``pos`` is the flat lattice index ``x + nx * (y + ny * z)``; ``dims`` is
  ``(nz, ny, nx)`` and ``ndim`` is 2 or 3 (2-D lattices have ``nz == 1``).
* Per-clone traits arrive as tables indexed ``[clone, phenotype]`` already
  converted to per-step probabilities or dimensionless numbers.
* Decisions that cannot conflict run in parallel; moves and divisions that
  compete for lattice space are decided in parallel and then applied in cell
  order, so the result does not depend on the number of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from metacoop.kernels.bookkeeping import LIST_BLOCK, list_block, list_blocks, list_flagged
from metacoop.kernels.dispatch import (
    FIELD_MIN_POINTS,
    PARALLEL_MIN_ITEMS,
    first_arg,
    first_array,
    sized_kernel,
    threads,
)
from metacoop.kernels.fields import factor_or_one, saturated
from metacoop.kernels.random import (
    draw_prefix,
    gamma_variate,
    hash_after,
    hash_below,
    uniform,
    uniform_after,
    unit_thresholds,
)

DEAD = np.uint8(1)
#: ``flags`` bit: the cell wants to move this step (set by the movement kernels, :func:`decide_moves`
#: and :func:`metacoop.kernels.move_clock.decide_moves_clocked`; cleared when the move is applied).
MOVING = np.uint8(8)
KEEP_NOT_MOVING = np.uint8(0xFF ^ MOVING)
EPITHELIAL = 0
MESENCHYMAL = 1
ACTIVE = 0
ARRESTED = 1


@njit(cache=True, inline="always")
def _neighbour(p, d, nx, ny, nz, ndim):
    """Flat index of neighbour ``d`` (0:-x 1:+x 2:-y 3:+y 4:-z 5:+z) or -1 at the edge."""
    x, y, z = _coords(p, nx, ny)
    return _neighbour_at(p, d, x, y, z, nx, ny, nz, ndim)


@njit(cache=True, inline="always")
def _coords(p, nx, ny):
    """Lattice coordinates ``(x, y, z)`` of flat point ``p`` (two integer divisions: compute them once).

    The divisions are unsigned (a point is never negative), which spares Python's rounding of negative
    quotients towards minus infinity: the step clock's visits at 1e6 cells 1.65 -> 1.54 ms.
    """
    q = np.uintp(p)
    rest = q // np.uintp(nx)
    return np.int64(q - rest * np.uintp(nx)), np.int64(rest % np.uintp(ny)), np.int64(rest // np.uintp(ny))


@njit(cache=True, inline="always")
def _row_starts(row, nx, ny, nz, ndim):
    """First points of lattice row ``row`` (along x) and of its neighbour rows -y, +y, -z, +z.

    A neighbour row past the lattice's edge is replaced by the row itself, so that
    a row-wise stencil needs no branch in its inner loop.
    """
    plane = nx * ny
    z, y = row // ny, row % ny
    at = row * nx
    up = at - nx if y > 0 else at
    down = at + nx if y < ny - 1 else at
    below = at - plane if ndim == 3 and z > 0 else at
    above = at + plane if ndim == 3 and z < nz - 1 else at
    return at, up, down, below, above


@njit(cache=True, inline="always")
def _neighbour_at(p, d, x, y, z, nx, ny, nz, ndim):
    """As :func:`_neighbour`, for a point whose coordinates ``(x, y, z)`` are known."""
    if d == 0:
        return p - 1 if x > 0 else -1
    if d == 1:
        return p + 1 if x < nx - 1 else -1
    if d == 2:
        return p - nx if y > 0 else -1
    if d == 3:
        return p + nx if y < ny - 1 else -1
    if ndim < 3:
        return -1
    if d == 4:
        return p - nx * ny if z > 0 else -1
    return p + nx * ny if z < nz - 1 else -1


@njit(cache=True)
def mark_near(points, dims, ndim, keep, code, out):
    """Mark, in ``out`` (uint8 per lattice point), the points at or next to ``points`` where ``keep == code``.

    ``out[q] = 1`` at every point ``q`` that is one of ``points`` or a von
    Neumann neighbour of one, and where ``keep[q] == code``; 0 elsewhere.
    Returns ``out``. The work is proportional to the points, not to the
    lattice (the paracrine doorways: the macrophages on 40,401 points; a
    dilation of their mask over the lattice took 90 µs a step there).
    """
    nz, ny, nx = dims[0], dims[1], dims[2]
    out[:] = 0
    for j in range(points.shape[0]):
        p = points[j]
        x, y, z = _coords(p, nx, ny)
        if keep[p] == code:
            out[p] = 1
        for d in range(2 * ndim):
            q = _neighbour_at(p, d, x, y, z, nx, ny, nz, ndim)
            if q >= 0 and keep[q] == code:
                out[q] = 1
    return out


#: Cells from which the kernels that draw for every cell (death, EMT/MET, the step clock's moves) may run on
#: several threads (see :mod:`~metacoop.kernels.dispatch`): a hash per cell is enough work. In the default
#: scenario at 2,000-4,000 cells (builds alternating call by call) their parallel builds were 1.25x
#: (death), 2.1x (moves) and 2.4x (EMT/MET) faster.
DRAW_MIN_CELLS = 2_048


@sized_kernel(first_arg, DRAW_MIN_CELLS)
def bernoulli_flag(n, uid, clone, phen, state, p_table, key, stream, step, flags, flag, pos, factor, marks):
    """Set ``flag`` on each live cell with probability ``p_table[state, clone, phen]``.

    ``factor`` (per lattice point, or empty) multiplies the hazard behind the
    probability of cells that are not active (arrested or dormant):
    ``p -> 1 - (1 - p)**factor[pos]``; a factor of exactly 1 leaves ``p`` as is.

    ``marks`` (uint8 scratch, at least ``n`` entries): from
    :data:`~metacoop.kernels.dispatch.PARALLEL_MIN_ITEMS` cells on and without
    ``factor``, a first pass without branches, which the compiler vectorises
    (eight hashes at a time), marks the cells whose draw is below their
    probability, which are the ones to flag: at 1e6 cells on 2 threads
    1.6 -> 0.5 ms. (numba's serial build does not vectorise that pass, so
    below that size the rule looks at every cell in one loop.)

    Returns the number of cells flagged.
    """
    hit = 0
    scaled = factor.shape[0] > 0
    screened = not scaled and n >= PARALLEL_MIN_ITEMS
    if screened:
        prefix = draw_prefix(key, stream, step)
        below = unit_thresholds(p_table, np.empty(p_table.shape, np.int64))  # (see unit_threshold)
        for i in prange(n):
            t = below[state[i], clone[i], phen[i]]
            marks[i] = ((flags[i] & DEAD) == 0) & hash_below(hash_after(prefix, uid[i], 0), t)
        # Without a factor a mark is the rule's outcome: flag the marked cells, eight at a time where
        # one uint64 of marks is 0 (almost all: events are rare).
        words = n // 8
        packed = marks[: words * 8].view(np.uint64)
        for w in prange(words + 1):
            if w < words and packed[w] == 0:
                continue
            for i in range(8 * w, min(8 * w + 8, n)):
                if marks[i]:
                    flags[i] |= flag
                    hit += 1
        return hit
    for i in prange(n):
        if flags[i] & DEAD:
            continue
        p = p_table[state[i], clone[i], phen[i]]
        if scaled and state[i] != ACTIVE:
            f = factor[pos[i]]
            if f == 0.0:
                p = 0.0
            elif f != 1.0 and p < 1.0:
                p = -math.expm1(f * math.log1p(-p))
        if uniform(key, stream, step, uid[i], 0) < p:
            flags[i] |= flag
            hit += 1
    return hit


@sized_kernel(first_arg, DRAW_MIN_CELLS)
def switch_phenotype(n, uid, clone, phen, state, flags, p_emt, p_met, key, stream, step, switched):
    """EMT/MET: each live active cell switches phenotype with its per-step probability.

    Args:
        p_emt: per-clone probability per step of epithelial -> mesenchymal.
        p_met: per-clone probability per step of mesenchymal -> epithelial.
        switched: output, uint8 per cell: 1 where the cell switched, else 0.

    The loop has no branch (every cell draws; the draw of a cell that cannot
    switch is not used), so the compiler schedules the hashes of many cells
    at once: 20-25 % faster than testing each cell first, the same outcome.

    Returns the number of cells that switched.
    """
    prefix = draw_prefix(key, stream, step)
    to_mes = unit_thresholds(p_emt, np.empty(p_emt.shape, np.int64))  # (see unit_threshold)
    to_epi = unit_thresholds(p_met, np.empty(p_met.shape, np.int64))
    count = 0
    for i in prange(n):
        ph = phen[i]
        c = clone[i]
        t = to_mes[c] if ph == EPITHELIAL else to_epi[c]
        live = ((flags[i] & DEAD) == 0) & (state[i] == ACTIVE)
        s = live & hash_below(hash_after(prefix, uid[i], 0), t)
        phen[i] = ph ^ s  # two phenotypes, 0 and 1: a switch flips the bit
        switched[i] = s
        count += s
    return count


@njit(cache=True, inline="always")
def _move_numbers(c, ph, p, p_diff, p_hapt, boost, cues, cue_sens):
    """``(p_diff, p_hapt, cued)`` of a cell of clone ``c`` and phenotype ``ph`` at point ``p``.

    ``p_diff`` times the point's motility factor (``boost``, or none), and
    whether any cue has a non-zero sensitivity for the cell.

    The test of whether ``boost`` is empty lives in
    :func:`~metacoop.kernels.fields.factor_or_one`. Written here, as
    ``if boost.shape[0] > 0: pd *= boost[p]``, it made numba's
    serial builds of the callers slow (their optimised code held more calls
    to numba's reference counting; the parallel builds' loops, compiled as
    functions of their own, did not): on arguments captured from the default
    scenario (31,757 cells, with a motility factor and cues) the serial build
    of :func:`decide_moves` took 2.0 ms against 0.99 ms for its parallel
    build on one thread; with the helper, 0.97 ms on both.
    """
    pd = p_diff[c, ph]
    if boost is not None:
        pd *= factor_or_one(boost, p)
    cued = False
    if cues is not None:
        for k in range(cues.shape[0]):
            if cue_sens[k, c, ph] != 0.0:
                cued = True
    return pd, p_hapt[c, ph], cued


@njit(cache=True, inline="always")
def _chosen_neighbour(u, p, x, y, z, pd, ph_, c, ph, ecm, nx, ny, nz, ndim, upwind, cues, cue_sens,
                      cue_level, cued):
    """The neighbour a cell at ``p`` (coordinates ``x, y, z``) moves to for the uniform ``u``, or -1 to stay.

    The partial sums of the move probabilities over the neighbours, in the
    order of :func:`_neighbour` (see :func:`decide_moves` for the rule), are
    compared with ``u``; ``pd`` and ``ph_`` are the cell's diffusion and
    haptotaxis numbers, ``c`` and ``ph`` its clone and phenotype (for the cue
    sensitivities), ``cued`` whether any cue acts on it.

    Every neighbour's partial sum is computed and the first above ``u`` is
    selected without a branch (the same additions in the same order as
    stopping there): which neighbour a cell takes is random, so a branch on
    it was mispredicted about once a cell.
    """
    w0 = ecm[p]
    acc = 0.0
    chosen = -1
    for d in range(2 * ndim):
        nb = _neighbour_at(p, d, x, y, z, nx, ny, nz, ndim)
        there = nb >= 0
        q = nb if there else p  # (a missing neighbour's terms are computed at p and dropped)
        if upwind:
            g = max(ecm[q] - w0, 0.0)
        else:
            other = _neighbour_at(p, d ^ 1, x, y, z, nx, ny, nz, ndim)
            w_other = ecm[other] if other >= 0 else w0
            g = 0.25 * (ecm[q] - w_other)
        step_acc = acc + (pd + ph_ * g)
        if cues is not None and cued:
            for k in range(cues.shape[0]):
                gk = cues[k, q] if cue_level[k] else cues[k, q] - cues[k, p]
                step_acc = step_acc + cue_sens[k, c, ph] * gk if gk > 0.0 else step_acc
        acc = step_acc if there else acc
        chosen = nb if there & (chosen < 0) & (u < acc) else chosen
    return chosen


#: Running maxima :func:`largest` keeps.
MAX_LANES = 8


@njit(cache=True)
def largest(values):
    """``max(0, max(values))``, NaN entries passed over: the most a cue reaches on the lattice.

    It keeps :data:`MAX_LANES` running maxima, one per lane of ``values``,
    and takes the largest of them at the end: the same value as a single
    running maximum from 0 (in whatever order it meets them, the largest value
    is the largest, and a -0 never replaces the +0 it starts from), without
    that one's chain of dependent comparisons. On the default scenario's three 201 x 201
    cues at step 4,500: 129 -> 28 µs, and :func:`decide_moves` (parallel build,
    2 threads) 860 -> 795 µs.
    """
    m = values.shape[0]
    lanes = np.zeros(MAX_LANES)
    full = m - m % MAX_LANES
    for j in range(0, full, MAX_LANES):
        for lane in range(MAX_LANES):
            v = values[j + lane]
            lanes[lane] = v if v > lanes[lane] else lanes[lane]
    top = 0.0
    for j in range(full, m):
        v = values[j]
        top = v if v > top else top
    for lane in range(MAX_LANES):
        top = lanes[lane] if lanes[lane] > top else top
    return top


#: ``decide_moves`` bounds move probabilities (one pass over the lattice) only from this many cells
#: per lattice point on.
BOUND_MIN_CELLS_PER_POINT = 8


@njit(cache=True)
def lists_movers(n, n_points, cued):
    """Whether :func:`decide_moves` screens ``n`` cells on ``n_points`` points and lists its movers.

    From :data:`~metacoop.kernels.dispatch.PARALLEL_MIN_ITEMS` cells on, without cues (``cued``), with
    at least one cell per :data:`BOUND_MIN_CELLS_PER_POINT` points; its caller then applies the moves
    from its lists (:func:`apply_listed` with ``beside``).
    """
    return n * BOUND_MIN_CELLS_PER_POINT >= n_points and not cued and n >= PARALLEL_MIN_ITEMS


@sized_kernel(first_arg, DRAW_MIN_CELLS)
def decide_moves(
    n, uid, pos, clone, phen, state, flags, p_diff, p_hapt, ecm, dims, ndim, upwind,
    key, stream, step, target, boost, cues, cue_sens, cue_level, slope, marks, listed, counts,
):
    """Choose each cell's move from the diffusion-haptotaxis probabilities.

    The probability of moving to neighbour ``nb`` during one step is
    ``p_diff + p_hapt * g`` with ``p_diff = D dt / dx**2`` and
    ``p_hapt = Phi dt / dx**2`` (Anderson 2005; Franssen et al. 2019), where
    the ECM gradient term ``g`` is either the upwind difference
    ``max(0, w_nb - w)`` (never negative) or Franssen's central difference
    ``+-(w_plus - w_minus) / 4`` along the move's axis. A missing neighbour
    (no-flux edge) has probability 0; its mass stays with the cell.

    Modifiers (see :mod:`metacoop.core.modifiers`; ``None`` when there are
    none, which compiles a version without them): ``boost`` (per point, or
    empty) multiplies ``p_diff`` at the cell's point; each cue ``k`` adds
    ``cue_sens[k, clone, phen] * max(0, cues[k, nb] - cues[k, here])`` (cells
    climb the cue) or, where ``cue_level[k]`` is 1, ``cue_sens[k, clone, phen] *
    cues[k, nb]`` (cells prefer points where the cue is high, e.g. tracks).

    Most cells stay in a step (with Franssen's parameters a cell moves with
    probability under 0.1), so each cell's uniform draw is first compared with
    an upper bound of its total move probability: ``2 ndim (p_diff + c) +
    |p_hapt| slope[p]``, where ``c`` sums each cue's sensitivity times the
    most the cue can add to one move: its largest value on the lattice for a
    level cue, and for a cue the cell climbs that value less the cue at the
    cell's own point (no neighbour lies higher: in the default scenario 22
    instead of 31 % of the cells then pass the screen), and ``slope[p]`` sums
    the absolute gradient terms ``|g|`` of every move from the cell's point
    ``p``. A draw above the
    bound means the cell stays, as the full computation would find, so the
    neighbours are only looked at for the cells that may move: the outcome is
    the same, bit for bit, as without the bound. The slopes are one pass over
    the lattice, made only with at least one cell per
    :data:`BOUND_MIN_CELLS_PER_POINT` points. (A bound from the lattice's
    largest ECM instead of the point's own slopes let six cells in seven
    through in a packed tumour on degraded ECM.)

    Args:
        target: output, int64, at least ``n`` entries: the destination (flat
            index) of each cell that wants to move, which also gets
            :data:`MOVING` in ``flags``; untouched for the others.
            :func:`apply_moves` applies them. Where :func:`lists_movers` is
            true, the destinations of the listed cells instead, in the order
            of ``listed`` (``target[j]`` for ``listed[j]``), and no flag is set.
        slope: scratch, float64 per lattice point.
        marks: scratch, uint8, at least ``n`` entries.
        listed, counts: where :func:`lists_movers` is true, output: the
            cells that want to move, block by block as
            :func:`~metacoop.kernels.bookkeeping.list_flagged` lists them
            (``listed``: int64, at least ``n`` entries; ``counts``: one per
            block), for :func:`apply_listed` (``beside``); otherwise untouched.

    From :data:`~metacoop.kernels.dispatch.PARALLEL_MIN_ITEMS` cells on and
    without cues, the bounds are checked first for every cell by a loop
    without branches, which the compiler vectorises (the hashes of eight
    cells at a time): it marks in ``marks`` the live active cells whose draw
    is below their bound, and only marked cells are then looked at (at 1e6
    cells on 2 threads the kernel went from 4.6 to 3.7 ms; the draws and
    bounds alone from 2.2 to 1.2 ms). A mark is the whole rule's screen, so
    the marked cells only choose their neighbour. Each block of cells lists
    its marked cells, visits them from the list and keeps the movers in it,
    so that the moves need no listing pass of their own. With the neighbour
    chosen without branches (:func:`_chosen_neighbour`) the kernel went from
    5.0-5.2 to 3.7-4.2 ms a step within the 1e6-cell benchmark in 2-D (one
    cell in eight moving); on captured arguments the branch-free choice
    alone took the visits from 2.3 to 1.45 ms.

    Returns the number of cells that want to move.
    """
    nz, ny, nx = dims[0], dims[1], dims[2]
    nd = 2 * ndim
    movers = 0
    # The bounds need one pass over the lattice: with few cells per point that costs more than it
    # saves, so then no cell is skipped (the outcome is the same).
    bounded = n * BOUND_MIN_CELLS_PER_POINT >= ecm.shape[0]
    if bounded:
        for row in prange(nz * ny):  # slope[p]: the gradient terms of point p's moves, summed (see above)
            # A missing neighbour row is the row itself: its terms are then 0 (upwind) or an extra
            # |difference| (central), never less than the true sum.
            at, up, down, below, above = _row_starts(row, nx, ny, nz, ndim)
            w, wu, wd = ecm[at : at + nx], ecm[up : up + nx], ecm[down : down + nx]
            wb, wa = ecm[below : below + nx], ecm[above : above + nx]
            out = slope[at : at + nx]
            for x in range(nx):
                wl = w[x - 1] if x > 0 else w[x]
                wr = w[x + 1] if x < nx - 1 else w[x]
                if upwind:
                    w0 = w[x]
                    out[x] = (max(wl - w0, 0.0) + max(wr - w0, 0.0) + max(wu[x] - w0, 0.0)
                              + max(wd[x] - w0, 0.0) + max(wb[x] - w0, 0.0) + max(wa[x] - w0, 0.0))
                else:
                    out[x] = 0.5 * (abs(wr - wl) + abs(wd[x] - wu[x]) + abs(wa[x] - wb[x]))
    n_cues = 0
    if cues is not None:
        n_cues = cues.shape[0]
    cue_max = np.zeros(n_cues)
    if cues is not None and bounded:
        for k in range(n_cues):
            cue_max[k] = largest(cues[k])
    # (Only from PARALLEL_MIN_ITEMS cells on, where the parallel build always runs: numba's serial build
    # does not vectorise the screen, and there it costs more than it saves; the parallel build does, 4
    # times faster than testing each cell's bound below.)
    if lists_movers(n, ecm.shape[0], cues is not None):
        prefix = draw_prefix(key, stream, step)
        for i in prange(n):
            c = clone[i]
            ph = phen[i]
            p = pos[i]
            pd = p_diff[c, ph]
            if boost is not None and boost.shape[0] > 0:
                pd *= boost[p]
            ph_ = p_hapt[c, ph]
            u = uniform_after(prefix, uid[i], 0)
            below = not (u >= (nd * pd + abs(ph_) * slope[p]) * (1.0 + 1e-9))
            marks[i] = (((flags[i] & DEAD) == 0) & (state[i] == ACTIVE) & ((pd != 0.0) | (ph_ != 0.0))
                        & below)
        for block in prange(counts.shape[0]):
            lo = block * LIST_BLOCK
            k = list_block(n, marks, np.uint8(1), block, listed)  # the block's marked cells
            kept = lo
            for j in range(lo, k):  # visit them, keeping the movers listed (kept <= j)
                i = listed[j]
                c, ph, p = clone[i], phen[i], pos[i]
                pd, ph_, _ = _move_numbers(c, ph, p, p_diff, p_hapt, boost, None, None)
                x, y, z = _coords(p, nx, ny)
                u = uniform_after(prefix, uid[i], 0)
                nb = _chosen_neighbour(u, p, x, y, z, pd, ph_, c, ph, ecm, nx, ny, nz, ndim, upwind, cues,
                                       cue_sens, cue_level, False)
                if nb >= 0:
                    listed[kept] = i
                    target[kept] = nb
                    kept += 1
            counts[block] = kept - lo
            movers += kept - lo
        return movers
    for i in prange(n):
        if flags[i] & DEAD or state[i] != ACTIVE:
            continue
        c = clone[i]
        ph = phen[i]
        p = pos[i]
        pd, ph_, cued = _move_numbers(c, ph, p, p_diff, p_hapt, boost, cues, cue_sens)
        if pd == 0.0 and ph_ == 0.0 and not cued:
            continue
        u = uniform(key, stream, step, uid[i], 0)
        if bounded:
            one = pd
            if cues is not None and cued:
                for k in range(n_cues):  # (what cue k can add to one move: see the docstring)
                    top = cue_max[k] if cue_level[k] else cue_max[k] - cues[k, p]
                    one += max(cue_sens[k, c, ph], 0.0) * top
            if u >= (nd * one + abs(ph_) * slope[p]) * (1.0 + 1e-9):  # above every partial sum: stays
                continue
        x, y, z = _coords(p, nx, ny)
        nb = _chosen_neighbour(u, p, x, y, z, pd, ph_, c, ph, ecm, nx, ny, nz, ndim, upwind, cues, cue_sens,
                               cue_level, cued)
        if nb >= 0:
            target[i] = nb
            flags[i] |= MOVING
            movers += 1
    return movers


@njit(cache=True)
def apply_listed(pos, phen, target, flags, occ, mes, capacity, slots, counts, beside=False):
    """Apply the moves listed by :func:`~metacoop.kernels.bookkeeping.list_flagged`, in cell order.

    Cell ``slots[j]`` moves to ``target[slots[j]]`` and its :data:`MOVING`
    is cleared; with ``beside`` (the lists of :func:`decide_moves`) it moves
    to ``target[j]`` and no flag is touched: the destinations are then read
    in order, not gathered from a per-cell array (at 1e6 cells in 2-D with one
    in eight moving, 1.0-1.1 -> 0.26-0.33 ms a step within the run). A move
    into a point holding ``capacity`` cells is cancelled. ``occ`` and ``mes``
    (the cells and the mesenchymal cells at each point) follow the moves.

    Returns how many were made.
    """
    moved = 0
    for block in range(counts.shape[0]):
        for j in range(block * LIST_BLOCK, block * LIST_BLOCK + counts[block]):
            i = slots[j]
            if beside:
                t = target[j]
            else:
                flags[i] &= KEEP_NOT_MOVING
                t = target[i]
            if occ[t] < capacity:
                p = pos[i]
                m = np.uint8(phen[i])
                occ[p] -= 1
                occ[t] += 1
                mes[p] -= m
                mes[t] += m
                pos[i] = t
                moved += 1
    return moved


def apply_moves(n, pos, phen, target, flags, occ, mes, capacity, slots):
    """Apply the moves the decide kernels flagged, in cell order; return how many were made.

    A cell with :data:`MOVING` in ``flags`` goes to ``target[i]``; a move into
    a full point is cancelled; :data:`MOVING` is cleared. ``occ`` and ``mes``
    (per point: cells, mesenchymal cells) follow the moves.

    A cell's decision reads only its own point and the fields, never another
    cell's position or the occupancy, so deciding every cell first (in
    parallel) and then applying in order gives the same outcome on any number
    of threads.

    The movers are first listed in ``slots`` (int64 scratch, at least ``n``
    entries) by :func:`~metacoop.kernels.bookkeeping.list_flagged`, block by
    block (on several threads at a parallel size) without branching on each
    cell; the moves are then applied from the lists, in order
    (:func:`apply_listed`). Testing each cell in the apply loop mispredicted
    on most movers (1.7 -> 0.7 ms at 1e6 cells with one in eight moving);
    listing on two threads took the listing from 1.15 to 0.58 ms (A/B in one
    process).
    """
    counts = np.empty(list_blocks(n), np.int64)
    list_flagged(n, flags, MOVING, slots, counts)
    return apply_listed(pos, phen, target, flags, occ, mes, capacity, slots, counts)


@njit(cache=True, inline="always")
def _blocked(met, i, met_room):
    m = met[i]
    return m >= 0 and m < met_room.shape[0] and met_room[m] <= 0


@sized_kernel(first_arg)
def advance_cycle(n, cycle_h, state, met, flags, met_room, dt, pos, speed):
    """Advance the cycle clock of every live active cell by ``dt``; return how many are due.

    Cells of a metastasis with no room left (``met_room[met] <= 0``: an
    avascular micrometastasis at its size limit) do not advance. ``speed``
    (per lattice point, or empty) multiplies the clock's rate at the cell's point.

    Without metastases (a primary site) the loop is written without
    branches, the same values: a clock that does not advance keeps its value
    exactly, and a due clock is told from its value as stored. Without speed
    factors it vectorises (about 15 times faster; the compiler makes a loop
    of its own for an empty ``speed``, so one loop serves both: 21.3 against
    21.6 µs at 77,000 cells without speed, 41.1 against 40.6 µs at 31,757
    with, serial builds, against the two loops it replaced). With them (the
    default scenario's growth factor) it is still 4.5 times faster than the
    loop with branches below: 160 -> 35 µs on the default scenario's 31,757
    primary cells at step 4,500, whose unpredictable branch was the due count.
    """
    due = 0
    if met_room.shape[0] == 0:
        stored = cycle_h.dtype.type  # (rounds as the store into cycle_h does)
        for i in prange(n):
            advancing = ((flags[i] & DEAD) == 0) & (state[i] == ACTIVE)
            c = cycle_h[i]
            ticked = stored(c - dt * factor_or_one(speed, np.uintp(pos[i])))  # (dt * 1.0 is dt)
            c = ticked if advancing else c
            cycle_h[i] = c
            due += advancing & (c <= 0.0)
        return due
    for i in prange(n):
        if flags[i] & DEAD or state[i] != ACTIVE or _blocked(met, i, met_room):
            continue
        cycle_h[i] -= dt * factor_or_one(speed, pos[i])
        if cycle_h[i] <= 0.0:
            due += 1
    return due


#: The mark :func:`mark_due` gives a cell that may divide (listed by :func:`list_flagged`).
DUE = np.uint8(1)
#: :func:`list_due` marks the due cells in one pass over every cell's clock and room (:func:`mark_due`'s
#: ``dense``) when at least one cell in this many is due, or from PARALLEL_MIN_ITEMS cells on (where the
#: two-pass marking's second parallel region costs more): 29 against 46 µs late in franssen2019 (two cells
#: in three due), 135 against 165 µs at 1e6 cells in 2-D (1.6 % due), equal at 1e5, 4.7 against 2.2 µs at
#: 1e4 (1 % due).
DENSE_DUE_RATIO = 8


def list_due(n, cycle_h, pos, room, due, counts, marks, n_due=0) -> int:
    """List the cells that may divide: those whose cycle clock has run out, block by block; return how many.

    Block ``b`` (cells ``b * LIST_BLOCK`` up to the next block) writes the
    slots of its due cells, ascending, to ``due`` from ``b * LIST_BLOCK`` on
    and their number to ``counts[b]``; ``due`` (int64) has at least ``n``
    entries and ``counts`` one per block. With ``room`` (per point, from
    :func:`mark_room`, or empty) a cell is listed only where its point or a
    neighbour has room: the division loop only fills points, so a cell at a
    point without room would be passed over with the same outcome.

    :func:`mark_due` marks those cells in ``marks`` (uint8 scratch, at least
    ``n`` entries), and :func:`~metacoop.kernels.bookkeeping.list_flagged`
    lists the marks eight at a time, skipping words without one. On arguments
    captured from franssen2019 at 67,000 cells (43,000 due) the marks took the
    listing from 69 to 29 µs (within that run, where its arrays come cold from
    other kernels, by much less: whole runs 7.21 -> 7.16 s), and at 1e6 cells
    from 0.70 to 0.20 ms in 2-D and 0.71 to 0.18 ms in 3-D. Testing the room
    while marking rather than while listing (where each cell's count waited
    for its room load) took it from 55 to 33 µs at 70,000 cells within
    franssen2019 (calls alternating; 4.0 against 4.5 µs at 20,000 cells).
    ``n_due`` (how many cells :func:`advance_cycle` found due) chooses the
    marking: in one pass where many are due (:data:`DENSE_DUE_RATIO`, see
    :func:`mark_due`); the marks are the same either way.
    """
    dense = n_due * DENSE_DUE_RATIO >= n or n >= PARALLEL_MIN_ITEMS
    mark_due(n, cycle_h, pos, room, marks, dense)
    return list_flagged(n, marks, DUE, due, counts)


#: Cells from which :func:`mark_due` may run on several threads (see :mod:`~metacoop.kernels.dispatch`).
#: Within franssen2019 (builds alternating call by call, medians) two threads took the marking from 8.6 to
#: 6.9 µs at 16,000-33,000 cells and from 22.7 to 15.2 µs at 65,000-84,000; at 8,000-16,000 they were
#: even (5.5 against 5.1 µs), below 4,000 slower (2.0 against 3.2 µs).
DUE_MIN_CELLS = 16_384


@sized_kernel(first_arg, DUE_MIN_CELLS)
def mark_due(n, cycle_h, pos, room, marks, dense=False):
    """``marks[i] = DUE`` where cell ``i``'s cycle clock has run out (and, with ``room``, there is room).

    A first pass without branches, which the compiler vectorises, marks the
    cells whose clock has run out; a second clears the marks of cells without
    room, eight cells at a time, skipping a uint64 of marks that is 0. With
    ``dense`` and ``room``, two branch-free passes read every cell's room,
    then its clock: faster where many cells are due, as late in franssen2019,
    whose packed tumour keeps two cells in three due and waiting for room,
    and at 1e6 cells on two threads; slower at 10,000 cells with 1 % due (as
    one pass: 29 against 46 µs at 67,000 cells, 135 against 165 µs at 1e6
    with 1.6 % due, 4.7 against 2.2 µs at 10,000). The room is looked up in a
    pass of its own: in one loop with the clocks, the serial build's code
    stayed scalar (31 against 15 µs on cells captured at 67,000); the
    parallel build, whose arrays the compiler may assume distinct, vectorises
    either form (10 µs on two threads).
    """
    if dense and room.shape[0] > 0:
        for i in prange(n):
            marks[i] = room[np.uintp(pos[i])]
        for i in prange(n):
            marks[i] = (cycle_h[i] <= 0.0) & (marks[i] != 0)
        return
    for i in prange(n):
        marks[i] = cycle_h[i] <= 0.0  # (DUE is 1)
    if room.shape[0] == 0:
        return
    full = n // 8
    packed = marks[: full * 8].view(np.uint64)
    for w in prange(full + 1):
        if w < full and packed[w] == 0:
            continue
        for i in range(8 * w, min(8 * w + 8, n)):
            marks[i] &= room[np.uintp(pos[i])] != 0


@njit(cache=True)
def divide(
    n, uid, pos, clone, phen, lineage, parent, birth_h, cycle_h, state, met, flags, met_room,
    occ, mes, capacity, dims, ndim, cycle_shape, cycle_scale, time_h, dt, next_uid, key, stream, step, due,
    counts,
):
    """Divide every live cell whose cycle clock has run out, in cell order.

    The daughter goes to the mother's lattice point if it has room, otherwise
    to a neighbour chosen uniformly among those with room; with no room the
    division waits (contact inhibition) and is tried again next step. Mother
    and daughter draw new cycle durations from
    ``Gamma(cycle_shape[clone, phen], cycle_scale[clone, phen])`` hours, counted
    from the moment the old clock ran out: a clock that ran out part-way through
    this step (``-dt < cycle_h <= 0``) carries its overshoot into both new
    clocks, so cycle lengths are not rounded up to whole steps. A division that
    waited for room starts the new cycles now.
    Daughters are written to slots ``n, n+1, ...``; the arrays must have room
    for every due cell (the caller checks).

    The cells to look at are listed by :func:`list_due` (``due`` and
    ``counts``, block by block), and visited in cell order. Daughters go to
    slots past ``n``, so the lists are never out of date.

    ``occ`` and ``mes`` (per point: cells, mesenchymal cells) count the daughters.

    Returns the number of daughters created.
    """
    nz, ny, nx = dims[0], dims[1], dims[2]
    nd = 2 * ndim
    free = np.empty(6, dtype=np.int64)
    born = 0
    for block in range(counts.shape[0]):
        for slot in range(block * LIST_BLOCK, block * LIST_BLOCK + counts[block]):
            i = due[slot]
            if flags[i] & DEAD or state[i] != ACTIVE or _blocked(met, i, met_room):
                continue
            p = pos[i]
            dest = -1
            if occ[p] < capacity:
                dest = p
            else:
                nfree = 0
                for d in range(nd):
                    nb = _neighbour(p, d, nx, ny, nz, ndim)
                    if nb >= 0 and occ[nb] < capacity:
                        free[nfree] = nb
                        nfree += 1
                if nfree > 0:
                    u = uniform(key, stream, step, uid[i], 0)
                    dest = free[min(int(u * nfree), nfree - 1)]
            if dest < 0:
                continue
            j = n + born
            c = clone[i]
            ph = phen[i]
            uid[j] = next_uid + born
            pos[j] = dest
            clone[j] = c
            phen[j] = ph
            lineage[j] = lineage[i]
            met[j] = met[i]
            if met[i] >= 0 and met[i] < met_room.shape[0]:
                met_room[met[i]] -= 1
            state[j] = ACTIVE
            parent[j] = uid[i]
            birth_h[j] = time_h
            flags[j] = 0
            occ[dest] += 1
            mes[dest] += np.uint8(ph)
            carry = cycle_h[i] if cycle_h[i] > -dt else 0.0
            k_, s_ = cycle_shape[c, ph], cycle_scale[c, ph]
            cycle_h[i] = carry + gamma_variate(k_, s_, key, stream, step, uid[i], 1)
            cycle_h[j] = carry + gamma_variate(k_, s_, key, stream, step, uid[j], 1)
            born += 1
    return born


@sized_kernel(first_array, FIELD_MIN_POINTS)
def mark_room(occ, capacity, dims, ndim, room):
    """``room[p] = 1`` where point ``p`` or one of its neighbours holds fewer than ``capacity`` cells.

    Row by row, on the least occupancy around each point: a neighbour row that
    does not exist (the lattice's edge) is replaced by the row itself, which
    changes no minimum, so the interior of each row is one branch-free loop
    that vectorises (about 10 times faster than testing each neighbour); the
    row's two end points are done apart.
    """
    nz, ny, nx = dims[0], dims[1], dims[2]
    cap = np.uint8(capacity)  # occ is uint8 and capacity at most 255 (the config's bound)
    for row in prange(nz * ny):
        at, up, down, below, above = _row_starts(row, nx, ny, nz, ndim)  # (a missing row: the row itself)
        a, u, d = occ[at : at + nx], occ[up : up + nx], occ[down : down + nx]
        b, c = occ[below : below + nx], occ[above : above + nx]
        r = room[at : at + nx]
        for x in range(1, nx - 1):
            m = min(min(min(a[x - 1], a[x]), min(a[x + 1], u[x])), min(min(d[x], b[x]), c[x]))
            r[x] = m < cap
        for x in (0, nx - 1):
            m = min(min(a[x], u[x]), min(min(d[x], b[x]), c[x]))
            if x > 0:
                m = min(m, a[x - 1])
            if x < nx - 1:
                m = min(m, a[x + 1])
            r[x] = m < cap


@njit(cache=True)
def compact_cells(n, gone, uid, parent, pos, lineage, met, birth_h, cycle_h, wake, clone, phen, state,
                  flags):
    """Drop the cells in slots ``gone`` (ascending, distinct, below ``n``) in place; return the new count.

    The last survivors fill the holes: with ``m = n - len(gone)`` cells left,
    the survivors in slots ``m`` and above move, in slot order, into the holes
    below ``m``, lowest first; every other cell stays in its slot. The work is
    proportional to the number removed, not to ``n`` (an order-keeping
    compaction moves every cell after the first hole: 5 ms per step at 1e6
    cells). The order stays a deterministic function of the run's history.
    The columns are those of :data:`metacoop.core.state.CELL_COLUMNS`.
    """
    k = gone.shape[0]
    m = n - k
    holes = 0
    while holes < k and gone[holes] < m:
        holes += 1
    src = m
    g = holes  # gone[holes:] are the removed slots at or above m, ascending
    for h in range(holes):
        while g < k and gone[g] == src:
            g += 1
            src += 1
        j = gone[h]
        uid[j] = uid[src]
        parent[j] = parent[src]
        pos[j] = pos[src]
        lineage[j] = lineage[src]
        met[j] = met[src]
        birth_h[j] = birth_h[src]
        cycle_h[j] = cycle_h[src]
        wake[j] = wake[src]
        clone[j] = clone[src]
        phen[j] = phen[src]
        state[j] = state[src]
        flags[j] = flags[src]
        src += 1
    return m


#: :func:`scatter_add` adds from the per-point counts (:func:`add_by_tally`) from one cell per this many
#: lattice points on. On franssen2019's primary site (201 x 201, one clone) a scatter took 2.0, 4.2, 14.5,
#: 32.8 and 59.5 µs at 975, 4,521, 17,480, 40,801 and 80,211 cells; the counts take about 4.4 µs whatever
#: the cells.
TALLY_POINTS_PER_CELL = 8


def scatter_add(n, pos, clone, phen, state, flags, table, out, occ=None, mes=None):
    """Add ``table[clone, phen]`` of each live cell in the tissue to ``out[pos]``.

    Arrested cells sit inside capillaries and are skipped. Every point's
    contributions are added in cell order, whatever the number of threads: from
    :data:`~metacoop.kernels.dispatch.PARALLEL_MIN_ITEMS` cells on, each thread
    owns a contiguous range of points and reads every cell
    (:func:`scatter_add_by_points`), so the sums are those of the serial loop,
    bit for bit. ``table`` must be C-contiguous.

    Given ``occ`` and ``mes``, the site's cells and mesenchymal cells at each
    point, a table of one clone is added from those counts
    (:func:`add_by_tally`) where cells are many (one per
    :data:`TALLY_POINTS_PER_CELL` points or more) and none is dead or
    arrested: a pass over the lattice rather than over the cells. A point's
    ``k`` equal contributions are then one product rather than ``k`` sums,
    which may round differently (by an ulp of the sum, and not at all for one
    cell or for values exact in ``out``'s type).
    """
    known = -1  # (whether any cell is to be skipped: not yet known)
    if occ is not None and counts_fit(n, table, out.shape[0]):
        known = int(skips_any(n, state, flags))
        if not known:
            add_by_tally(occ, mes, table, out)
            return
    parts = threads() if n >= PARALLEL_MIN_ITEMS else 1
    if parts > 1:
        scatter_add_by_points(n, pos, clone, phen, state, flags, table, out, parts, known)
    else:
        scatter_add_serial(n, pos, clone, phen, state, flags, table, out, known)


@njit(cache=True)
def scatter_add_serial(n, pos, clone, phen, state, flags, table, out, known=-1):
    """:func:`scatter_add` on one thread.

    ``known`` says whether any cell is to be skipped (0 or 1) where the
    caller has looked already; -1 looks here.

    Indices are taken as unsigned (numba then drops its negative-index
    wrap-around) and the table is read flat: 1.5 times faster than
    ``out[pos[i]] += table[clone[i], phen[i]]``. With one clone (a table of
    one row) the clones are not read: 46 -> 39 µs at franssen2019's 67,000
    cells. A first pass without branches, which the compiler vectorises,
    tells whether any cell is to be skipped; where none is (almost every
    call: dead cells are removed within their step, arrested ones are only
    in organs' vessels) the adding loop reads neither flags nor states:
    37 -> 30 µs on the same cells.
    """
    flat = table.reshape(table.size)
    n_phen = np.uintp(table.shape[1])
    skipped = skips_any(n, state, flags) if known < 0 else known != 0
    if not skipped:
        if table.shape[0] == 1:
            for i in range(n):
                out[np.uintp(pos[i])] += flat[np.uintp(phen[i])]
        else:
            for i in range(n):
                out[np.uintp(pos[i])] += flat[np.uintp(clone[i]) * n_phen + np.uintp(phen[i])]
        return
    if table.shape[0] == 1:
        for i in range(n):
            if (flags[i] & DEAD) | (state[i] == ARRESTED):
                continue
            out[np.uintp(pos[i])] += flat[np.uintp(phen[i])]
        return
    for i in range(n):
        if (flags[i] & DEAD) | (state[i] == ARRESTED):
            continue
        out[np.uintp(pos[i])] += flat[np.uintp(clone[i]) * n_phen + np.uintp(phen[i])]


def counts_serve(n, state, flags, table, n_points) -> bool:
    """Whether :func:`scatter_add` of ``table`` over ``n`` cells on ``n_points`` points takes the counts.

    It does where they fit (:func:`counts_fit`) and no cell is dead or
    arrested (the counts hold every cell at a point).
    """
    return counts_fit(n, table, n_points) and not skips_any(n, state, flags)


def counts_fit(n, table, n_points) -> bool:
    """Whether the counts may stand for ``n`` cells of ``table`` on ``n_points`` points.

    They may with one clone (the table's rows are clones, its columns the two
    phenotypes) and one cell per :data:`TALLY_POINTS_PER_CELL` points or more.
    """
    return table.shape[0] == 1 and table.shape[1] == 2 and n * TALLY_POINTS_PER_CELL >= n_points


@njit(cache=True)
def skips_any(n, state, flags):
    """Whether any of the ``n`` cells is dead or arrested (:func:`scatter_add` skips those).

    One pass without branches, which the compiler vectorises.
    """
    skipped = np.uint8(0)
    for i in range(n):
        skipped |= (flags[i] & DEAD) | np.uint8(state[i] == ARRESTED)
    return skipped != 0


@njit(cache=True)
def add_by_tally(occ, mes, table, out):
    """``out[p] += table[0, 0] * (occ[p] - mes[p]) + table[0, 1] * mes[p]`` at every point.

    :func:`scatter_add` of a one-clone table from the counts of cells
    (``occ``) and of mesenchymal cells (``mes``) at each point, in ``out``'s
    type: without branches, so the compiler vectorises it (4.4 µs on
    201 x 201 float32, against 9.8 µs with the products in float64).
    """
    T = out.dtype.type
    epithelial, mesenchymal = T(table[0, EPITHELIAL]), T(table[0, MESENCHYMAL])
    for p in range(out.shape[0]):
        m = T(mes[p])
        out[p] += epithelial * (T(occ[p]) - m) + mesenchymal * m


@njit(cache=True, parallel=True)
def scatter_add_by_points(n, pos, clone, phen, state, flags, table, out, parts, known=-1):
    """:func:`scatter_add` on ``parts`` threads, each adding only into its own range of points.

    Every thread reads every cell, so what each cell costs to read counts
    twice: as in :func:`scatter_add_serial`, a first pass (on all threads)
    tells whether any cell is to be skipped (unless ``known`` says, 0 or 1),
    and where none is the adding loops read neither flags nor states, nor the
    clones with a one-row table. At 1e6 cells on 2 threads, one clone: 0.87
    -> 0.59 ms a call.
    """
    flat = table.reshape(table.size)
    n_phen = np.uintp(table.shape[1])
    size = out.shape[0]
    skipped = known
    if known < 0:
        found = 0
        for i in prange(n):
            found += ((flags[i] & DEAD) != 0) | (state[i] == ARRESTED)
        skipped = found
    one_row = table.shape[0] == 1
    for part in prange(parts):
        lo = np.uintp(size * part // parts)
        width = np.uintp(size * (part + 1) // parts) - lo
        if skipped == 0 and one_row:
            for i in range(n):
                p = np.uintp(pos[i]) - lo  # wraps below lo, so one comparison tests the range
                if p < width:
                    out[p + lo] += flat[np.uintp(phen[i])]
        elif skipped == 0:
            for i in range(n):
                p = np.uintp(pos[i]) - lo
                if p < width:
                    out[p + lo] += flat[np.uintp(clone[i]) * n_phen + np.uintp(phen[i])]
        else:
            for i in range(n):
                p = np.uintp(pos[i]) - lo
                if p >= width or (flags[i] & DEAD) | (state[i] == ARRESTED):
                    continue
                out[p + lo] += flat[np.uintp(clone[i]) * n_phen + np.uintp(phen[i])]


#: Most occupied vessel points for which :func:`select_on_vessels` finds the cells on them by comparing
#: every cell's point with each in turn (one vectorised pass apiece, 1.8 µs at 67,000 cells) rather than
#: by looking up every cell's point in the vessel map (a gather, 14 µs).
COMPARED_POINTS = 6


@sized_kernel(first_arg)
def select_on_vessels(n, uid, pos, phen, state, flags, vessel, p_enter, key, stream, step, out, doorway,
                      occupied):
    """Mark live active cells on a vessel point that enter it this step (Franssen 2019).

    Mesenchymal cells may enter any vessel point (``vessel == 1`` normal,
    ``2`` ruptured or ``3`` lymphatic); epithelial cells only ruptured and
    lymphatic ones, and normal points marked in ``doorway`` (per point, or
    empty). Each eligible cell enters with probability ``p_enter``.
    ``occupied`` lists every vessel point that holds a cell (see
    :func:`~metacoop.kernels.bookkeeping.occupied_points`).

    A first pass without branches, which the compiler vectorises, marks the
    cells on those points: up to :data:`COMPARED_POINTS` of them by comparing
    each cell's point with each, otherwise by the vessel map. The marked cells
    (a few in tens of thousands) are then visited, eight cells skipped at a
    time where a uint64 of marks is 0. On cells captured from franssen2019 at
    67,000 cells with two occupied vessel points: 23 -> 9 µs.

    Returns the number of cells marked in ``out`` (uint8 per cell).
    """
    held = occupied.shape[0]
    if held == 0:  # no cell on a vessel point
        for i in prange(n):
            out[i] = 0
        return 0
    if held <= COMPARED_POINTS:
        q = np.int32(occupied[0])  # (pos is int32: the comparisons then run in 32-bit lanes)
        for i in prange(n):
            out[i] = pos[i] == q
        for j in range(1, held):
            q = np.int32(occupied[j])
            for i in prange(n):
                out[i] |= pos[i] == q
    else:
        for i in prange(n):
            out[i] = vessel[np.uintp(pos[i])] != 0
    count = 0
    words = n // 8
    packed = out[: words * 8].view(np.uint64)
    for b in prange(words + 1):
        if b < words and packed[b] == 0:
            continue
        for i in range(8 * b, min(8 * b + 8, n)):
            if out[i] == 0:
                continue
            out[i] = 0
            if flags[i] & DEAD or state[i] != ACTIVE:
                continue
            if vessel[pos[i]] == 1 and phen[i] != MESENCHYMAL and (doorway.shape[0] == 0
                                                                  or doorway[pos[i]] == 0):
                continue
            if p_enter >= 1.0 or uniform(key, stream, step, uid[i], 0) < p_enter:
                out[i] = 1
                count += 1
    return count


@njit(cache=True)
def listed_near(n, pos, state, flags, leaving, near, out):
    """List the live active cells not ``leaving`` whose point has ``near[point] >= 0``; return how many.

    ``out`` (int64, at least ``n`` entries) receives their slots, ascending;
    ``leaving`` is a boolean per cell. One pass over the cells for what took
    NumPy a gather and four masks over all of them (the escorts of
    :mod:`~metacoop.mechanisms.collective_migration`).
    """
    k = 0
    for i in range(n):
        if near[pos[i]] >= 0 and not leaving[i] and state[i] == ACTIVE and (flags[i] & DEAD) == 0:
            out[k] = i
            k += 1
    return k


@njit(cache=True)
def fresh_cycles(slots, uid, clone, phen, cycle_h, shape, scale, key, stream, step):
    """Start a new cell cycle for the cells in ``slots`` (Gamma durations, draws from index 2)."""
    for j in range(slots.shape[0]):
        i = slots[j]
        c = clone[i]
        ph = phen[i]
        cycle_h[i] = gamma_variate(shape[c, ph], scale[c, ph], key, stream, step, uid[i], 2)


@sized_kernel(first_arg)
def random_walk(n, uid, pos, p_diff, p_chem, signal, half, dims, ndim, key, stream, step):
    """Move agents that do not compete for space (stromal cells) by diffusion and chemotaxis.

    An agent moves to neighbour ``nb`` with probability ``p_diff + p_chem *
    max(0, cue[nb] - cue[here])`` (as :func:`decide_moves`, without capacity),
    where the cue is the receptor occupancy ``c / (half + c)`` of the
    ``signal`` ``c`` (flat, per point), as
    :func:`~metacoop.kernels.fields.saturation` computes it (in the signal's
    type), at the points the agents look at only: for 200 macrophages on a
    201 x 201 float64 lattice that spared a pass over the lattice and its
    array every step (14-33 µs on one or two threads).

    Returns the number of agents that moved.
    """
    nz, ny, nx = dims[0], dims[1], dims[2]
    nd = 2 * ndim
    T = signal.dtype.type
    h, zero, one = T(half), T(0.0), T(1.0)
    moved = 0
    for i in prange(n):
        p = pos[i]
        rest = p // nx
        x, y, z = p % nx, rest % ny, rest // ny
        u = uniform(key, stream, step, uid[i], 0)
        acc = 0.0
        for d in range(nd):
            nb = _neighbour_at(p, d, x, y, z, nx, ny, nz, ndim)
            if nb < 0:
                continue
            g = saturated(signal[nb], h, zero, one) - saturated(signal[p], h, zero, one)
            if g < 0.0:
                g = 0.0
            acc += p_diff + p_chem * g
            if u < acc:
                pos[i] = nb
                moved += 1
                break
    return moved
