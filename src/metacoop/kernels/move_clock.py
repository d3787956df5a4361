"""Event-driven movement: each cell sleeps until its next candidate move.

With Franssen's parameters a cell moves in under one step in ten, yet the
step-by-step rule (:func:`metacoop.kernels.cells.decide_moves`) draws a
random number for every cell every step. Here each cell carries a clock
instead: ``wake[i]`` is the step (modulo 2**16) of its next *candidate*
step, and only candidates draw.

The scheme is thinning (Lewis & Shedler 1979) of the per-step Bernoulli move
events. A site has a ceiling ``C``, at least every cell's probability of
moving in one step for as long as the ceiling holds. Each step is a
candidate with probability ``C``, independently, so the gap to the next
candidate is geometric and is drawn once, when the previous candidate is
handled. At a candidate the move is decided exactly as the step-by-step rule
decides it with a uniform scaled by ``C``: a draw ``u C`` with ``u`` uniform on
[0, 1) is uniform on [0, C), which is the step-by-step draw conditioned on
being below ``C``, and a step-by-step draw at or above ``C`` lies above every
partial sum of move probabilities and means "stay". So each cell moves to
each neighbour in each step with exactly the step-by-step probability, also
when those probabilities change from step to step (the ECM is degraded, a cue
rises): the scheme is exact, not an approximation, as long as ``C`` bounds
them. The ceiling is recomputed every step from the lattice (see
:func:`move_bound`); when it must rise, every clock is restarted, which the
memorylessness of the geometric gaps makes exact too. Only the random
numbers differ from the step-by-step rule, so outcomes are equal in
distribution, not draw for draw.

Ceilings by neighbourhood. Most of a tumour sits on ECM it has already
degraded, where no move can climb a gradient and the move probability is that
of random motility alone, several times below the site's ceiling. While the
site's ECM only falls (no point has risen since the last step; checked every
step, see :func:`ecm_survey`), a cell whose neighbours' ECM sums to at most
``s`` can never see more haptotaxis than ``|p_hapt| s`` until it moves,
because each gradient term ``max(0, w_nb - w)`` is at most ``w_nb``, which can
only fall. Such a cell draws its gap at a ceiling of its own level: the
site's low ceiling (``2 ndim p_diff`` times the largest motility factor, plus
the cues) plus ``|p_hapt| s``, where ``s`` is the first of the sums
:data:`LOW_LEVELS` (a geometric ladder) at or above its neighbourhood's, and
at most the site's ceiling. The level (1 to 15; 0 for the site's ceiling) is
kept in the cell's :data:`LEVEL_BITS` and its candidates are decided with that
ceiling. The level is chosen each time a gap is drawn, from the neighbourhood
the cell will be in (both its point and its destination when it wants to
move, since the move may be cancelled). If a point's ECM ever rises, the site
stops using the levels and every clock restarts. In franssen2019 the levels
draw 28-40 % fewer candidates than a single low ceiling for every
neighbourhood up to 0.25 did (mean ceiling over the primary's cells at steps
5,000-20,000).

Clock bits live in the cell's ``flags`` byte: :data:`CLOCKED` means ``wake``
holds the next candidate step; :data:`ROLL` means that step is not a
candidate but the point where a gap longer than :data:`MAX_GAP` steps was cut
and a new gap is drawn. A cell without :data:`CLOCKED` (new, arrived, or
inactive for a while) draws its first gap from the current step on.
:data:`MOVING` marks, for one step, a cell whose move was decided in parallel
and waits to be applied in cell order.

Draw indices of the movement stream: 0 the move, 1 the first gap, 2 the gap
after a candidate.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from metacoop.kernels.cells import (
    ACTIVE,
    DEAD,
    MOVING,
    _chosen_neighbour,
    _coords,
    _move_numbers,
    _neighbour_at,
)
from metacoop.kernels.dispatch import FIELD_MIN_POINTS, first_arg, first_array, sized_kernel
from metacoop.kernels.random import uniform

#: ``flags`` bit: ``wake`` holds the cell's next movement event.
CLOCKED = np.uint8(2)
#: ``flags`` bit: the event at ``wake`` draws a new gap instead of being a candidate move.
ROLL = np.uint8(4)
#: ``flags`` bits holding the level whose ceiling the cell's current gap was drawn at (0: the site's
#: ceiling; see the module docstring), and the shift to them.
LEVEL_BITS = np.uint8(0xF0)
LEVEL_SHIFT = 4
#: The highest level those bits hold (levels 1 to 15 come from :data:`LOW_LEVELS`).
MAX_LEVEL = int(LEVEL_BITS) >> LEVEL_SHIFT
#: The flags bits the visit screen reads (a cell to visit lacks CLOCKED or has DEAD), and the active state
#: in the states' own width.
CLOCK_STATE = np.uint8(DEAD | CLOCKED)
ACTIVE_STATE = np.uint8(ACTIVE)
#: Every clock bit (cleared when a cell arrives in a site).
CLOCK_BITS = np.uint8(CLOCKED | ROLL | LEVEL_BITS)
#: Masks clearing the clock bits, and the roll bit.
KEEP_UNCLOCKED = np.uint8(0xFF ^ CLOCK_BITS)
KEEP_NO_ROLL = np.uint8(0xFF ^ ROLL)
KEEP_NO_LEVEL = np.uint8(0xFF ^ LEVEL_BITS)
#: Longest gap stored in the 16-bit clock; a longer gap is cut into pieces (exact: gaps are memoryless).
MAX_GAP = 32_767
_WAKE_MASK = 0xFFFF
#: Cells from which :func:`decide_moves_clocked` runs on several threads. Its candidates cost tens of ns
#: each, so threads pay off early: in franssen2019 on 2 cores (builds alternating call by call) the parallel
#: build was 1.2x faster at 2,000-4,000 cells and 1.5x from 16,000.
CLOCK_MIN_CELLS = 2_048


@njit(cache=True, inline="always")
def geometric_gap(u, per_log_stay):
    """Failures before the first success of Bernoulli(C) trials, by inversion of ``u`` in (0, 1].

    ``per_log_stay`` is ``1 / log(1 - C)`` (0 for ``C = 1``: every trial succeeds), so the
    inversion is a multiplication. Returns ``MAX_GAP + 1`` for any gap longer than :data:`MAX_GAP`.
    """
    g = math.log(u) * per_log_stay
    if g > MAX_GAP:
        return MAX_GAP + 1
    return int(g)


@njit(cache=True, inline="always")
def _neighbour_ecm(p, x, y, z, ecm, nx, ny, nz, ndim):
    """Sum of the ECM over the existing neighbours of point ``p`` (coordinates ``x, y, z``)."""
    total = 0.0
    for d in range(2 * ndim):
        nb = _neighbour_at(p, d, x, y, z, nx, ny, nz, ndim)
        if nb >= 0:
            total += ecm[nb]
    return total


@njit(cache=True, inline="always")
def _step_coords(p, nb, x, y, z, nx):
    """Coordinates of ``nb``, a neighbour of ``p`` (coordinates ``x, y, z``), without dividing."""
    d = nb - p
    if d == 1:
        return x + 1, y, z
    if d == -1:
        return x - 1, y, z
    if d == nx:
        return x, y + 1, z
    if d == -nx:
        return x, y - 1, z
    if d > 0:
        return x, y, z + 1
    return x, y, z - 1


@njit(cache=True, inline="always")
def _per_log_stay(c):
    return 1.0 / math.log1p(-c) if c < 1.0 else 0.0


@njit(cache=True, inline="always")
def _level(around, levels):
    """The level of a cell whose neighbours' ECM sums to ``around``.

    1 + the index of the first ``levels`` entry at or above it, or 0 (the
    site's ceiling) above them all (or for a NaN). Only the first 15 entries
    count (:data:`MAX_LEVEL`).
    """
    for k in range(min(levels.shape[0], MAX_LEVEL)):
        if around <= levels[k]:
            return k + 1
    return 0


@sized_kernel(first_arg, CLOCK_MIN_CELLS)
def decide_moves_clocked(
    n, uid, pos, clone, phen, state, flags, wake, p_diff, p_hapt, ecm, dims, ndim, upwind,
    key, stream, step, target, boost, cues, cue_sens, cue_level, ceiling, ceiling_low, slope, levels, awake,
    listed, occ, mes, capacity, apply_now,
):
    """Choose the move of each cell whose clock rings; other cells stay without a draw.

    Arguments as :func:`metacoop.kernels.cells.decide_moves`, plus ``wake``
    (uint16 per cell, the clock), ``ceiling`` (``C`` in (0, 1], at least
    every cell's total move probability this step), and ``ceiling_low``,
    ``slope`` and ``levels``: a cell whose neighbours' ECM sums to at most
    ``levels[k]`` (ascending, at most 15) draws at ``ceiling_low + slope
    levels[k]`` (with a relative margin of 1e-9), or at ``ceiling`` if that is
    lower; ``ceiling_low = 0`` draws every cell at ``ceiling``. A cell
    that wants to move gets :data:`MOVING` in ``flags`` and its destination in
    ``target`` (untouched elsewhere); :func:`~metacoop.kernels.cells.apply_moves` then applies
    the moves in cell order. Cells that are not active lose their clock, so
    they draw a new gap when they become active again.

    With ``apply_now`` (only for the serial build, which visits the cells in
    order) each move is made as soon as it is decided, as
    :func:`~metacoop.kernels.cells.apply_moves` would make it (into a point
    with room, ``occ`` below ``capacity``; otherwise cancelled; ``occ`` and
    ``mes``, the cells and mesenchymal cells per point, follow): a decision
    reads no other cell's point and no occupancy, so the outcome is that of
    deciding every cell first and applying in cell order, bit for bit, and
    the moves need neither :data:`MOVING`, ``target`` nor a listing pass
    (franssen2019 on one thread: the movement slot 135-137 -> 119-131 µs a
    step at steps 25,000-27,600, whole runs 4.30-4.33 -> 4.06-4.12 s).

    ``awake`` (uint8 scratch, at least ``n`` entries) receives the marks of
    a first pass without branches, which the compiler vectorises: the cells
    to visit (dead or inactive ones, those without a clock, and those whose
    clock rings now). Testing each cell in the loop that also visits
    cost more: on arguments captured at franssen2019's 50,000 cells the scan
    went from 27 to 7 µs and the kernel from 79 to 52 µs; within the run,
    where the arrays are colder, from 109 to 97 µs. The marked cells are then
    listed in ``listed`` (int64 scratch, at least ``n`` entries), eight at a
    time skipped where a uint64 of marks is 0, and the visits run down that
    list in one loop: on arguments captured at franssen2019's 67,600 cells
    (1,150 candidates a step) 165 -> 150 µs, against visiting from the marks
    with a nested loop over each word's eight cells. The marks compare in the
    arrays' own widths (a uint16 clock, uint8 flags and states): 8.8 -> 3.9 µs
    for that pass. The listed cells' points, ids, clones and phenotypes are
    gathered into compact arrays before the visits (see the loop): 141 ->
    130 µs on the same arguments. (With the same cells stored so that the
    candidates came first, the kernel took 97 µs: most of the rest is cache
    misses at cells and points spread over the arrays.)

    The whole rule is written out in the loop: split into helper functions,
    numba compiled it about three times slower.

    Returns the number of cells that want to move (0 with ``apply_now``: none is left to apply).
    """
    nz, ny, nx = dims[0], dims[1], dims[2]
    classify = ceiling_low > 0.0
    # Ceiling and 1 / log(1 - C) of each level (0: the site's ceiling; levels past `levels` draw at it).
    at_level = np.full(MAX_LEVEL + 1, ceiling)
    per_log = np.full(MAX_LEVEL + 1, _per_log_stay(ceiling))
    if classify:
        for k in range(min(levels.shape[0], MAX_LEVEL)):
            at_level[k + 1] = min(ceiling, ceiling_low + slope * levels[k] * (1.0 + 1e-9))
            per_log[k + 1] = _per_log_stay(at_level[k + 1])
    now = step & _WAKE_MASK
    wanting = 0
    # A branch-free screen the compiler vectorises marks the cells to visit: dead or inactive cells,
    # cells without a clock, and those whose clock rings now (a few in a hundred). The marked cells are
    # then listed, eight at a time skipped where one uint64 of marks is 0, and visited from the list.
    ring = np.uint16(now)
    for i in prange(n):
        awake[i] = (np.uint8(wake[i] == ring) | np.uint8((flags[i] & CLOCK_STATE) != CLOCKED)
                    | np.uint8(state[i] != ACTIVE_STATE))
    visits = 0
    words = n // 8
    packed = awake[: words * 8].view(np.uint64)
    for b in range(words + 1):
        if b < words and packed[b] == 0:
            continue
        for i in range(8 * b, min(8 * b + 8, n)):
            listed[visits] = i
            visits += awake[i] != 0
    # What the visits read of the listed cells' clone, phenotype, point and id is gathered into compact
    # arrays first, in a loop without branches: its loads are independent, so the processor overlaps their
    # cache misses, which the visits' branches kept apart.
    at_pos = np.empty(visits, pos.dtype)
    at_uid = np.empty(visits, uid.dtype)
    at_clone = np.empty(visits, clone.dtype)
    at_phen = np.empty(visits, phen.dtype)
    for j in range(visits):
        i = listed[j]
        at_pos[j] = pos[i]
        at_uid[j] = uid[i]
        at_clone[j] = clone[i]
        at_phen[j] = phen[i]
    for j in prange(visits):
        i = listed[j]
        f = flags[i]
        if f & DEAD:
            continue
        if state[i] != ACTIVE:
            if f & CLOCKED:
                flags[i] = f & KEEP_UNCLOCKED
            continue
        if f & CLOCKED and wake[i] != now:
            continue
        p = at_pos[j]
        x, y, z = _coords(p, nx, ny)  # (once per candidate: the helpers below would each divide again)
        drawn = np.int64(f >> LEVEL_SHIFT)  # the level whose ceiling this candidate was drawn at
        if (f & ROLL) != 0 or (f & CLOCKED) == 0:
            # No clock, or a cut gap: draw the gap to the first candidate, which may be this step.
            level = 0  # (not written as `classify and ...`: numba compiles that into a slow loop)
            if classify:
                level = _level(_neighbour_ecm(p, x, y, z, ecm, nx, ny, nz, ndim), levels)
            ahead = geometric_gap(1.0 - uniform(key, stream, step, at_uid[j], 1), per_log[level])
            g = ((f | CLOCKED) & KEEP_NO_LEVEL) | np.uint8(level << LEVEL_SHIFT)
            if ahead > 0:
                if ahead > MAX_GAP:
                    flags[i] = g | ROLL
                    wake[i] = (step + MAX_GAP) & _WAKE_MASK
                else:
                    flags[i] = g & KEEP_NO_ROLL
                    wake[i] = (step + ahead) & _WAKE_MASK
                continue
            drawn = level
        # A candidate: decide this step's move at the ceiling it was drawn at, then draw the next gap.
        c = at_clone[j]
        ph = at_phen[j]
        pd, ph_, cued = _move_numbers(c, ph, p, p_diff, p_hapt, boost, cues, cue_sens)
        nb = -1
        if pd != 0.0 or ph_ != 0.0 or cued:
            u = uniform(key, stream, step, at_uid[j], 0) * at_level[drawn]
            nb = _chosen_neighbour(u, p, x, y, z, pd, ph_, c, ph, ecm, nx, ny, nz, ndim, upwind, cues,
                                   cue_sens, cue_level, cued)
        level = 0
        if classify:
            around = _neighbour_ecm(p, x, y, z, ecm, nx, ny, nz, ndim)
            if nb >= 0:  # the move may be cancelled: both neighbourhoods must qualify
                bx, by, bz = _step_coords(p, nb, x, y, z, nx)
                around = max(around, _neighbour_ecm(nb, bx, by, bz, ecm, nx, ny, nz, ndim))
            level = _level(around, levels)
        ahead = 1 + geometric_gap(1.0 - uniform(key, stream, step, at_uid[j], 2), per_log[level])
        f = ((f | CLOCKED) & KEEP_NO_LEVEL) | np.uint8(level << LEVEL_SHIFT)
        if ahead > MAX_GAP:
            f = f | ROLL
            wake[i] = (step + MAX_GAP) & _WAKE_MASK
        else:
            f = f & KEEP_NO_ROLL
            wake[i] = (step + ahead) & _WAKE_MASK
        if nb >= 0:
            if apply_now:
                if occ[nb] < capacity:
                    occ[p] -= 1
                    occ[nb] += 1
                    mes[p] -= np.uint8(ph)
                    mes[nb] += np.uint8(ph)
                    pos[i] = nb
            else:
                target[i] = nb
                f = f | MOVING
                wanting += 1
        flags[i] = f
    return wanting


@sized_kernel(first_array, FIELD_MIN_POINTS)
def ecm_survey(ecm, bits, previous):
    """Whether any point of ``ecm`` rose above ``previous``, and the ECM's range: ``(rose, lo, hi)``.

    One pass over both arrays, which the compiler vectorises; ``ecm`` is
    copied into ``previous`` on the way. A NaN counts as a rise (it compares
    false to everything), and so does a negative density: the low ceiling's
    argument (a gradient term is at most the neighbour's density) needs every
    value to be at least 0. ``bits`` is ``ecm`` viewed as signed integers of
    its width: non-negative floats order as their bit patterns do, so the
    smallest and largest are found with integer comparisons, which vectorise
    where float ones (with NaN rules) do not, and which give the same answer
    however the points are split between threads. ``lo`` and ``hi`` are
    therefore exact only when ``rose`` is False; an empty ``ecm`` gives
    ``(False, 0, 0)``.
    """
    n = ecm.shape[0]
    if n == 0:
        return False, 0.0, 0.0
    rises = np.uint8(0)  # (a max, not a count: counting kept the loop at a narrower vector width)
    lo = bits[0]
    hi = bits[0]
    for j in prange(n):
        v = ecm[j]
        rises = max(rises, np.uint8(not ((v <= previous[j]) & (v >= 0.0))))
        previous[j] = v
        b = bits[j]
        lo = min(lo, b)
        hi = max(hi, b)
    ends = np.empty(2, bits.dtype)
    ends[0] = lo
    ends[1] = hi
    values = ends.view(ecm.dtype)
    return rises > 0, float(values[0]), float(values[1])


def ecm_bits(ecm: np.ndarray) -> np.ndarray:
    """``ecm`` viewed as signed integers of its width (what :func:`ecm_survey` compares)."""
    return ecm.view(np.int64 if ecm.itemsize == 8 else np.int32)


def ecm_range(ecm: np.ndarray, previous: np.ndarray | None,
              bits: np.ndarray | None = None) -> tuple[bool, float, float]:
    """``(rose, lo, hi)`` of the site's ECM: compared with ``previous`` (then updated) unless it is None.

    With ``previous`` this is :func:`ecm_survey`'s single pass, and NumPy's
    ``min`` and ``max`` only when it finds a rise (its integer comparisons then
    may not order the values); without, ``rose`` is False and NumPy finds the
    range. An empty ``ecm`` has the range ``(0, 0)``. ``bits`` is
    :func:`ecm_bits` of ``ecm``, for a caller that keeps it (made here if None).
    """
    rose = False
    if previous is not None:
        rose, lo, hi = ecm_survey(ecm, ecm_bits(ecm) if bits is None else bits, previous)
        if not rose:
            return rose, lo, hi
    lo, hi = (float(ecm.min()), float(ecm.max())) if ecm.size else (0.0, 0.0)
    return rose, lo, hi


#: Neighbourhood ECM sums (over a point's neighbours, normalised density) that bound the levels of the
#: event clock's ceilings: 15 steps of a geometric ladder from 0.005 to 6 (the most a 3-D neighbourhood of
#: intact ECM holds), each 1.66 times the one before. A cell draws at the ceiling of the first at or above
#: its neighbourhood's sum (see the module docstring).
LOW_LEVELS = 0.005 * 1200.0 ** (np.arange(MAX_LEVEL) / (MAX_LEVEL - 1.0))


def move_bound(p_diff: np.ndarray, p_hapt: np.ndarray, lo: float, hi: float, ndim: int, upwind: bool,
               boost: np.ndarray | None, cues: np.ndarray | None,
               cue_sens: np.ndarray | None) -> tuple[float, float]:
    """Upper bounds of a cell's probability of moving in this step: any cell, and a cell on degraded ECM.

    The first is ``2 ndim`` times the largest probability of one move over
    clones and phenotypes: ``p_diff`` times the largest motility factor, plus
    ``|p_hapt|`` times the largest ECM difference one move can see (``hi -
    lo`` upwind, a quarter of it central; ``lo`` and ``hi`` are the site's
    smallest and largest ECM, see :func:`ecm_range`), plus each cue's largest
    positive sensitivity times its largest value (cues are non-negative). The second
    bounds a cell whose neighbours hold no ECM: ``2 ndim`` times the motility
    and cue terms. It is the event clock's low ceiling, on which its levels
    build (see the module docstring). It is not capped by the first (the
    caller keeps its low ceiling at most its high one), so it does not creep
    up with the first while the ECM's range grows.
    """
    ecm_range = max(hi - lo, 0.0) if upwind else 0.25 * max(hi - lo, 0.0)
    boost_max = 1.0 if boost is None or boost.size == 0 else max(float(boost.max()), 0.0)
    still = p_diff * boost_max
    if cues is not None and cues.shape[0]:
        top = cues.max(axis=1)
        still = still + np.einsum("k,kcp->cp", np.maximum(top, 0.0), np.maximum(cue_sens, 0.0))
    hapt = np.abs(p_hapt)
    high = nd_max(still + hapt * ecm_range, ndim)
    low = float((2 * ndim * still).max(initial=0.0)) * (1.0 + 1e-9)
    return high, low


def nd_max(one: np.ndarray, ndim: int) -> float:
    """``2 ndim`` times the largest entry: the bound over every direction.

    A relative margin of 1e-9 keeps rounding in the kernel's partial sums below the bound.
    """
    return 2 * ndim * float(one.max(initial=0.0)) * (1.0 + 1e-9)


class MoveBounds:
    """:func:`move_bound` for one site's move tables, cheap when no modifier acts this step.

    The event clock asks for the bounds every step. Without a motility factor
    or a cue, the low bound does not depend on the ECM and the high one only
    on its range, so both are taken from what this object precomputed, in
    plain floats: the same operations as :func:`move_bound` (so the same
    values to the last bit) at a fraction of the cost of NumPy's calls on
    arrays of a few entries. With a modifier it calls :func:`move_bound`.
    ``slope`` is the largest ``|p_hapt|``: what each unit of neighbourhood ECM
    adds to a level's ceiling.
    """

    def __init__(self, p_diff: np.ndarray, p_hapt: np.ndarray, ndim: int, upwind: bool):
        self.p_diff, self.p_hapt, self.ndim, self.upwind = p_diff, p_hapt, ndim, upwind
        #: (motility, |haptotaxis|) per clone and phenotype, as Python floats
        self.pairs = list(zip(p_diff.ravel().tolist(), np.abs(p_hapt).ravel().tolist(), strict=True))
        self.low = move_bound(p_diff, p_hapt, 0.0, 0.0, ndim, upwind, None, None, None)[1]
        self.slope = float(np.abs(p_hapt).max(initial=0.0))
        #: the last ECM range asked about without a modifier, and its answer (the range changes rarely)
        self._last: tuple[float, float, tuple[float, float]] | None = None

    def __call__(self, lo: float, hi: float, boost: np.ndarray | None, cues: np.ndarray | None,
                 cue_sens: np.ndarray | None) -> tuple[float, float]:
        """``(high, low)`` for a site whose ECM spans ``[lo, hi]``, as :func:`move_bound` gives them."""
        if (boost is not None and boost.size) or (cues is not None and cues.shape[0]):
            return move_bound(self.p_diff, self.p_hapt, lo, hi, self.ndim, self.upwind, boost, cues, cue_sens)
        last = self._last
        if last is not None and last[0] == lo and last[1] == hi:
            return last[2]
        ecm_range = max(hi - lo, 0.0) if self.upwind else 0.25 * max(hi - lo, 0.0)
        top = max([still + hapt * ecm_range for still, hapt in self.pairs], default=0.0)
        bounds = 2 * self.ndim * max(top, 0.0) * (1.0 + 1e-9), self.low
        self._last = (lo, hi, bounds)
        return bounds
