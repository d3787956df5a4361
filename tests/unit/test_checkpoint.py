"""Checkpoint and resume: a run killed with SIGKILL and resumed gives the same files, bit for bit."""

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

import metacoop
from metacoop.core.simulation import Simulation
from metacoop.errors import InputError
from metacoop.io import checkpoint

pytestmark = pytest.mark.slow

#: a small class action with every mechanism (diversification included) so that the saved state
#: has cells, CTCs, metastases, new clones, macrophages, ruptured vessels and niche fields.
SMALL = {"duration_h": 48.0, "primary.lattice.shape": [81, 81], "organs.lung.lattice.shape": [41, 41],
         "organs.liver.lattice.shape": [41, 41], "primary.vessels.min_distance_um": 60.0,
         "mechanisms.diversification.enabled": True,
         "mechanisms.diversification.new_clone_probability": 0.01,
         "output.checkpoint_every_h": 4.0}


def sets(overrides: dict) -> list[str]:
    return [x for k, v in overrides.items() for x in ("--set", f"{k}={json.dumps(v)}")]


def cli(*args, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, "-m", "metacoop", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def data_checksums(run_dir: Path) -> dict[str, str]:
    return json.loads((run_dir / "manifest.json").read_text())["files"]


def test_a_checkpoint_restores_a_fresh_simulation_to_the_same_future():
    cfg = metacoop.load_scenario("classaction", SMALL, seed=3)
    a = Simulation(cfg)
    for _ in range(300):
        a.step()
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"metacoop-ckpt-{os.getpid()}"
    try:
        checkpoint.save(a, path)
        b = Simulation(cfg)
        checkpoint.load(b, path)
        for sa, sb in zip(a.sites, b.sites, strict=True):  # (derived from the cells, not stored)
            np.testing.assert_array_equal(sb.mes_occ, sa.mes_occ)
            assert sa.mes_occ.any() or sa.is_organ
    finally:
        import shutil
        shutil.rmtree(path, ignore_errors=True)
    a.run()
    b.run()
    assert a.events == b.events
    pd.testing.assert_frame_equal(a.recorder.timeseries(), b.recorder.timeseries())
    assert a.clones.n_existing == b.clones.n_existing > 2
    for sa, sb in zip(a.sites, b.sites, strict=True):
        for key in ("uid", "pos", "clone", "phen", "state", "cycle_h"):
            assert (sa.cells.live(key) == sb.cells.live(key)).all(), (sa.name, key)


def _checkpointed_step(run: Path) -> int:
    """The step of the run directory's current checkpoint, or -1 while there is none.

    A new checkpoint replaces the last one by renames (``atomic_write_dir``), so for a moment there is no
    ``checkpoint/state.json``: a poll that finds it may not find it when it reads it.
    """
    try:
        return json.loads((run / "checkpoint" / "state.json").read_text())["step_index"]
    except FileNotFoundError:
        return -1


def test_a_run_killed_with_sigkill_resumes_to_bit_identical_files(tmp_path):
    whole = cli("run", "classaction", "--seed", "3", "--out", tmp_path / "whole", "--quiet", *sets(SMALL))
    out, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err
    assert not (tmp_path / "whole" / "checkpoint").exists()  # removed once complete

    run = tmp_path / "killed"
    proc = cli("run", "classaction", "--seed", "3", "--out", run, "--quiet", *sets(SMALL))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if _checkpointed_step(run) >= 4 * 2 / 0.05:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGSTOP)  # (held where it is while a second process tries to resume it)
    twice = cli("run", "--resume", run, "--quiet")
    _, err = twice.communicate(timeout=120)
    assert twice.returncode == 2 and "being written by another metacoop process" in err, err
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "running"  # killed: never marked complete
    # a new run into it is refused with a hint; --resume continues it
    again = cli("run", "classaction", "--out", run)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 2 and "--resume" in err
    resumed = cli("run", "--resume", run, "--quiet")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and len(manifest["resumed"]) == 1
    assert data_checksums(run) == data_checksums(tmp_path / "whole")
    assert not (run / "checkpoint").exists()
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [], "lock and temporaries gone"
    verify = cli("verify", run)
    verify.communicate(timeout=60)
    assert verify.returncode == 0


def test_ctrl_c_ends_a_run_with_a_hint_to_resume_and_no_traceback(tmp_path):
    run = tmp_path / "run"
    proc = cli("run", "classaction", "--set", "duration_h=3000", "--set", "output.checkpoint_every_h=24",
               "--out", run)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and _checkpointed_step(run) < 0:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"metacoop run --resume {run}" in err and "Traceback" not in err, err
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["reason"].startswith("KeyboardInterrupt")
    assert not any(p.name.startswith(".") for p in run.iterdir()), "the lock file is removed"


def test_an_interrupt_numba_wrapped_in_a_system_error_is_recorded_and_raised_as_one(tmp_path):
    """BUG: Ctrl-C while numba ran Python code inside a kernel call (unpickling a constant) ended the run
    with "SystemError: CPUDispatcher(...) returned a result with an exception set" and its traceback, and
    the manifest gave that as the reason."""
    def wrapped_interrupt(p):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise SystemError("CPUDispatcher(...) returned a result with an exception set") from exc

    cfg = metacoop.load_scenario("invasion2d", {"duration_h": 2.0, "primary.lattice.shape": [41, 41]})
    with pytest.raises(KeyboardInterrupt):
        metacoop.simulate(cfg, tmp_path / "run", progress=wrapped_interrupt)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["reason"].startswith("KeyboardInterrupt")
    def system_error(p):
        raise SystemError("x")

    with pytest.raises(SystemError):  # (any other SystemError is left as it is)
        metacoop.simulate(cfg, tmp_path / "other", progress=system_error)


def test_resume_refuses_what_cannot_be_resumed(tmp_path):
    for args, text in ((["run", "--resume", tmp_path / "nothing"], "holds no run to resume"),
                       (["run", "classaction", "--resume", tmp_path], "give no other argument")):
        proc = cli(*args)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and text in err and "Traceback" not in err, err
    done = tmp_path / "done"
    metacoop.simulate(metacoop.load_scenario("invasion2d", {"duration_h": 1.0,
                                                            "primary.lattice.shape": [41, 41]}), done)
    proc = cli("run", "--resume", done)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "nothing to resume" in err
    (done / "manifest.json").write_text(json.dumps({**json.loads((done / "manifest.json").read_text()),
                                                    "status": "running"}))
    (done / "checkpoint").mkdir()
    (done / "checkpoint" / "state.json").write_text("{not json")
    proc = cli("run", "--resume", done)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "cannot be read" in err and "Traceback" not in err, err
    # a real checkpoint whose arrays were truncated
    cfg = metacoop.load_scenario("invasion2d", {"duration_h": 1.0, "primary.lattice.shape": [41, 41]})
    sim = Simulation(cfg)
    sim.step()
    import shutil
    shutil.rmtree(done / "checkpoint")
    checkpoint.save(sim, done / "checkpoint")
    npz = done / "checkpoint" / "arrays.npz"
    npz.write_bytes(npz.read_bytes()[:200])
    proc = cli("run", "--resume", done)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "cannot be read" in err and "Traceback" not in err, err


def test_a_resume_removes_what_a_writer_killed_mid_write_left_and_nothing_else(tmp_path):
    """BUG: a run killed while it wrote its results left ``.fields.zarr.tmp-PID`` (a whole Zarr tree)
    in the run directory, and the resumed, completed run kept it for good."""
    cfg = metacoop.load_scenario("invasion2d", {"duration_h": 4.0, "primary.lattice.shape": [41, 41],
                                                "output.checkpoint_every_h": 1.0})
    run = tmp_path / "run"

    def stop(p):
        if p.time_h >= 2.0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        metacoop.simulate(cfg, run, progress=stop)
    (run / ".fields.zarr.tmp-999999").mkdir()
    (run / ".fields.zarr.tmp-999999" / "zarr.json").write_text("{}")
    (run / ".events.parquet.tmp-999999").write_bytes(b"half")
    resumed = metacoop.simulate(None, run, resume=True)
    assert resumed.manifest["status"] == "completed"
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
    assert metacoop.open_run(run).manifest["files"] == resumed.manifest["files"]


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs (skipped where mounting is not allowed)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6M", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a size-limited tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_ends_the_run_clearly_and_it_resumes_elsewhere(tmp_path, small_disk):
    overrides = {**SMALL, "output.snapshot_every_h": 2.0}
    whole = cli("run", "classaction", "--seed", "3", "--out", tmp_path / "whole", "--quiet", *sets(overrides))
    _, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err
    run = small_disk / "run"
    proc = cli("run", "classaction", "--seed", "3", "--out", run, "--quiet", *sets(overrides))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "cannot write:" in err and "No space left" in err and "--resume" in err and "Traceback" not in err
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] != "completed"
    # nothing that looks like a finished result file is left half-written: every file under a
    # final result name opens
    import pyarrow.parquet as pq
    for f in run.glob("*.parquet"):
        pq.read_table(f)
    # moved to a disk with room, the run continues and ends as if it had never stopped
    import shutil
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    resumed = cli("run", "--resume", moved, "--quiet")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert data_checksums(moved) == data_checksums(tmp_path / "whole")


def test_a_run_directory_writes_each_field_snapshot_once(tmp_path):
    cfg = metacoop.load_scenario("invasion2d", {"duration_h": 6.0, "primary.lattice.shape": [41, 41],
                                                "output.snapshot_every_h": 1.0})
    sim = Simulation(cfg)
    files = checkpoint.SnapshotFiles(tmp_path)
    stamps = {}
    for k in range(3):
        for _ in range(round(1.5 / cfg.dt_h)):  # 1.5 h: a new snapshot (or two) between checkpoints
            sim.step()
        checkpoint.save(sim, tmp_path / f"ckpt{k}", files)
        with np.load(tmp_path / f"ckpt{k}" / "arrays.npz") as npz:
            assert not [key for key in npz.files if key.startswith("snap/")]
        written = sorted((tmp_path / checkpoint.SNAPSHOTS).iterdir())
        assert len(written) == len(sim.recorder.snapshots["primary"]) == int(1.5 * (k + 1)) + 1
        for f in written:  # an earlier file is never written again
            assert stamps.setdefault(f.name, f.stat().st_mtime_ns) == f.stat().st_mtime_ns
    restored = Simulation(cfg)
    checkpoint.load(restored, tmp_path / "ckpt2")
    mine, theirs = sim.recorder.snapshots["primary"], restored.recorder.snapshots["primary"]
    assert [t for t, _ in mine] == [t for t, _ in theirs]
    for (_, a), (_, b) in zip(mine, theirs, strict=True):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # a checkpoint whose snapshot file is gone is refused, naming the file
    (tmp_path / checkpoint.SNAPSHOTS / "primary-00001.npz").unlink()
    with pytest.raises(InputError) as ei:
        checkpoint.load(Simulation(cfg), tmp_path / "ckpt2")
    assert "primary-00001.npz" in str(ei.value) and "cannot be read" in str(ei.value)


def test_the_writer_thread_writes_what_a_synchronous_save_writes_while_the_run_goes_on(tmp_path):
    # The writer copies the state when asked and writes it while the run takes more steps (which change
    # every array): the checkpoint must be the one of the step it was asked at, byte for byte, snapshot
    # files included; a failed write surfaces at the next submit or at close, with the checkpoint's time.
    cfg = metacoop.load_scenario("classaction", {**SMALL, "output.snapshot_every_h": 2.0}, seed=3)
    a, b = Simulation(cfg), Simulation(cfg)
    for _ in range(300):
        a.step()
        b.step()
    (tmp_path / "async").mkdir()
    (tmp_path / "sync").mkdir()
    writer = checkpoint.CheckpointWriter(tmp_path / "async" / "checkpoint",
                                         checkpoint.SnapshotFiles(tmp_path / "async"))
    writer.submit(a)
    for _ in range(50):  # while the writer writes
        a.step()
    writer.close()
    checkpoint.save(b, tmp_path / "sync" / "checkpoint", checkpoint.SnapshotFiles(tmp_path / "sync"))
    def files(root):
        return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())

    written = files(tmp_path / "async")
    assert written == files(tmp_path / "sync")
    assert any(p.parts[0] == checkpoint.SNAPSHOTS for p in written)
    for p in written:
        assert (tmp_path / "async" / p).read_bytes() == (tmp_path / "sync" / p).read_bytes(), p
    restored = Simulation(cfg)
    checkpoint.load(restored, tmp_path / "async" / "checkpoint")
    assert restored.step_index == 300

    (tmp_path / "a-file").write_text("not a directory")
    failing = checkpoint.CheckpointWriter(tmp_path / "a-file" / "checkpoint")
    failing.submit(a)  # (returns at once; the thread meets the error)
    taken_h = a.time_h
    a.step()
    with pytest.raises(checkpoint.CheckpointWriteFailed) as failed:
        failing.submit(a)
    assert isinstance(failed.value.error, OSError) and failed.value.time_h == taken_h
    failing.close()  # (nothing pending any more)
