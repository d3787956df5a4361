"""The fields of franssen2019 and of the default scenario in float32 against float64.

Both presets set ``field_precision = "float32"``; the default scenario's test is at the end of the module.

franssen2019: the cells are held where the preset seeds them (movement, proliferation and
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


# -- the default scenario ---------------------------------------------------------------------------
#
# The default scenario (preset ``field_precision = "float32"``) has 22 fields on three sites, coupled
# through their sources. Held as franssen2019's cells are above (and its macrophages with them), with half
# the initial tumour mesenchymal so that MMP-2, MT1-MMP and the leader signal have sources, and 300 cells
# injected into the veins after 1 h so that the organs' cytokine cascade (kupffer -> tnf -> cam), their
# growth factor and their niche fields all run. Every rule that reads a field then decides the same in
# both precisions (the test checks that their event logs are equal), so both see the same sources, and
# each field differs by round-off alone. Error model, with ``eps = 2**-23``:
#
# * A field that diffuses and decays at ``lambda`` in ``s`` sub-steps of ``dt / s`` multiplies by
#   ``exp(-lambda dt / s)`` held in float32 within ``eps / 2``: a decay rate off by at most
#   ``eps / 2`` per sub-step. What a source added ``k`` steps ago is then off by ``k s eps / 2``
#   relative, so after ``n`` steps the field is off by at most ``(eps / 2) s n`` relative to its
#   largest value, and by ``(eps / 2) s min(n, 1 / (lambda dt))`` where sources added at every step
#   keep it up (what is older than the decay's memory, ``1 / (lambda dt)`` steps, has faded): every
#   field here but the organs' cascade, whose only sources are the injected cells' arrivals in the
#   first hours (a pulse). The other roundings of a step (some 15, each within half an ulp) are not
#   amplified by the update (a convex combination times a factor below 1). The bound allowed is twice
#   the decay term.
# * A field whose sources are another field (tnf from kupffer, cam from tnf) adds that field's error:
#   stage ``k`` of the cascade is allowed ``k`` times the bound.
# * The ECM (no diffusion, no decay) is degraded as in franssen2019 (``1.05 eps`` a step, plus the MMP-2
#   error times ``gamma t``) and relaxes towards its initial density (``collective_migration``'s track
#   recovery, a convex step: a subtraction, a product and a sum, ``1.5 eps`` a step): ``2.55 n eps``.
# * Values below FIELD_FLOOR are stored as 0, in either precision at its own step: ``FIELD_FLOOR`` more.
#
# The fields are compared 7 h in (the organs' cascade near its peak) and 120 h in (half the run: longer
# than every steady field's memory).

DEFAULT_FROZEN = {
    **{f"mechanisms.{m}.enabled": False
       for m in ("movement", "proliferation", "intravasation", "death", "phenotype_switch")},
    "mechanisms.paracrine.macrophage_diffusion_um2_per_h": 0.0,
    "mechanisms.paracrine.macrophage_chemotaxis_um2_per_h": 0.0,
    "primary.initial_tumour.mesenchymal_fraction": 0.5,
    "injections": [{"vessel": "venous", "time_h": 1.0, "cells": 300, "clone_fractions": {"metastatic": 1.0},
                    "mesenchymal_fraction": 0.5}],
}
#: Steps at which the default scenario's fields are compared (7 h; 120 h).
DEFAULT_COMPARED = (140, 2_400)
#: Stage of each field of the organs' cytokine cascade (fed by a pulse, and by the stage before it).
CASCADE_STAGE = {"kupffer": 1, "tnf": 2, "cam": 3}


def _default_fields(precision: str) -> tuple[metacoop.Simulation, dict, list]:
    sim = metacoop.Simulation(metacoop.load_scenario(
        "default", overrides={**DEFAULT_FROZEN, "field_precision": precision}))
    seen = {}
    for step in DEFAULT_COMPARED:
        while sim.step_index < step:
            sim.step()
        seen[step] = {(s.name, k): f.flat.astype(np.float64) for s in sim.sites for k, f in s.fields.items()}
    return sim, seen, sim.events


def test_default_preset_runs_its_fields_in_float32():
    assert metacoop.load_scenario("default").field_precision == "float32"
    assert metacoop.load_scenario("classaction").field_precision == "float64"  # (its own preset is unchanged)


@pytest.mark.slow
def test_default_fields_in_float32_stay_within_the_round_off_bounds_of_float64():
    from metacoop.kernels.fields import FIELD_FLOOR

    sim64, f64, events64 = _default_fields("float64")
    sim32, f32, events32 = _default_fields("float32")
    assert sim64.step_index == sim32.step_index == DEFAULT_COMPARED[-1]
    assert sim32.primary.fields["mmp2"].values.dtype == np.float32
    # The same decisions in both precisions, hence the same sources; the cells were held.
    assert events32 == events64 and any(e["event"] == "arrest" for e in events64)
    assert sim32.n_cells == sim64.n_cells and sim64.primary.cells.n == 388
    eps = float(np.finfo(np.float32).eps)
    cfg, dt = sim64.config, sim64.dt_h
    gamma = cfg.mechanisms.ecm_degradation.mmp2_rate_per_h
    exercised, differed = set(), set()
    for n in DEFAULT_COMPARED:
        for (site, name), a in f64[n].items():
            b = f32[n][site, name]
            top = np.abs(a).max()
            d = np.abs(b - a).max()
            spec = cfg.sites()[site].fields[name]
            if spec.decay_per_h > 0:
                s = sim64.site(site).solvers[name].substeps
                memory = n if name in CASCADE_STAGE else min(n, 1.0 / (spec.decay_per_h * dt))
                bound = CASCADE_STAGE.get(name, 1) * 2 * (eps / 2) * s * memory * top
            else:  # the ECM
                dm = np.abs(f32[n][site, "mmp2"] - f64[n][site, "mmp2"]).max()
                bound = 2.55 * n * eps + gamma * n * dt * dm
            assert d <= bound + FIELD_FLOOR, (site, name, n, d, bound)
            if top > 0:
                exercised.add((site, name))
            if d > 0:
                differed.add((site, name))
    # Not vacuous: every field that can have sources here had them, and float32 did differ.
    expected = {("primary", k) for k in ("ecm", "mmp2", "leader_signal", "csf1", "egf", "gf")}
    expected |= {(o, k) for o in ("lung", "liver") for k in ("gf", "bmdc", "epc", "kupffer", "tnf", "cam")}
    assert expected <= exercised and expected <= differed, (expected - exercised, expected - differed)
    assert f64[DEFAULT_COMPARED[0]]["lung", "cam"].max() > 1e-3  # (the cascade near its peak, not its tail)
