"""Benchmark of the experiment layer: replicates per hour on 1 and 2 Dask workers, and its overhead.

The same replicates (the default scenario, shortened) run three ways: a plain
loop of ``metacoop.simulate(config, run_dir)`` in this process, then
``run_experiment`` on an already started LocalCluster of 1 and of 2 worker
processes (cluster start-up is timed separately). Overhead = experiment with
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


def experiment_benchmark(duration_h: float = 24.0, replicates: int = 8, workers=(1, 2),
                         scenario: str = "default") -> ExperimentBench:
    """Time the same replicates in a plain loop and through the experiment layer."""
    overrides = {"duration_h": duration_h}
    cfg = metacoop.load_scenario(scenario, overrides)
    design = build_design("sweep", scenario, cfg, replicates, cfg.seed,
                          {"duration_h": [duration_h]}, overrides)
    seeds = design.seeds()
    metacoop.simulate(metacoop.load_scenario(scenario, {"duration_h": 0.5}))  # kernels loaded, untimed
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for i, s in enumerate(seeds):
            metacoop.simulate(metacoop.load_scenario(scenario, overrides, seed=s), Path(tmp) / f"loop{i}")
        loop_s = time.perf_counter() - t0
        times, startup = {}, {}
        for w in workers:
            t0 = time.perf_counter()
            with dask_client(w) as client:
                client.run(lambda: metacoop.simulate(metacoop.load_scenario(scenario, {"duration_h": 0.5})))
                startup[w] = time.perf_counter() - t0
                t0 = time.perf_counter()
                run_experiment(design, Path(tmp) / f"exp{w}", client=client)
                times[w] = time.perf_counter() - t0
    return ExperimentBench(scenario, duration_h, replicates, loop_s, times, startup)
