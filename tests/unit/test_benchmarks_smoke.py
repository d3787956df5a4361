"""Smoke test of benchmarks/: every measurement and table runs on tiny sizes.

No timing is asserted: only that the figures come back positive and finite and
that the tables print. Runs in a few seconds once numba's kernel cache is warm.
"""

import importlib.util
import io
import math
import sys
from pathlib import Path

import pytest
from rich.console import Console

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def run():
    saved_path = list(sys.path)
    saved_mod = sys.modules.get("bench_cases")
    spec = importlib.util.spec_from_file_location("metacoop_benchmarks_run", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)
    sys.path[:] = saved_path
    if saved_mod is None:
        sys.modules.pop("bench_cases", None)


def _ok(stat) -> bool:
    return stat.finite_positive()


@pytest.mark.parametrize("ndim", [2, 3])
def test_cell_benchmark_tiny(run, ndim):
    r = run.bc.cell_benchmark(400, ndim, steps=2, reps=2, warmup=1)
    assert len(r.step_s) == 2
    assert _ok(r.cell_rate) and _ok(r.step_rate) and _ok(r.cell_per_step) and _ok(r.field_per_step)
    assert r.n_start > 0 and r.n_end > 0
    assert set(r.cell_slots) >= {"movement", "proliferation", "resolve"}
    assert "fields" in r.field_slots
    for name in r.slot_s:
        assert math.isfinite(r.slot_per_step(name).median)
    assert math.isfinite(r.other_per_step.median) and math.isfinite(r.bookkeeping_per_step.median)
    m = r.memory_end
    assert m["declared_per_cell"] == run.CellArrays.bytes_per_cell()
    assert all(math.isfinite(v) and v > 0 for k, v in m.items() if k != "scratch_per_cell")


def test_thread_benchmark_tiny(run):
    res = run.bc.thread_benchmark(400, 2, (1, 2), steps=2, reps=1, warmup=1)
    assert 1 in res
    for r in res.values():
        assert _ok(r.cell_rate) and _ok(r.step_per_step)


@pytest.mark.parametrize("dims,dtype", [((1, 16, 16), "float64"), ((4, 4, 4), "float32")])
def test_field_benchmark_tiny(run, dims, dtype):
    r = run.bc.field_benchmark(dims, dtype, reps=2, min_rep_s=0.001)
    assert r.substeps >= 1 and r.calls >= 1
    assert r.build in ("serial", "parallel", "-")
    assert _ok(r.solver_rate) and _ok(r.kernel_rate) and _ok(r.bandwidth(r.kernel_rate))


def test_site_fields_benchmark_tiny(run):
    r = run.bc.site_fields_benchmark((24, 24), reps=2, min_rep_s=0.001)
    assert r.calls >= 1 and set(r.substeps) == set(r.fields) and "ecm" in r.fields
    assert r.dtype == "float32"  # (the default preset's fields)
    assert r.updates_per_step == 24 * 24 * sum(r.substeps.values())
    assert _ok(r.rate) and _ok(r.point_rate)
    assert r.rate.median == pytest.approx(r.point_rate.median * sum(r.substeps.values()))


def test_scenario_benchmark_tiny(run):
    r = run.bc.scenario_benchmark("default", reps=1, overrides={"duration_h": 0.5})
    assert _ok(r.wall) and _ok(r.days_per_minute)
    assert r.n_steps == 10 and r.cells_final > 0  # 0.5 h of the default scenario, steps of 0.05 h


def test_machine_probe_gives_three_positive_figures(run):
    # (No speed is asserted: only that the probe measures and prints something sensible.)
    probe = run.bc.MachineProbe.now(tries=1)
    for v in (probe.python_ns, probe.compiled_ns, probe.copy_gb_s):
        assert math.isfinite(v) and v > 0
    assert probe.python_ns > probe.compiled_ns  # an interpreted iteration costs more than a compiled step
    assert "ns/iteration" in probe.text() and "GB/s" in probe.text()


def test_stat_and_ratio(run):
    a = run.bc.Stat.of([1.0, 2.0, 4.0])
    b = run.bc.Stat.of([10.0, 20.0, 40.0])
    assert (a.median, a.min, a.max) == (2.0, 1.0, 4.0)
    r = run.bc.ratio(b, a)
    assert r.median == 10.0 and r.min == 2.5 and r.max == 40.0


def test_tables_print_on_tiny_plan(run):
    plan = run.Plan(cell_sizes=(300, 3000), cell_steps=(2, 2), dims=(2,), reps=2, warmup=1,
                    field_grids=((1, 16, 16),), field_dtypes=("float32",), field_reps=2,
                    field_min_rep_s=0.001, thread_cells=300, site_field_grids=((20, 20),))
    buf = io.StringIO()
    console = Console(file=buf, width=200)
    cells = run.run_cells(console, plan)
    run.breakdown_table(console, cells, plan)
    ratios = run.ratios_table(console, plan, cells)
    run.run_fields(console, plan)
    site_fields = run.run_site_fields(console, plan)
    run.memory_table(console, cells, plan)
    threads = run.run_threads(console, plan)
    run.summary_table(console, plan, cells, ratios, None, threads, None, site_fields)
    text = buf.getvalue()
    for title in ("1. Cell rules", "1b. Where a step goes", "2. Cost per step", "3. Field diffusion",
                  "3b. All fields of a site", "4. Bytes of state", "6. Threads", "Summary against targets",
                  "fields of a site together"):
        assert title in text
    assert len(ratios) == 1 and math.isfinite(ratios[0]["cell_rules"]["median"])


#: franssen2019 shrunk for the smoke test: 45 steps of 40 s on small lattices.
TINY_CASCADE = {
    "duration_h": 0.5,
    "primary.lattice.shape": [41, 41],
    "primary.initial_tumour.cells": 40,
    "primary.vessels.min_distance_um": 0.0,
    "organs.site1.lattice.shape": [31, 31],
    "organs.site2.lattice.shape": [31, 31],
}


def test_cascade_benchmark_tiny(run):
    r = run.bc.cascade_benchmark("franssen2019", reps=2, overrides=TINY_CASCADE)
    assert r.n_steps == 45 and r.full_n_steps == 45 and not r.shortened
    assert _ok(r.wall) and _ok(r.steps_per_s) and _ok(r.days_per_minute)
    assert r.cells_final > 0 and r.digest
    assert len(r.process_s) == 2 and _ok(r.process)  # the same runs in new processes
    assert len(r.wall_s) == 2 and r.process_adds.n == 2  # paired with the in-process runs
    diffs = [p - w for p, w in zip(r.process_s, r.wall_s, strict=True)]
    assert r.process_adds.median == pytest.approx((diffs[0] + diffs[1]) / 2)
    assert r.to_dict()["summary"]["process_adds_s"]["median"] == r.process_adds.median
    short = run.bc.cascade_benchmark("franssen2019", reps=1, steps=20, overrides=TINY_CASCADE)
    assert short.n_steps == 20 and short.full_n_steps == 45 and short.shortened
    assert _ok(short.wall)


def test_cascade_breakdown_tiny(run):
    bc = run.bc
    ref = bc.cascade_benchmark("franssen2019", reps=1, overrides=TINY_CASCADE)
    b = bc.cascade_breakdown("franssen2019", overrides=TINY_CASCADE, warmup_h=0.1)
    assert b.sites == ["primary", "site1", "site2"] and b.n_steps == 45
    # the per-site split and the timers leave the run exactly as it was
    assert b.digest == ref.digest and b.cells_final == ref.cells_final
    assert math.isfinite(b.total_s) and b.total_s > 0
    comp = b.by_compartment()
    assert set(comp) == set(bc.COMPARTMENTS)
    assert all(math.isfinite(v) and v >= 0 for v in comp.values())
    assert comp["sites"] > 0 and comp["circulation"] > 0 and comp["organs"] > 0
    assert math.isclose(sum(comp.values()), b.total_s, rel_tol=1e-6)
    sites = b.by_site()
    assert set(sites) == {"primary", "site1", "site2"} and all(v > 0 for v in sites.values())
    assert sum(sites.values()) <= comp["sites"] * (1 + 1e-9)
    assert {"fields", "movement", "resolve"} <= set(b.site_s)
    assert all(math.isfinite(v) and v >= 0 for v in b.by_phase().values())


def test_cascade_tables_print(run):
    plan = run.Plan(cascade_reps=1, cascade_steps=20, scenario_reps=1)
    default = run.bc.scenario_benchmark("default", reps=1, overrides={"duration_h": 0.5})
    buf = io.StringIO()
    console = Console(file=buf, width=200)
    cascade = run.run_cascade(console, plan, default, overrides=TINY_CASCADE)
    assert cascade["instrumented_matches"]
    run.summary_table(console, plan, {}, [], None, {}, cascade)
    text = buf.getvalue()
    for title in ("7. Cascade scenarios", "SHORTENED", "7b. Where the franssen2019 run goes",
                  "7c. Where the franssen2019 run goes", "Summary against targets", "not judged"):
        assert title in text


def test_precision_benchmark_runs_each_seed_in_both_precisions_and_prints(run):
    bc = run.bc
    plan = run.Plan(precision_seeds=(1, 2, 3), precision_steps=20)
    assert plan.precision_scenarios == ("franssen2019", "default")  # (both presets run float32 fields)
    buf = io.StringIO()
    console = Console(file=buf, width=200)
    results = run.run_precision(console, plan)
    assert [r.name for r in results] == ["franssen2019", "default"]
    for r in results:
        assert r.n_steps == 20 and r.shortened and r.seeds == [1, 2, 3]
        for p in bc.PRECISIONS:
            assert len(r.wall_s[p]) == 3 and len(r.outcomes[p]) == 3
            assert all(o["epithelial cells"] + o["mesenchymal cells"] >= 388 for o in r.outcomes[p])
        assert _ok(r.speedup) and r.speedup.n == 3
    r = results[0]
    comps = {c.outcome: c for c in r.comparisons()}
    assert set(comps) == set(r.outcomes["float64"][0])
    ecm = comps["ECM mean"]
    assert ecm.mean["float32"] == pytest.approx(sum(o["ECM mean"] for o in r.outcomes["float32"]) / 3)
    assert 0 <= ecm.p <= 1 and ecm.sem["float64"] > 0  # seeds differ
    assert math.isnan(comps["metastases founded"].p)  # none in 20 steps: both samples constant
    run.summary_table(console, plan, {}, [], None, {}, None, [], results)
    text = buf.getvalue()
    for name in plan.precision_scenarios:
        assert f"7d. {name} with float32 and float64 fields" in text
        assert f"{name}: float64 / float32 fields" in text
    assert "Welch p" in text


def test_the_metacoop_side_of_the_growth_comparison_runs(run):
    # The Mesa and MetaSpread sides need their own environment (installed on first use by the
    # benchmark, from PyPI), so only metacoop's side runs here.
    import bench_peers

    r = bench_peers.run_metacoop_growth(500)
    assert r.cells >= 500 and r.steps > 0 and r.agent_steps >= r.steps and r.rate > 0
    cfg = bench_peers.growth_config(500)
    clone = cfg.clones[0]
    # exponential cycles: P(a cell with room divides within one step) = 1 - exp(-dt ln 2 / T) = 0.5
    assert clone.cycle_cv == 1.0
    p = 1 - math.exp(-cfg.dt_h * math.log(2) / clone.doubling_time_h.epithelial)
    assert p == pytest.approx(bench_peers.P_DIVIDE)
    assert 1 - math.exp(-clone.death_rate_per_h.epithelial * cfg.dt_h) == pytest.approx(bench_peers.Q_DIE)


def test_startup_benchmark_takes_a_first_step_in_a_new_process(run):
    s = run.bc.startup_benchmark("invasion2d", reps=1)
    assert s.finite_positive() and s.n == 1


def test_builds_benchmark_times_both_builds_and_leaves_the_run_and_the_kernels_as_they_were(run):
    import bench_builds
    import metacoop
    from metacoop.kernels import dispatch, fields

    threads, kernel = dispatch.threads(), fields.diffuse_decay_steps
    plan = run.Plan(builds_scenarios=("franssen2019",), builds_steps=30, builds_every=7)
    buf = io.StringIO()
    (r,) = run.run_builds(Console(file=buf, width=200), plan)
    assert dispatch.threads() == threads and fields.diffuse_decay_steps is kernel  # put back
    assert r.n_steps == 30 and r.every == 7
    by_name = {k.name: k for k in r.kernels}
    assert {"diffuse_decay_steps", "degrade_exponential", "advance_cycle"} <= set(by_name)
    assert by_name["advance_cycle"].calls == 30
    for k in r.kernels:
        # calls 1, 8, 15, ... timed
        assert len(k.serial_s) == len(k.parallel_s) == -(-k.calls // 7) and min(k.serial_s + k.parallel_s) > 0
    assert "10. franssen2019 on one thread" in buf.getvalue() and "kernels flagged" in buf.getvalue()
    # The timed calls work on copies: the run ends where a plain run of the same steps ends.
    cfg, _ = run.bc.scenario_config("franssen2019", 30)
    sim = metacoop.Simulation(cfg)
    while sim.step_index < 30:
        sim.step()
    assert sim.primary.cells.n > 0 and r.digest == bench_builds.state_digest(sim)


@pytest.mark.parametrize("serial_us, parallel_us, timed, flagged", [
    (20.0, 10.0, 5, True),    # 2x, 20 µs, 5 timed calls
    (12.0, 10.0, 5, False),   # 1.2x: under the gap
    (4.0, 2.0, 5, False),     # 2x but 4 µs: timer noise
    (20.0, 10.0, 4, False),   # 2x but 4 timed calls: a cold first call may dominate
])
def test_a_kernel_is_flagged_only_past_every_threshold(run, serial_us, parallel_us, timed, flagged):
    import bench_builds  # (on the path the run fixture set)

    k = bench_builds.KernelBuilds("k", calls=timed, serial_s=[serial_us * 1e-6] * timed,
                                  parallel_s=[parallel_us * 1e-6] * timed)
    assert k.flagged is flagged


@pytest.mark.parametrize("argv, says", [
    (["no-such-revision"], "OLD/NEW = 'no-such-revision': not a commit of"),
    (["HEAD", "no-such-revision"], "OLD/NEW = 'no-such-revision': not a commit of"),
    (["HEAD", "--rounds", "0"], "--rounds = 0: a whole number, at least 1"),
    (["HEAD", "--threads", "0"], "--threads = 0: a whole number, at least 1"),
    (["HEAD", "--scenario", "fransen2019"], "fransen2019"),
])
def test_the_alternating_runs_refuse_a_bad_revision_or_count_before_checking_anything_out(argv, says, capsys):
    import subprocess

    spec = importlib.util.spec_from_file_location("metacoop_benchmarks_ab", BENCH / "ab.py")
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)

    def worktrees() -> str:
        return subprocess.run(["git", "-C", str(BENCH.parent), "worktree", "list"], capture_output=True,
                              text=True).stdout

    before = worktrees()
    assert ab.main(argv) == 2
    assert says in " ".join(capsys.readouterr().out.split())
    assert worktrees() == before  # (no worktree made)
