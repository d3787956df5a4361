"""Experiments: ensembles of replicates over conditions, run on Dask, reduced to statistics.

* :mod:`~metacoop.experiments.design` — conditions, replicate seeds and grid expansion (pure).
* :mod:`~metacoop.experiments.kinds` — the built-in experiment kinds (ablation, mixing, sweep, ...).
* :mod:`~metacoop.experiments.summary` — one row of observables per replicate.
* :mod:`~metacoop.experiments.runner` — the Dask runner, resumable, writing a hive-partitioned dataset.
* :mod:`~metacoop.experiments.stats` — per-condition statistics and ablation effects.
* :mod:`~metacoop.experiments.query` — DuckDB over an experiment directory.
"""

from metacoop.experiments.design import Condition, Design, expand_grid, replicate_seeds
from metacoop.experiments.kinds import KINDS, build_design
from metacoop.experiments.query import query
from metacoop.experiments.runner import ExperimentResult, open_experiment, run_experiment

__all__ = ["KINDS", "Condition", "Design", "ExperimentResult", "build_design", "expand_grid",
           "open_experiment", "query", "replicate_seeds", "run_experiment"]
