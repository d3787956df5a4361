"""Rates of the metastatic cascade through a real Simulation, against their laws.

Every test injects cells into a vessel (no primary tumour), so that the cells
enter the circulation at a known time, and only the cascade steps under test
have non-zero rates; cell rules that play no part (movement, proliferation,
secretion, phenotype switching) are switched off. A statistic is compared with
its theoretical value with a tolerance of ``Z = 4`` standard deviations of its
distribution (binomial here), derived before the run and never adjusted to the
observed value. Seeds were fixed before the first run.

Time conventions. Injected cells enter the blood at the start of the step of
their injection and face the circulation's hazards from that step on, so CTC
survival is exact: ``exp(-mu t)`` after ``t / dt`` steps. For hazards that start
when a cell changes compartment or state within a step (arrest, extravasation,
dormancy), which step the clock starts in and the order of the rules within a
step shift the expectation by O(dt). Those tests accept the range the possible
conventions give, assert that this range is narrower than one standard
deviation (so they keep their power against a wrong rate), and leave the
convention itself to ``tests/unit/test_cascade.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import metacoop
from helpers.cascade import INF, build, clone, composition, inject, organ, run

pytestmark = pytest.mark.validation

Z = 4.0
def value(ts, compartment: str, quantity: str, step: int, clone_name: str | None = None) -> float:
    """A time-series value at ``step`` (summed over phenotypes, and over clones if none given)."""
    sel = (ts["compartment"] == compartment) & (ts["quantity"] == quantity) & (ts["step"] == step)
    if clone_name is not None:
        sel &= ts["clone"] == clone_name
    rows = ts[sel]
    assert len(rows), (compartment, quantity, step, clone_name)
    return float(rows["value"].sum())


# -- assertions ------------------------------------------------------------------------------------


def assert_binomial(k: int, n: int, p: float, what: str) -> None:
    """``k`` successes in ``n`` trials of probability ``p``: within Z standard deviations."""
    sd = math.sqrt(n * p * (1.0 - p))
    assert abs(k - n * p) <= Z * sd, (
        f"{what}: {k}/{n} = {k / n:.4f}, expected {p:.4f} +- {Z * sd / n:.4f} (Z = {Z})")


def assert_binomial_range(k: int, n: int, p_lo: float, p_hi: float, what: str) -> None:
    """``k`` of ``n`` with a success probability known to lie in ``[p_lo, p_hi]``.

    The range comes from time conventions (see the module docstring); it must be
    narrower than one standard deviation of the count, so the test stays sharp.
    """
    p_lo, p_hi = min(p_lo, p_hi), max(p_lo, p_hi)
    sd = math.sqrt(n * p_hi * (1.0 - p_hi)), math.sqrt(n * p_lo * (1.0 - p_lo))
    assert n * (p_hi - p_lo) < max(sd), f"{what}: the convention range is too wide for the test"
    lo = n * p_lo - Z * math.sqrt(n * p_lo * (1.0 - p_lo))
    hi = n * p_hi + Z * math.sqrt(n * p_hi * (1.0 - p_hi))
    assert lo <= k <= hi, (
        f"{what}: {k}/{n} = {k / n:.4f}, expected [{p_lo:.4f}, {p_hi:.4f}] "
        f"within [{lo / n:.4f}, {hi / n:.4f}] (Z = {Z})")


# -- 1. CTC survival -------------------------------------------------------------------------------

SHEAR, IMMUNE, ANOIKIS = 0.3, 0.2, 0.5  # 1/h, single-cell total 1.0 /h
PAIR_FACTOR = 0.4  # cluster_hazard_factor[1]
RESISTANCE = 0.6
LOOSE_COHESION = 0.5


def hazards_of(clone_name: str) -> tuple[float, float, float]:
    """(shear, immune, anoikis) hazards of one CTC of each test clone, 1/h (schema docstring)."""
    if clone_name == "single":
        return (SHEAR, IMMUNE, ANOIKIS)
    if clone_name == "resistant":
        return (SHEAR, IMMUNE, ANOIKIS * (1.0 - RESISTANCE))
    cohesion = 1.0 if clone_name == "pair" else LOOSE_COHESION
    g = 1.0 - cohesion * (1.0 - PAIR_FACTOR)
    return (SHEAR * g, IMMUNE * g, ANOIKIS * g)


CTC_CLONES = {"single": 1, "resistant": 1, "pair": 2, "loose_pair": 2}  # name -> CTC size
CTC_CELLS = 4000
CTC_DT = 0.05


@pytest.fixture(scope="module")
def circulating():
    # Four injections into a route that reaches no organ, so every CTC stays in the blood
    # until it dies: single cells, single cells with anoikis resistance, pairs of full
    # cohesion and pairs of half cohesion (no disaggregation, so pairs stay pairs).
    cfg = build(
        seed=71, duration_h=1.5, dt_h=CTC_DT, record_every_h=0.5,
        clones=[clone("single"), clone("resistant", anoikis_resistance=RESISTANCE), clone("pair"),
                clone("loose_pair", cohesion=LOOSE_COHESION)],
        routes={"nowhere": {}},
        circulation={"shear_death_rate_per_h": SHEAR, "immune_death_rate_per_h": IMMUNE,
                     "anoikis_death_rate_per_h": ANOIKIS, "cluster_hazard_factor": [1.0, PAIR_FACTOR]},
        injections=[inject("nowhere", CTC_CELLS, name, {size: 1.0}) for name, size in CTC_CLONES.items()],
    )
    return run(cfg)


@pytest.mark.parametrize("clone_name", list(CTC_CLONES))
@pytest.mark.parametrize("t", [0.5, 1.5])
def test_ctc_survival_is_exponential_in_the_configured_hazard(circulating, clone_name, t):
    # Each CTC survives a step with probability exp(-mu dt), so after t / dt steps the number
    # alive is Binomial(n_ctcs, exp(-mu t)), with mu the CTC's total hazard.
    size = CTC_CLONES[clone_name]
    n_ctcs = CTC_CELLS // size
    mu = sum(hazards_of(clone_name))
    step = round(t / CTC_DT)
    ts = circulating.recorder.timeseries()
    cells = value(ts, "circulation", "cells", step, clone_name)
    assert cells % size == 0  # no disaggregation: CTCs keep their size
    assert_binomial(int(cells) // size, n_ctcs, math.exp(-mu * t), f"{clone_name} CTCs alive at {t} h")


@pytest.mark.parametrize("transit_h, dt_h, distribution", [
    (0.03, 0.02, "fixed"),  # beds passed part-way through a step
    (0.05, 0.02, "fixed"),
    (0.04, 0.02, "exponential"),  # some transits shorter than a step: CTCs fall behind, then catch up
])
def test_ctc_survival_does_not_depend_on_passing_capillary_beds(transit_h, dt_h, distribution):
    # CTCs circulate through an organ that never arrests them: every hour in the blood is an
    # hour of exposure to the hazard mu, wherever in a step a bed is passed, so the number
    # alive at t is Binomial(n, exp(-mu t)) as without beds. (Time after passing a bed used to
    # go unexposed, so survival rose with the number of passes.)
    n, mu, t = 4000, 1.0, 1.0
    cfg = build(
        seed=79, duration_h=t, dt_h=dt_h, record_every_h=t,
        clones=[clone("x")],
        organs={"a": organ(arrest_probability=0.0, size_restriction_cells=2, drains_to="loop")},
        routes={"loop": {"a": 1.0}},
        circulation={"transit_h": transit_h, "transit_distribution": distribution,
                     "shear_death_rate_per_h": mu},
        injections=[inject("loop", n)],
    )
    sim = run(cfg)
    assert int(sim.site("a").counters["arrived"].sum()) > 10 * n  # the cells did pass the bed, many times
    assert_binomial(sim.circulation.cells.n, n, math.exp(-mu * t), f"CTCs alive at {t} h")


def test_a_fixed_transit_shorter_than_a_step_is_refused_where_ctcs_pass_beds():
    # A CTC passes at most one bed per step, so CTCs would fall ever further behind.
    kw = dict(duration_h=1.0, dt_h=0.05, clones=[clone("x")], routes={"loop": {"a": 1.0}},
              circulation={"transit_h": 0.02}, injections=[inject("loop", 10)])
    with pytest.raises(metacoop.ConfigError, match="circulation.transit_h.*at least dt_h = 0.05.*from a"):
        build(organs={"a": organ(arrest_probability=0.5, drains_to="loop")}, **kw)
    build(organs={"a": organ(arrest_probability=1.0, size_restriction_cells=1, drains_to="loop")},
          **kw)  # nothing passes on


@pytest.mark.parametrize("clone_name", list(CTC_CLONES))
def test_ctc_death_causes_follow_the_hazard_shares(circulating, clone_name):
    # Given that a CTC died, its recorded cause is shear, immune or anoikis with probability
    # proportional to that hazard: each cause count is Binomial(deaths, share).
    deaths = [e for e in circulating.events
              if e["event"] == "ctc_death" and composition(e) == {clone_name: CTC_CLONES[clone_name]}]
    all_deaths = [e for e in circulating.events if e["event"] == "ctc_death"
                  and clone_name in composition(e)]
    assert len(deaths) == len(all_deaths) > 500  # CTCs are pure and stay whole
    h = hazards_of(clone_name)
    for cause, share in zip(("shear", "immune", "anoikis"), np.array(h) / sum(h), strict=True):
        k = sum(e["cause"] == cause for e in deaths)
        assert_binomial(k, len(deaths), float(share), f"{clone_name} deaths by {cause}")
    # The deaths logged agree with the circulation's counter.
    ts = circulating.recorder.timeseries()
    died = value(ts, "circulation", "died", circulating.n_steps, clone_name)
    assert died == CTC_CLONES[clone_name] * len(deaths)


# -- 2. Disaggregation -----------------------------------------------------------------------------


def test_pairs_disaggregate_at_twice_the_per_cell_rate():
    # Each cell of a pair leaves at lam = rate (1 - cohesion); when either leaves (or both in one
    # step: the pair keeps its first cell) the pair becomes two single CTCs and nothing more can
    # happen. So a pair splits within a step with probability 1 - exp(-2 lam dt), the number of
    # pairs split by t is Binomial(M, 1 - exp(-2 lam t)), and each split sheds exactly one
    # single-cell CTC: expected single CTCs 2 M (1 - exp(-2 lam t)), cells that left M (...).
    rate, cohesion, dt, cells = 0.6, 0.5, 0.05, 4000
    lam = rate * (1.0 - cohesion)
    pairs = cells // 2
    cfg = build(
        seed=72, duration_h=3.0, dt_h=dt, record_every_h=1.0,
        clones=[clone("loose", cohesion=cohesion), clone("tight")],  # tight: cohesion 1
        routes={"nowhere": {}},
        circulation={"disaggregation_rate_per_h": rate},
        injections=[inject("nowhere", cells, "loose", {2: 1.0}), inject("nowhere", cells, "tight", {2: 1.0})],
    )
    sim = metacoop.Simulation(cfg, check=True)
    for t in (1.0, 3.0):
        while sim.step_index < round(t / dt):
            sim.step()
        circ = sim.circulation
        sizes = circ.ctcs.size[circ.member_slots()]
        clone_of = np.array(sim.clones.names)[circ.cells.live("clone")]
        loose_singles = int(((clone_of == "loose") & (sizes == 1)).sum())
        events = [e for e in sim.events if e["event"] == "disaggregation"]
        shed = sum(len(e["shed_ctc_ids"]) for e in events if composition(e) == {"loose": 1})
        assert loose_singles == 2 * shed  # every split leaves two singles
        assert_binomial(shed, pairs, -math.expm1(-2 * lam * t), f"pairs split by {t} h")
        # Cohesion 1 blocks disaggregation: tight pairs are all still pairs.
        assert ((clone_of == "tight") & (sizes != 2)).sum() == 0
        assert all(composition(e) == {"loose": 1} for e in events)
        assert all(len(e["shed_ctc_ids"]) == 1 for e in events)


# -- 3. Routing ------------------------------------------------------------------------------------


def test_routing_is_multinomial_on_the_blood_flow_fractions():
    # N single cells enter route v; each CTC draws its organ from the flow fractions and every
    # organ arrests all arrivals, so the arrested counts are Multinomial(N, p).
    flows = {"a": 0.2, "b": 0.5, "c": 0.3}
    n = 3000
    cfg = build(
        seed=73, duration_h=0.2, dt_h=0.1,
        clones=[clone("x")],
        organs={name: organ() for name in flows},
        routes={"v": flows},
        injections=[inject("v", n)],
    )
    sim = run(cfg)
    arrested = {o.name: int(o.counters["immigrated"].sum()) for o in sim.organs}
    assert sum(arrested.values()) == n
    for name, p in flows.items():
        assert_binomial(arrested[name], n, p, f"cells arrested in {name}")
    chi2 = stats.chisquare([arrested[k] for k in flows], [n * p for p in flows.values()])
    assert chi2.pvalue > 1e-4, (arrested, chi2)
    # The arrest events say the same.
    by_event = {name: sum(e["size"] for e in sim.events if e["event"] == "arrest" and e["organ"] == name)
                for name in flows}
    assert by_event == arrested


# -- 4. Arrest probability -------------------------------------------------------------------------


def test_arrest_probability_and_pass_through():
    # Organ a arrests a single cell with probability 0.3 per passage; the rest drain into
    # route ab and all arrest in b. So a's count is Binomial(N, 0.3) and nothing is lost.
    n, p = 4000, 0.3
    cfg = build(
        seed=74, duration_h=0.6, dt_h=0.1,
        clones=[clone("x")],
        organs={"a": organ(arrest_probability=p, drains_to="ab"), "b": organ()},
        routes={"v": {"a": 1.0}, "ab": {"b": 1.0}},
        circulation={"transit_h": 0.2},
        injections=[inject("v", n)],
    )
    sim = run(cfg)
    a, b = sim.site("a"), sim.site("b")
    arrested_a = int(a.counters["immigrated"].sum())
    assert_binomial(arrested_a, n, p, "cells arrested in a")
    assert int(a.counters["arrived"].sum()) == n
    assert int(b.counters["arrived"].sum()) == n - arrested_a
    assert int(b.counters["immigrated"].sum()) == n - arrested_a
    assert sim.circulation.cells.n == 0


def test_the_organ_after_a_pass_through_is_drawn_afresh():
    # Every CTC goes to a or b (1/2 each) and passes through; from a it goes on to c or d, from
    # b to e or f (1/2 each). Independent draws give each of c, d, e, f a quarter of the cells.
    # The cells reach a and b in the step of their injection (transit 0), so the second draw
    # happens in the same step as the first.
    n = 4000
    pass_on = {"arrest_probability": 0.0}
    cfg = build(
        seed=78, duration_h=0.6, dt_h=0.1,
        clones=[clone("x")],
        organs={"a": organ(drains_to="from_a", **pass_on), "b": organ(drains_to="from_b", **pass_on),
                **{name: organ() for name in "cdef"}},
        routes={"v": {"a": 0.5, "b": 0.5}, "from_a": {"c": 0.5, "d": 0.5}, "from_b": {"e": 0.5, "f": 0.5}},
        circulation={"transit_h": 0.2},
        injections=[inject("v", n)],
    )
    sim = run(cfg)
    arrested = {name: int(sim.site(name).counters["immigrated"].sum()) for name in "cdef"}
    assert sum(arrested.values()) == n
    for name, k in arrested.items():
        assert_binomial(k, n, 0.25, f"cells arrested in {name}")
    assert stats.chisquare(list(arrested.values())).pvalue > 1e-4, arrested


# -- 5. Extravasation ------------------------------------------------------------------------------


def arrested_fates(k: float, d: float, steps: int, dt: float, death_first_step: bool) -> tuple[float, float]:
    """Probabilities (extravasated, died) within ``steps`` steps for an arrested cell.

    Each step applies death (probability ``1 - exp(-d dt)``), then extravasation
    (``1 - exp(-k dt)``); death is skipped in the first step unless ``death_first_step``.
    """
    qk, qd = math.exp(-k * dt), math.exp(-d * dt)
    arrested, out, dead = 1.0, 0.0, 0.0
    for j in range(steps):
        if j > 0 or death_first_step:
            dead += arrested * (1.0 - qd)
            arrested *= qd
        out += arrested * (1.0 - qk)
        arrested *= qk
    return out, dead


Range = tuple[float, float]


def convention_range(k: float, d: float, t: float, dt: float) -> tuple[Range, Range]:
    """Ranges of P(extravasated by t) and P(died by t) over the time conventions.

    Continuous law over t or t - dt (the clock starting in the step of arrest or the next),
    and the exact per-step value for both (death first in each step).
    """
    steps = round(t / dt)
    cases = [arrested_fates(k, d, steps, dt, False), arrested_fates(k, d, steps - 1, dt, True)]
    for s in (t - dt, t):
        total = -math.expm1(-(k + d) * s)
        cases.append((k / (k + d) * total, d / (k + d) * total))
    out, dead = zip(*cases, strict=True)
    return (min(out), max(out)), (min(dead), max(dead))


def test_arrested_fates_tend_to_the_continuous_law():
    # The per-step expression tends to k/(k+d) (1 - exp(-(k+d) t)) as dt -> 0, and is exact
    # without death.
    k, d, t, dt = 0.5, 0.5, 3.0, 1e-4
    out, dead = arrested_fates(k, d, round(t / dt), dt, True)
    assert out == pytest.approx(k / (k + d) * -math.expm1(-(k + d) * t), rel=1e-3)
    assert dead == pytest.approx(d / (k + d) * -math.expm1(-(k + d) * t), rel=1e-3)
    assert arrested_fates(k, 0.0, 10, 0.1, True)[0] == pytest.approx(-math.expm1(-k * 1.0))


def test_extravasation_rate_alone_and_against_death_in_the_capillary():
    # Route "gut": arrested cells extravasate at k and never die, so the fraction out by t is
    # 1 - exp(-k t). Route "lung": they also die at d while arrested, so the fraction that ever
    # extravasates by t is k/(k+d) (1 - exp(-(k+d) t)), and the fraction dead d/(k+d) (...).
    # Time is counted from the injection (transit 0: the cells are in the capillary bed at once).
    k, d, dt, n = 0.5, 0.5, 0.02, 4000
    cfg = build(
        seed=75, duration_h=3.0, dt_h=dt, record_every_h=1.0,
        clones=[clone("x")],
        organs={"gut": organ(extravasation_rate_per_h=k),
                "lung": organ(extravasation_rate_per_h=k, arrested_death_rate_per_h=d)},
        routes={"to_gut": {"gut": 1.0}, "to_lung": {"lung": 1.0}},
        injections=[inject("to_gut", n), inject("to_lung", n)],
        on=("death",),
    )
    sim = run(cfg)
    ts = sim.recorder.timeseries()
    for t in (1.0, 3.0):
        step = round(t / dt)
        assert value(ts, "gut", "immigrated", step) == n
        out = int(value(ts, "gut", "extravasated", step))
        assert_binomial_range(out, n, -math.expm1(-k * (t - dt)), -math.expm1(-k * t),
                              f"extravasated from gut by {t} h")
    t, steps = 3.0, round(3.0 / dt)
    assert value(ts, "lung", "immigrated", steps) == n
    out = int(value(ts, "lung", "extravasated", steps))
    died = int(value(ts, "lung", "died", steps))
    (out_lo, out_hi), (dead_lo, dead_hi) = convention_range(k, d, t, dt)
    assert_binomial_range(out, n, out_lo, out_hi, "extravasated from lung")
    assert_binomial_range(died, n, dead_lo, dead_hi, "died arrested in lung")
    # Every arrested cell is out, dead or still arrested.
    arrested_now = int(value(ts, "lung", "cells.arrested", steps))
    assert out + died + arrested_now == n


# -- 6. Dormancy -----------------------------------------------------------------------------------


def test_dormancy_probability_wake_rate_and_dormant_death():
    # Three clones injected together; every cell extravasates at once (rate inf).
    # sleepy: dormant with probability 0.3, never wakes or dies: Binomial(N, 0.3) dormant.
    # waker: always dormant, wakes at w: dormant fraction exp(-w t).
    # dier: always dormant, dies at delta while dormant: dormant fraction exp(-delta t).
    # No angiogenic switch, so dormant cells are counted as dormant (not macro).
    n, dt, w, delta = 3000, 0.02, 0.4, 0.4
    cfg = build(
        seed=76, duration_h=3.0, dt_h=dt, record_every_h=1.0,
        clones=[clone("sleepy", dormancy_probability=0.3),
                clone("waker", dormancy_probability=1.0, wake_rate_per_h=w),
                clone("dier", dormancy_probability=1.0, dormant_death_rate_per_h=delta)],
        organs={"liver": organ(shape=61, vessels=400, angiogenic_switch_rate_per_h=0.0)},
        routes={"portal": {"liver": 1.0}},
        injections=[inject("portal", 3 * n,
                           clone_fractions={"sleepy": 1 / 3, "waker": 1 / 3, "dier": 1 / 3})],
        on=("death",),
    )
    sim = run(cfg)
    ts = sim.recorder.timeseries()
    first = [e for e in sim.events if e["event"] == "extravasation"]
    assert sum(e["size"] for e in first) == 3 * n
    # Dormancy is decided on extravasation, and the events say how many went dormant.
    sleepy_dormant = sum(e["n_dormant"] for e in first if composition(e) == {"sleepy": e["size"]})
    assert sum(e["size"] for e in first if composition(e) == {"sleepy": e["size"]}) == n
    for t in (1.0, 3.0):
        step = round(t / dt)
        for name in ("sleepy", "waker", "dier"):
            assert value(ts, "liver", "extravasated", step, name) == n
        dormant = {name: int(value(ts, "liver", "cells.dormant", step, name))
                   for name in ("sleepy", "waker", "dier")}
        woke = {name: int(value(ts, "liver", "woke", step, name)) for name in dormant}
        died = {name: int(value(ts, "liver", "died", step, name)) for name in dormant}
        assert dormant["sleepy"] == sleepy_dormant
        assert_binomial(dormant["sleepy"], n, 0.3, f"sleepy cells dormant at {t} h")
        assert_binomial_range(dormant["waker"], n, math.exp(-w * t), math.exp(-w * (t - dt)),
                              f"wakers still dormant at {t} h")
        assert_binomial_range(dormant["dier"], n, math.exp(-delta * t), math.exp(-delta * (t - dt)),
                              f"dormant diers alive at {t} h")
        # Waking and dying are separate: wakers never die, diers never wake, sleepy cells do neither.
        assert died["waker"] == woke["dier"] == woke["sleepy"] == died["sleepy"] == 0
        assert woke["waker"] + dormant["waker"] == n
        assert died["dier"] + dormant["dier"] == n


def test_avascular_death_applies_only_before_the_angiogenic_switch():
    # Active solitary cells (dormancy 0, no division) in two organs: in "avascular" nothing
    # switches, so every cell dies at the organ's avascular_death_rate_per_h mu on top of its
    # clone's rate (0): alive fraction exp(-mu t). In "vascular" every metastasis switches at
    # once (rate inf, min 1 cell), so the same organ setting never applies: all survive.
    n, dt, mu, t_end = 3000, 0.02, 0.5, 2.0
    organs = {
        "avascular": organ(shape=61, vessels=400, angiogenic_switch_rate_per_h=0.0,
                           avascular_death_rate_per_h=mu),
        "vascular": organ(shape=61, vessels=400, angiogenic_switch_rate_per_h=INF,
                          angiogenic_min_cells=1, avascular_death_rate_per_h=mu),
    }
    cfg = build(
        seed=79, duration_h=t_end, dt_h=dt, record_every_h=1.0,
        clones=[clone("a")], organs=organs, routes={"portal": {"avascular": 0.5, "vascular": 0.5}},
        injections=[inject("portal", 2 * n)], on=("death",),
    )
    sim = run(cfg)
    ts = sim.recorder.timeseries()
    reached = {o: int(value(ts, o, "extravasated", round(t_end / dt))) for o in organs}
    assert sum(reached.values()) == 2 * n
    for t in (1.0, t_end):
        step = round(t / dt)
        alive = value(ts, "avascular", "cells", step)
        # Death is first drawn in the step after extravasation, or in the same one: a range
        # of one step, narrower than the binomial spread (asserted by the helper).
        assert_binomial_range(int(alive), reached["avascular"], math.exp(-mu * t),
                              math.exp(-mu * (t - dt)), f"avascular cells alive at {t} h")
        assert value(ts, "vascular", "cells", step) == reached["vascular"]
