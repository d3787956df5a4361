"""The vessel points' damage kernel against the NumPy rule of vessel_disruption it replaced, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metacoop.core.lattice import Lattice
from metacoop.core.vessels import NORMAL_VESSEL, RUPTURED_VESSEL
from metacoop.kernels.random import uniforms
from metacoop.kernels.vessels import vessel_damage

KEY, STREAM = np.uint64(0x9E3779B97F4A7C15), 23
HALF, WEIGHT, RELAX, CAPACITY = 0.02, 0.3, 0.04, 4  # (1 - WEIGHT is not exact in float32)


def numpy_step(pts, nb, exists, room, occ, mmp2, damage, vessel, disrupted, rate_dt, repair_p, step):
    """One step of the mechanism as NumPy computed it; returns the points that rupture and are repaired."""
    m = mmp2[pts]
    around = np.where(exists, occ[nb], 0).sum(axis=1)
    crowding = (occ[pts].astype(np.float64) + around) / room
    protease = m / (HALF + m)
    stimulus = (1.0 - WEIGHT) * protease + WEIGHT * crowding
    damage += (stimulus - damage) * RELAX
    u = uniforms(KEY, STREAM, step, pts, 0, np.empty(pts.size))
    rupture = (vessel[pts] == NORMAL_VESSEL) & (u < -np.expm1(-rate_dt * damage))
    repair = disrupted & (vessel[pts] == RUPTURED_VESSEL) & (u < repair_p)
    return rupture, repair


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vessel_damage_equals_the_numpy_rule(dtype):
    # 150 vessel points on a 40 x 40 lattice, edges included, crowded and empty, with MMP-2 from 0
    # to well above half-saturation; hazards high enough that points rupture and are repaired.
    rng = np.random.default_rng(31)
    lat = Lattice((40, 40), 10.0)
    pts = np.sort(rng.choice(1600, 150, replace=False)).astype(np.int64)
    pts[:2] = [0, 1599]  # (corners: two neighbours missing)
    nb = lat.neighbours(pts)
    exists = nb >= 0
    nb = np.maximum(nb, 0)
    room = CAPACITY * (1 + exists.sum(axis=1))
    occ = rng.integers(0, CAPACITY + 1, 1600).astype(np.uint8)
    mmp2 = (rng.uniform(0.0, 0.1, 1600) * rng.choice([0.0, 1e-3, 1.0], 1600)).astype(dtype)
    vessel = np.zeros(1600, np.uint8)
    vessel[pts] = rng.choice([NORMAL_VESSEL, RUPTURED_VESSEL], pts.size, p=[0.7, 0.3])
    disrupted = (vessel[pts] == RUPTURED_VESSEL) & (rng.random(pts.size) < 0.6)
    damage = rng.uniform(0.0, 1.0, pts.size)
    rate_dt, repair_p = 0.05, -math.expm1(-0.2)
    want_damage = damage.copy()
    u, rupture, repair = np.empty(pts.size), np.zeros(pts.size, bool), np.zeros(pts.size, bool)
    ruptured = repaired = 0
    for step in range(40):
        want_rupture, want_repair = numpy_step(pts, nb, exists, room, occ, mmp2, want_damage, vessel,
                                               disrupted, rate_dt, repair_p, step)
        candidates, n_repair = vessel_damage(pts, nb, exists, room, occ, mmp2, HALF, WEIGHT, RELAX, damage,
                                             vessel, disrupted, rate_dt, repair_p, KEY, STREAM, step, u,
                                             rupture, repair)
        np.testing.assert_array_equal(damage.view(np.uint8), want_damage.view(np.uint8))
        # Every rupture is a candidate; the candidates decided as the mechanism decides them.
        assert not (want_rupture & ~rupture).any()
        assert candidates == rupture.sum() and n_repair == repair.sum()
        decided = rupture.copy()
        decided[rupture] = u[rupture] < -np.expm1(-rate_dt * damage[rupture])
        np.testing.assert_array_equal(decided, want_rupture)
        np.testing.assert_array_equal(repair, want_repair)
        vessel[pts[decided]] = RUPTURED_VESSEL
        disrupted[decided] = True
        vessel[pts[repair]] = NORMAL_VESSEL
        disrupted[repair] = False
        ruptured += decided.sum()
        repaired += repair.sum()
    assert ruptured > 5 and repaired > 5  # (not vacuous)
