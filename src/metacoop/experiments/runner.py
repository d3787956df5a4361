"""Running an experiment on Dask: one task per replicate, resumable, results written as they finish.

An experiment directory holds::

    experiment.json                       the design (kind, scenario, conditions, seeds)
    runs/<condition>/rep-<i>/             one run directory per replicate (see metacoop.io.rundir)
    dataset/condition=<condition>/rep-<i>.parquet
                                          that replicate's observables, hive-partitioned
    failures/<condition>.rep-<i>.json     why a replicate failed (removed once it succeeds)
    stats.parquet, stats.csv              per-condition statistics (metacoop.experiments.stats)

Replicates run on a ``dask.distributed`` cluster: a ``LocalCluster`` of
``workers`` processes by default, or an existing scheduler given by address
(for HPC batch systems, start one with dask-jobqueue and pass its address).
The client writes each replicate's dataset part, atomically, when the task
finishes, so memory stays flat and every replicate is recorded exactly once.
A replicate is done when its part exists: rerunning the same command after
an interruption computes only the missing replicates. A task whose worker
dies is recomputed by Dask; a task that raises is retried once, then
reported in ``failures/`` and counted, never silently dropped. Replicate
``i`` has the same seed in every condition, and every result depends only
on (condition, seed), so the dataset is the same whatever the number of
workers or the order in which replicates finish.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import traceback
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from metacoop.errors import InputError, Problem, RunDirectoryError, SimulationError, path_argument
from metacoop.experiments.design import Condition, Design, whole_number
from metacoop.experiments.stats import summarize
from metacoop.experiments.threads import host_slots
from metacoop.io.atomic import atomic_write, atomic_write_json
from metacoop.io.rundir import EXPERIMENT, DirectoryLock, entries

#: Environment of the workers of a LocalCluster started here (no MALLOC_TRIM_THRESHOLD_; see
#: :func:`dask_client`). Numba threads are set per replicate instead of OMP_NUM_THREADS
#: (:mod:`metacoop.experiments.threads`).
WORKER_ENVIRON: dict[str, str] = {}

#: Columns of a dataset part (the condition comes from the partition directory).
PART_SCHEMA = pa.schema([("replicate", pa.int64()), ("seed", pa.int64()), ("observable", pa.string()),
                         ("value", pa.float64())])


@dataclass(frozen=True)
class ExperimentProgress:
    """What a progress callback is told: replicates done (this run or before), failed, total."""

    done: int
    failed: int
    total: int
    skipped: int


@dataclass
class ExperimentResult:
    """An experiment's results.

    Attributes:
        path: the experiment directory.
        design: the design.
        replicates: tidy observables (condition, replicate, seed, observable, value).
        stats: per-condition statistics (see :func:`metacoop.experiments.stats.summarize`).
        sensitivity: for a sensitivity experiment, the indices per observable and
            parameter (see :mod:`metacoop.experiments.sensitivity`); otherwise None.
        failures: ``(condition, replicate, message)`` of replicates that failed in this run.
        computed: replicates computed in this run (the others were already done).
    """

    path: Path
    design: Design
    replicates: pd.DataFrame
    stats: pd.DataFrame
    failures: list[tuple[str, int, str]]
    computed: int = 0
    sensitivity: pd.DataFrame | None = None


def part_path(root: Path, condition: str, replicate: int) -> Path:
    """Where the observables of one replicate are stored."""
    return root / "dataset" / f"condition={condition}" / f"rep-{replicate:04d}.parquet"


def run_path(root: Path, condition: str, replicate: int) -> Path:
    """The run directory of one replicate."""
    return root / "runs" / condition / f"rep-{replicate:04d}"


def _failure_path(root: Path, condition: str, replicate: int) -> Path:
    return root / "failures" / f"{condition}.rep-{replicate:04d}.json"


def run_replicate(scenario: str, overrides: dict[str, Any], seed: int, run_dir: str,
                  observables: tuple[str, ...] = (), slots: dict[str, int] | None = None) -> dict[str, float]:
    """Run (or reopen, if complete) one replicate and return its observables. Runs on a worker.

    ``observables`` names observables of :mod:`metacoop.validation.observables` computed
    besides the experiment observables (a validation experiment lists those its targets need).
    On a Dask worker numba runs on the host's CPUs shared among ``slots`` (task slots per host,
    see :mod:`metacoop.experiments.threads`).
    """
    from metacoop.api import simulate
    from metacoop.config.loader import load_scenario
    from metacoop.experiments.summary import replicate_observables
    from metacoop.experiments.threads import fit_threads
    from metacoop.io.results import open_run

    fit_threads(slots)
    path = Path(run_dir)
    result = None
    if path.exists():
        try:
            result = open_run(path)  # completed before the experiment was interrupted
        except RunDirectoryError:  # an incomplete run of ours: start it again (unless a live process has it)
            with DirectoryLock(path, "replicate"):
                shutil.rmtree(path)
    if result is None:
        result = simulate(load_scenario(scenario, overrides, seed=seed), path)
    values = replicate_observables(result)
    if observables:
        from metacoop.validation.observables import compute

        values.update(compute(result, observables))
    return values


def _write_part(path: Path, replicate: int, seed: int, values: dict[str, float]) -> None:
    table = pa.Table.from_pydict({"replicate": [replicate] * len(values), "seed": [seed] * len(values),
                                  "observable": list(values), "value": [float(v) for v in values.values()]},
                                 schema=PART_SCHEMA)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def _check_design(root: Path, design: Design) -> None:
    path = root / EXPERIMENT
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            reason = f"holds an unreadable experiment.json: {exc}"
            raise InputError([Problem("--out", str(root), reason)]) from None
        if old != json.loads(json.dumps(design.to_json())):
            raise InputError([Problem("--out", str(root), "holds a different experiment (kind, scenario, "
                                                          "conditions, replicates or seed differ); "
                                                          "use a new directory")])
    elif entries(root, "--out"):
        raise InputError([Problem("--out", str(root), "is not empty and holds no experiment")])


def _validate(design: Design) -> None:
    """Load every condition's configuration once, so bad overrides fail before any task runs."""
    from metacoop.config.loader import load_scenario

    for c in design.conditions:
        try:
            load_scenario(design.scenario, {**design.base_overrides, **c.overrides}, seed=design.seed)
        except InputError as exc:
            raise InputError([Problem(f"condition {c.name}", p.value if isinstance(p, Problem) else None,
                                      str(p)) for p in exc.problems]) from None


def run_experiment(design: Design, out_dir: str | Path, workers: int | None = None,
                   scheduler: str | None = None, client=None,
                   progress: Callable[[ExperimentProgress], None] | None = None) -> ExperimentResult:
    """Run every missing replicate of ``design`` into ``out_dir`` on Dask; return the results.

    Args:
        design: the experiment.
        out_dir: the experiment directory (new, empty, or holding this same experiment).
        workers: worker processes of the LocalCluster started when neither ``scheduler`` nor
            ``client`` is given (default: the number of CPUs).
        scheduler: address of an existing Dask scheduler (``tcp://host:8786``).
        client: an existing ``distributed.Client`` to use.
        progress: called once every condition's configuration has been checked (nothing run yet),
            then after each replicate finishes.
    """
    root = path_argument(out_dir, "--out")
    _check_arguments(design, workers, scheduler, client, progress)
    _check_design(root, design)
    _validate(design)
    root.mkdir(parents=True, exist_ok=True)
    with DirectoryLock(root, "--out"):  # (a second command into the same directory is refused)
        return _run_locked(design, root, workers, scheduler, client, progress)


def _run_locked(design: Design, root: Path, workers, scheduler, client, progress) -> ExperimentResult:
    """:func:`run_experiment` in its checked, locked directory."""
    _check_design(root, design)  # (again: another command may have started here before the lock)
    atomic_write_json(root / EXPERIMENT, design.to_json())
    tasks = design.tasks()
    todo = [(c, i, s) for c, i, s in tasks if not part_path(root, c.name, i).exists()]
    skipped = len(tasks) - len(todo)
    failures: list[tuple[str, int, str]] = []
    if progress is not None:  # (the design is valid: a progress display may start)
        progress(ExperimentProgress(skipped, 0, len(tasks), skipped))
    if todo:
        failures = _compute(design, root, todo, skipped, len(tasks), workers, scheduler, client, progress)
    result = open_experiment(root)
    result.failures = failures
    result.computed = len(todo) - len(failures)
    return result


def _check_arguments(design, workers, scheduler, client, progress) -> None:
    """Refuse arguments of :func:`run_experiment` of the wrong kind, naming them (as the CLI's options)."""
    if not isinstance(design, Design):
        raise InputError([Problem("design", design, "a Design, from metacoop.experiments.build_design")])
    check_cluster(workers, scheduler, client)
    if progress is not None and not callable(progress):
        raise InputError([Problem("progress", progress, "a function taking an ExperimentProgress, or None")])


def check_cluster(workers: int | None, scheduler: str | None, client=None) -> None:
    """Refuse a worker count that is not a whole number at least 1, or given with a scheduler or client.

    A ``client`` (a ``distributed.Client`` of the caller's) is refused with
    ``workers`` or ``scheduler``, which it would make meaningless. (A
    LocalCluster of ``n_workers <= 0`` starts with no worker, and a run on it
    waits for ever.)
    """
    if workers is not None:
        whole_number(workers, "--workers", 1)
        if scheduler is not None:
            raise InputError([Problem("--workers", workers, "give workers or a scheduler, not both")])
        if client is not None:
            raise InputError([Problem("--workers", workers, "give workers or a client, not both")])
    if scheduler is not None and not isinstance(scheduler, str):
        raise InputError([Problem("--scheduler", scheduler, "a scheduler address such as tcp://host:8786")])
    if scheduler is not None and client is not None:
        raise InputError([Problem("--scheduler", scheduler, "give a scheduler or a client, not both")])


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, in_process_if_one: bool = False):
    """A ``distributed.Client``: of an existing scheduler, or of a new LocalCluster of ``workers``.

    With ``in_process_if_one`` and ``workers == 1`` yields None (run in this process).
    """
    import dask
    from distributed import Client, LocalCluster

    check_cluster(workers, scheduler)
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    if in_process_if_one and n == 1:
        yield None
        return
    # Dask sets MALLOC_TRIM_THRESHOLD_=65536 in its workers' environment by default, which makes
    # glibc return every freed array to the OS and slows a simulation down 2.2x (measured on the
    # default scenario): the workers we start keep the usual allocator settings.
    with dask.config.set({"distributed.nanny.pre-spawn-environ": WORKER_ENVIRON}):
        try:
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                   silence_logs=logging.CRITICAL)
        except RuntimeError as exc:
            raise SimulationError(
                f"the Dask workers could not start ({exc}). From a Python script, call run_experiment "
                "under `if __name__ == \"__main__\":` (the workers are new processes that import the "
                "script), or pass client= or scheduler="
            ) from None
    with cluster, Client(cluster) as client:
        yield client


def _compute(design: Design, root: Path, todo: list[tuple[Condition, int, int]], skipped: int, total: int,
             workers: int | None, scheduler: str | None, client, progress) -> list[tuple[str, int, str]]:
    with ExitStack() as stack:
        if client is None:
            client = stack.enter_context(dask_client(workers, scheduler))
        return _submit_all(design, root, todo, skipped, total, client, host_slots(client), progress)


def _submit_all(design: Design, root: Path, todo: list[tuple[Condition, int, int]], skipped: int, total: int,
                client, slots: dict[str, int], progress) -> list[tuple[str, int, str]]:
    from distributed import as_completed

    futures = {}
    for c, i, seed in todo:
        overrides = {**design.base_overrides, **c.overrides}
        fut = client.submit(run_replicate, design.scenario, overrides, seed, str(run_path(root, c.name, i)),
                            tuple(design.extra.get("observables", ())), slots,
                            key=f"replicate-{Path(design.scenario).stem}-{c.name}-{i}", pure=False, retries=1)
        futures[fut] = (c, i, seed)
    done, failures = skipped, []
    for fut in as_completed(futures):
        c, i, seed = futures[fut]
        if fut.status == "finished":
            _write_part(part_path(root, c.name, i), i, seed, fut.result())
            _failure_path(root, c.name, i).unlink(missing_ok=True)
            done += 1
        else:
            exc = fut.exception()
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            failures.append((c.name, i, text))
            _failure_path(root, c.name, i).parent.mkdir(exist_ok=True)
            atomic_write_json(_failure_path(root, c.name, i),
                              {"condition": c.name, "replicate": i, "seed": seed, "error": text})
        if progress is not None:
            progress(ExperimentProgress(done, len(failures), total, skipped))
    return failures


def read_dataset(root: Path) -> pd.DataFrame:
    """Every replicate's observables (condition, replicate, seed, observable, value)."""
    files = sorted((root / "dataset").glob("condition=*/rep-*.parquet"))
    frames = []
    for f in files:
        try:
            df = pq.read_table(f).to_pandas()
        except (OSError, pa.ArrowException) as exc:
            reason = (f"is damaged ({exc}); delete it and rerun the experiment, which recomputes "
                      "that replicate")
            raise InputError([Problem("dataset part", str(f), reason)]) from None
        df.insert(0, "condition", f.parent.name[len("condition="):])
        frames.append(df)
    if not frames:
        return pd.DataFrame({"condition": pd.Series(dtype="string"), "replicate": pd.Series(dtype="int64"),
                             "seed": pd.Series(dtype="int64"), "observable": pd.Series(dtype="string"),
                             "value": pd.Series(dtype="float64")})
    df = pd.concat(frames, ignore_index=True)
    return df.astype({"condition": "string", "observable": "string"})


def open_experiment(path: str | Path) -> ExperimentResult:
    """Open an experiment directory: its design, observables and statistics (recomputed and saved)."""
    root = path_argument(path, "experiment")
    try:
        design = Design.from_json(json.loads((root / EXPERIMENT).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError) as exc:
        reason = f"is not an experiment directory: {exc}"
        raise InputError([Problem("experiment", str(root), reason)]) from None
    reps = read_dataset(root)
    order = [c.name for c in design.conditions]
    stats = summarize(reps, reference=design.reference, order=order)
    _write_table(root / "stats", stats)
    sensitivity = None
    if design.kind == "sensitivity" and len(reps):
        from metacoop.experiments.sensitivity import analyse

        sensitivity = analyse(design.extra, reps, order)
        _write_table(root / "sensitivity", sensitivity)
    return ExperimentResult(root, design, reps, stats, [], sensitivity=sensitivity)


def _write_table(stem: Path, df: pd.DataFrame) -> None:
    """Write ``df`` as ``stem.parquet`` and ``stem.csv``, atomically."""
    atomic_write(stem.with_suffix(".parquet"),
                 lambda tmp: pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp))
    atomic_write(stem.with_suffix(".csv"), lambda tmp: df.to_csv(tmp, index=False))
