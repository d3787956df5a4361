"""``metacoop validate`` end to end: a reduced validation (the fastest targets, few replicates).

It runs the real command on a real Dask LocalCluster and fails if any of
these targets is missed. The full validation (every target, 4 replicates)
is ``metacoop validate``; its figures are in the README.

Besides pass/fail, the simulated values are checked against what the
scenarios' own parameters imply where that can be computed: the TNF peak of
a two-stage linear cascade and the CTC half-life of a circulation with a
known per-pass clearance.
"""

import csv
import math
import os
import subprocess
import sys

import pandas as pd
import pytest

from metacoop.io.results import open_run
from metacoop.validation.observables import compute
from metacoop.validation.targets import MAPPING_COLUMNS, SOURCE_COLUMNS, load_targets, shipped_targets_path

pytestmark = [pytest.mark.slow, pytest.mark.validation]

#: The reduced validation: targets whose scenarios run in seconds.
FAST = ("KOO-1", "KHA-1", "KHA-2a", "KHA-2b", "KHA-2c", "MEN-1", "BUT-1", "BUT-2", "COU-2", "AND-1")
REPLICATES = 3


def validate(*args, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "metacoop", "validate", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=900)


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    out = tmp_path_factory.mktemp("validation") / "reduced"
    proc = validate("--only", ",".join(FAST), "-n", REPLICATES, "--workers", 2, "--out", out)
    return out, proc


def test_the_reduced_validation_passes_every_target(reduced):
    out, proc = reduced
    table = pd.read_csv(out / "validation.csv").set_index("id")
    shown = table[["status", "simulated", "rule", "detail"]].to_string()
    assert proc.returncode == 0, proc.stderr + "\n" + shown
    order = [t.id for t in load_targets()]
    assert list(table.index) == sorted(FAST, key=order.index)  # in the targets file's order, one row each
    judged = table.drop(index="AND-1")
    assert (judged["status"] == "pass").all()
    assert (judged["n"] == REPLICATES).all()
    assert table.loc["AND-1", "status"] == "not modelled"
    # the printed table names every target and its status
    for rid in FAST:
        assert rid in proc.stderr


def test_the_html_page_has_one_row_per_target_and_no_external_resources(reduced):
    out, _ = reduced
    text = (out / "validation.html").read_text(encoding="utf-8")
    for rid in FAST:
        assert f'data-id="{rid}"' in text
    assert text.count('<tr class="pass"') == len(FAST) - 1
    assert "http://" not in text.split("<table")[0] and "<script" not in text and "<link" not in text


def test_the_simulated_values_agree_with_what_the_scenario_parameters_imply(reduced):
    out, _ = reduced
    runs = sorted((next((out / "experiments").glob("khatib1999-*")) / "runs" / "reference").glob("rep-*"))
    assert len(runs) == REPLICATES
    for run in runs:
        result = open_run(run)
        p = result.config.mechanisms.adhesion_induction
        # Kupffer (rate a) -> TNF (rate b): TNF ~ (exp(-a t) - exp(-b t)), peak at ln(a/b)/(a-b), or 1/a
        # for a = b; cells arrive during the first step, and the peak is read on the record grid.
        a, b = p.activation_decay_per_h, p.cytokine_decay_per_h
        peak = 1 / a if a == b else math.log(a / b) / (a - b)
        slack = result.config.output.record_every_h + result.config.dt_h
        assert abs(compute(result, ["tnf_peak_h"])["tnf_peak_h"] - peak) <= slack


def runs_of(out, scenario):
    return [open_run(r) for r in sorted((next((out / "experiments").glob(f"{scenario}-*")) / "runs"
                                         / "reference").glob("rep-*"))]


def test_the_ctc_half_life_is_what_the_circulation_parameters_imply(reduced):
    # meng2004: single cells leave the blood by death (hazards h, 1/h) and by arrest in the lung
    # with probability p at each pass of transit T: lambda = h + -ln(1 - p) / T, t1/2 = ln 2 / lambda.
    # The least-squares slope over ~5000 cells decaying to 2 % has a relative standard error of
    # about 1/sqrt(5000) ~ 1.4 % (2.5 % allowing for the log-linear fit's inefficiency); 4 of
    # those is 10 %.
    out, _ = reduced
    for result in runs_of(out, "meng2004"):
        c = result.config.circulation
        lung = result.config.organs["lung"]
        lam = c.shear_death_rate_per_h + c.immune_death_rate_per_h + c.anoikis_death_rate_per_h \
            - math.log1p(-lung.arrest_probability) / c.transit_h
        half = compute(result, ["ctc_half_life_h"])["ctc_half_life_h"]
        assert half == pytest.approx(math.log(2) / lam, rel=0.10)


def test_the_arterial_fraction_is_survival_times_passage_through_the_lung(reduced):
    # butler1975: a shed cell reaches a bed beyond the lung if it survives two transits (hazard h
    # over T each) and does not arrest in the lung (1 - p): a binomial fraction of the cells shed.
    out, _ = reduced
    shed = beyond = 0
    for result in runs_of(out, "butler1975"):
        f = result.funnel[result.funnel["time_h"] == result.funnel["time_h"].max()]
        shed += int(f[f["organ"] == "lung"]["shed"].sum())
        beyond += int(f[f["organ"] == "body"]["arrived"].sum())
    c = result.config.circulation
    h = c.shear_death_rate_per_h + c.immune_death_rate_per_h + c.anoikis_death_rate_per_h
    q = math.exp(-2 * h * c.transit_h) * (1 - result.config.organs["lung"].arrest_probability)
    assert shed > 1000
    assert abs(beyond - shed * q) <= 4 * math.sqrt(shed * q * (1 - q)), (beyond, shed, q)


def test_rerunning_the_same_validation_computes_nothing_and_gives_the_same_table(reduced):
    out, _ = reduced
    parts = sorted((out / "experiments").glob("*/dataset/*/*.parquet"))
    stamps = {p: p.stat().st_mtime_ns for p in parts}
    before = pd.read_csv(out / "validation.csv")
    proc = validate("--only", ",".join(FAST), "-n", REPLICATES, "--workers", 1, "--out", out, "-q")
    assert proc.returncode == 0, proc.stderr
    assert {p: p.stat().st_mtime_ns for p in parts} == stamps
    pd.testing.assert_frame_equal(pd.read_csv(out / "validation.csv"), before)


def test_a_users_targets_file_adds_rows_and_a_missed_target_fails(tmp_path):
    # A new row of the user's: a scenario file beside the targets file (khatib1999 with a slower
    # E-selectin decay) and a published range its TNF peak does not reach.
    rows = list(csv.DictReader(open(shipped_targets_path(), newline="", encoding="utf-8")))
    kha1 = next(r for r in rows if r["id"] == "KHA-1")
    (tmp_path / "slow.toml").write_text('extends = "khatib1999"\nname = "slow"\nduration_h = 12.0\n'
                                        '[mechanisms.adhesion_induction]\ncytokine_decay_per_h = 0.1\n',
                                        encoding="utf-8")
    mine = dict(kha1, id="USER-1", scenario="slow.toml", low="4", high="5", value="4.5")
    also = dict(kha1, id="USER-2", scenario="slow.toml", rule="at_least:5", low="", high="")
    with open(tmp_path / "mine.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=[*SOURCE_COLUMNS, *MAPPING_COLUMNS])
        w.writeheader()
        w.writerows([mine, also])
    proc = validate("--targets", tmp_path / "mine.csv", "-n", 2, "--workers", 1, "--out", tmp_path / "v",
                    "-q")
    table = pd.read_csv(tmp_path / "v" / "validation.csv").set_index("id")
    # TNF peaks at ln(a/b)/(a-b) = ln(2.5)/0.15 = 6.1 h: outside [4, 5], above 5
    assert table.loc["USER-1", "status"] == "fail" and table.loc["USER-2", "status"] == "pass"
    assert table.loc["USER-1", "simulated"] == pytest.approx(math.log(2.5) / 0.15, abs=0.25)
    assert proc.returncode == 1


def test_bad_input_ends_with_status_2_and_a_message_naming_it(tmp_path):
    proc = validate("--only", "NOPE-1", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "NOPE-1" in proc.stderr and "Traceback" not in proc.stderr
    proc = validate("-n", 0, "--only", "KHA-1", "--out", tmp_path / "y")
    assert proc.returncode == 2 and "--replicates" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "t.csv").write_text("id,value\nA,1\n", encoding="utf-8")
    proc = validate("--targets", tmp_path / "t.csv", "--out", tmp_path / "z")
    assert proc.returncode == 2 and "lacks the columns" in proc.stderr and "Traceback" not in proc.stderr
