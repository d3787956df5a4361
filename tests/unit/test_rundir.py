"""Atomic writes, run directories and their manifests, opening runs back."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import metacoop
from helpers.scenarios import SHEDDING_2D
from metacoop.errors import RunDirectoryError
from metacoop.io.atomic import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_dir,
    atomic_write_json,
    sha256_path,
)
from metacoop.io.results import DATA_FILES
from metacoop.io.rundir import FORMAT, LOCK, MANIFEST, RunDirectory

SMALL = SHEDDING_2D


def small(**extra):
    return metacoop.load_scenario("invasion2d", {**SMALL, **extra})


def hidden(path):
    return sorted(p.name for p in path.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- atomic writes


class Boom(RuntimeError):
    pass


def test_atomic_write_creates_the_file_and_no_temp(tmp_path):
    target = tmp_path / "data.bin"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"hello"))
    assert target.read_bytes() == b"hello"
    assert hidden(tmp_path) == []


def test_atomic_write_replaces_old_content(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert hidden(tmp_path) == []


def test_atomic_write_keeps_old_content_when_the_writer_fails(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")

    def half_then_fail(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"half of the new")
            fh.flush()
            raise Boom("disk on fire")

    with pytest.raises(Boom):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"], "temporary file left behind"


def test_atomic_write_of_a_new_file_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "new.bin"

    def fail(tmp):
        tmp.write_bytes(b"partial")
        raise Boom

    with pytest.raises(Boom):
        atomic_write(target, fail)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_when_the_writer_writes_nothing(tmp_path):
    target = tmp_path / "x"
    target.write_bytes(b"old")
    with pytest.raises(OSError):
        atomic_write(target, lambda tmp: None)
    assert target.read_bytes() == b"old"
    assert hidden(tmp_path) == []


def test_atomic_write_json(tmp_path):
    target = tmp_path / "m.json"
    atomic_write_json(target, {"a": 1, "inf": float("inf"), "path": tmp_path})
    back = json.loads(target.read_text())
    assert back == {"a": 1, "inf": float("inf"), "path": str(tmp_path)}


def _tree(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_atomic_write_dir_creates_a_tree(tmp_path):
    target = tmp_path / "store.zarr"

    def write(tmp):
        (tmp / "g").mkdir(parents=True)
        (tmp / "g" / "a").write_bytes(b"1")

    atomic_write_dir(target, write)
    assert _tree(target) == {"g/a": b"1"}
    assert hidden(tmp_path) == []


def test_atomic_write_dir_flushes_every_file_before_the_tree_takes_its_name(tmp_path, monkeypatch):
    # os.fsync still flushes; the wrapper notes which path each call flushed and whether the final name
    # existed yet. Every file of the new tree must be flushed while it is still under the temporary name.
    target = tmp_path / "store.zarr"
    flushed = []
    real_fsync = os.fsync

    def noting_fsync(fd):
        flushed.append((os.readlink(f"/proc/self/fd/{fd}"), target.exists()))
        real_fsync(fd)

    def write(tmp):
        (tmp / "g" / "h").mkdir(parents=True)
        (tmp / "a").write_bytes(b"1")
        (tmp / "g" / "h" / "b").write_bytes(b"2")

    monkeypatch.setattr(os, "fsync", noting_fsync)
    atomic_write_dir(target, write)
    before = {Path(p).relative_to(tmp_path).as_posix() for p, existed in flushed if not existed}
    tmp_name = f".store.zarr.tmp-{os.getpid()}"
    assert {f"{tmp_name}/a", f"{tmp_name}/g/h/b", f"{tmp_name}/g/h", tmp_name} <= before
    assert _tree(target) == {"a": b"1", "g/h/b": b"2"}


def test_atomic_write_dir_replaces_the_whole_directory(tmp_path):
    target = tmp_path / "store.zarr"
    (target / "old_group").mkdir(parents=True)
    (target / "old_group" / "chunk").write_bytes(b"old")
    (target / "top").write_bytes(b"old top")

    def write(tmp):
        tmp.mkdir()
        (tmp / "new").write_bytes(b"new")

    atomic_write_dir(target, write)
    assert _tree(target) == {"new": b"new"}, "files of the old tree survived"
    assert hidden(tmp_path) == []


def test_atomic_write_dir_keeps_the_old_tree_when_the_writer_fails(tmp_path):
    target = tmp_path / "store.zarr"
    (target / "g").mkdir(parents=True)
    (target / "g" / "a").write_bytes(b"old")

    def fail(tmp):
        tmp.mkdir()
        (tmp / "half").write_bytes(b"partial")
        raise Boom

    with pytest.raises(Boom):
        atomic_write_dir(target, fail)
    assert _tree(target) == {"g/a": b"old"}
    assert hidden(tmp_path) == []


def test_atomic_write_dir_clears_a_stale_temp_dir(tmp_path):
    target = tmp_path / "store.zarr"
    stale = tmp_path / f".store.zarr.tmp-{os.getpid()}"
    stale.mkdir()
    (stale / "junk").write_bytes(b"junk")

    def write(tmp):
        tmp.mkdir()
        (tmp / "ok").write_bytes(b"ok")

    atomic_write_dir(target, write)
    assert _tree(target) == {"ok": b"ok"}
    assert hidden(tmp_path) == []


def test_sha256_of_a_file(tmp_path):
    f = tmp_path / "f"
    data = os.urandom(3 << 20)  # more than one read block
    f.write_bytes(data)
    assert sha256_path(f) == hashlib.sha256(data).hexdigest()


def test_sha256_of_a_directory_depends_on_names_and_contents(tmp_path):
    def make(name, files):
        d = tmp_path / name
        for rel, data in files.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_bytes(data)
        return sha256_path(d)

    base = make("a", {"x/1": b"one", "y": b"two"})
    assert make("b", {"y": b"two", "x/1": b"one"}) == base  # creation order is irrelevant
    assert make("c", {"x/1": b"one", "y": b"TWO"}) != base
    assert make("d", {"x/2": b"one", "y": b"two"}) != base
    assert make("e", {"x/1": b"one", "y": b"two", "z": b""}) != base


# --------------------------------------------------------------------------- run directory


def test_prepare_creates_missing_parents(tmp_path):
    rd = RunDirectory(tmp_path / "a" / "b" / "run")
    rd.prepare()
    assert rd.path.is_dir() and [p.name for p in rd.path.iterdir()] == [LOCK], "held for the run"
    rd.unlock()
    assert list(rd.path.iterdir()) == []


def test_prepare_accepts_an_empty_directory(tmp_path):
    rd = RunDirectory(tmp_path)
    rd.prepare()
    rd.unlock()
    assert list(tmp_path.iterdir()) == []


def test_a_directory_locked_by_one_writer_is_refused_to_another_until_it_is_released(tmp_path):
    """Two processes resuming one run overwrote each other's checkpoints and results. (An ``flock``
    taken through another open file conflicts within one process too, so one process shows it.)"""
    first, second = RunDirectory(tmp_path), RunDirectory(tmp_path)
    first.prepare()
    with pytest.raises(RunDirectoryError, match="being written by another metacoop process"):
        second.lock()
    with pytest.raises(RunDirectoryError, match="being written by another metacoop process"):
        second.prepare()
    first.unlock()
    second.lock()
    second.unlock()
    assert list(tmp_path.iterdir()) == []


def test_prepare_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "x").write_text("x")
    with pytest.raises(RunDirectoryError) as ei:
        RunDirectory(tmp_path).prepare()
    (p,) = ei.value.problems
    assert p.path == "--out" and p.value == str(tmp_path) and "not empty" in p.allowed


def test_prepare_refuses_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(RunDirectoryError) as ei:
        RunDirectory(f).prepare()
    assert ei.value.problems[0].path == "--out"
    with pytest.raises(RunDirectoryError):
        RunDirectory(f / "sub").prepare()
    assert f.read_text() == "x"


def test_prepare_says_a_file_is_not_a_directory(tmp_path):
    """BUG (minor): ``--out some_file`` says "cannot be created: File exists".

    rundir.py ``RunDirectory.prepare``: ``mkdir(exist_ok=True)`` raises FileExistsError for a
    regular file, so the intended "exists and is not a directory" branch is never reached.
    """
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(RunDirectoryError) as ei:
        RunDirectory(f).prepare()
    assert "not a directory" in ei.value.problems[0].allowed


def test_prepare_refuses_a_directory_holding_a_run(tmp_path):
    atomic_write_json(tmp_path / MANIFEST, {"format": FORMAT, "status": "failed"})
    with pytest.raises(RunDirectoryError) as ei:
        RunDirectory(tmp_path).prepare()
    assert "holds an incomplete run (status failed)" in str(ei.value)


@pytest.mark.parametrize("content, text", [
    (None, "holds no manifest.json"),
    ("{not json", "cannot be read"),
    ('{"format": "something-else/9", "status": "completed"}', "is not a metacoop-run/1 manifest"),
    ("[1, 2]", "is not a metacoop-run/1 manifest"),
])
def test_read_manifest_refuses_bad_manifests(tmp_path, content, text):
    if content is not None:
        (tmp_path / MANIFEST).write_text(content)
    with pytest.raises(RunDirectoryError) as ei:
        RunDirectory(tmp_path).read_manifest()
    assert text in str(ei.value)
    with pytest.raises(RunDirectoryError):
        metacoop.open_run(tmp_path)


# --------------------------------------------------------------------------- simulate -> disk -> open_run


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("written") / "run"
    cfg = small()  # seed 1 (default)
    result = metacoop.simulate(cfg, out)
    return cfg, result, out


def test_simulate_writes_a_completed_run(written):
    cfg, result, out = written
    assert result.path == out
    assert sorted(p.name for p in out.iterdir()) == sorted(["manifest.json", *DATA_FILES])
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest == json.loads(json.dumps(result.manifest, default=str))
    assert manifest["status"] == "completed"
    assert manifest["seed"] == cfg.seed
    assert manifest["environment"]["metacoop"] == metacoop.__version__
    assert metacoop.SimulationConfig.model_validate(manifest["config"]).model_dump() == cfg.model_dump()
    for name, info in manifest["files"].items():
        assert sha256_path(out / name) == info["sha256"], name


def test_open_run_equals_the_in_memory_result(written):
    cfg, result, out = written
    opened = metacoop.open_run(out)
    assert len(result.events) > 0
    pd.testing.assert_frame_equal(opened.timeseries, result.timeseries)
    pd.testing.assert_frame_equal(opened.events, result.events)
    assert opened.config.model_dump() == cfg.model_dump()
    mem, disk = result.fields["primary"], opened.fields["primary"]
    assert set(mem.data_vars) == set(disk.data_vars)
    assert dict(mem.sizes) == dict(disk.sizes)
    for var in mem.data_vars:
        assert mem[var].dtype == disk[var].dtype, var
        assert (mem[var].values == disk[var].values).all(), var
    assert (mem["time"].values == disk["time"].values).all()
    assert len(mem["time"]) == 3  # t = 0, 1, 2 h with snapshot_every_h = 1
    for axis in ("time", "y", "x"):
        assert mem[axis].attrs["units"] == disk[axis].attrs["units"] == ("h" if axis == "time" else "um")
        assert axis in mem.indexes and list(mem.indexes[axis]) == list(disk.indexes[axis])
    assert (mem.sel(time=1.0)["ecm"].values == disk.sel(time=1.0)["ecm"].values).all()


def test_open_run_accepts_a_string_path(written):
    _, _, out = written
    assert metacoop.open_run(str(out)).manifest["status"] == "completed"


def _copy_with_status(src, dst, **changes):
    import shutil

    shutil.copytree(src, dst)
    manifest = json.loads((dst / MANIFEST).read_text())
    manifest.update(changes)
    (dst / MANIFEST).write_text(json.dumps(manifest))
    return dst


@pytest.mark.parametrize("status", ["running", "failed"])
def test_open_run_refuses_an_incomplete_run(written, tmp_path, status):
    _, _, out = written
    extra = {"reason": "KeyboardInterrupt: "} if status == "failed" else {}
    copy = _copy_with_status(out, tmp_path / "copy", status=status, **extra)
    with pytest.raises(RunDirectoryError) as ei:
        metacoop.open_run(copy)
    text = str(ei.value)
    assert str(copy) in text and f"not a completed run (status {status}" in text
    if status == "failed":
        assert "KeyboardInterrupt" in text


def test_open_run_refuses_a_damaged_run(written, tmp_path):
    _, _, out = written
    copy = _copy_with_status(out, tmp_path / "copy")
    (copy / "events.parquet").write_bytes(b"not parquet")
    with pytest.raises(RunDirectoryError) as ei:
        metacoop.open_run(copy)
    assert "cannot be read" in str(ei.value)


def test_simulate_refuses_a_directory_holding_a_run(written):
    _, _, out = written
    before = sha256_path(out)
    with pytest.raises(RunDirectoryError) as ei:
        metacoop.simulate(small(), out)
    assert "already holds a completed run; use --force" in str(ei.value)
    assert sha256_path(out) == before


def test_a_run_that_stops_is_marked_failed(tmp_path):
    out = tmp_path / "run"

    def stop(progress):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        metacoop.simulate(small(), out, progress=stop)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["status"] == "failed"
    assert manifest["reason"].startswith("KeyboardInterrupt")
    assert "traceback" in manifest and "ended" in manifest
    assert not (out / "timeseries.parquet").exists()
    assert hidden(out) == []
    with pytest.raises(RunDirectoryError) as ei:
        metacoop.open_run(out)
    assert "status failed" in str(ei.value)


def test_simulate_without_out_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = metacoop.simulate(small())
    assert result.path is None
    assert result.manifest["status"] == "completed" and "files" not in result.manifest
    assert list(tmp_path.iterdir()) == []


#: A short run in a new process; prints the heavy libraries it ended up importing.
_IMPORTS = ("import sys, metacoop; metacoop.simulate(metacoop.load_scenario('invasion2d', "
            "{'duration_h': 1})); print(sorted(m for m in ('dask', 'dask.array') if m in sys.modules))")


def test_a_run_in_memory_does_not_import_dask():
    """Building the field snapshots skips xarray's Dask checks (0.3 s of a new process's start)."""
    out = subprocess.run([sys.executable, "-c", _IMPORTS], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_force_replaces_a_completed_run_and_verify_checks_it(tmp_path):
    cfg = metacoop.load_scenario("invasion2d", overrides=SMALL)
    out = tmp_path / "run"
    metacoop.simulate(cfg, out)
    assert RunDirectory(out).verify() == []
    with pytest.raises(RunDirectoryError):
        metacoop.simulate(cfg, out)
    again = metacoop.simulate(cfg.model_copy(update={"seed": cfg.seed + 1}), out, force=True)
    assert again.manifest["seed"] == cfg.seed + 1
    assert RunDirectory(out).verify() == []
    # Damage one file: verify names it.
    with open(out / "events.parquet", "ab") as fh:
        fh.write(b"x")
    assert any(p.startswith("events.parquet") for p in RunDirectory(out).verify())
    (out / "timeseries.parquet").unlink()
    assert "timeseries.parquet: missing" in RunDirectory(out).verify()


def test_force_replaces_a_run_and_its_report_and_refuses_other_files_before_deleting_anything(tmp_path):
    """BUG: ``metacoop report DIR`` then ``metacoop run --out DIR --force`` deleted the run's files, then
    refused the directory as not empty (its report.html was left): the old run was lost and no new one
    was written."""
    from metacoop.report import write_report

    cfg = metacoop.load_scenario("invasion2d", overrides=SMALL)
    out = tmp_path / "run"
    metacoop.simulate(cfg, out)
    write_report(out, animation=False)
    again = metacoop.simulate(cfg.model_copy(update={"seed": cfg.seed + 1}), out, force=True)
    assert again.manifest["seed"] == cfg.seed + 1
    assert not (out / "report.html").exists(), "the old run's report goes with it"
    (out / "notes.txt").write_text("mine")
    before = sha256_path(out)
    with pytest.raises(RunDirectoryError, match=r"holds files besides its completed run \(notes.txt\)"):
        metacoop.simulate(cfg, out, force=True)
    assert sha256_path(out) == before, "nothing deleted"
    assert metacoop.open_run(out).manifest["seed"] == cfg.seed + 1
