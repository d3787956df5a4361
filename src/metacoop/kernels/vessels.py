"""Vessel points: the per-step damage of :mod:`metacoop.mechanisms.vessel_disruption`, as one pass."""

from __future__ import annotations

import numpy as np
from numba import njit

from metacoop.core.vessels import NORMAL_VESSEL, RUPTURED_VESSEL
from metacoop.kernels.random import uniform


@njit(cache=True)
def vessel_damage(pts, nb, exists, room, occ, mmp2, half, weight, relax, damage, vessel, disrupted,
                  rupture_per_damage, repair_p, key, stream, step, u, rupture, repair):
    """Advance each vessel point's damage one step and draw its rupture or repair; return how many of each.

    For vessel point ``j`` (flat index ``pts[j]``): the cells on it and on
    its existing neighbours (``nb[j]``, ``exists[j]``) over their capacity
    ``room[j]`` give the crowding, the MMP-2 there the protease stimulus
    ``m / (half + m)`` (in the field's type), and ``damage[j]`` moves a
    fraction ``relax`` towards ``(1 - weight) protease + weight crowding``.
    The point's draw ``u[j] = uniform(key, stream, step, pts[j], 0)``. A
    normal point (``vessel == 1``) may rupture this step if ``u[j]`` lies below
    ``x = rupture_per_damage * damage[j]``, a bound of its probability
    ``1 - exp(-x)``: ``rupture`` (bool) marks those, and the caller decides
    them with NumPy's ``expm1`` (numba's, the C library's, differs in the last
    bit). A point this mechanism ruptured (``disrupted``) that is still
    ruptured (``vessel == 2``) is repaired when ``u[j] < repair_p``
    (``repair``). Every value is NumPy's expression of the mechanism, bit for
    bit (the products in NumPy's types). For the default scenario's 24
    blood-vessel points one call replaced some 20 NumPy operations on small
    arrays: the mechanism's slot 72 -> 14 µs a step.
    """
    T = mmp2.dtype.type
    h = T(half)
    keep = T(1.0 - weight)
    candidates = 0
    repaired = 0
    for j in range(pts.shape[0]):
        p = pts[j]
        around = 0
        for d in range(nb.shape[1]):
            if exists[j, d]:
                around += occ[nb[j, d]]
        crowding = (np.float64(occ[p]) + around) / room[j]
        m = mmp2[p]
        protease = m / (h + m)
        stimulus = keep * protease + weight * crowding
        damage[j] += (stimulus - damage[j]) * relax
        v = uniform(key, stream, step, p, 0)
        u[j] = v
        rupture[j] = vessel[p] == NORMAL_VESSEL and v < rupture_per_damage * damage[j] * (1.0 + 1e-12)
        repair[j] = disrupted[j] and vessel[p] == RUPTURED_VESSEL and v < repair_p
        candidates += rupture[j]
        repaired += repair[j]
    return candidates, repaired
