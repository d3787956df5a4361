"""The experiment runner on a real Dask LocalCluster: determinism, resume, failures, queries.

Replicates here are tiny (a 41 x 41 primary site for a few hours), so the
cost is mostly starting clusters.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

import metacoop
from metacoop.experiments import Design, build_design, open_experiment, query, run_experiment
from metacoop.experiments.runner import part_path, read_dataset

pytestmark = pytest.mark.slow

SMALL = {"duration_h": 6.0, "primary.lattice.shape": [41, 41], "primary.initial_tumour.cells": 120,
         "primary.vessels.normal": 40, "primary.vessels.min_distance_um": 40.0}
VARY = {"clones.tumour.emt_rate_per_h": [0.0, 0.2]}


def sweep(replicates=3, overrides=SMALL, vary=VARY, scenario="invasion2d", seed=11) -> Design:
    cfg = metacoop.load_scenario(scenario, overrides)
    return build_design("sweep", scenario, cfg, replicates, seed, vary, overrides)


def sorted_dataset(path) -> pd.DataFrame:
    df = read_dataset(Path(path))
    return df.sort_values(["condition", "replicate", "observable"]).reset_index(drop=True)


def cli(*args, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, "-m", "metacoop", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def test_the_dataset_is_the_same_with_one_and_two_workers(tmp_path):
    design = sweep()
    one = run_experiment(design, tmp_path / "one", workers=1)
    two = run_experiment(design, tmp_path / "two", workers=2)
    assert one.computed == two.computed == 6 and not one.failures and not two.failures
    a, b = sorted_dataset(tmp_path / "one"), sorted_dataset(tmp_path / "two")
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(one.stats, two.stats)
    from metacoop.experiments.summary import is_observable
    assert all(is_observable(o) for o in a["observable"].unique())  # the calibrate check knows them all
    # every (condition, replicate) is there once, with the design's seed
    seeds = design.seeds()
    per = a.groupby(["condition", "replicate"])["seed"].agg(["first", "nunique", "size"])
    assert len(per) == 6 and (per["nunique"] == 1).all()
    assert all(per.loc[(c, i), "first"] == seeds[i] for c, i in per.index)
    # the emt sweep did something: mesenchymal cells shed more with EMT on
    shed = a[a["observable"] == "shed_cells"].groupby("condition")["value"].mean()
    assert list(shed.index) == ["emt_rate_per_h-0.0", "emt_rate_per_h-0.2"]
    assert shed.iloc[1] > shed.iloc[0]
    # a rerun of a complete experiment computes nothing and changes nothing
    again = run_experiment(design, tmp_path / "one", workers=1)
    assert again.computed == 0
    pd.testing.assert_frame_equal(sorted_dataset(tmp_path / "one"), a)


def test_a_killed_experiment_resumes_computing_only_the_missing_replicates(tmp_path):
    out = tmp_path / "exp"
    sets = [x for k, v in {**SMALL, "duration_h": 48.0}.items() for x in ("--set", f"{k}={json.dumps(v)}")]
    proc = cli("experiment", "sweep", "invasion2d", "-n", "4", "--workers", "1", "--out", out,
               "--vary", "clones.tumour.emt_rate_per_h=0.0,0.2", "--quiet", *sets, start_new_session=True)
    deadline = time.time() + 120
    parts = []
    while time.time() < deadline and proc.poll() is None:
        parts = list((out / "dataset").glob("condition=*/*.parquet")) if (out / "dataset").exists() else []
        if len(parts) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the experiment finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its cluster and its workers
    proc.wait()
    done_before = len(list((out / "dataset").glob("condition=*/*.parquet")))
    assert 2 <= done_before < 8
    design = Design.from_json(json.loads((out / "experiment.json").read_text()))
    resumed = run_experiment(design, out, workers=2)
    assert resumed.computed == 8 - done_before and not resumed.failures
    whole = run_experiment(design, tmp_path / "whole", workers=2)
    pd.testing.assert_frame_equal(sorted_dataset(out), sorted_dataset(tmp_path / "whole"))
    pd.testing.assert_frame_equal(resumed.stats, whole.stats)


def test_a_replicate_that_raises_is_reported_and_retried_on_the_next_run(tmp_path):
    # The 'full' condition injects 400 cells into a 5 x 5 liver holding one cell per point: the
    # organ runs out of room at run time (SimulationError), which no check before the run sees.
    base = {"duration_h": 1.0, "injections.0.cells": 400,
            "organs.liver.lattice.capacity_cells_per_point": 1, "organs.liver.vessels.normal": 1}
    vary = {"organs.liver.lattice.shape": [[5, 5], [41, 41]]}
    design = sweep(replicates=2, overrides=base, vary=vary, scenario="luzzi1998")
    full, roomy = (c.name for c in design.conditions)
    res = run_experiment(design, tmp_path / "e", workers=2)
    assert sorted((c, i) for c, i, _ in res.failures) == [(full, 0), (full, 1)]
    assert all("full" in text for _, _, text in res.failures)
    for i in range(2):
        record = json.loads((tmp_path / "e" / "failures" / f"{full}.rep-{i:04d}.json").read_text())
        assert record["condition"] == full and "full" in record["error"]
        assert not part_path(tmp_path / "e", full, i).exists()
        assert part_path(tmp_path / "e", roomy, i).exists()
    assert set(res.replicates["condition"]) == {roomy}
    # rerunning retries only the failed replicates (they fail again, and are reported again)
    again = run_experiment(design, tmp_path / "e", workers=1)
    assert again.computed == 0 and len(again.failures) == 2
    # the command line says so and exits 1
    proc = cli("experiment", "sweep", "luzzi1998", "-n", "2", "--workers", "1", "--seed", "11",
               "--out", tmp_path / "e",
               "--vary", "organs.liver.lattice.shape=[5,5],[41,41]", "--quiet",
               *[x for k, v in base.items() for x in ("--set", f"{k}={json.dumps(v)}")])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert err.count("failed:") == 2 and "full" in err and "Traceback" not in err


def test_killing_a_worker_mid_replicate_loses_nothing_and_records_each_replicate_once(tmp_path):
    design = sweep(replicates=3, overrides={**SMALL, "duration_h": 36.0})
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        pids = client.run(os.getpid)
        killed = []

        def kill_one_when_busy(p):
            if not killed and p.done >= 1:
                os.kill(next(iter(pids.values())), signal.SIGKILL)
                killed.append(True)

        res = run_experiment(design, tmp_path / "e", client=client, progress=kill_one_when_busy)
    assert killed and not res.failures
    df = read_dataset(tmp_path / "e")
    assert df.groupby(["condition", "replicate", "observable"]).size().max() == 1
    whole = run_experiment(design, tmp_path / "whole", workers=2)
    pd.testing.assert_frame_equal(sorted_dataset(tmp_path / "e"), sorted_dataset(tmp_path / "whole"))
    assert whole.computed == 6


def test_query_from_the_command_line_matches_the_api(tmp_path):
    design = sweep(replicates=2)
    run_experiment(design, tmp_path / "e", workers=1)
    sql = ("select condition, count(*) as n, avg(value) as mean from replicates "
           "where observable = 'shed_cells' group by condition order by condition")
    api = query(tmp_path / "e", sql)
    assert list(api["n"]) == [2, 2]
    proc = cli("query", tmp_path / "e", sql, "--csv")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    cli_df = pd.read_csv(pd.io.common.StringIO(out))
    np.testing.assert_allclose(cli_df["mean"], api["mean"])
    stats = open_experiment(tmp_path / "e").stats
    joined = query(tmp_path / "e", "select * from stats where observable = 'shed_cells' order by condition")
    np.testing.assert_allclose(joined["mean"], stats[stats["observable"] == "shed_cells"]
                               .sort_values("condition")["mean"])
    bad = cli("query", tmp_path / "e", "select nope from replicates")
    _, err = bad.communicate(timeout=60)
    assert bad.returncode == 2 and "DuckDB refused it" in err and "Traceback" not in err


@pytest.mark.parametrize("method", ["morris", "sobol"])
def test_sensitivity_ranks_a_parameter_that_matters_above_one_that_cannot(tmp_path, method):
    # More vessel points around the tumour shed more cells; the time-series interval changes
    # what is recorded, never what happens, so its indices are exactly 0.
    vary = {"primary.vessels.normal": [10, 120], "output.record_every_h": [1.0, 3.0]}
    cfg = metacoop.load_scenario("invasion2d", SMALL)
    design = build_design("sensitivity", "invasion2d", cfg, 1, 3, vary, SMALL, method=method,
                          samples=4 if method == "morris" else 8)
    assert len(design.conditions) == (4 * 3 if method == "morris" else 8 * 4)
    assert {c.overrides["primary.vessels.normal"] for c in design.conditions} <= set(range(10, 121))
    res = run_experiment(design, tmp_path / "s", workers=2)
    s = res.sensitivity.set_index(["observable", "parameter", "index"])
    main = "mu_star" if method == "morris" else "ST"
    vessels = s.loc[("shed_cells", "primary.vessels.normal", main)]
    record = s.loc[("shed_cells", "output.record_every_h", main)]
    assert record["value"] == 0.0
    assert vessels["value"] > 0.0
    if method == "morris":
        assert vessels["value"] > vessels["conf"]
    saved = pd.read_csv(tmp_path / "s" / "sensitivity.csv")
    assert len(saved) == len(res.sensitivity)
    assert open_experiment(tmp_path / "s").sensitivity.equals(res.sensitivity)


def test_sensitivity_ranges_must_be_two_increasing_numbers():
    cfg = metacoop.load_scenario("invasion2d", SMALL)
    for vary, text in (({"primary.vessels.normal": [10]}, "two finite numbers"),
                       ({"primary.vessels.normal": [80, 10]}, "low < high"),
                       ({}, "at least one parameter range")):
        with pytest.raises(metacoop.InputError, match=text):
            build_design("sensitivity", "invasion2d", cfg, 1, 3, vary, SMALL)
    with pytest.raises(metacoop.InputError, match="methods: morris, sobol"):
        build_design("sensitivity", "invasion2d", cfg, 1, 3, {"dt_h": [0.01, 0.1]}, SMALL, method="fast")


TARGETS_CSV = """id,source,quantity,value,low,high,unit,condition,verified,url
SIM-1,test,cells in the primary after half an hour,200,190,210,cells,invasion2d,no,
QUAL-1,test,qualitative,observed,,,qualitative,,no,
"""
CAL_BASE = {"duration_h": 0.5, "primary.lattice.shape": [41, 41]}


def test_calibration_concentrates_the_posterior_on_the_published_figure(tmp_path):
    # Half an hour after seeding, the primary holds about the cells it was seeded with, so the
    # posterior of the initial cell count must gather around the target of 200 (prior U(50, 400),
    # sd 101); its 5-95 % interval must hold 200 and the calibrated scenario must load.
    from metacoop.experiments.calibrate import calibrate, read_targets

    (tmp_path / "t.csv").write_text(TARGETS_CSV, encoding="utf-8")
    targets = read_targets(tmp_path / "t.csv", {"SIM-1": "primary_cells"})
    assert targets[0].scale == 10.0  # half the published range
    with Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                             dashboard_address=":0")) as client:
        res = calibrate("invasion2d", CAL_BASE, {"primary.initial_tumour.cells": [50, 400]}, targets,
                        tmp_path / "c", population=20, generations=3, seed=1, client=client)
        client.cluster.close()
    post = res.summary["posterior"]["primary.initial_tumour.cells"]
    assert post["q05"] <= 200 <= post["q95"]
    assert abs(post["mean"] - 200) < 30 and post["sd"] < 101 / 3
    eps = res.summary["epsilon"]
    assert len(eps) == 3 and eps == sorted(eps, reverse=True)
    assert len(res.posterior) == 20 and abs(res.posterior["weight"].sum() - 1) < 1e-9
    calibrated = metacoop.load_scenario(tmp_path / "c" / "calibrated.toml")
    assert calibrated.primary.initial_tumour.cells == round(post["mean"])
    for name in ("abc.db", "posterior.parquet", "posterior.csv", "calibration.json"):
        assert (tmp_path / "c" / name).is_file()


def test_calibration_on_one_worker_is_reproducible_and_bad_targets_are_refused(tmp_path):
    (tmp_path / "t.csv").write_text(TARGETS_CSV, encoding="utf-8")
    args = ["experiment", "calibrate", "invasion2d", "--targets", tmp_path / "t.csv", "--match",
            "SIM-1=primary_cells", "--vary", "primary.initial_tumour.cells=50,400", "--population", "10",
            "--generations", "2", "--workers", "1", "--set", "duration_h=0.5",
            "--set", "primary.lattice.shape=[41,41]"]
    for out in ("a", "b"):
        proc = cli(*args, "--out", tmp_path / out)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    a = pd.read_parquet(tmp_path / "a" / "posterior.parquet")
    pd.testing.assert_frame_equal(a, pd.read_parquet(tmp_path / "b" / "posterior.parquet"))
    for match, text in (("QUAL-1=primary_cells", "is not a number"),
                        ("NOPE-1=primary_cells", "SIM-1, QUAL-1"),
                        ("SIM-1=not_an_observable", "is not an observable"), ("SIM-1", "ROW_ID=observable")):
        bad = [*args[:6], match, *args[7:], "--out", tmp_path / "bad"]
        proc = cli(*bad)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2 and text in err and "Traceback" not in err, (match, err)


def test_a_truncated_dataset_part_is_reported_and_recomputed_once_deleted(tmp_path):
    design = sweep(replicates=2)
    run_experiment(design, tmp_path / "e", workers=1)
    part = part_path(tmp_path / "e", design.conditions[0].name, 1)
    good = part.read_bytes()
    part.write_bytes(good[: len(good) // 2])
    with pytest.raises(metacoop.InputError, match="is damaged .* delete it and rerun"):
        open_experiment(tmp_path / "e")
    proc = cli("query", tmp_path / "e", "select count(*) from replicates")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "Traceback" not in err
    part.unlink()
    again = run_experiment(design, tmp_path / "e", workers=1)
    assert again.computed == 1
    assert part.read_bytes() == good  # the same replicate again, bit for bit


def test_replicates_share_the_host_cpus_among_the_task_slots_of_its_workers(tmp_path):
    # Two workers of one thread on this host: each replicate runs numba on half the CPUs (at least
    # one), so that workers sharing a machine do not run more spinning OpenMP threads than it has
    # cores. Read in the task thread after the experiment (numba's thread count is per thread).
    import numba

    from metacoop.experiments.threads import fit_threads, host_cpus, host_slots, task_threads

    def threads_now():
        return numba.get_num_threads()

    def fitted(slots):
        fit_threads(slots)
        return numba.get_num_threads()

    cpus, top = host_cpus(), numba.config.NUMBA_NUM_THREADS
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        slots = host_slots(client)
        assert list(slots.values()) == [2]
        workers = list(client.scheduler_info()["workers"])
        run_experiment(sweep(replicates=2), tmp_path / "e", client=client)
        after = client.gather([client.submit(threads_now, workers=[w], pure=False) for w in workers])
        assert after == [min(max(1, cpus // 2), top)] * 2
        # a worker missing from the count (it joined later) counts its own slot: every CPU
        assert client.submit(fitted, {}, workers=workers[:1], pure=False).result() == min(cpus, top)
    assert task_threads(slots) is None  # outside a worker nothing is set


@pytest.mark.parametrize("change, path", [
    ({"design": "ablation"}, "design"),
    ({"out_dir": 3}, "--out"),
    ({"workers": 0}, "--workers"),
    ({"workers": -2}, "--workers"),
    ({"workers": 1.5}, "--workers"),
    ({"workers": 2, "scheduler": "tcp://127.0.0.1:8786"}, "--workers"),
    ({"scheduler": 8786}, "--scheduler"),
    ({"workers": 2, "client": object()}, "--workers"),
    ({"scheduler": "tcp://127.0.0.1:8786", "client": object()}, "--scheduler"),
    ({"progress": 5}, "progress"),
])
def test_run_experiment_refuses_arguments_of_the_wrong_kind_before_starting(tmp_path, change, path):
    """BUG: ``workers=-2`` started a LocalCluster of no workers and waited for ever; a design given by
    name or an ``out_dir`` of 3 raised AttributeError or TypeError."""
    args = {"design": sweep(replicates=1), "out_dir": tmp_path / "e", **change}
    with pytest.raises(metacoop.InputError) as ei:
        run_experiment(**args)
    (problem,) = ei.value.problems
    assert problem.path == path
    assert not (tmp_path / "e").exists(), "nothing written"
    with pytest.raises(metacoop.InputError, match=r"experiment = 3: a path \(str or pathlib.Path\)"):
        open_experiment(3)
    with pytest.raises(metacoop.InputError, match=r"experiment = 3: a path"):
        query(3, "SELECT 1")
    with pytest.raises(metacoop.InputError, match="sql = 5: an SQL query"):
        query(tmp_path, 5)


def test_a_second_experiment_into_a_directory_being_written_is_refused(tmp_path):
    """Two commands computing one experiment directory at once each ran every replicate; a replicate's
    incomplete run directory was deleted under the process writing it."""
    from metacoop.io.rundir import DirectoryLock

    design = sweep(replicates=1)
    out = tmp_path / "e"
    out.mkdir()
    with DirectoryLock(out, "--out"), pytest.raises(metacoop.InputError, match="another metacoop process"):
        run_experiment(design, out, workers=1)
    assert sorted(p.name for p in out.iterdir()) == [], "nothing written, the lock file removed"
    res = run_experiment(design, out, workers=1)
    assert res.computed == len(design.tasks()) and not res.failures
    assert not any(p.name.startswith(".") for p in out.iterdir())
