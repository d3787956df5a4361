"""The targets file and the tolerance rules of ``metacoop validate`` (no simulations here)."""

import csv
import math

import numpy as np
import pytest
from scipy import stats as st

from metacoop.config.loader import builtin_scenarios
from metacoop.errors import InputError
from metacoop.experiments.summary import is_observable
from metacoop.validation.observables import OBSERVABLES
from metacoop.validation.rules import ALPHA, parse_rule
from metacoop.validation.runner import MIN_COMPARISON_REPLICATES, condition_for, judge, plan
from metacoop.validation.targets import MAPPING_COLUMNS, SOURCE_COLUMNS, load_targets, shipped_targets_path

#: The row ids of shared/validation/targets.csv (KHA-2 is shipped split into its three parts).
PUBLISHED_IDS = {"LUZ-1", "LUZ-2", "LUZ-3", "LUZ-4", "LUZ-5", "LUZ-6", "KOO-1", "MOR-1", "CHA-1", "KAP-1",
                 "KAP-4", "DAW-1", "MIL-1", "BID-1", "BUT-1", "BUT-2", "MEN-1", "COU-2", "AXE-1", "AND-1",
                 "KHA-1", "KHA-2", "KHA-3", "FRI-1"}


def shipped_rows():
    with open(shipped_targets_path(), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_targets(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=[*SOURCE_COLUMNS, *MAPPING_COLUMNS])
        w.writeheader()
        w.writerows(rows)
    return path


def test_the_shipped_file_holds_every_published_row_mapped_to_a_builtin_scenario():
    targets = load_targets()
    ids = {t.id for t in targets}
    assert {i.rstrip("abc") if i.startswith("KHA-2") else i for i in ids} == PUBLISHED_IDS
    assert {"KHA-2a", "KHA-2b", "KHA-2c"} <= ids
    scenarios = builtin_scenarios()
    for t in targets:
        assert t.source and t.quantity and t.translation, t.id
        if t.modelled:
            assert t.scenario in scenarios, (t.id, t.scenario)
            assert t.observable in OBSERVABLES or is_observable(t.observable), t.id
            assert t.fitted.split(":")[0] in ("yes", "no"), t.id
    # every verified quantitative row (a numeric value) is judged by a rule, not left unmodelled
    for t in targets:
        if t.verified and isinstance(t.value, float) and not math.isnan(t.value):
            assert t.modelled or t.id == "KHA-3", t.id
    # the one unverified row is guidance
    assert [t.id for t in targets if not t.verified] == ["MIL-1"]


def test_the_plan_groups_targets_by_scenario_with_one_condition_per_override_set():
    designs = {d.scenario: d for d in plan(load_targets(), replicates=3)}
    ca = designs["classaction"]
    blockade = condition_for({"mechanisms.niche.vegfr1_blockade": 1.0})
    alone = condition_for({"primary.initial_tumour.clone_fractions": {"metastatic": 0.0,
                                                                      "nonmetastatic": 1.0}})
    assert {c.name for c in ca.conditions} == {"reference", blockade, alone}
    assert ca.seed == 2008  # the scenario's own seed
    axe = designs["axelrod2006"]  # the comparison condition of an `above` rule is planned too
    assert {c.name for c in axe.conditions} == {"reference", "growth_factor-False"}
    # Scenarios with a comparison row (BID-1, AXE-1) get at least MIN_COMPARISON_REPLICATES; others
    # the replicates asked for, and more when asked for more.
    assert ca.replicates == axe.replicates == MIN_COMPARISON_REPLICATES
    assert designs["luzzi1998"].replicates == 3
    assert {d.scenario: d.replicates for d in plan(load_targets(), replicates=10)}["classaction"] == 10
    assert "niche_before_arrival" in ca.extra["observables"]


@pytest.mark.parametrize("column, value, expected", [
    ("observable", "no_such_thing", "unknown observable"),
    ("rule", "within:3", "unknown rule"),
    ("rule", "factor:0.5", "factor:x needs x > 1"),
    ("rule", "relative:abc", "relative needs a number"),
    ("rule", "above:", "above needs the overrides"),
    ("overrides", "no equals sign", "overrides look like dotted.key=value"),
    ("low", "low-ish", "must be a number or empty"),
    ("scenario", "", "needs a scenario"),
])
def test_a_bad_targets_row_is_refused_naming_the_row_and_column(tmp_path, column, value, expected):
    row = next(r for r in shipped_rows() if r["id"] == "KHA-1")
    row[column] = value
    path = write_targets(tmp_path / "t.csv", [row])
    with pytest.raises(InputError) as err:
        load_targets(path)
    text = str(err.value)
    assert "KHA-1" in text and expected in text, text


def test_missing_columns_and_duplicate_ids_are_refused(tmp_path):
    (tmp_path / "few.csv").write_text("id,value\nX,1\n", encoding="utf-8")
    with pytest.raises(InputError, match="lacks the columns .*scenario"):
        load_targets(tmp_path / "few.csv")
    row = next(r for r in shipped_rows() if r["id"] == "KHA-1")
    with pytest.raises(InputError, match="ids must be unique"):
        load_targets(write_targets(tmp_path / "dup.csv", [row, row]))
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="cannot be read as CSV"):
        load_targets(tmp_path / "bin.csv")


def test_a_scenario_file_named_in_a_targets_file_is_found_beside_it(tmp_path):
    row = next(r for r in shipped_rows() if r["id"] == "KHA-1")
    row.update(id="MY-1", scenario="mine.toml")
    (tmp_path / "sub").mkdir()
    targets = load_targets(write_targets(tmp_path / "sub" / "t.csv", [row]))
    assert targets[0].scenario == str(tmp_path / "sub" / "mine.toml")


# -- rules ---------------------------------------------------------------------------------------------


def test_band_rules_decide_on_the_mean_at_their_edges():
    x = np.array([0.7, 0.9])  # mean 0.8
    assert parse_rule("range", "r").judge(x, math.nan, 0.8, 1.0).passed
    assert not parse_rule("range", "r").judge(x, math.nan, 0.81, 1.0).passed
    assert parse_rule("range", "r").judge(x, math.nan, math.nan, 0.8).passed  # open low bound
    assert parse_rule("relative:0.2", "r").judge(x, 1.0).passed  # 0.8 = 1.0 * (1 - 0.2)
    assert not parse_rule("relative:0.19", "r").judge(x, 1.0).passed
    assert parse_rule("factor:2", "r").judge(x, 1.6).passed
    assert not parse_rule("factor:2", "r").judge(x, 1.7).passed
    assert parse_rule("at_most:0", "r").judge(np.zeros(4)).passed
    assert not parse_rule("at_most:0", "r").judge(np.array([0.0, 1e-12])).passed
    v = parse_rule("at_least:5", "r").judge(np.array([4.0, 6.0, math.nan]))
    assert v.passed and v.n == 2 and v.value == 5.0  # NaN replicates are left out of a mean
    assert not parse_rule("at_least:5", "r").judge(np.array([math.nan])).passed


def test_the_replicates_rule_counts_nan_as_not_holding():
    rule = parse_rule("replicates:0.9", "r")
    assert rule.judge(np.ones(10)).passed
    nine = rule.judge(np.array([1.0] * 9 + [math.nan]))
    assert nine.value == 0.9 and nine.passed
    assert not rule.judge(np.array([1.0] * 8 + [0.0, math.nan])).passed
    assert rule.judge(np.array([1.0] * 8 + [0.0, math.nan])).value == 0.8


def test_comparison_rules_use_a_one_sided_mann_whitney_test():
    rule = parse_rule("above:mechanisms.growth_factor.enabled=false", "r")
    assert rule.other == {"mechanisms.growth_factor.enabled": False}
    hi, lo = np.array([5.0, 6.0, 7.0, 8.0]), np.array([1.0, 2.0, 3.0, 4.0])
    # all four above all four: p = 1/C(8,4) = 1/70
    assert st.mannwhitneyu(hi, lo, alternative="greater").pvalue == pytest.approx(1 / 70)
    assert rule.judge(hi, other=lo).passed
    assert not rule.judge(lo, other=hi).passed
    assert not rule.judge(hi[:3], other=lo[:3]).passed  # 1/20 = 0.05 is not below ALPHA
    assert ALPHA == 0.05
    assert parse_rule("below:a.b=1", "r").judge(lo, other=hi).passed
    assert not rule.judge(hi, other=np.array([math.nan])).passed  # nothing to compare with


def test_judge_reports_guidance_and_unmodelled_rows_without_judging_them():
    import pandas as pd

    targets = {t.id: t for t in load_targets()}
    chosen = [targets["MIL-1"], targets["BID-1"], targets["AND-1"], targets["KAP-4"]]
    blockade = condition_for({"mechanisms.niche.vegfr1_blockade": 1.0})
    reps = pd.DataFrame({
        "condition": ["reference"] * 4 + [blockade] * 2,
        "replicate": [0, 1, 0, 1, 0, 1],
        "observable": ["second_clone_in_metastases"] * 2 + ["bmdc_peak"] * 2 + ["bmdc_peak"] * 2,
        "value": [0.0, 0.0, 0.5, 0.7, 0.0, 0.0]})
    table = judge(chosen, {"classaction": reps}).set_index("id")
    assert table.loc["MIL-1", "status"] == "guidance"  # unverified: shown, not judged
    # no values of its observable: a target without data fails, it never passes
    assert table.loc["BID-1", "status"] == "fail"
    assert table.loc["BID-1", "detail"] == "no replicate had a value"
    assert table.loc["AND-1", "status"] == "not modelled"
    assert table.loc["KAP-4", "status"] == "pass" and table.loc["KAP-4", "condition"] == blockade


def test_the_validation_document_is_generated_from_the_shipped_targets():
    from pathlib import Path

    from metacoop.validation.report import targets_markdown

    doc = Path(__file__).parents[2] / "docs" / "validation.md"
    assert doc.read_text(encoding="utf-8") == targets_markdown(load_targets()), (
        "docs/validation.md is stale: run `metacoop validate --list --doc docs/validation.md`")


def test_calibration_reads_the_shipped_targets_and_their_observables():
    from metacoop.experiments.calibrate import _model, read_targets

    (t,) = read_targets(None, {"LUZ-1": ""})  # the row's own observable, from the shipped file
    assert (t.observable, t.value, t.scale) == ("extravasated_alive_d3", 0.8, 0.8)
    (m,) = read_targets(None, {"MEN-1": ""})
    assert m.observable == "ctc_half_life_h" and m.scale == pytest.approx(0.7)  # half of [1.0, 2.4]
    with pytest.raises(InputError, match="names no observable"):
        read_targets(None, {"AND-1": ""})
    # a calibration run computes validation observables too
    out = _model({"p0": 24.0}, "koop1995", {"injections.0.cells": 400}, {"p0": "duration_h"},
                 {"duration_h": False}, ["extravasated_alive_d1", "metastases"])
    assert 0.5 < out["extravasated_alive_d1"] <= 1.0 and out["metastases"] >= 0


@pytest.mark.parametrize("kwargs, path", [
    ({"workers": -2}, "--workers"), ({"workers": 0}, "--workers"),
    ({"workers": 2, "scheduler": "tcp://127.0.0.1:8786"}, "--workers"),
    ({"workers": 2, "client": object()}, "--workers"),
    ({"scheduler": "tcp://127.0.0.1:8786", "client": object()}, "--scheduler"),
    ({"out_dir": 3}, "--out"),
])
def test_validate_refuses_a_bad_cluster_or_directory_before_running(tmp_path, kwargs, path):
    """BUG: ``validate(..., workers=-2)`` started a LocalCluster of no workers and waited for ever; with a
    client, ``workers`` and ``scheduler`` were ignored without a word."""
    from metacoop.validation.runner import validate

    with pytest.raises(InputError) as ei:
        validate(load_targets()[:1], **{"out_dir": tmp_path / "v", **kwargs})
    (problem,) = ei.value.problems
    assert problem.path == path
    assert not (tmp_path / "v").exists()
