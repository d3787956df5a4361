"""franssen2019's fields in float32 against float64: the preset's ``field_precision = "float32"``.

The cells are held where the preset seeds them (movement, proliferation and
intravasation off), so both precisions see the same sources for the whole
27,600 steps, and the difference between their fields is the float32
round-off alone. Error model, with ``eps = 2**-23`` (float32):

* MMP-2. One step multiplies by the decay factor ``f = exp(-lambda dt)`` =
  1 - 1e-4, held in float32 within ``eps / 2`` (relative), that is, a decay
  rate off by at most ``eps / (2 lambda dt)`` (6e-4) relative: the largest
  systematic error, and a steady state off by as much. The other roundings
  of a step (the differences, their sum, the products: some 15, each within
  half an ulp of the field's maximum ``M``, of either sign) are not
  amplified (the update is a convex combination times ``f <= 1``) and add
  as a random walk damped by the decay, over about ``1 / (2 lambda dt)``
  steps: some ``15 (eps / 2) M sqrt(1 / (2 lambda dt))``, 6e-5 ``M``. The test
  allows twice the decay-rate bound, relative to ``M``.
* ECM. One step multiplies ``w <= 1`` by ``exp(-x)``, ``x < 0.01``,
  evaluated in float32 by a polynomial: its last operation (``1 - ...``)
  and the product each round within ``eps / 2``, and the roundings of
  ``x`` and of the polynomial's other terms, all of size at most ``x``, add
  under ``5 x eps``: within ``1.05 eps`` a step, ``1.05 N eps`` (3.4e-3) over
  ``N`` steps, also where ``x`` is so small that float32 does not degrade at
  all (MMP-2 below about 6e-5). The MMP-2 error changes the rate by
  ``gamma |dm|``, at most ``gamma T max|dm|`` over the run's ``T`` hours.

Both bounds sit far below what a run's outcome responds to: between seeds
of the full scenario, the mean ECM left at the end varies by 4e-3 (standard
deviation; ``benchmarks/run.py --only precision`` compares the two precisions
over seeds).
"""

from __future__ import annotations

import numpy as np
import pytest

import metacoop

pytestmark = pytest.mark.validation

#: Every rule that moves, adds or removes a primary-site cell in franssen2019.
FROZEN = {f"mechanisms.{m}.enabled": False for m in ("movement", "proliferation", "intravasation")}


def _fields(precision: str) -> tuple[metacoop.Simulation, np.ndarray, np.ndarray]:
    sim = metacoop.Simulation(metacoop.load_scenario("franssen2019",
                                                     overrides={**FROZEN, "field_precision": precision}))
    sim.run()
    f = sim.primary.fields
    return sim, f["mmp2"].flat.astype(np.float64), f["ecm"].flat.astype(np.float64)


def test_franssen2019_preset_runs_its_fields_in_float32():
    assert metacoop.load_scenario("franssen2019").field_precision == "float32"


@pytest.mark.slow
def test_franssen2019_fields_in_float32_stay_within_the_round_off_bounds_of_float64():
    sim64, m64, w64 = _fields("float64")
    sim32, m32, w32 = _fields("float32")
    assert sim32.primary.fields["ecm"].values.dtype == np.float32
    assert sim32.n_cells == sim64.n_cells == 388  # held where they were seeded
    eps = float(np.finfo(np.float32).eps)
    cfg = sim64.config
    lam = cfg.primary.fields["mmp2"].decay_per_h
    gamma = cfg.mechanisms.ecm_degradation.mmp2_rate_per_h
    n, t = sim64.n_steps, sim64.time_h
    assert n == 27_600
    assert sim64.primary.solvers["mmp2"].substeps == 1  # one decay factor per step
    dm = np.abs(m32 - m64)
    assert dm.max() <= 2 * eps / (2 * lam * cfg.dt_h) * m64.max()
    assert np.abs(w32 - w64).max() <= 1.05 * n * eps + gamma * t * dm.max()
    # Not vacuous: the fields were far from trivial, and float32 did differ.
    assert m64.max() > 0.1 and w64.min() < 1e-3 and dm.max() > 0
