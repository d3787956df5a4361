"""The Python API: load a scenario, simulate it, get a :class:`Result`."""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from metacoop.config.loader import as_config
from metacoop.config.schema import SimulationConfig
from metacoop.core.simulation import Progress, Simulation
from metacoop.errors import InputError, OutputError, Problem, RunDirectoryError
from metacoop.io import checkpoint
from metacoop.io.atomic import remove_temporaries
from metacoop.io.results import DATA_FILES, Result, events_table, metastases_table, write_results
from metacoop.io.rundir import FORMAT, RunDirectory, environment, now_iso
from metacoop.observers.funnel import funnel


def simulate(
    config: SimulationConfig | str | os.PathLike | Mapping[str, Any] | None,
    out_dir: str | os.PathLike | None = None,
    progress: Callable[[Progress], None] | None = None,
    check: bool = False,
    force: bool = False,
    resume: bool = False,
) -> Result:
    """Run one simulation of ``config``.

    Args:
        config: a configuration from :func:`metacoop.load_scenario`, or what it
            loads (a built-in scenario name, a TOML file path, a scenario table).
        out_dir: if given, a new or empty directory the run is written to
            (manifest, Parquet tables, Zarr snapshots), atomically.
        progress: called with a :class:`~metacoop.core.simulation.Progress`
            a few times per second.
        check: verify cell accounting and fields after every step.
        force: replace a completed run already in ``out_dir``.
        resume: continue the interrupted run in ``out_dir`` from its last checkpoint
            (its own configuration is used; ``config`` may be None).

    Returns:
        The run's tables and field snapshots.

    While it writes ``out_dir`` the run holds it locked (:meth:`RunDirectory.lock`): a second
    process asked to write there (a resume started while the run goes on) is refused.
    """
    if progress is not None and not callable(progress):
        raise InputError([Problem("progress", progress, "a function taking a Progress, or None")])
    rundir = RunDirectory(out_dir) if out_dir is not None else None
    try:
        return _simulate(config, rundir, progress, check, force, resume)
    finally:
        if rundir is not None:
            rundir.unlock()


def _simulate(config, rundir: RunDirectory | None, progress, check: bool, force: bool,
              resume: bool) -> Result:
    """:func:`simulate` once its arguments are checked (``rundir`` is unlocked by the caller)."""
    if resume:
        if rundir is None:
            raise RunDirectoryError([Problem("--resume", None, "give the run directory to resume")])
        manifest, config = _resumable(rundir)
    else:
        config = as_config(config)
        manifest = {
            "format": FORMAT,
            "status": "running",
            "scenario": config.name,
            "seed": config.seed,
            "started": now_iso(),
            "environment": environment(),
            "config": config.model_dump(mode="python"),
        }
        if rundir is not None:
            rundir.prepare(force=force)
            rundir.write_manifest(manifest)
    start = time.perf_counter()
    writer = None
    try:
        sim = Simulation(config, check=check)
        after_step = None
        if rundir is not None:
            snapshots = checkpoint.SnapshotFiles(rundir.path)
            last = checkpoint.latest(rundir.path) if resume else None
            if last is not None:
                checkpoint.load(sim, last)
                snapshots.restored(sim)
            every = config.output.checkpoint_every_h
            if every > 0:
                every_steps = max(1, round(every / config.dt_h))
                writer = checkpoint.CheckpointWriter(rundir.path / "checkpoint", snapshots)

                def after_step() -> None:
                    if sim.step_index % every_steps == 0 and sim.step_index < sim.n_steps:
                        try:
                            writer.submit(sim)
                        except checkpoint.CheckpointWriteFailed as failed:
                            raise _output_error(rundir, failed.error, failed.time_h) from None
        sim.run(progress, after_step=after_step)
        timeseries = sim.recorder.timeseries()
        tables = {
            "timeseries": timeseries,
            "events": events_table(sim.events),
            "metastases": metastases_table(sim.metastases_rows()),
            "metastasis_sizes": sim.recorder.metastasis_sizes(),
            "funnel": funnel(timeseries, [o.name for o in sim.organs], config.output.funnel_times_h),
            "clones": sim.clones_table(),
        }
        fields = sim.recorder.fields()
        manifest.update({
            "ended": now_iso(),
            "wall_s": round(time.perf_counter() - start, 3),
            "n_steps": sim.n_steps,
            "time_h": sim.time_h,
            "cells_final": sim.n_cells,
            "status": "completed",
        })
        if rundir is not None:
            if writer is not None:
                try:
                    writer.close()  # (the last checkpoint is on disk before the results, then removed)
                except checkpoint.CheckpointWriteFailed as failed:
                    raise _output_error(rundir, failed.error, failed.time_h) from None
            try:
                write_results(rundir, tables, fields)
                manifest["files"] = rundir.checksums(DATA_FILES)
                rundir.write_manifest(manifest)
            except OSError as exc:
                raise _output_error(rundir, exc, sim.time_h) from None
            checkpoint.remove(rundir.path)  # the run is complete: nothing to resume
    except BaseException as raised:
        exc = interrupt_of(raised)
        if writer is not None:  # a checkpoint being written is finished, so that the run can resume from it
            try:
                writer.close()
            except checkpoint.CheckpointWriteFailed:
                pass
        if rundir is not None and rundir.manifest_path.exists():
            manifest.update({"status": "failed", "ended": now_iso(),
                             "reason": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc(limit=20)})
            try:
                rundir.write_manifest(manifest)
            except OSError:
                pass
        if exc is not raised:
            raise exc from None
        raise
    frames = {k: (v.to_pandas() if not isinstance(v, pd.DataFrame) else v) for k, v in tables.items()}
    return Result(config, fields=fields, manifest=manifest,
                  path=rundir.path if rundir is not None else None, **frames)


def interrupt_of(exc: BaseException) -> BaseException:
    """The KeyboardInterrupt behind ``exc`` if numba wrapped one, else ``exc``.

    Ctrl-C that lands while numba runs Python code inside a kernel call (it
    unpickles constants there) comes out of the call as ``SystemError: ...
    returned a result with an exception set``, caused by the interrupt.
    """
    if isinstance(exc, SystemError) and isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
        return exc.__cause__ or exc.__context__
    return exc


def _output_error(rundir: RunDirectory, exc: OSError, time_h: float) -> OutputError:
    last = checkpoint.latest(rundir.path)
    kept = ("its last checkpoint is kept" if last is not None else "no checkpoint had been written")
    return OutputError(
        f"cannot write to {rundir.path} at t = {time_h:.4g} h: {exc.strerror or exc}; {kept}. Make room "
        f"(or copy the directory somewhere writable) and continue with metacoop run --resume {rundir.path}"
    )


def _resumable(rundir: RunDirectory) -> tuple[dict, SimulationConfig]:
    """The manifest and configuration of an interrupted run in ``rundir``; raise if there is none."""
    from metacoop.config.loader import validate_table

    rundir.lock()
    manifest = rundir.resumable()
    remove_temporaries(rundir.path)  # (left by the interrupted process, if it was killed mid-write)
    config = validate_table(manifest["config"])
    manifest.update({"status": "running", "resumed": [*manifest.get("resumed", []), now_iso()]})
    for key in ("reason", "traceback", "ended"):
        manifest.pop(key, None)
    rundir.write_manifest(manifest)
    return manifest, config
