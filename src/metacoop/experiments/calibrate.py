"""Calibration: fit named parameters to published figures with pyabc's ABC-SMC.

``metacoop experiment calibrate SCENARIO [--targets FILE] --match ROW[=OBSERVABLE]
--vary key=low,high ...`` reads rows of a targets CSV (the columns of
``validation/targets.csv``: id, source, quantity, value, low, high, unit,
condition, verified, url; by default the targets shipped with metacoop),
matches each chosen row to an observable of :mod:`metacoop.experiments.summary`
or :mod:`metacoop.validation.observables` (by default the row's own
``observable`` column), puts uniform priors on the parameter
ranges, and runs ABC-SMC (Del Moral et al. 2012, as implemented by pyabc,
Klinger et al. 2018) on the same Dask cluster as the other experiments. The
distance between a simulated and the published figures is
``sqrt(sum(((sim - value) / scale)**2))`` with ``scale`` half the published
range ``(high - low) / 2`` where one is given, else ``|value|`` (a relative
error), else 1; a run whose observable is undefined is infinitely far.

Written to the experiment directory: ``abc.db`` (pyabc's history),
``posterior.parquet`` and ``.csv`` (the last generation's particles with
their weights), ``calibration.json`` (targets, priors, posterior mean, sd
and 5-95 % quantiles per parameter, epsilon per generation) and
``calibrated.toml``: the scenario with the posterior means, fully resolved.
A range of two integers is sampled as integers (rounded). Runs on several
workers are not bit-reproducible (pyabc accepts particles in the order they
finish); with one worker and the same seed they are.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metacoop.errors import InputError, Problem, path_argument
from metacoop.experiments.sensitivity import problem_of
from metacoop.experiments.threads import host_slots
from metacoop.io.atomic import atomic_write, atomic_write_bytes, atomic_write_json
from metacoop.io.rundir import entries

TARGET_COLUMNS = ("id", "source", "quantity", "value", "low", "high", "unit", "condition", "verified", "url")


@dataclass(frozen=True)
class Target:
    """One published figure matched to an observable."""

    id: str
    observable: str
    value: float
    scale: float
    source: str


def read_targets(path: str | Path | None, match: Mapping[str, str]) -> list[Target]:
    """The rows of the targets CSV named in ``match`` (row id -> observable), as :class:`Target`.

    ``path`` None reads the targets shipped with metacoop. An empty observable takes the row's
    own ``observable`` column (the shipped file maps every modelled row to one).
    """
    from metacoop.experiments.summary import is_observable
    from metacoop.validation.observables import OBSERVABLES
    from metacoop.validation.targets import shipped_targets_path

    p = Path(path) if path is not None else shipped_targets_path()
    try:
        with p.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError([Problem("--targets", str(p), f"cannot be read: {exc}")]) from None
    if not rows or not {"id", "value"} <= set(rows[0]):
        raise InputError([Problem("--targets", str(p), f"needs the columns {', '.join(TARGET_COLUMNS)}")])
    by_id = {r["id"]: r for r in rows}
    if not match:
        raise InputError([Problem("--match", None, "match at least one target row to an observable: "
                                                   "ROW_ID=observable")])
    targets = []
    for row_id, observable in match.items():
        if row_id not in by_id:
            raise InputError([Problem("--match", row_id, f"no row with that id in {p}; ids: "
                                                         f"{', '.join(by_id)}")])
        r = by_id[row_id]
        observable = observable or (r.get("observable") or "").strip()
        if not observable:
            raise InputError([Problem("--match", row_id, "the row names no observable: give one, "
                                                         "ROW_ID=observable")])
        try:
            value = float(r["value"])
        except (TypeError, ValueError):
            raise InputError([Problem(f"{row_id}.value", r["value"], "is not a number (qualitative rows "
                                                                     "cannot be fitted)")]) from None
        low, high = _number(r.get("low")), _number(r.get("high"))
        ranged = low is not None and high is not None and high > low
        scale = (high - low) / 2 if ranged else (abs(value) or 1.0)
        if not is_observable(observable) and observable not in OBSERVABLES:
            raise InputError([Problem(f"--match {row_id}", observable,
                                      "is not an observable (see metacoop.experiments.summary and "
                                      "metacoop validate --list)")])
        targets.append(Target(row_id, observable, value, float(scale), r.get("source", "")))
    return targets


def _number(text) -> float | None:
    try:
        x = float(text)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _model(params: Mapping[str, float], scenario: str, base: dict[str, Any], names: dict[str, str],
           integer: dict[str, bool], observables: list[str],
           slots: dict[str, int] | None = None) -> dict[str, float]:
    """One simulation at ``params`` (pyabc's parameter names), reduced to the matched observables.

    On a Dask worker numba's threads are fitted to ``slots`` (:mod:`metacoop.experiments.threads`).
    """
    from metacoop.api import simulate
    from metacoop.config.loader import load_scenario
    from metacoop.experiments.summary import replicate_observables
    from metacoop.experiments.threads import fit_threads

    fit_threads(slots)
    overrides = dict(base)
    for safe, key in names.items():
        v = float(params[safe])
        overrides[key] = round(v) if integer[key] else v
    from metacoop.validation.observables import OBSERVABLES, compute

    seed = int(np.random.randint(0, 2**62))  # pyabc seeds numpy per run and per worker
    result = simulate(load_scenario(scenario, overrides, seed=seed))
    obs = replicate_observables(result)
    obs.update(compute(result, [o for o in observables if o in OBSERVABLES]))
    return {o: float(obs.get(o, math.nan)) for o in observables}


def _distance(x: Mapping[str, float], x0: Mapping[str, float], scales: dict[str, float]) -> float:
    total = 0.0
    for o, scale in scales.items():
        d = (x[o] - x0[o]) / scale
        if not math.isfinite(d):
            return math.inf
        total += d * d
    return math.sqrt(total)


@dataclass
class CalibrationResult:
    """What a calibration produced (see the module docstring for the files)."""

    path: Path
    posterior: pd.DataFrame
    summary: dict[str, Any]


def calibrate(scenario: str, base: Mapping[str, Any], ranges: Mapping[str, Sequence[float]],
              targets: list[Target], out_dir: str | Path, population: int = 20, generations: int = 3,
              seed: int = 0, client=None) -> CalibrationResult:
    """Fit the parameters in ``ranges`` to ``targets`` by ABC-SMC; write and return the results.

    Args:
        scenario: built-in name or TOML path.
        base: overrides applied to every run.
        ranges: ``{dotted key: [low, high]}``, uniform priors.
        targets: published figures matched to observables (:func:`read_targets`).
        out_dir: new or empty directory.
        population: particles per generation.
        generations: ABC-SMC generations (populations).
        seed: seed of numpy's generator used by pyabc (bit-reproducible on one worker).
        client: a ``distributed.Client`` to run the simulations on (None: this process).
    """
    try:
        import pyabc
    except ImportError:
        raise InputError([Problem("calibrate", "pyabc",
                                  "is not installed; pip install 'metacoop[calibrate]'")]) from None
    from metacoop.config.loader import load_scenario, to_toml

    root = path_argument(out_dir, "--out")
    if entries(root, "--out"):
        raise InputError([Problem("--out", str(root), "is not empty; a calibration needs a new directory")])
    if population < 2 or generations < 1:
        raise InputError([Problem("--population", population, "needs at least 2 particles and 1 generation")])
    problem = problem_of(ranges)
    load_scenario(scenario, dict(base))  # bad base overrides fail here, before any run
    names = {f"p{i}": key for i, key in enumerate(problem["names"])}
    integer = {k: all(isinstance(v, int) and not isinstance(v, bool) for v in ranges[k])
               for k in problem["names"]}
    prior = pyabc.Distribution(**{safe: pyabc.RV("uniform", lo, hi - lo)
                                  for safe, (lo, hi) in zip(names, problem["bounds"], strict=True)})
    observables = [t.observable for t in targets]
    scales = {t.observable: t.scale for t in targets}
    observed = {t.observable: t.value for t in targets}
    model = partial(_model, scenario=scenario, base=dict(base), names=names, integer=integer,
                    observables=observables, slots=host_slots(client) if client is not None else None)
    sampler = (pyabc.sampler.DaskDistributedSampler(client) if client is not None
               else pyabc.sampler.SingleCoreSampler())
    np.random.seed(seed % 2**32)
    root.mkdir(parents=True, exist_ok=True)
    quiet = {name: logging.getLogger(name).level for name in ("ABC", "ABC.History", "ABC.Sampler", "Epsilon",
                                                               "ABC.Distance", "ABC.Adaptation")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        abc = pyabc.ABCSMC(model, prior, partial(_distance, scales=scales), population_size=population,
                           sampler=sampler)
        abc.new(f"sqlite:///{root / 'abc.db'}", observed)
        history = abc.run(max_nr_populations=generations)
    finally:
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
    df, w = history.get_distribution(m=0, t=history.max_t)
    post = pd.DataFrame({names[c]: df[c].to_numpy(float) for c in names})
    post["weight"] = np.asarray(w, float)
    atomic_write(root / "posterior.parquet", lambda tmp: post.to_parquet(tmp, index=False))
    atomic_write(root / "posterior.csv", lambda tmp: post.to_csv(tmp, index=False))
    summary = _summary(post, problem, targets, history, population, generations)
    atomic_write_json(root / "calibration.json", summary)
    means = {k: (round(v["mean"]) if integer[k] else v["mean"]) for k, v in summary["posterior"].items()}
    calibrated = load_scenario(scenario, {**base, **means})
    atomic_write_bytes(root / "calibrated.toml",
                       ("# calibrated by metacoop experiment calibrate: posterior means of "
                        + ", ".join(means) + "\n" + to_toml(calibrated)).encode("utf-8"))
    return CalibrationResult(root, post, summary)


def _summary(post: pd.DataFrame, problem: dict, targets: list[Target], history, population: int,
             generations: int) -> dict[str, Any]:
    w = post["weight"].to_numpy(float)
    w = w / w.sum()
    out: dict[str, Any] = {"targets": [asdict(t) for t in targets], "population": population,
                           "generations": generations, "posterior": {}, "priors": {}}
    for key, (lo, hi) in zip(problem["names"], problem["bounds"], strict=True):
        x = post[key].to_numpy(float)
        order = np.argsort(x)
        cdf = np.cumsum(w[order])
        mean = float((w * x).sum())
        out["priors"][key] = {"uniform": [lo, hi], "mean": (lo + hi) / 2, "sd": (hi - lo) / math.sqrt(12)}
        out["posterior"][key] = {
            "mean": mean, "sd": float(math.sqrt(max((w * (x - mean) ** 2).sum(), 0.0))),
            "q05": float(x[order][np.searchsorted(cdf, 0.05)]),
            "q95": float(x[order][min(np.searchsorted(cdf, 0.95), x.size - 1)]),
        }
    pops = history.get_all_populations()
    out["epsilon"] = [float(e) for e in pops["epsilon"].tolist() if math.isfinite(e)]
    out["evaluations"] = int(history.total_nr_simulations)
    return json.loads(json.dumps(out))
