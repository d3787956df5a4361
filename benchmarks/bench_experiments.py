"""Benchmark of the experiment layer: replicates per hour on 1 and 2 Dask workers, and its overhead.

The same replicates (the default scenario, shortened) run three ways: a plain
loop of ``metacoop.simulate(config, run_dir)`` in this process, and
``run_experiment`` on an already started LocalCluster of 1 and of 2 worker
processes (cluster start-up is timed separately); the loop and the 1-worker
experiment alternate (see :func:`experiment_benchmark`). Overhead = experiment with
1 worker / plain loop - 1 (the layer adds scheduling, result transfer and the
dataset parts; target under 5 %).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import metacoop
from metacoop.experiments import build_design, run_experiment
from metacoop.experiments.runner import dask_client


@dataclass
class ExperimentBench:
    """Figures of one benchmark run (times in seconds)."""

    scenario: str
    duration_h: float
    replicates: int
    loop_s: float
    workers_s: dict[int, float]
    startup_s: dict[int, float]

    def per_hour(self, seconds: float) -> float:
        """Replicates per hour at a given wall time for all of them."""
        return 3600.0 * self.replicates / seconds

    @property
    def overhead(self) -> float:
        """Experiment on 1 worker against the plain loop, minus 1."""
        return self.workers_s[1] / self.loop_s - 1.0

    def to_dict(self) -> dict:
        """Plain data for the JSON output."""
        return asdict(self)


def _warm(scenario: str) -> None:
    metacoop.simulate(metacoop.load_scenario(scenario, {"duration_h": 0.5}))


def _warm_workers(client, scenario: str) -> None:
    """Load the kernels on every worker, as a task: in the thread that will run the replicates.

    Not with ``client.run``, which runs in the worker's event-loop thread: a
    second thread that has run OpenMP regions gives the process a second
    libgomp thread pool, and with more libgomp threads than CPUs libgomp
    stops spinning between regions (each region then waits for sleeping
    threads to wake). Every later replicate was about 1.35x slower (on 2
    cores: 8 replicates of the default scenario, 24 h each, in 7.2-8.8 s against
    5.3-6.6 s warmed as a task).
    """
    workers = list(client.scheduler_info()["workers"])
    client.gather([client.submit(_warm, scenario, workers=[w], pure=False) for w in workers])


def experiment_benchmark(duration_h: float = 24.0, replicates: int = 8, workers=(1, 2),
                         scenario: str = "default", rounds: int = 2) -> ExperimentBench:
    """Time the same replicates in a plain loop and through the experiment layer.

    The plain loop and the experiment on 1 worker alternate for ``rounds``
    rounds with that worker's cluster started (each figure is the mean of its
    rounds), so that both meet the same phases of a shared machine; on this
    VM whole runs drift by 20-40 % over minutes, more than the overhead being
    measured. Other worker counts run once.
    """
    if 1 not in workers:
        raise ValueError(f"workers={workers!r} must include 1: the plain loop alternates with 1 worker")
    overrides = {"duration_h": duration_h}
    cfg = metacoop.load_scenario(scenario, overrides)
    design = build_design("sweep", scenario, cfg, replicates, cfg.seed,
                          {"duration_h": [duration_h]}, overrides)
    seeds = design.seeds()
    _warm(scenario)  # kernels loaded, untimed
    with tempfile.TemporaryDirectory() as tmp:
        loops, times, startup = [], {}, {}
        for w in workers:
            t0 = time.perf_counter()
            with dask_client(w) as client:
                _warm_workers(client, scenario)
                startup[w] = time.perf_counter() - t0
                spent = []
                for r in range(rounds if w == 1 else 1):
                    if w == 1:
                        t0 = time.perf_counter()
                        for i, s in enumerate(seeds):
                            metacoop.simulate(metacoop.load_scenario(scenario, overrides, seed=s),
                                              Path(tmp) / f"loop{r}-{i}")
                        loops.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    run_experiment(design, Path(tmp) / f"exp{w}-{r}", client=client)
                    spent.append(time.perf_counter() - t0)
                times[w] = sum(spent) / len(spent)
    return ExperimentBench(scenario, duration_h, replicates, sum(loops) / len(loops), times, startup)
