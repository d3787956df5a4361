"""The metastatic cascade: transit timing, arrest, metastasis founding and joining, growth caps,
lymphatic and re-entry routes, accounting, funnel, bad input and the Franssen preset.

Scenarios are small tables built here (injection-only unless a primary is
needed); cell rules that play no part in a test are switched off so that only
the step under test acts. Rates are checked statistically in
``tests/validation/test_cascade_rates.py``; these tests check what must hold
in every run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import metacoop
from helpers.cascade import INF, build, clone, composition, inject, organ, run, table


def events(sim, kind: str) -> list[dict]:
    return [e for e in sim.events if e["event"] == kind]


def primary_site(lymphatic: int = 0, normal: int = 0, **settings) -> dict:
    """A 61 x 61 primary site with the default tumour and vessel points right next to it."""
    return {"lattice": {"shape": [61, 61]},
            "vessels": {"normal": normal, "ruptured": 0, "lymphatic": lymphatic, "min_distance_um": 0.0},
            **settings}


#: The default clone's cell rules, so that cells of the primary move onto vessel points.
TUMOUR = {"name": "tumour"}
PRIMARY_RULES = ("movement", "proliferation", "mmp2_secretion", "ecm_degradation")


# -- timing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("transit_h", [0.3, 0.7, 1.0])
def test_injected_ctcs_reach_the_capillary_bed_after_their_transit_time(transit_h):
    # Injected at t = 0 (the start of step 0) with a transit time that is a whole number of
    # steps, a CTC reaches the bed, and arrests, at exactly t = transit_h.
    sim = run(build(duration_h=transit_h + 0.5, clones=[clone("x")], organs={"lung": organ()},
                    routes={"v": {"lung": 1.0}}, injections=[inject("v", 20, transit_h=transit_h)]))
    times = sorted({e["time_h"] for e in events(sim, "arrest")})
    assert times == [pytest.approx(transit_h, abs=1e-9)], times


def test_shed_ctcs_reach_the_capillary_bed_transit_h_after_intravasation():
    # A CTC entering the blood at (event time) t arrests in the organ at t + transit_h.
    transit = 2.0
    sim = run(build(duration_h=6.0, clones=[TUMOUR], on=PRIMARY_RULES,
                    primary=primary_site(normal=600, blood_route="blood"),
                    organs={"lung": organ()}, routes={"blood": {"lung": 1.0}},
                    circulation={"transit_h": transit}))
    entered = {e["ctc_id"]: e["time_h"] for e in events(sim, "intravasation")}
    arrests = events(sim, "arrest")
    assert len(arrests) > 10
    transits = sorted({round(e["time_h"] - entered[e["ctc_id"]], 9) for e in arrests})
    assert transits == [pytest.approx(transit, abs=1e-9)], transits


#: Injected CTCs with a transit of three whole steps reach the organ at the end of step 2.
AT_STEP_END = 0.3


def _entry_and_exit_times(case: str) -> tuple[dict, dict]:
    """(uid -> time a cell entered a state, uid -> time it left it by a finite hazard)."""
    if case == "ctc_death_after_intravasation":
        sim = run(build(duration_h=4.0, clones=[TUMOUR], on=PRIMARY_RULES,
                        primary=primary_site(normal=600, blood_route="blood"),
                        organs={"lung": organ()}, routes={"blood": {"lung": 1.0}},
                        circulation={"shear_death_rate_per_h": 2.0, "transit_h": 2.0}))
        enter, leave = "intravasation", "ctc_death"
    elif case == "extravasation_after_arrest":
        sim = run(build(duration_h=3.0, clones=[clone("x")],
                        organs={"lung": organ(extravasation_rate_per_h=2.0)}, routes={"v": {"lung": 1.0}},
                        injections=[inject("v", 200, transit_h=AT_STEP_END)]))
        enter, leave = "arrest", "extravasation"
    else:  # wake after becoming dormant on extravasation (at once, on arrival)
        sim = run(build(duration_h=3.0, clones=[clone("x", dormancy_probability=1.0, wake_rate_per_h=2.0)],
                        organs={"lung": organ(angiogenic_switch_rate_per_h=0.0)}, routes={"v": {"lung": 1.0}},
                        injections=[inject("v", 200, transit_h=AT_STEP_END)]))
        enter, leave = "extravasation", "wake"
    start = {u: e["time_h"] for e in events(sim, enter) for u in e["cell_uids"]}
    end = {u: e["time_h"] for e in events(sim, leave) for u in e["cell_uids"]}
    return start, end


@pytest.mark.parametrize("case", ["ctc_death_after_intravasation", "extravasation_after_arrest",
                                  "wake_after_dormancy"])
def test_a_state_entered_at_the_end_of_a_step_is_not_exposed_during_that_step(case):
    # A cell's times in successive states add up to the elapsed time. Here each cell enters
    # its new state at the end of a step (its event time):
    # - a cell that intravasates was subject to the primary's rules for the whole step, so
    #   its time in the blood starts at the end of the step;
    # - injected CTCs with a transit of whole steps reach the organ at the end of a step
    #   (and extravasate at once there, in the wake case).
    # So a finite hazard of the new state cannot fire in that step: the exit is logged
    # after the entry, never at the same time. (Circulation.exposure_h applies the same rule
    # to CTCs leaving the blood part-way through a step.)
    start, end = _entry_and_exit_times(case)
    assert len(end) > 30
    if case != "ctc_death_after_intravasation":
        assert all(t == pytest.approx(AT_STEP_END) for t in start.values())
    same = sorted(u for u in end if abs(end[u] - start[u]) < 1e-9)
    assert not same, f"{len(same)} of {len(end)} cells left at the time they entered ({case})"
    assert all(end[u] > start[u] for u in end)


# -- arrest ----------------------------------------------------------------------------------------


def test_size_restriction_arrests_clusters_whatever_the_arrest_probability():
    # Organ a never arrests single cells (arrest_probability 0) but cannot let CTCs of 2 or
    # more cells through; everything it lets pass arrests in b.
    sim = run(build(duration_h=0.6, clones=[clone("x")],
                    organs={"a": organ(arrest_probability=0.0, size_restriction_cells=2, drains_to="ab"),
                            "b": organ()},
                    routes={"v": {"a": 1.0}, "ab": {"b": 1.0}}, circulation={"transit_h": 0.2},
                    injections=[inject("v", 400, sizes={1: 0.5, 2: 0.25, 4: 0.25})]))
    arrests = events(sim, "arrest")
    in_a = [e["size"] for e in arrests if e["organ"] == "a"]
    in_b = [e["size"] for e in arrests if e["organ"] == "b"]
    assert sorted(set(in_a)) == [2, 4] and in_a.count(2) == 50 and in_a.count(4) == 25
    assert set(in_b) == {1} and len(in_b) == 200
    assert sim.site("a").counters["arrived"].sum() == 400
    assert sim.site("b").counters["arrived"].sum() == 200


# -- metastases: founders, joiners, growth ---------------------------------------------------------


def test_a_metastasis_founded_by_a_cluster_records_every_founder():
    sim = run(build(duration_h=0.5, clones=[clone("x")],
                    organs={"lung": organ(), "spleen": organ()},
                    routes={"to_lung": {"lung": 1.0}, "to_spleen": {"spleen": 1.0}},
                    injections=[inject("to_lung", 3, sizes={3: 1.0}), inject("to_spleen", 1)]))
    arrest = {e["organ"]: e for e in events(sim, "arrest")}
    assert arrest["lung"]["size"] == 3 and len(arrest["lung"]["cell_uids"]) == 3
    rows = {r["organ"]: r for r in sim.metastases_rows()}
    lung = rows["lung"]
    assert lung["n_founders"] == 3
    assert lung["founded_by_cluster"] is True
    first = sim.injection_next_uid - 4  # the first injected cell's id
    founders = [first, first + 1, first + 2]
    assert sorted(lung["founder_uids"]) == sorted(arrest["lung"]["cell_uids"]) == founders
    founded = [e for e in events(sim, "metastasis_founded") if e["met_id"] == lung["met_id"]]
    assert len(founded) == 1 and sorted(founded[0]["cell_uids"]) == [first, first + 1, first + 2]
    assert composition(lung) == {"x": 3}
    spleen = rows["spleen"]
    assert (spleen["n_founders"], spleen["founded_by_cluster"], spleen["founder_uids"]) == (1, False,
                                                                                         [first + 3])


def test_a_later_ctc_arresting_at_a_founded_metastasis_joins_it():
    # One blood-vessel point: clone a founds a metastasis there; an hour later clone b
    # arrests at the same point and joins it.
    sim = run(build(duration_h=2.0, clones=[clone("a"), clone("b")],
                    organs={"lung": organ(vessels=1)}, routes={"v": {"lung": 1.0}},
                    injections=[inject("v", 1, "a"), inject("v", 1, "b", time_h=1.0)]))
    rows = sim.metastases_rows()
    assert len(rows) == 1
    row = rows[0]
    assert row["founder_clones"] == ["a"] and row["n_founders"] == 1
    assert row["n_joiners"] == 1 and row["joiner_clones"] == ["b"]
    assert composition(row) == {"a": 1, "b": 1}
    joined = events(sim, "metastasis_joined")
    assert len(joined) == 1
    assert joined[0]["met_id"] == row["met_id"] and composition(joined[0]) == {"b": 1}
    assert [e["met_id"] for e in events(sim, "arrest")] == [row["met_id"]] * 2


def _growing(rate: float) -> metacoop.SimulationConfig:
    # 20 single cells arrest at once (none can join another: none is founded yet) and grow
    # with a 2-h doubling time for 12 h (about 6 doublings).
    fast = clone("x", doubling_time_h={"epithelial": 2.0, "mesenchymal": 2.0})
    return build(duration_h=12.0, clones=[fast],
                 organs={"lung": organ(shape=61, vessels=200, avascular_max_cells=8,
                                       angiogenic_min_cells=1, angiogenic_switch_rate_per_h=rate)},
                 routes={"v": {"lung": 1.0}}, injections=[inject("v", 20)], on=("proliferation",))


def test_avascular_metastases_never_grow_beyond_the_cap():
    sim = metacoop.Simulation(_growing(0.0), check=True)
    reg = sim.metastases
    largest = 0
    while sim.step_index < sim.n_steps:
        sim.step()
        if reg.n:
            largest = max(largest, int(reg.size[: reg.n].max()))
            assert largest <= 8, f"a metastasis has {largest} cells at t = {sim.time_h:.1f} h"
    assert reg.n == 20 and largest == 8  # the cap was reached, so it was tested
    assert not events(sim, "angiogenic_switch")
    assert {r["status"] for r in sim.metastases_rows()} <= {"solitary", "micro"}


def test_angiogenic_switch_lets_metastases_grow_beyond_the_cap():
    sim = run(_growing(INF))
    rows = sim.metastases_rows()
    assert len(rows) == 20
    assert len(events(sim, "angiogenic_switch")) == 20
    assert all(r["status"] == "macro" and r["max_size"] > 8 for r in rows)


def test_solitary_dormant_cells_are_not_vascularised():
    # The angiogenic switch turns a micrometastasis into a macrometastasis; a metastasis whose
    # only cell is dormant does not switch, even with the default switch settings (rate inf,
    # angiogenic_min_cells 1), so the cell is counted as dormant (funnel and time series).
    sim = run(build(duration_h=1.0, clones=[clone("x", dormancy_probability=1.0)],
                    organs={"lung": organ()}, routes={"v": {"lung": 1.0}}, injections=[inject("v", 10)]))
    rows = sim.metastases_rows()
    assert len(rows) == 10
    assert {r["status"] for r in rows} == {"dormant"}
    assert not events(sim, "angiogenic_switch")
    ts = sim.recorder.timeseries()
    last = ts[(ts["compartment"] == "lung") & (ts["step"] == sim.n_steps)]
    assert last[last["quantity"] == "cells.dormant"]["value"].sum() == 10
    assert last[last["quantity"] == "cells.macro"]["value"].sum() == 0


# -- whole cascade: accounting ---------------------------------------------------------------------

#: franssen2019 shrunk to 61 x 61 sites and 24 h, with many vessel points next to the tumour,
#: milder blood (so CTCs survive the 2-h transit), finite extravasation, and cohesion 0 so
#: that clusters can disaggregate (cohesion 1, the default, forbids it).
FRANSSEN_SMALL = {
    "duration_h": 24.0,
    "dt_h": 0.1,
    "primary.lattice.shape": [61, 61],
    "organs.site1.lattice.shape": [61, 61],
    "organs.site2.lattice.shape": [61, 61],
    "primary.initial_tumour.cells": 1000,
    "primary.vessels": {"normal": 800, "ruptured": 800, "min_distance_um": 0.0},
    "circulation.shear_death_rate_per_h": 0.2,
    "circulation.immune_death_rate_per_h": 0.1,
    "circulation.anoikis_death_rate_per_h": 0.1,
    "clones.tumour.cohesion": 0.0,
    "organs.site1.extravasation_rate_per_h": 1.0,
    "organs.site2.extravasation_rate_per_h": 1.0,
}


def test_every_cell_is_accounted_for_at_every_step_through_the_whole_cascade():
    sim = metacoop.Simulation(metacoop.load_scenario("franssen2019", overrides=FRANSSEN_SMALL), check=True)
    n_clones = len(sim.clones)
    while sim.step_index < sim.n_steps:
        sim.step()  # check=True: per-compartment and between-compartment accounting every step
        created = sum((s.counters["initial"] + s.counters["born"] - s.counters["died"] for s in sim.sites),
                      np.zeros(n_clones, np.int64))
        created = created + sim.circulation.counters["injected"] - sim.circulation.counters["died"]
        assert int(created.sum()) == sim.n_cells, f"t = {sim.time_h:.1f} h"
    seen = {e["event"] for e in sim.events}
    for kind in ("intravasation", "ctc_death", "disaggregation", "arrest", "extravasation",
                 "metastasis_founded"):
        assert kind in seen, kind
    assert {e["organ"] for e in events(sim, "arrest")} == {"site1", "site2"}


# -- routes: lymphatics and re-entry ---------------------------------------------------------------


def test_ctcs_from_lymphatic_points_follow_the_lymph_route():
    sim = run(build(duration_h=6.0, clones=[TUMOUR], on=PRIMARY_RULES,
                    primary=primary_site(normal=600, lymphatic=600, blood_route="blood", lymph_route="lymph"),
                    organs={"lung": organ(), "lymph_node": organ()},
                    routes={"blood": {"lung": 1.0}, "lymph": {"lymph_node": 1.0}},
                    circulation={"transit_h": 0.5}))
    entries = events(sim, "intravasation")
    assert {e["vessel"] for e in entries} == {"normal", "lymphatic"}
    assert all(e["compartment"] == "primary" for e in entries)
    assert all(e["route"] == ("lymph" if e["vessel"] == "lymphatic" else "blood") for e in entries)
    # Epithelial cells enter only through lymphatic (or ruptured) points.
    assert all(e["n_epithelial"] == 0 for e in entries if e["vessel"] == "normal")
    route_of = {u: e["route"] for e in entries for u in e["cell_uids"]}
    arrests = events(sim, "arrest")
    assert {e["organ"] for e in arrests} == {"lung", "lymph_node"}
    for e in arrests:
        assert {route_of[u] for u in e["cell_uids"]} == {"lymph" if e["organ"] == "lymph_node" else "blood"}


def test_cells_on_vessel_points_of_a_reentry_organ_go_back_into_the_blood():
    # Half the injected cells are mesenchymal and stay so in the tissue (no MET); those on a
    # blood-vessel point of the liver (reentry) re-enter the blood and drain to the kidney;
    # the kidney (no reentry) keeps its cells.
    sim = run(build(duration_h=1.0, clones=[clone("x")],
                    organs={"liver": organ(vessels=20, reentry=True, met_on_extravasation=False,
                                           drains_to="venous"),
                            "kidney": organ(vessels=20, met_on_extravasation=False)},
                    routes={"v": {"liver": 0.5, "kidney": 0.5}, "venous": {"kidney": 1.0}},
                    circulation={"transit_h": 0.2},
                    injections=[inject("v", 400, mesenchymal_fraction=0.5)]))
    entries = events(sim, "intravasation")
    assert entries and {e["compartment"] for e in entries} == {"liver"}
    assert all(e["route"] == "venous" and e["vessel"] == "normal" for e in entries)
    assert all(e["n_epithelial"] == 0 for e in entries)
    first_arrest: dict[int, str] = {}
    for e in events(sim, "arrest"):  # in time order
        for u in e["cell_uids"]:
            first_arrest.setdefault(u, e["organ"])
    leavers = [u for e in entries for u in e["cell_uids"]]
    assert all(first_arrest[u] == "liver" for u in leavers)
    later = {u for e in events(sim, "arrest") if e["organ"] == "kidney" for u in e["cell_uids"]}
    assert set(leavers) & later  # re-entered cells arrive in the kidney
    assert sim.site("liver").counters["emigrated"].sum() == len(leavers)
    assert sim.site("kidney").counters["emigrated"].sum() == 0


# -- bad input -------------------------------------------------------------------------------------


def _bad_base() -> dict:
    return table(duration_h=1.0, clones=[clone("x")], organs={"lung": organ(vessels=5)},
                 routes={"v": {"lung": 1.0}}, injections=[inject("v", 10)])


def _rename_organ(raw: dict, name: str) -> dict:
    raw["organs"][name] = raw["organs"].pop("lung")
    raw["circulation"]["routes"]["v"] = {name: 1.0}
    return raw


BAD = {
    "route fractions": ({"circulation.routes.v": {"lung": 0.7}}, "circulation.routes.v", "{'lung': 0.7}"),
    "unknown organ in route": ({"circulation.routes.v": {"lung": 0.5, "mars": 0.5}},
                               "circulation.routes.v.mars", "0.5"),
    "unknown drains_to": ({"organs.lung.drains_to": "sewer"}, "organs.lung.drains_to", "'sewer'"),
    "unknown vessel": ({"injections.0.vessel": "tail_vein"}, "injections.0.vessel", "'tail_vein'"),
    "negative hazard": ({"circulation.shear_death_rate_per_h": -1},
                        "circulation.shear_death_rate_per_h", "-1"),
    "cluster sizes": ({"injections.0.cluster_sizes": {1: 0.5, 2: 0.2}}, "injections.0.cluster_sizes",
                      "{1: 0.5, 2: 0.2}"),
    "no blood vessel": ({"organs.lung.vessels": {"normal": 0, "ruptured": 0, "lymphatic": 3}},
                        "organs.lung.vessels", "'normal': 0"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_cascade_input_names_the_key_and_the_value(case):
    overrides, path, shown = BAD[case]
    with pytest.raises(metacoop.ConfigError) as err:
        metacoop.load_scenario(_bad_base(), overrides=overrides)
    message = str(err.value)
    assert f"{path} = " in message and shown in message, message
    if case == "unknown vessel":
        known = message.rsplit(": ", 1)[1]
        assert sorted(known.split(", ")) == ["out", "v"], message  # the known vessels are listed


@pytest.mark.parametrize("name", ["circulation", "primary"])
def test_organs_cannot_take_the_name_of_another_compartment(name):
    with pytest.raises(metacoop.ConfigError) as err:
        metacoop.load_scenario(_rename_organ(_bad_base(), name))
    assert f"organs.{name} = '{name}'" in str(err.value)


# -- funnel ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def funnel_result():
    # Two organs that arrest half the CTCs reaching them and send the rest round again, so
    # cells pass through beds more than once; some cells go dormant, metastases grow, cap
    # and switch.
    cfg = build(
        duration_h=10.0, seed=9,
        clones=[clone("x", doubling_time_h={"epithelial": 4.0, "mesenchymal": 4.0},
                      dormancy_probability=0.3, wake_rate_per_h=0.1),
                clone("y", dormancy_probability=0.5)],
        organs={name: organ(arrest_probability=0.5, drains_to="v", avascular_max_cells=4,
                            angiogenic_min_cells=2, angiogenic_switch_rate_per_h=0.05,
                            extravasation_rate_per_h=1.0) for name in ("a", "b")},
        routes={"v": {"a": 0.5, "b": 0.5}},
        circulation={"transit_h": 0.2, "shear_death_rate_per_h": 0.2},
        injections=[inject("v", 600, sizes={1: 0.5, 2: 0.5}, clone_fractions={"x": 0.5, "y": 0.5})],
        output={"record_every_h": 1.0, "funnel_times_h": [2.0, 5.0]},
        on=("proliferation", "death"),
    )
    return metacoop.simulate(cfg, check=True)


def test_funnel_narrows_where_it_must(funnel_result):
    f = funnel_result.funnel
    assert sorted(f["time_h"].unique()) == [2.0, 5.0, 10.0]
    assert len(f) == 3 * 2 * 2  # times x organs x clones
    assert (f["arrested"] <= f["arrived"]).all()
    assert (f["extravasated"] <= f["arrested"]).all()
    assert (f["arrived"] > f["arrested"]).any()  # cells passed through without arresting
    assert f["arrested"].sum() > 0 and f["dormant"].sum() > 0 and f["macro"].sum() > 0
    cumulative = ["shed", "arrived", "arrested", "extravasated"]
    for _, g in f.groupby(["organ", "clone"]):
        assert (g.sort_values("time_h")[cumulative].diff().dropna() >= 0).all().all()


def test_funnel_counts_equal_the_timeseries_counters(funnel_result):
    ts = funnel_result.timeseries
    source = {"arrived": "arrived", "arrested": "immigrated", "extravasated": "extravasated",
              "dormant": "cells.dormant", "solitary": "cells.solitary", "micro": "cells.micro",
              "macro": "cells.macro"}

    def get(t, compartment, quantity, clone_name):
        sel = ts[(ts["time_h"] == t) & (ts["compartment"] == compartment) & (ts["quantity"] == quantity)
                 & (ts["clone"] == clone_name)]
        assert len(sel), (t, compartment, quantity, clone_name)
        return int(sel["value"].sum())

    for row in funnel_result.funnel.itertuples():
        t, o, c = row.time_h, row.organ, row.clone
        for stage, quantity in source.items():
            assert getattr(row, stage) == get(t, o, quantity, c), (stage, t, o, c)
        shed = get(t, "circulation", "injected", c) + get(t, "circulation", "immigrated", c)
        assert row.shed == shed
        # Every cell in the tissue is in exactly one stage.
        tissue = get(t, o, "cells", c) - get(t, o, "cells.arrested", c)
        assert row.dormant + row.solitary + row.micro + row.macro == tissue, (t, o, c)


# -- the franssen2019 preset -----------------------------------------------------------------------


def test_franssen2019_preset_runs_with_accounting_checked():
    cfg = metacoop.load_scenario("franssen2019", overrides={"duration_h": 6.0})
    result = metacoop.simulate(cfg, check=True)
    assert result.manifest["status"] == "completed"
    assert result.total_cells("primary").iloc[-1] > 0
    assert set(result.funnel["organ"]) == {"site1", "site2"}


def test_franssen2019_preset_gives_the_published_transit_fates():
    # The preset says its hazards over the 2-h transit give Franssen's probabilities:
    # survival 5e-4 (single cell) and 2.5e-2 (cluster), and disaggregation 0.5.
    cfg = metacoop.load_scenario("franssen2019")
    circ, tumour = cfg.circulation, cfg.clones[0]
    mu = circ.shear_death_rate_per_h + circ.immune_death_rate_per_h + circ.anoikis_death_rate_per_h * (
        1.0 - tumour.anoikis_resistance)
    g = 1.0 - tumour.cohesion * (1.0 - circ.cluster_hazard_factor[1])
    t = circ.transit_h
    assert math.exp(-mu * t) == pytest.approx(5e-4, rel=0.05)
    assert math.exp(-mu * g * t) == pytest.approx(2.5e-2, rel=0.05)
    leave = -math.expm1(-circ.disaggregation_rate_per_h * (1.0 - tumour.cohesion) * t)
    assert leave == pytest.approx(0.5, rel=0.05), "per-cell disaggregation probability over the transit"
