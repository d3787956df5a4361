"""The ``metacoop`` command line, run as a real subprocess.

Bad input of any kind must end with exit status 2 and a message on stderr that
names the key path, the value and what is allowed, without a traceback.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

import metacoop
from metacoop.io.atomic import sha256_path
from metacoop.io.results import DATA_FILES

SMALL_SET = ["invasion2d", "--set", "duration_h=2", "--set", "primary.lattice.shape=[41,41]",
             "--set", "primary.initial_tumour.cells=50"]
SMALL = {"duration_h": 2.0, "primary.lattice.shape": [41, 41], "primary.initial_tumour.cells": 50}
TIMEOUT_S = 120


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """Run ``python -m metacoop ARGS`` and capture its output."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "metacoop", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=TIMEOUT_S, check=False)


def squash(text: str) -> str:
    """Collapse runs of whitespace (rich wraps tables to the terminal width)."""
    return " ".join(text.split())


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# --------------------------------------------------------------------------- bad input
#
# Each case builds (arguments, substrings stderr must hold, whether exactly one error line is
# expected, whether the run must not create its --out directory). They run in parallel once per
# module; every case is then checked by its own test.


def _file(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def _case_unknown_top(tmp):
    return (["run", "invasion2d", "--set", "durationn_h=2"],
            ["durationn_h = 2", "unknown key", "duration_h", "dt_h"])


def _case_unknown_nested(tmp):
    return (["run", "invasion2d", "--set", "primary.lattice.shapee=[41,41]"],
            ["primary.lattice.shapee = [41, 41]", "unknown key", "shape", "spacing_um",
             "capacity_cells_per_point"])


def _case_unknown_in_file(tmp):
    text = metacoop.to_toml(metacoop.load_scenario("invasion2d")).replace("[primary.lattice]\n",
                                                                       "[primary.lattice]\nshapee = 3\n")
    path = _file(tmp, "typo.toml", text.encode())
    return ["run", path], ["primary.lattice.shapee = 3", "unknown key", "spacing_um"]


def _case_wrong_type(tmp):
    return ["run", "invasion2d", "--set", 'duration_h="ten"'], ["duration_h = 'ten'", "valid number"]


def _case_wrong_type_bare_word(tmp):
    return ["run", "invasion2d", "--set", "duration_h=ten"], ["duration_h = 'ten'", "valid number"]


def _case_negative_rate(tmp):
    return (["run", "invasion2d", "--set", "clones.tumour.death_rate_per_h.epithelial=-1"],
            ["clones.tumour.death_rate_per_h.epithelial = -1", "greater than or equal to 0"])


def _case_probability_above_one(tmp):
    return (["run", "invasion2d", "--set", "primary.initial_tumour.mesenchymal_fraction=1.5"],
            ["primary.initial_tumour.mesenchymal_fraction = 1.5", "less than or equal to 1"])


def _case_lattice_too_large(tmp):
    return (["run", "invasion3d", "--set", "primary.lattice.shape=[100000,100000,100]"],
            ["primary.lattice.shape = [100000, 100000, 100]", "memory", "GiB", "smaller lattice"])


def _case_lattice_too_large_2d(tmp):
    return (["run", "invasion2d", "--set", "primary.lattice.shape=[100000,100000]"],
            ["primary.lattice.shape = [100000, 100000]", "memory", "smaller lattice"])


def _case_unstable_field(tmp):
    return (["run", "invasion2d", "--set", "primary.fields.mmp2.substeps=1",
             "--set", "primary.fields.mmp2.diffusion_um2_per_h=1e6"],
            ["primary.fields.mmp2.substeps = 1", "unstable", "substeps >="])


def _case_unstable_movement(tmp):
    return (["run", *SMALL_SET, "--set", "dt_h=50"],
            ["clones.tumour.diffusion_um2_per_h.mesenchymal", "dt_h = 50", "reduce dt_h"], False)


def _case_missing_file(tmp):
    return (["run", tmp / "missing.toml"],
            ["scenario = ", "missing.toml", "neither a built-in scenario", "default", "invasion3d"])


def _case_directory(tmp):
    d = tmp / "a_dir.toml"
    d.mkdir()
    return ["run", d], ["scenario = ", "a_dir.toml", "is a directory"]


def _case_invalid_utf8(tmp):
    path = _file(tmp, "latin1.toml", b'name = "caf\xe9"\n')
    return ["run", path], ["scenario = ", "latin1.toml", "cannot be read", "utf-8"]


def _case_invalid_toml(tmp):
    path = _file(tmp, "broken.toml", b'name = "x"\nduration_h = \n')
    return ["run", path], ["broken.toml", "not valid TOML", "line 2"]


def _case_out_under_file(tmp):
    f = _file(tmp, "plain_file", b"x")
    expect = ["--out = ", "plain_file/sub", "cannot be created"]
    return ["run", *SMALL_SET, "--out", f / "sub"], expect, True, False


def _case_out_is_file(tmp):
    f = _file(tmp, "plain_file2", b"x")
    return ["run", *SMALL_SET, "--out", f], ["--out = ", "plain_file2"], True, False


def _case_out_in_proc(tmp):
    return (["run", *SMALL_SET, "--out", "/proc/metacoop-test/run"],
            ["--out = '/proc/metacoop-test/run'", "cannot be created"], True, False)


def _case_out_not_empty(tmp):
    d = tmp / "not_empty"
    d.mkdir()
    (d / "notes.txt").write_text("keep me")
    return ["run", *SMALL_SET, "--out", d], ["--out = ", "not_empty", "is not empty"], True, False


def _case_set_without_equals(tmp):
    return ["run", "invasion2d", "--set", "duration_h"], ["--set = 'duration_h'", "dotted.key=value"]


def _case_set_unknown_clone(tmp):
    return (["run", "invasion2d", "--set", "clones.nope.emt_rate_per_h=1"],
            ["clones.nope.emt_rate_per_h", "'nope'", "no entry", "tumour"])


def _case_fractions_unknown_clone(tmp):
    return (["run", *SMALL_SET, "--set", "primary.initial_tumour.clone_fractions.nope=1.0"],
            ["primary.initial_tumour.clone_fractions.nope = 1.0", "no clone is called 'nope'", "tumour"])


def _case_fractions_sum(tmp):
    return (["run", *SMALL_SET, "--set", "primary.initial_tumour.clone_fractions.tumour=0.5"],
            ["primary.initial_tumour.clone_fractions = {'tumour': 0.5}", "sum to 1"])


def _case_negative_seed(tmp):
    return ["run", *SMALL_SET, "--seed", "-1"], ["seed = -1", "greater than or equal to 0"]


def _case_config_command(tmp):
    return (["config", "--set", "primary.lattice.shapee=3"],
            ["primary.lattice.shapee = 3", "unknown key", "spacing_um"])


def _case_markup_closing_tag(tmp):
    # BUG: rich markup in user values: cli.friendly_errors prints str(problem) as markup.
    return ["run", "invasion2d", "--set", "name=[/foo]"], ["name = '[/foo]'", "pattern"]


def _case_markup_style_tag(tmp):
    # BUG: same cause; "[red]" is swallowed, so the message shows the wrong value 'x'.
    return ["run", "invasion2d", "--set", "name=[red]x"], ["name = '[red]x'"]


def _case_absurd_duration(tmp):
    # BUG: OverflowError in checks.estimate_memory_bytes (math.ceil of inf).
    return (["run", "invasion2d", "--set", "duration_h=1e308", "--set", "output.snapshot_every_h=0.1"],
            ["1e+308"], False)


def _case_unknown_mechanism(tmp):
    return (["run", "classaction", "--set", "mechanisms.nich.enabled=true"],
            ["mechanisms.nich = ", "unknown key", "niche", "adhesion_induction", "collective_migration"])


def _case_parameter_of_another_mechanism(tmp):
    return (["run", "classaction", "--set", "mechanisms.niche.escort_probability=0.5"],
            ["mechanisms.niche.escort_probability = 0.5", "unknown key", "vegfr1_blockade", "tropism"])


def _case_tropism_unknown_organ(tmp):
    return (["run", "classaction", "--set", "mechanisms.niche.tropism={brain=1.0}"],
            ["mechanisms.niche.tropism.brain = 1.0", "no organ is called 'brain'", "lung", "liver"])


def _case_wave_ends_before_it_starts(tmp):
    return (["run", "classaction", "--set", "mechanisms.shedding_waves.waves_h=[[5.0,1.0]]"],
            ["mechanisms.shedding_waves.waves_h.0 = [5.0, 1.0]", "end > start"])


def _case_describe_unknown_mechanism(tmp):
    return (["describe", "classaction", "--set", "mechanisms.paracrin.enabled=false"],
            ["mechanisms.paracrin = ", "unknown key", "paracrine"])


def _case_experiment_out_is_file(tmp):
    """BUG: ended in a NotADirectoryError traceback (the emptiness check listed the file)."""
    (tmp / "a_file").write_text("x")
    return (["experiment", "sweep", "invasion2d", "--vary", "duration_h=1,2", "--out", tmp / "a_file"],
            ["--out = ", "a_file", "exists and is not a directory"])


def _case_experiment_condition_with_unknown_key(tmp):
    """BUG: the experiment's heading and an empty progress bar were printed before the error."""
    return (["experiment", "sweep", "invasion2d", "--vary", "nokey=1,2", "--replicates", "1",
             "--out", tmp / "out"], ["condition nokey-1", "nokey = 1", "unknown key"])


CASES = {name[len("_case_"):]: fn for name, fn in sorted(globals().items()) if name.startswith("_case_")}


def _normalise(spec):
    args, expect, *rest = spec
    one_line = rest[0] if len(rest) > 0 else True
    no_out_dir = rest[1] if len(rest) > 1 else True
    return args, expect, one_line, no_out_dir


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    specs = {}
    for name, build in CASES.items():
        case_dir = tmp / name
        case_dir.mkdir()
        args, expect, one_line, no_out_dir = _normalise(build(case_dir))
        if args[0] == "run":
            if "--out" not in args:
                args = [*args, "--out", case_dir / "out"]
            args = [*args, "--quiet"]
        specs[name] = (args, expect, one_line, no_out_dir, case_dir)
    workers = max(2, min(4, (os.cpu_count() or 2)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(cli, *spec[0]) for name, spec in specs.items()}
        results = {name: f.result() for name, f in futures.items()}
    return {name: (specs[name], results[name]) for name in specs}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_a_clear_message(bad_runs, case):
    (args, expect, one_line, no_out_dir, case_dir), proc = bad_runs[case]
    shown = f"metacoop {' '.join(map(str, args))}\n--- stderr:\n{proc.stderr}\n--- stdout:\n{proc.stdout}"
    assert "Traceback" not in proc.stderr + proc.stdout, shown
    assert proc.returncode == 2, shown
    assert proc.stdout == "", shown
    lines = error_lines(proc.stderr)
    assert lines, shown
    assert len(proc.stderr.strip().splitlines()) == len(lines), f"only error lines expected\n{shown}"
    if one_line:
        assert len(lines) == 1, shown
    for text in expect:
        assert text in proc.stderr, f"{text!r} missing\n{shown}"
    if no_out_dir:
        assert not (case_dir / "out").exists(), "bad input must not create the output directory"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable_scenario_file(tmp_path):
    path = tmp_path / "secret.toml"
    path.write_text(metacoop.to_toml(metacoop.load_scenario("invasion2d")))
    path.chmod(0)
    proc = cli("run", path, "--out", tmp_path / "out", "--quiet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "scenario = " in proc.stderr and "cannot be read" in proc.stderr


# --------------------------------------------------------------------------- scenarios / config


def test_console_script_help():
    exe = shutil.which("metacoop", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("console script not installed next to the interpreter")
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert proc.returncode == 0
    for command in ("scenarios", "config", "run"):
        assert command in proc.stdout


def test_scenarios_lists_builtins_with_descriptions():
    proc = cli("scenarios")
    assert proc.returncode == 0, proc.stderr
    out = squash(proc.stdout)
    for name, desc in metacoop.builtin_scenarios().items():
        assert name in out
        assert squash(desc) in out, f"description of {name!r} not shown"
    assert "default" in out and "invasion3d" in out


@pytest.mark.parametrize("name", ["default", "invasion3d"])
def test_config_prints_toml_that_loads_back_equal(tmp_path, name):
    proc = cli("config", name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    parsed = tomllib.loads(proc.stdout)
    assert parsed["name"] == name
    path = tmp_path / f"{name}.toml"
    path.write_text(proc.stdout, encoding="utf-8")
    assert metacoop.load_scenario(path).model_dump() == metacoop.load_scenario(name).model_dump()


def test_config_without_scenario_is_default():
    a, b = cli("config"), cli("config", "default")
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout


def test_config_reflects_set_and_seed(tmp_path):
    proc = cli("config", "invasion2d", "--set", "duration_h=5", "--set", "clones.tumour.emt_rate_per_h=0.25",
               "--set", "primary.lattice.shape=[41,41]", "--seed", "42")
    assert proc.returncode == 0, proc.stderr
    parsed = tomllib.loads(proc.stdout)
    assert parsed["duration_h"] == 5.0
    assert parsed["seed"] == 42
    assert parsed["clones"][0]["emt_rate_per_h"] == 0.25
    assert parsed["primary"]["lattice"]["shape"] == [41, 41]
    path = tmp_path / "c.toml"
    path.write_text(proc.stdout, encoding="utf-8")
    expected = metacoop.load_scenario("invasion2d", ["duration_h=5", "clones.tumour.emt_rate_per_h=0.25",
                                                  "primary.lattice.shape=[41,41]"], seed=42)
    assert metacoop.load_scenario(path).model_dump() == expected.model_dump()


# --------------------------------------------------------------------------- run


EVENTFUL_SET = [*SMALL_SET, "--set", "primary.vessels.normal=300", "--set", "primary.vessels.ruptured=100",
                "--set", "primary.vessels.min_distance_um=0"]
EVENTFUL = {**SMALL, "primary.vessels.normal": 300, "primary.vessels.ruptured": 100,
            "primary.vessels.min_distance_um": 0.0}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_run") / "run"
    proc = cli("run", *EVENTFUL_SET, "--seed", "7", "--out", out, "--quiet")
    return out, proc


def test_run_writes_a_complete_run_directory(cli_run):
    out, proc = cli_run
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(out) in squash(proc.stdout)
    for name in ("manifest.json", "timeseries.parquet", "events.parquet", "fields.zarr"):
        assert (out / name).exists(), name
    assert (out / "fields.zarr").is_dir()
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"temporary files left behind: {leftovers}"


@pytest.mark.parametrize("args", [["run", *SMALL_SET, "--out", "{out}"], ["run", "--resume", "{out}"]])
def test_a_directory_that_cannot_take_the_run_is_the_only_output(cli_run, args):
    """BUG: the heading ("Running ... -> DIR", or "Resuming DIR from the start (no checkpoint was
    written)" for a completed run) and an empty progress bar were printed before the error."""
    out, _ = cli_run
    proc = cli(*[str(a).format(out=out) for a in args])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == error_lines(proc.stderr) and len(error_lines(proc.stderr)) == 1


def test_run_manifest_describes_the_run(cli_run):
    out, _ = cli_run
    manifest = json.loads((out / "manifest.json").read_text())
    cfg = metacoop.load_scenario("invasion2d", EVENTFUL, seed=7)
    assert manifest["format"] == "metacoop-run/1"
    assert manifest["status"] == "completed"
    assert manifest["seed"] == 7
    assert manifest["scenario"] == "invasion2d"
    assert manifest["environment"]["metacoop"] == metacoop.__version__
    assert manifest["n_steps"] == cfg.n_steps
    assert manifest["time_h"] == pytest.approx(cfg.duration_h)
    assert metacoop.SimulationConfig.model_validate(manifest["config"]).model_dump() == cfg.model_dump()
    for key in ("started", "ended", "wall_s", "cells_final"):
        assert key in manifest


def test_run_checksums_match_the_files(cli_run):
    out, _ = cli_run
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert set(files) == set(DATA_FILES)
    for name, info in files.items():
        assert info["sha256"] == sha256_path(out / name), name
        p = out / name
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
        assert info["bytes"] == size, name


def test_open_run_returns_the_tables_of_simulate(cli_run):
    out, _ = cli_run
    opened = metacoop.open_run(out)
    cfg = metacoop.load_scenario("invasion2d", EVENTFUL, seed=7)
    mem = metacoop.simulate(cfg)
    assert opened.path == out
    assert opened.config.model_dump() == cfg.model_dump()
    assert len(mem.events) > 0, "scenario should produce intravasation events"
    pd.testing.assert_frame_equal(opened.timeseries, mem.timeseries)
    pd.testing.assert_frame_equal(opened.events, mem.events)
    for var in mem.fields["primary"].data_vars:
        a = opened.fields["primary"][var].values
        b = mem.fields["primary"][var].values
        assert a.dtype == b.dtype and (a == b).all(), var
    pd.testing.assert_series_equal(opened.total_cells(), mem.total_cells())


def test_run_into_the_same_directory_again_is_refused(cli_run):
    out, _ = cli_run
    before = {p.name: sha256_path(p) for p in out.iterdir()}
    proc = cli("run", *SMALL_SET, "--out", out, "--quiet")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--out = " in proc.stderr and str(out) in proc.stderr
    assert "already holds a completed run; use --force" in proc.stderr
    assert {p.name: sha256_path(p) for p in out.iterdir()} == before, "the old run was touched"


def test_default_output_directory_is_named_on_screen(tmp_path):
    proc = cli("run", *SMALL_SET, "--check", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    runs = list((tmp_path / "metacoop-runs").iterdir())
    assert len(runs) == 1
    rel = Path("metacoop-runs") / runs[0].name
    assert re.fullmatch(r"invasion2d-seed1-\d{8}-\d{6}", runs[0].name)
    assert f"Results written to {rel}" in squash(proc.stdout)
    assert "Running invasion2d (seed 1" in proc.stderr and str(rel) in squash(proc.stderr)
    assert "intravasations" in proc.stderr  # the summary
    assert metacoop.open_run(runs[0]).manifest["status"] == "completed"


def test_output_directory_with_brackets(tmp_path):
    """BUG: paths are printed as rich markup ("Running ... -> {out_dir}", "Results written to ...").

    A directory called ``a[/b]`` makes rich raise MarkupError: traceback, exit 1.
    """
    out = tmp_path / "runs[/b]" / "x"
    proc = cli("run", *SMALL_SET, "--out", out)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert str(out) in squash(proc.stdout)
    assert (out / "manifest.json").exists()


def test_verify_reports_intact_and_damaged_runs(cli_run):
    out, _ = cli_run
    ok = cli("verify", out)
    assert ok.returncode == 0 and "complete and intact" in ok.stdout
    missing = cli("verify", out / "nope")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
