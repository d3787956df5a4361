"""Cooperation mechanisms that act on the circulation and the organs, through a real Simulation.

Four mechanisms, each checked for its law, for doing exactly nothing at zero
strength, and for its effect on the cascade:

1. ``emboli_protection`` (on by default): a CTC of ``s`` cells dies at the
   single-cell hazard times ``g = 1 - cohesion (1 - cluster_hazard_factor[s])``.
2. ``adhesion_induction``: arriving cells trigger a Kupffer -> TNF -> E-selectin
   cascade (Khatib et al. 1999, row KHA-2 of shared/validation/targets.csv) that
   raises the arrest of later CTCs.
3. ``niche``: the primary tumour recruits VEGFR1+ BMDCs and endothelial
   precursors to organ vessels before tumour cells arrive (Kaplan et al. 2005,
   KAP-1, KAP-4); blocking VEGFR1 weakens the niche without preventing
   metastasis (Dawson et al. 2009, DAW-1).
4. The class action (Bidard et al. 2008, BID-1; Miller 1983, MIL-1): a
   non-metastatic clone grown with a metastatic one is found in metastases,
   alone it (almost) is not.

Tolerance rules, fixed before the runs: counts are compared with their binomial
law at ``Z = 4`` standard deviations; comparisons between two conditions use a
one-sided test at the level stated in the test (Fisher's exact test for two
proportions, Mann-Whitney U for replicate counts). Runs with and without a
mechanism share a seed; since every draw is keyed by seed, step and CTC id or
cell uid, they share their random numbers (common random numbers), so an
effect that only raises a hazard can only add events: where this holds the
tests assert the set inclusion as well. Treating the paired samples as
independent in Fisher's test is conservative (their covariance is positive).
Seeds were fixed before the first run.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

import metacoop
from helpers.cascade import clone as clone_row
from helpers.cascade import inject as injection
from helpers.cascade import organ as organ_row
from helpers.cascade import table
from metacoop.config.schema import CirculationConfig
from metacoop.core.modifiers import hazard_scaled
from metacoop.kernels.bookkeeping import cluster_hazard_factor
from metacoop.mechanisms.base import StepContext
from metacoop.observables import clone_shares

pytestmark = pytest.mark.validation

Z = 4.0


def assert_binomial(k: int, n: int, p: float, what: str) -> None:
    """``k`` successes in ``n`` trials of probability ``p``: within Z standard deviations."""
    sd = math.sqrt(n * p * (1.0 - p))
    assert abs(k - n * p) <= Z * sd, (
        f"{what}: {k}/{n} = {k / n:.4f}, expected {p:.4f} +- {Z * sd / n:.4f} (Z = {Z})")


def binomial_band(n: int, p: float) -> tuple[float, float]:
    """Counts within Z standard deviations of ``n p``."""
    sd = math.sqrt(n * p * (1.0 - p))
    return n * p - Z * sd, n * p + Z * sd


def config(raw: dict, mechanisms: dict[str, dict] | None = None) -> metacoop.SimulationConfig:
    """A checked configuration from a :func:`helpers.cascade.table` with mechanism settings added."""
    raw = json.loads(json.dumps(raw))  # a fresh copy (the table is plain JSON-like data)
    for name, settings in (mechanisms or {}).items():
        raw["mechanisms"].setdefault(name, {}).update(settings)
    return metacoop.load_scenario(raw)


def of(events: list[dict], kind: str, **match) -> list[dict]:
    """Events of ``kind`` whose fields equal ``match``."""
    return [e for e in events if e["event"] == kind and all(e.get(k) == v for k, v in match.items())]


def composition(row: dict) -> dict[str, int]:
    return json.loads(row["composition"])


def fisher_greater(k_a: int, k_b: int, n: int) -> float:
    """One-sided p-value of Fisher's exact test that ``k_a`` of ``n`` is a higher rate than ``k_b``."""
    return float(stats.fisher_exact([[k_a, n - k_a], [k_b, n - k_b]], alternative="greater").pvalue)


def assert_same_cells(a, b, what: str) -> None:
    """Two agent tables hold the same live rows, column by column, bit for bit."""
    assert a.n == b.n, f"{what}: {a.n} vs {b.n} rows"
    for name in a.COLUMNS:
        np.testing.assert_array_equal(a.live(name), b.live(name), err_msg=f"{what}.{name}")


# -- 1. Emboli protection ---------------------------------------------------------------------------

#: The circulation's fates at their schema defaults (Franssen et al. 2019).
DEFAULT_FATES = {k: getattr(CirculationConfig(), k) for k in (
    "shear_death_rate_per_h", "immune_death_rate_per_h", "anoikis_death_rate_per_h",
    "disaggregation_rate_per_h")}
CLUSTER, CLUSTER_CTCS, CLUSTER_TRANSIT_H = 4, 3000, 1.0


def clusters_in_transit(emboli: bool) -> metacoop.SimulationConfig:
    # Clusters of 4 cells of full cohesion (so they never split) injected into a route whose
    # first capillary bed is 1 h away; a CTC of 4 cells always arrests there (size
    # restriction 2), so each CTC either dies in transit (ctc_death) or arrests (arrest).
    raw = table(
        seed=81, duration_h=CLUSTER_TRANSIT_H + 0.2, dt_h=0.05,
        clones=[clone_row("c")], organs={"lung": organ_row(extravasation_rate_per_h=0.0)},
        routes={"v": {"lung": 1.0}}, circulation=DEFAULT_FATES,
        injections=[injection("v", CLUSTER * CLUSTER_CTCS, "c", {CLUSTER: 1.0},
                              transit_h=CLUSTER_TRANSIT_H)],
    )
    return config(raw, {"emboli_protection": {"enabled": emboli}})


def test_emboli_protection_raises_cluster_survival_to_its_configured_law():
    # Survival over the transit t is exp(-h g t) with protection and exp(-h t) without, h the
    # single-cell total hazard and g = 1 - cohesion (1 - cluster_hazard_factor[s]), both read
    # from the configuration (defaults: h = 3.8 /h, factor 0.485 for s >= 2).
    counts, arrested_ids = {}, {}
    for emboli in (True, False):
        cfg = clusters_in_transit(emboli)
        circ = cfg.circulation
        h = circ.shear_death_rate_per_h + circ.immune_death_rate_per_h + circ.anoikis_death_rate_per_h
        table_ = circ.cluster_hazard_factor
        cohesion = cfg.clones[0].cohesion
        g = 1.0 - cohesion * (1.0 - table_[min(CLUSTER, len(table_)) - 1]) if emboli else 1.0
        p = math.exp(-h * g * CLUSTER_TRANSIT_H)
        sim = metacoop.Simulation(cfg, check=True)
        sim.run()
        arrested = of(sim.events, "arrest")
        died = of(sim.events, "ctc_death")
        assert all(e["size"] == CLUSTER for e in arrested + died)  # clusters stayed whole
        assert len(arrested) + len(died) == CLUSTER_CTCS  # every CTC met one fate
        # The survivors all reached the bed after exactly the transit time.
        assert all(abs(e["age_h"] - CLUSTER_TRANSIT_H) < 1e-9 for e in arrested)
        assert_binomial(len(arrested), CLUSTER_CTCS, p,
                        f"clusters surviving {CLUSTER_TRANSIT_H} h, emboli_protection={emboli}")
        counts[emboli] = (len(arrested), p)
        arrested_ids[emboli] = {e["ctc_id"] for e in arrested}
    (k_on, p_on), (k_off, p_off) = counts[True], counts[False]
    # The two Z-bands do not overlap, so the comparison is decided by the law, not by chance.
    assert binomial_band(CLUSTER_CTCS, p_off)[1] < binomial_band(CLUSTER_CTCS, p_on)[0]
    assert k_on > k_off
    # Common random numbers: a lower hazard only saves CTCs, never kills one that lived.
    assert arrested_ids[False] <= arrested_ids[True]


def loose_cascade(emboli: bool) -> metacoop.SimulationConfig:
    # Everything that touches CTCs at once: mixed cluster sizes, two clones of cohesion 0 (so
    # clusters also disaggregate), anoikis resistance, arrest by size or adhesion, passes back
    # through the organ, extravasation and death in the capillary.
    raw = table(
        seed=82, duration_h=4.0, dt_h=0.05,
        clones=[clone_row("a", cohesion=0.0), clone_row("b", cohesion=0.0, anoikis_resistance=0.5)],
        organs={"lung": organ_row(arrest_probability=0.4, size_restriction_cells=3, drains_to="venous",
                                  extravasation_rate_per_h=0.5, arrested_death_rate_per_h=0.2)},
        routes={"v": {"lung": 1.0}, "venous": {"lung": 1.0}},
        circulation={**DEFAULT_FATES, "shear_death_rate_per_h": 0.6, "immune_death_rate_per_h": 0.3,
                     "anoikis_death_rate_per_h": 0.3, "transit_h": 0.5,
                     "transit_distribution": "exponential"},
        injections=[injection("v", 3000, sizes={1: 0.2, 2: 0.3, 4: 0.3, 7: 0.2}, transit_h=0.3,
                              clone_fractions={"a": 0.5, "b": 0.5})],
    )
    return config(raw, {"emboli_protection": {"enabled": emboli}})


def test_emboli_protection_without_cohesion_changes_nothing():
    # With every clone's cohesion 0 the factor is 1 - 0 (1 - f) = 1 exactly, so the run is
    # bit-identical to the run without the mechanism: same events, same cells in every
    # compartment at every step.
    on = metacoop.Simulation(loose_cascade(True), check=True)
    off = metacoop.Simulation(loose_cascade(False), check=True)
    assert any(m.name == "emboli_protection" for m in on.mechanisms)
    assert not any(m.name == "emboli_protection" for m in off.mechanisms)
    while on.step_index < on.n_steps:
        on.step()
        off.step()
        assert_same_cells(on.circulation.ctcs, off.circulation.ctcs, f"ctcs at step {on.step_index}")
        assert_same_cells(on.circulation.cells, off.circulation.cells, f"ctc cells at step {on.step_index}")
    assert_same_cells(on.site("lung").cells, off.site("lung").cells, "lung cells")
    assert on.events == off.events
    # The set-up exercises what it claims to: clusters split, die, arrest and pass on.
    kinds = {e["event"] for e in on.events}
    assert {"ctc_death", "disaggregation", "arrest", "extravasation"} <= kinds
    assert any(e["size"] > 1 for e in of(on.events, "ctc_death"))
    assert int(on.site("lung").counters["arrived"].sum()) > int(on.site("lung").counters["immigrated"].sum())



def test_the_emboli_factor_is_left_out_while_every_ctc_is_a_single_cell():
    # A single cell's factor is 1 - cohesion (1 - cluster_hazard_factor[0]) = 1 exactly (the
    # table starts at 1), so while no CTC holds two cells the factor is None and the hazards are
    # the single-cell ones, bit for bit; with a cluster it is the kernel's array, 1 for single cells.
    raw = table(seed=83, duration_h=1.0, dt_h=0.05, clones=[clone_row("c", cohesion=0.5)],
                organs={"lung": organ_row()}, routes={"v": {"lung": 1.0}}, circulation=DEFAULT_FATES,
                injections=[injection("v", 400, "c", {1: 0.5, 3: 0.5}, transit_h=1.0)])
    sim = metacoop.Simulation(config(raw, {"emboli_protection": {"enabled": True}}))
    circ = sim.circulation
    while circ.ctcs.n == 0:
        sim.step()
    ctx = StepContext(sim, sim.step_index, sim.time_h, sim.dt_h)
    size = circ.ctcs.live("size").copy()
    assert (size == 1).any() and (size > 1).any()
    got = circ.hazard_factor(ctx)
    want = cluster_hazard_factor(circ.ctcs.n, circ.member_slots(), circ.cells.clone, sim.clones.cohesion,
                                 circ.ctcs.size, np.asarray(sim.config.circulation.cluster_hazard_factor),
                                 np.empty(circ.ctcs.n))
    assert got.tobytes() == want.tobytes()
    assert (got[size == 1] == 1.0).all() and (got[size > 1] < 1.0).all()
    circ.remove_ctcs(size > 1, "died")
    assert circ.ctcs.n == int((size == 1).sum()) and circ.hazard_factor(ctx) is None

# -- 2. Adhesion induction (E-selectin) ---------------------------------------------------------------

ESEL_DT = 0.05
FIRST_WAVE_CELLS = 2000  # pairs: they arrest for certain (size restriction 2) and induce
PROBE_CTCS = 4000  # single cells that induce nothing, arresting by adhesion only
PROBE_TIME_H = 6.5  # near the E-selectin peak
PROBE_ARREST = 0.2  # organ arrest_probability for single cells


def eselectin_config(induction: float, enabled: bool = True) -> metacoop.SimulationConfig:
    raw = table(
        seed=91, duration_h=30.0, dt_h=ESEL_DT,
        clones=[clone_row("first", eselectin_induction=induction),
                clone_row("probe", eselectin_induction=0.0)],
        organs={"liver": organ_row(shape=61, vessels=200, arrest_probability=PROBE_ARREST,
                                   extravasation_rate_per_h=0.0)},
        routes={"portal": {"liver": 1.0}},
        injections=[injection("portal", FIRST_WAVE_CELLS, "first", {2: 1.0}),
                    injection("portal", PROBE_CTCS, "probe", time_h=PROBE_TIME_H)],
    )
    return config(raw, {"adhesion_induction": {"enabled": enabled}})


def run_recording_cam(cfg) -> dict:
    """Run step by step; the liver's mean E-selectin after every step, and what the probes met."""
    sim = metacoop.Simulation(cfg, check=True)
    site = sim.site("liver")
    enabled = "cam" in site.fields
    times, cam, cascade_zero = [0.0], [0.0], True
    probe_step = round(PROBE_TIME_H / ESEL_DT)
    probe_cam = None
    while sim.step_index < sim.n_steps:
        sim.step()
        if enabled:
            times.append(sim.time_h)
            cam.append(float(site.fields["cam"].values.mean()))
            cascade_zero &= not any(site.fields[n].values.any() or site.fields[n].deltas.any()
                                    for n in ("kupffer", "tnf", "cam"))
            if sim.step_index == probe_step + 1:
                # Fields change only in the FIELDS phase at the start of a step, so these are
                # the values the probes' arrest saw in the step of their arrival.
                probe_cam = site.fields["cam"].flat[site.blood_points].copy()
    arrests = [e for e in of(sim.events, "arrest") if composition(e) == {"probe": 1}]
    return {"sim": sim, "times": np.array(times), "cam": np.array(cam), "cascade_zero": cascade_zero,
            "probe_cam": probe_cam, "probe_arrests": {e["ctc_id"] for e in arrests}}


@pytest.fixture(scope="module")
def eselectin():
    return {"induced": run_recording_cam(eselectin_config(1.0)),
            "not_induced": run_recording_cam(eselectin_config(0.0)),
            "off": run_recording_cam(eselectin_config(1.0, enabled=False))}


def test_eselectin_time_course_matches_khatib_1999(eselectin):
    # KHA-2: after H-59 cells reach the liver, E-selectin mRNA appears at about 2 h, peaks at
    # 6-8 h and is back to basal by 24 h. Simulated: the organ mean of 'cam' after one wave of
    # inducing cells at t = 0 (the probes of the second wave induce nothing).
    run = eselectin["induced"]
    t, cam = run["times"], run["cam"]
    peak = cam.max()
    assert peak > 0
    i_peak = int(np.argmax(cam))
    onset = t[np.argmax(cam > 0.25 * peak)]
    back = t[i_peak + np.argmax(cam[i_peak:] < 0.1 * peak)]
    assert cam[i_peak:].min() < 0.1 * peak  # it does come back within the run
    assert 1.0 <= onset <= 3.0, f"onset (25 % of peak) at {onset:.2f} h"
    assert 6.0 <= t[i_peak] <= 8.0, f"peak at {t[i_peak]:.2f} h"
    assert back <= 24.0, f"below 10 % of peak only at {back:.2f} h"
    # One pulse: rises to the peak and falls after it, without a second rise.
    assert np.all(np.diff(cam[: i_peak + 1]) >= 0) and np.all(np.diff(cam[i_peak:]) <= 0)


def test_a_clone_without_eselectin_induction_induces_nothing(eselectin):
    # Arrivals of a clone with eselectin_induction = 0 leave the three cascade fields exactly 0
    # at every step, so the E-selectin factor is exactly 1 and every arrest is as without the
    # mechanism, CTC for CTC.
    run = eselectin["not_induced"]
    assert run["cascade_zero"]
    assert not run["cam"].any()
    assert len(of(run["sim"].events, "arrest")) > FIRST_WAVE_CELLS // 2  # the first wave did arrive
    assert run["probe_arrests"] == eselectin["off"]["probe_arrests"]
    assert run["sim"].events == eselectin["off"]["sim"].events
    assert_binomial(len(run["probe_arrests"]), PROBE_CTCS, PROBE_ARREST, "probes arrested without induction")


def test_induced_eselectin_raises_the_arrest_of_a_second_wave(eselectin):
    # Probes (single cells) reach the liver 6.5 h after an inducing wave. Each arrests with
    # 1 - (1 - p)**(1 + gain c/(K + c)) at the vessel point it reaches (uniform over the vessel
    # points), c the E-selectin there, so the count is Binomial(N, mean over vessel points).
    # Against the probes after a non-inducing wave (Binomial(N, p)): one-sided Fisher exact
    # test, alpha = 1e-6; and, common random numbers, every probe that arrests without
    # induction arrests with it.
    cfg = eselectin_config(1.0)
    params = cfg.mechanisms.adhesion_induction
    induced, plain = eselectin["induced"], eselectin["not_induced"]
    c = induced["probe_cam"]
    p_bar = float(hazard_scaled(np.full(c.size, PROBE_ARREST),
                                1.0 + params.arrest_gain * c / (params.half_saturation + c)).mean())
    k_on, k_off = len(induced["probe_arrests"]), len(plain["probe_arrests"])
    assert_binomial(k_on, PROBE_CTCS, p_bar, "probes arrested 6.5 h after an inducing wave")
    assert p_bar > 0.4  # E-selectin is well above its half-saturation at the vessel points
    p_value = fisher_greater(k_on, k_off, PROBE_CTCS)
    assert p_value < 1e-6, (k_on, k_off, p_value)
    assert plain["probe_arrests"] <= induced["probe_arrests"]


# -- 3. The pre-metastatic niche ----------------------------------------------------------------------

NICHE_DT = 0.1
NICHE_PROBES = 4000
NICHE_PROBE_TIME_H = 24.0
NICHE_ARREST = 0.2
#: The niche's four gains at zero: it recruits, forms and is reported, but changes no hazard.
ZERO_GAINS = {"arrest_gain": 0.0, "extravasation_gain": 0.0, "survival_gain": 0.0, "angiogenesis_gain": 0.0}


def niche_config(niche: dict | None) -> metacoop.SimulationConfig:
    # A primary tumour without vessels (it only secretes the systemic factor, 2000 cells,
    # growing), and single cells injected into the lung at 24 h, when the niche is formed.
    # Every hazard the niche scales acts in the lung: arrest (p = 0.2 per passage; those that
    # pass on leave for a route to nowhere), extravasation, death while arrested and dormant,
    # the angiogenic switch. BMDC recruitment is 10 times the default so that the niche is
    # formed within hours (the default needs days at this burden).
    raw = table(
        seed=93, duration_h=48.0, dt_h=NICHE_DT,
        clones=[clone_row("c", doubling_time_h={"epithelial": 20.0, "mesenchymal": 20.0},
                          dormancy_probability=0.5, dormant_death_rate_per_h=0.02)],
        primary={"lattice": {"shape": [41, 41]},
                 "initial_tumour": {"cells": 2000, "mesenchymal_fraction": 0.0},
                 "vessels": {"normal": 0, "ruptured": 0}},
        organs={"lung": organ_row(shape=61, vessels=200, arrest_probability=NICHE_ARREST,
                                  extravasation_rate_per_h=0.2, arrested_death_rate_per_h=0.1,
                                  angiogenic_switch_rate_per_h=0.05, angiogenic_min_cells=2,
                                  avascular_death_rate_per_h=0.01)},
        routes={"v": {"lung": 1.0}},
        injections=[injection("v", NICHE_PROBES, time_h=NICHE_PROBE_TIME_H)],
        on=("proliferation",),
    )
    mechs = {} if niche is None else {"niche": {"enabled": True, "bmdc_recruitment_per_h": 0.5, **niche}}
    return config(raw, mechs)


def run_niche(niche: dict | None) -> dict:
    sim = metacoop.Simulation(niche_config(niche), check=True)
    site = sim.site("lung")
    probe_step = round(NICHE_PROBE_TIME_H / NICHE_DT)
    bmdc = None
    while sim.step_index < sim.n_steps:
        sim.step()
        if sim.step_index == probe_step + 1 and niche is not None:
            bmdc = site.fields["bmdc"].flat[site.blood_points].copy()  # what the probes met
    return {"sim": sim, "bmdc_at_probes": bmdc, "arrests": {e["ctc_id"] for e in of(sim.events, "arrest")}}


@pytest.fixture(scope="module")
def niche_runs():
    return {"off": run_niche(None), "on": run_niche({}), "blockade": run_niche({"vegfr1_blockade": 1.0}),
            "zero": run_niche(ZERO_GAINS)}


def niche_arrest_factor(site) -> np.ndarray:
    """The niche's own ``arrest`` factor per point (its provider ignores the step context)."""
    (provider,) = [p for name, p in site.modifiers.factors["arrest"] if name == "niche"]
    return provider(None)


def test_the_niche_raises_the_arrest_of_injected_single_cells(niche_runs):
    # With the niche, a probe arrests with 1 - (1 - p)**(1 + arrest_gain b) at the vessel point
    # it reaches, b = B/(K + B) the BMDC niche level there: Binomial(N, mean over vessel points).
    # Without it, Binomial(N, p). One-sided Fisher exact test at alpha = 1e-6, and the paired
    # (common random numbers) inclusion: every probe arresting without the niche arrests with it.
    params = niche_config({}).mechanisms.niche
    on, off = niche_runs["on"], niche_runs["off"]
    b = on["bmdc_at_probes"]
    level = b / (params.niche_half_saturation + b)
    p_bar = float(hazard_scaled(np.full(b.size, NICHE_ARREST), 1.0 + params.arrest_gain * level).mean())
    assert level.mean() > params.formed_at
    assert len(of(on["sim"].events, "niche_formed", compartment="lung")) == 1
    k_on, k_off = len(on["arrests"]), len(off["arrests"])
    assert_binomial(k_off, NICHE_PROBES, NICHE_ARREST, "probes arrested without a niche")
    assert_binomial(k_on, NICHE_PROBES, p_bar, "probes arrested in a formed niche")
    p_value = fisher_greater(k_on, k_off, NICHE_PROBES)
    assert p_value < 1e-6, (k_on, k_off, p_value)
    assert off["arrests"] <= on["arrests"]
    assert len(on["arrests"]) > len(off["arrests"])


def test_vegfr1_blockade_removes_the_bmdc_niche_but_not_the_epc_one(niche_runs):
    # KAP-4 / DAW-1: blocking VEGFR1 recruits no BMDC (the field stays exactly 0) but still
    # endothelial precursors; the niche's arrest factor is then exactly 1, so every probe arrests
    # exactly as without a niche: fewer arrests than with the full niche (one-sided Fisher exact
    # test, alpha 1e-6), yet cells still arrest, extravasate and found metastases.
    blk, on, off = niche_runs["blockade"], niche_runs["on"], niche_runs["off"]
    site = blk["sim"].site("lung")
    assert not site.fields["bmdc"].values.any()
    assert site.fields["epc"].values.mean() > 0
    assert np.all(niche_arrest_factor(site) == 1.0)
    assert not of(blk["sim"].events, "niche_formed")
    assert blk["arrests"] == off["arrests"]
    k_blk, k_on = len(blk["arrests"]), len(on["arrests"])
    p_value = fisher_greater(k_on, k_blk, NICHE_PROBES)
    assert p_value < 1e-6, (k_on, k_blk, p_value)
    assert len(of(blk["sim"].events, "extravasation")) > 0
    assert len(of(blk["sim"].events, "metastasis_founded")) > 0
    # The EPC part still acts: the angiogenic switch is more frequent than without any niche.
    assert len(of(blk["sim"].events, "angiogenic_switch")) > len(of(off["sim"].events, "angiogenic_switch"))


def test_a_niche_of_zero_strength_changes_nothing_but_its_own_report(niche_runs):
    # With all four gains 0 every factor is exactly 1: the run is the run without the niche,
    # event for event and cell for cell, apart from the 'niche_formed' row. The full niche
    # changes all four outcomes, so the comparison has power.
    zero, off, on = niche_runs["zero"], niche_runs["off"], niche_runs["on"]
    assert len(of(zero["sim"].events, "niche_formed")) == 1
    assert [e for e in zero["sim"].events if e["event"] != "niche_formed"] == off["sim"].events
    for name in ("primary", "lung"):
        assert_same_cells(zero["sim"].site(name).cells, off["sim"].site(name).cells, name)
    for kind in ("arrest", "extravasation", "angiogenic_switch"):
        assert len(of(on["sim"].events, kind)) != len(of(off["sim"].events, kind)), kind
    died = {k: int(r["sim"].site("lung").counters["died"].sum()) for k, r in niche_runs.items()}
    assert died["zero"] == died["off"] != died["on"]


# -- 4. The class action, reduced ---------------------------------------------------------------------

#: The built-in 'classaction' scenario made smaller for a test: a 101 x 101 primary site and
#: 61 x 61 organs (instead of 201 x 201 and 101 x 101), 240 h instead of 336 h; the shedding
#: waves, [0, 120) and [168, 240) h, and everything else are kept. About 10 s for a mixed run,
#: 5 s for a run of the non-metastatic clone alone. Explored before the test was written (seeds
#: 1-3): non-metastatic cells were in 18, 18, 14 metastases per mixed run and in 1, 0, 0 alone.
REDUCED = {
    "primary.lattice.shape": [101, 101],
    "organs.lung.lattice.shape": [61, 61],
    "organs.liver.lattice.shape": [61, 61],
    "duration_h": 240.0,
}
REPLICATES = 5
MIXED = {"metastatic": 0.5, "nonmetastatic": 0.5}
ALONE = {"nonmetastatic": 1.0}


def classaction(fractions: dict[str, float], seed: int, **overrides) -> metacoop.SimulationConfig:
    overrides = {**REDUCED, "primary.initial_tumour.clone_fractions": fractions, **overrides}
    return metacoop.load_scenario("classaction", overrides=overrides, seed=seed)


def with_nonmetastatic(rows: list[dict]) -> int:
    """Metastases holding at least one live non-metastatic cell."""
    return sum(1 for r in rows if json.loads(r["composition"]).get("nonmetastatic", 0) > 0)


@pytest.fixture(scope="module")
def class_action(tmp_path_factory):
    # The replicates run through the experiment layer on a 2-worker LocalCluster: a sweep over
    # the initial clone fractions, REPLICATES seeds spawned from seed 1, shared by both arms.
    from metacoop.experiments import build_design, run_experiment
    from metacoop.experiments.runner import run_path

    cfg = metacoop.load_scenario("classaction", REDUCED)
    vary = {"primary.initial_tumour.clone_fractions": [MIXED, ALONE]}
    design = build_design("sweep", "classaction", cfg, REPLICATES, 1, vary, REDUCED)
    root = tmp_path_factory.mktemp("classaction")
    res = run_experiment(design, root, workers=2)
    assert not res.failures
    out = {}
    for label, cond in zip(("mixed", "alone"), design.conditions, strict=True):
        runs = []
        for i in range(REPLICATES):
            result = metacoop.open_run(run_path(root, cond.name, i))
            runs.append({"result": result, "wall_s": result.manifest["wall_s"],
                         "count": clone_shares(result)["nonmetastatic"]["metastases_with"]})
        out[label] = runs
    return out


@pytest.mark.slow
def test_nonmetastatic_cells_reach_metastases_only_with_the_metastatic_clone(class_action):
    # BID-1 / MIL-1: per replicate, the number of metastases holding a non-metastatic cell.
    # Mixed (1:1 with the metastatic clone) against alone: one-sided Mann-Whitney U test,
    # alpha = 0.05 (with 5 replicates each the smallest attainable p is 1/252); and in most
    # mixed replicates the non-metastatic clone is in some metastasis.
    mixed = [r["count"] for r in class_action["mixed"]]
    alone = [r["count"] for r in class_action["alone"]]
    test = stats.mannwhitneyu(mixed, alone, alternative="greater")
    assert test.pvalue < 0.05, f"mixed {mixed}, alone {alone}: {test}"
    assert sum(k > 0 for k in mixed) > REPLICATES / 2, f"mixed {mixed}"
    # The observable agrees with the metastasis table it is computed from.
    for r in class_action["mixed"]:
        res = r["result"]
        rows = res.metastases.to_dict("records")
        assert r["count"] == with_nonmetastatic(rows)


@pytest.mark.slow
def test_every_organ_niche_forms_before_the_first_cell_arrests_there(class_action):
    # KAP-1: VEGFR1+ BMDC clusters come before tumour cells. In every mixed replicate each organ
    # (lung tropism 1, liver 0.5) reports 'niche_formed' before its first 'arrest'.
    for seed, r in enumerate(class_action["mixed"], start=1):
        ev = r["result"].events
        for organ in ("lung", "liver"):
            formed = ev[(ev["event"] == "niche_formed") & (ev["compartment"] == organ)]["time_h"]
            arrests = ev[(ev["event"] == "arrest") & (ev["organ"] == organ)]["time_h"]
            assert len(formed) == 1, f"seed {seed}: {organ} niche never formed"
            if organ == "lung":
                assert len(arrests) > 0, f"seed {seed}: nothing arrested in the lung"
            if len(arrests):
                assert formed.iloc[0] < arrests.min(), (
                    f"seed {seed}: {organ} niche formed at {formed.iloc[0]:.1f} h, first arrest at "
                    f"{arrests.min():.1f} h")


@pytest.mark.slow
def test_vegfr1_blockade_does_not_prevent_spontaneous_metastasis():
    # DAW-1 (and against KAP-4's 'metastasis prevented'): in the reduced class action with
    # VEGFR1 fully blocked, no organ recruits a BMDC and no niche forms, the niche's arrest
    # factor is exactly 1, yet endothelial precursors are recruited and cells arrest,
    # extravasate and found metastases.
    sim = metacoop.Simulation(classaction(MIXED, 1, **{"mechanisms.niche.vegfr1_blockade": 1.0}))
    sim.run()
    for site in sim.organs:
        assert not site.fields["bmdc"].values.any(), site.name
        assert site.fields["epc"].values.mean() > 0, site.name
        assert np.all(niche_arrest_factor(site) == 1.0), site.name
    assert not of(sim.events, "niche_formed")
    assert len(of(sim.events, "arrest")) > 0
    assert len(of(sim.events, "extravasation")) > 0
    assert len(of(sim.events, "metastasis_founded")) > 0
