"""Global sensitivity analysis with SALib: Morris screening or Sobol indices.

``metacoop experiment sensitivity SCENARIO --vary key=low,high ... --method
morris|sobol --samples N`` samples the named parameter ranges with SALib
(Morris trajectories with ``N`` trajectories, or Saltelli/Sobol sequences
with ``N`` base samples), runs every sample point as a condition with the
usual replicates, and analyses the mean of each observable over replicates:

* Morris: ``mu_star`` (mean absolute elementary effect, the importance) with
  its bootstrap confidence interval, and ``sigma`` (non-linearity and
  interactions);
* Sobol: first-order ``S1`` and total ``ST`` indices with their confidence
  intervals (``calc_second_order`` off).

Confidence intervals are SALib's bootstrap intervals at 95% (``*_conf`` is
the half-width). Sobol indices of an observable that does not vary over the
sample are undefined and left out. A range given by two integers (``primary.vessels.normal=10,80``)
is sampled as integers (rounded; the analysis uses the unrounded sample).
Observables that are NaN in some sample point are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from metacoop.errors import InputError, Problem
from metacoop.experiments.design import Condition

METHODS = ("morris", "sobol")
#: Seed of SALib's sampling and bootstrap (fixed: the design is then a function of the inputs).
SALIB_SEED = 1


def problem_of(vary: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """SALib's problem definition from ``{key: [low, high]}``."""
    names, bounds = [], []
    for key, values in vary.items():
        if len(values) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise InputError([Problem(f"--vary {key}", list(values),
                                      "a sensitivity range is two finite numbers: key=low,high")])
        lo, hi = float(values[0]), float(values[1])
        if not lo < hi:
            raise InputError([Problem(f"--vary {key}", [lo, hi], "needs low < high")])
        names.append(key)
        bounds.append([lo, hi])
    if not names:
        raise InputError([Problem("--vary", None, "name at least one parameter range: key=low,high")])
    return {"num_vars": len(names), "names": names, "bounds": bounds}


def sample_conditions(vary: Mapping[str, Sequence[Any]], method: str,
                      samples: int) -> tuple[list[Condition], dict]:
    """The sample points as conditions, and the settings needed to analyse them."""
    from SALib.sample import morris as morris_sample
    from SALib.sample import sobol as sobol_sample

    if method not in METHODS:
        raise InputError([Problem("--method", method, f"methods: {', '.join(METHODS)}")])
    if samples < 2:
        raise InputError([Problem("--samples", samples, "must be at least 2")])
    problem = problem_of(vary)
    if method == "morris":
        x = morris_sample.sample(problem, samples, num_levels=4, seed=SALIB_SEED)
    else:
        x = sobol_sample.sample(problem, samples, calc_second_order=False, seed=SALIB_SEED)
    # a range given by two integers samples integers (counts such as vessel points)
    integer = [all(isinstance(v, int) and not isinstance(v, bool) for v in vary[k]) for k in problem["names"]]
    conds = []
    for j, row in enumerate(x):
        values = {k: (round(float(v)) if whole else float(v))
                  for k, v, whole in zip(problem["names"], row, integer, strict=True)}
        conds.append(Condition(f"point-{j:05d}", dict(values), dict(values)))
    return conds, {"method": method, "samples": samples, "problem": problem, "x": x.tolist()}


def analyse(extra: dict, reps: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Sensitivity indices per observable and parameter (see the module docstring)."""
    from SALib.analyze import morris as morris_analyze
    from SALib.analyze import sobol as sobol_analyze

    problem = extra["problem"]
    x = np.asarray(extra["x"], float)
    means = reps.groupby(["observable", "condition"])["value"].mean()
    rows = []
    for obs in sorted(reps["observable"].unique()):
        try:
            y = np.array([means.loc[(obs, c)] for c in order], float)
        except KeyError:
            continue  # some sample point has no replicate yet
        if not np.all(np.isfinite(y)) or (extra["method"] == "sobol" and np.ptp(y) == 0.0):
            continue  # undefined (NaN) or without variance to apportion
        if extra["method"] == "morris":
            si = morris_analyze.analyze(problem, x, y, num_resamples=1000, conf_level=0.95, seed=SALIB_SEED)
            for k, name in enumerate(problem["names"]):
                rows.append({"observable": obs, "parameter": name, "index": "mu_star",
                             "value": float(si["mu_star"][k]), "conf": float(si["mu_star_conf"][k])})
                rows.append({"observable": obs, "parameter": name, "index": "sigma",
                             "value": float(si["sigma"][k]), "conf": math.nan})
        else:
            si = sobol_analyze.analyze(problem, y, calc_second_order=False, num_resamples=1000,
                                       conf_level=0.95, seed=SALIB_SEED)
            for k, name in enumerate(problem["names"]):
                for index in ("S1", "ST"):
                    rows.append({"observable": obs, "parameter": name, "index": index,
                                 "value": float(si[index][k]), "conf": float(si[f"{index}_conf"][k])})
    return pd.DataFrame(rows, columns=["observable", "parameter", "index", "value", "conf"])
