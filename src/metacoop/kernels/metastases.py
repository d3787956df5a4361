"""The metastasis registry's per-step update, as one pass over an organ's cells and metastases."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from metacoop.kernels.cells import DEAD
from metacoop.kernels.random import uniform

#: Cell states (:mod:`metacoop.core.state`) and metastasis statuses
#: (:mod:`metacoop.compartments.metastases`); a test checks that they agree.
_ACTIVE, _ARRESTED, _DORMANT = 0, 1, 2
_PENDING, _S_DORMANT, _SOLITARY, _MICRO, _MACRO, _EXTINCT = range(6)
#: ``room`` of a metastasis that has no size limit (vascularised, or of another organ).
NO_LIMIT = np.iinfo(np.int64).max // 2


@njit(cache=True)
def update_statuses(organ_index, met, state, n, organ, founded_h, switched_h, status, size, max_size, cap,
                    room):
    """Recompute the sizes and statuses of one organ's metastases from its cells, in place.

    ``met`` and ``state`` are the organ's live cells; ``n`` metastases are
    registered (of every organ). A metastasis' size counts its cells that are
    not arrested; it is extinct when founded and empty, dormant when every
    cell is dormant, solitary with one cell awake, micro with two or more
    cells and one awake, macro once through the angiogenic switch, pending
    before it is founded. ``max_size`` is raised to ``size`` for every
    metastasis. ``room`` (length ``n``) receives, for this organ's avascular
    metastases, the cells they may still gain (``cap - size``), and
    :data:`NO_LIMIT` for the others.

    Returns ``(k, 3)`` rows ``(metastasis, old status, new status)`` for the
    statuses that changed, in metastasis order.
    """
    cells = np.zeros(n, np.int64)
    awake = np.zeros(n, np.int64)
    for i in range(met.shape[0]):
        m = met[i]
        if m >= 0 and state[i] != _ARRESTED:
            cells[m] += 1
            if state[i] != _DORMANT:
                awake[m] += 1
    changed = np.empty((n, 3), np.int64)
    k = 0
    for m in range(n):
        room[m] = NO_LIMIT
        if organ[m] == organ_index:
            new = _PENDING
            if not math.isnan(founded_h[m]):
                s, a = cells[m], awake[m]
                if s == 0:
                    new = _EXTINCT
                elif a == 0:
                    new = _S_DORMANT
                elif s == 1:
                    new = _SOLITARY
                else:
                    new = _MICRO
                if s > 0 and not math.isnan(switched_h[m]):
                    new = _MACRO
            if new != status[m]:
                changed[k, 0] = m
                changed[k, 1] = status[m]
                changed[k, 2] = new
                k += 1
            status[m] = new
            size[m] = cells[m]
            if math.isnan(switched_h[m]):
                room[m] = cap - size[m]
        if size[m] > max_size[m]:
            max_size[m] = size[m]
    return changed[:k]


@njit(cache=True)
def avascular_death(n, uid, met, state, flags, founded_h, switched_h, p, key, stream, step, draw):
    """Request the death of each active cell of an avascular metastasis with probability ``p``; count them.

    A candidate is a live (no :data:`~metacoop.kernels.cells.DEAD` flag) active
    cell of a metastasis that is founded and has not passed its angiogenic
    switch (``founded_h`` set, ``switched_h`` NaN); it dies when its draw
    ``uniform(key, stream, step, uid, draw)`` is below ``p``, and gets
    :data:`~metacoop.kernels.cells.DEAD`. The cells NumPy's masks, ``flatnonzero``
    and ``uniforms`` chose, in one pass without arrays (the default scenario's
    death slot, two organs, 139 -> 101 µs a step).
    """
    k = 0
    for i in range(n):
        m = met[i]
        if m < 0 or state[i] != _ACTIVE or flags[i] & DEAD:
            continue
        if math.isnan(founded_h[m]) or not math.isnan(switched_h[m]):
            continue
        if uniform(key, stream, step, uid[i], draw) < p:
            flags[i] |= DEAD
            k += 1
    return k
