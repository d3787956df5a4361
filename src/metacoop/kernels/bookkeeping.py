"""Small per-step passes of the orchestration code, each replacing a handful of NumPy calls.

Every step the engine and the mechanisms ask small questions of small
arrays: is any cell's death requested, which CTCs have reached a capillary
bed, which metastases may switch. Asked with NumPy each costs a few calls of
about a microsecond (temporaries, masks, ``flatnonzero``); each kernel here
answers one of them in one pass. They do the same arithmetic in the same
order as the NumPy expressions they replace (no fast-math, so no reassociation
or fused multiply-add), and therefore give the same bits; tests compare them
with those expressions.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from metacoop.kernels.dispatch import first_arg, sized_kernel
from metacoop.kernels.fields import factor_or_one
from metacoop.kernels.random import uniform


@njit(cache=True)
def any_flag(n, flags, bit):
    """Whether ``flags[i] & bit`` is non-zero for some ``i < n``.

    The flags are OR-ed together (a branch-free loop the compiler vectorises)
    and tested once, so the whole array is read even when the first cell has the bit.
    """
    acc = np.uint8(0)
    for i in range(n):
        acc |= flags[i]
    return (acc & bit) != 0


@njit(cache=True)
def add_counts(clone, counts):
    """Add one to ``counts[clone[j]]`` for every ``j`` (``counts += np.bincount(clone, minlength=...)``).

    Raises IndexError for a clone outside ``counts`` (where the NumPy form would fail on the shapes).
    """
    size = counts.shape[0]
    for j in range(clone.shape[0]):
        c = clone[j]
        if c < 0 or c >= size:
            raise IndexError("clone index outside the counters")
        counts[c] += 1


@njit(cache=True)
def vacate(occ, mes, pos, phen, slots):
    """Take the cells in ``slots`` off the per-point counts: ``occ`` (cells) and ``mes`` (mesenchymal cells).

    ``np.subtract.at(occ, pos[slots], 1)`` and ``np.subtract.at(mes, pos[slots], phen[slots])``.

    NumPy's ``ufunc.at`` cost 40 µs for the one or two cells of a death or an
    intravasation late in franssen2019, its code cold between such events.
    """
    for j in range(slots.shape[0]):
        i = slots[j]
        occ[pos[i]] -= 1
        mes[pos[i]] -= np.uint8(phen[i])


@njit(cache=True)
def route_destinations(u, route, cdf, empty, last, out):
    """``out[j]``: the organ a CTC entering ``route[j]`` goes to, by inverting ``u[j]`` on the route's CDF.

    ``cdf[r]`` holds route ``r``'s cumulative flow fractions over the organs;
    the organ is ``min(np.searchsorted(cdf[r], u[j], side="right"), last)``.
    A CTC on no route (``route[j] < 0``) or on one that reaches no organ
    (``empty[r]``) keeps ``out[j]``. What NumPy gives route by route, in one
    call: NumPy's calls took about 90 µs a CTC entering the blood late in
    franssen2019, their code cold between such events.
    """
    for j in range(u.shape[0]):
        r = route[j]
        if r < 0 or empty[r]:
            continue
        out[j] = min(np.searchsorted(cdf[r], u[j], side="right"), last)
    return out


@njit(cache=True)
def ctc_slots(ids, n_ctcs, ctc, n_cells, out):
    """``out[i] = np.searchsorted(ids[:n_ctcs], ctc[i])`` for every ``i < n_cells`` (``ids`` ascending).

    The slot in the CTC table of each circulating cell's CTC, by binary search:
    what NumPy's ``searchsorted`` gives, without its call overhead (called
    several times a step while CTCs circulate).
    """
    for i in range(n_cells):
        v = ctc[i]
        lo = 0
        hi = n_ctcs
        while lo < hi:
            mid = (lo + hi) >> 1
            if ids[mid] < v:
                lo = mid + 1
            else:
                hi = mid
        out[i] = lo


@njit(cache=True)
def occupied_points(occ, points, out):
    """Write those of ``points`` that hold a cell (``occ`` per lattice point) to ``out``, in order.

    Returns how many there are (``out`` has at least ``len(points)`` entries).
    """
    k = 0
    for j in range(points.shape[0]):
        if occ[points[j]]:
            out[k] = points[j]
            k += 1
    return k


#: Cells per block of the listing kernels (:func:`list_flagged`,
#: :func:`~metacoop.kernels.cells.list_due`): each block lists its own cells into its own range of
#: the output, on any thread.
LIST_BLOCK = 16_384


def list_blocks(n: int) -> int:
    """Number of blocks the listing kernels split ``n`` cells into (the length of their ``counts``)."""
    return (n + LIST_BLOCK - 1) // LIST_BLOCK


@njit(cache=True, inline="always")
def list_block(n, flags, bit, block, slots):
    """List the cells of block ``block`` (of ``n``) with ``flags[i] & bit`` into ``slots``; return the end.

    The block's cells are ``block * LIST_BLOCK`` up to the next block; their slots are written, ascending,
    from ``block * LIST_BLOCK`` on, and the index past the last one is returned. Eight cells are skipped
    at a time where one uint64 of flags has the bit in none of its bytes (see :func:`list_flagged`).
    """
    full = n // 8
    packed = flags[: full * 8].view(np.uint64)
    in_bytes = np.uint64(0x0101010101010101) * np.uint64(bit)
    lo = block * LIST_BLOCK  # (a multiple of 8: blocks start at a word)
    hi = min(lo + LIST_BLOCK, n)
    k = lo
    for w in range(lo // 8, min(hi // 8, full)):
        if (packed[w] & in_bytes) == 0:
            continue
        for i in range(8 * w, 8 * w + 8):
            slots[np.uintp(k)] = i
            k += (flags[i] & bit) != 0
    for i in range(max(lo, 8 * full), hi):  # the cells after the last whole word
        slots[np.uintp(k)] = i
        k += (flags[i] & bit) != 0
    return k


@sized_kernel(first_arg)
def list_flagged(n, flags, bit, slots, counts):
    """List the cells ``i < n`` with ``flags[i] & bit``, block by block.

    Block ``b`` (cells ``b * LIST_BLOCK`` up to the next block) writes their
    slots, ascending, to ``slots`` from ``b * LIST_BLOCK`` on and their number
    to ``counts[b]`` (``slots``: int64, at least ``n`` entries; ``counts``: one
    per block, :func:`list_blocks`). Within a block, eight cells are skipped
    at a time where one uint64 of flags has the bit in none of its bytes, and
    the others are listed without branching on each cell, eight to a word in a
    loop of fixed length, with unsigned indices (at franssen2019's 67,000
    cells 14.5 -> 5.8 µs, at 1e6 on two threads 0.17 -> 0.09 ms, on
    captured arguments). Blocks run on several threads from
    :data:`~metacoop.kernels.dispatch.PARALLEL_MIN_ITEMS` cells on; the lists
    do not depend on that. Returns the number listed (the sum of ``counts``).
    """
    for block in prange(counts.shape[0]):
        counts[block] = list_block(n, flags, bit, block, slots) - block * LIST_BLOCK
    total = 0
    for block in range(counts.shape[0]):
        total += counts[block]
    return total


@njit(cache=True)
def join_lists(slots, counts):
    """Move the block lists of :func:`list_flagged` down into one list at the start of ``slots``.

    Returns the length of the joined list.
    """
    k = 0
    for block in range(counts.shape[0]):
        lo = block * LIST_BLOCK
        for j in range(counts[block]):
            slots[k + j] = slots[lo + j]
        k += counts[block]
    return k


def flagged_slots(n: int, flags: np.ndarray, bit, out: np.ndarray) -> int:
    """Write the slots ``i < n`` with ``flags[i] & bit`` to ``out``, ascending; return how many.

    The slots of ``np.flatnonzero(flags[:n] & bit)``: listed block by block
    (:func:`list_flagged`, on several threads at a parallel size), then joined.
    """
    counts = np.empty(list_blocks(n), np.int64)
    list_flagged(n, flags, bit, out, counts)
    return join_lists(out, counts)


@njit(cache=True)
def tally_switched(n, marked, clone, phen, counts, pos, mes):
    """Count the cells marked as having switched phenotype, and move them between the per-point counts.

    For every ``i < n`` whose ``marked[i]`` is not 0, add one to
    ``counts[phen[i], clone[i]]`` and to ``mes[pos[i]]`` (mesenchymal cells per
    point) if ``phen[i]`` (the phenotype after the switch) is mesenchymal,
    otherwise take one off it.

    What ``np.flatnonzero`` and ``np.bincount`` per phenotype would give, in
    one pass: the marks are read eight at a time (one uint64) and only a word
    with a mark is looked into. Marks are rare (cells that switched phenotype
    this step), so at 1e6 cells this takes a small fraction of the 1.3 ms
    that listing them took.
    """
    words = n // 8
    packed = marked[: words * 8].view(np.uint64)
    for w in range(words + 1):
        if w < words and packed[w] == 0:
            continue
        for i in range(8 * w, min(8 * w + 8, n)):
            if marked[i]:
                counts[phen[i], clone[i]] += 1
                if phen[i] == 1:  # (cells.MESENCHYMAL: that module imports this one)
                    mes[pos[i]] += np.uint8(1)
                else:
                    mes[pos[i]] -= np.uint8(1)


@njit(cache=True)
def order_by_point(n, pos, n_points, out):
    """Write the slots ``0..n-1`` to ``out`` ordered by lattice point, ties in slot order.

    A stable counting sort, O(n + n_points): the slots of ``np.argsort(pos[:n], kind="stable")``.
    """
    start = np.zeros(n_points + 1, np.int64)
    for i in range(n):
        start[pos[i] + 1] += 1
    for p in range(n_points):
        start[p + 1] += start[p]
    for i in range(n):
        p = pos[i]
        out[start[p]] = i
        start[p] += 1


@njit(cache=True)
def arrived_slots(n, remaining_h, dest, eps, out):
    """Write the CTC slots ``i < n`` that reached their bed to ``out``; return how many.

    A CTC has reached it when ``remaining_h[i] <= eps`` and ``dest[i] >= 0``: the slots are
    those of ``np.flatnonzero((remaining_h[:n] <= eps) & (dest[:n] >= 0))``, in order.
    """
    k = 0
    for i in range(n):
        if remaining_h[i] <= eps and dest[i] >= 0:
            out[k] = i
            k += 1
    return k


@njit(cache=True)
def advance_ctcs(n, time_h, dt_h, start_h, remaining_h, dest, exposed_h, carry_h, step_h, age_h):
    """Move ``n`` CTCs through the step ``[time_h, time_h + dt_h]`` (see ``Circulation.advance``).

    Per CTC, as the NumPy expressions it replaces::

        elapsed = clip(time_h + dt_h - maximum(start_h, time_h), 0, dt_h)
        in_transit = elapsed if dest < 0 else minimum(elapsed, maximum(remaining_h, 0))
        exposed_h = in_transit + carry_h;  carry_h = elapsed - in_transit
        step_h = elapsed;  age_h += elapsed;  remaining_h -= elapsed

    (``maximum``/``minimum``/``clip`` as NumPy's for values that are not NaN;
    none of these times is.)
    """
    end = time_h + dt_h
    for i in range(n):
        start = start_h[i]
        later = start if start >= time_h else time_h
        elapsed = end - later
        elapsed = elapsed if elapsed > 0.0 else 0.0
        elapsed = elapsed if elapsed < dt_h else dt_h
        if dest[i] < 0:
            in_transit = elapsed
        else:
            left = remaining_h[i]
            before = left if left >= 0.0 else 0.0
            in_transit = elapsed if elapsed <= before else before
        exposed_h[i] = in_transit + carry_h[i]
        carry_h[i] = elapsed - in_transit
        step_h[i] = elapsed
        age_h[i] += elapsed
        remaining_h[i] -= elapsed


@njit(cache=True)
def switch_candidates(n, organ_index, organ, founded_h, switched_h, status, size, min_cells, extinct, dormant,
                      out):
    """Metastases ``m < n`` of organ ``organ_index`` that may take the angiogenic switch; return how many.

    A candidate is founded, not yet switched, neither extinct nor dormant, and
    has at least ``min_cells`` cells; the ids are written to ``out`` in
    increasing order (as ``np.flatnonzero`` of the same conditions).
    """
    k = 0
    for m in range(n):
        if (organ[m] == organ_index and not math.isnan(founded_h[m]) and math.isnan(switched_h[m])
                and status[m] != extinct and status[m] != dormant and size[m] >= min_cells):
            out[k] = m
            k += 1
    return k


@njit(cache=True)
def per_ctc_mean(n_ctcs, member, clone, table, size, out):
    """``out[s]``: the mean of ``table[clone]`` over the cells of the CTC in slot ``s``.

    ``member[i]`` is the CTC slot of cell ``i``. As ``np.bincount(member,
    table[clone], minlength=n_ctcs) / size``: the sums are taken in cell order
    from 0, then divided by the CTC size.
    """
    for s in range(n_ctcs):
        out[s] = 0.0
    for i in range(member.shape[0]):
        out[member[i]] += table[clone[i]]
    for s in range(n_ctcs):
        out[s] = out[s] / size[s]
    return out


@njit(cache=True)
def cluster_hazard_factor(n_ctcs, member, clone, cohesion, size, table, out):
    """Emboli protection per CTC: ``1 - mean cohesion * (1 - table[min(size, len(table)) - 1])``.

    The mean cohesion is as :func:`per_ctc_mean`; the rest as the NumPy
    expression ``1.0 - coh * (1.0 - table[np.minimum(size, table.size) - 1])``.
    """
    per_ctc_mean(n_ctcs, member, clone, cohesion, size, out)
    last = table.shape[0]
    for s in range(n_ctcs):
        k = size[s] if size[s] < last else last
        out[s] = 1.0 - out[s] * (1.0 - table[k - 1])
    return out


@njit(cache=True)
def ctc_death_candidates(n_ctcs, member, clone, resistance, size, shear, immune, anoikis, factor, exposed,
                         ids, key, stream, step, hazards, x, u):
    """The CTCs that may die in this step, and what deciding it needs; returns how many.

    For the CTC in slot ``s``: its death hazards ``hazards[s]`` (shear,
    immune, anoikis, 1/h: the single-cell rates, the anoikis one scaled by
    ``1 -`` the mean ``resistance`` of its cells, every one by ``factor[s]``,
    or by nothing when ``factor`` is empty),
    ``x[s]`` their sum (in that order) times ``exposed[s]`` (h), and its draw
    ``u[s] = uniform(key, stream, step, ids[s], 0)``. The CTC dies if ``u <
    1 - exp(-x)``. That probability is below ``x``, so only a CTC with ``u[s] <
    x[s] (1 + 1e-12)`` may die; the caller decides those with NumPy's
    ``expm1``, as before (numba's, the C library's, differs from NumPy's
    vectorised one in the last bit), and none needs deciding in most steps.
    """
    per_ctc_mean(n_ctcs, member, clone, resistance, size, x)  # (x holds the mean until it is replaced)
    candidates = 0
    for s in range(n_ctcs):
        f = factor_or_one(factor, s)
        h0 = shear * f
        h1 = immune * f
        h2 = anoikis * (1.0 - x[s]) * f
        hazards[s, 0] = h0
        hazards[s, 1] = h1
        hazards[s, 2] = h2
        x[s] = (h0 + h1 + h2) * exposed[s]
        u[s] = uniform(key, stream, step, ids[s], 0)
        if u[s] < x[s] * (1.0 + 1e-12):
            candidates += 1
    return candidates
