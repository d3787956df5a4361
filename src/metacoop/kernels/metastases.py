"""The metastasis registry's per-step update, as one pass over an organ's cells and metastases."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Cell states (:mod:`metacoop.core.state`) and metastasis statuses
#: (:mod:`metacoop.compartments.metastases`); a test checks that they agree.
_ARRESTED, _DORMANT = 1, 2
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
