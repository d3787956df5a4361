"""``metacoop validate``: run the scenarios the targets need, as ensembles, and judge every target.

The targets are grouped by scenario. Each scenario becomes one experiment of
kind ``validation`` (see :mod:`metacoop.experiments.runner`) whose conditions
are the distinct override sets of its rows (``reference`` for none) and the
comparison conditions of ``above``/``below`` rules; replicate ``i`` has the
same seed in every condition, spawned from the scenario's own seed. The
experiments share one Dask cluster and live under
``OUT/experiments/<scenario>-<digest of the design>``, so an interrupted
validation resumes where it stopped.

The outcome is one row per target (:data:`COLUMNS`), written as
``OUT/validation.csv`` and ``OUT/validation.html`` (see
:mod:`metacoop.validation.report`). A target's status is ``pass``, ``fail``,
``guidance`` (not verified: shown, not judged) or ``not modelled``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metacoop.errors import InputError, OutputError, Problem, path_argument
from metacoop.experiments.design import Condition, Design, condition_name, safe_name, whole_number
from metacoop.experiments.runner import ExperimentProgress, check_cluster, dask_client, run_experiment
from metacoop.io.atomic import atomic_write
from metacoop.validation.observables import OBSERVABLES
from metacoop.validation.targets import Target

COLUMNS = ["id", "status", "quantity", "source", "published", "unit", "simulated", "ci_low", "ci_high", "n",
           "rule", "detail", "observable", "scenario", "condition", "fitted", "translation"]

#: Replicates per condition when not given.
DEFAULT_REPLICATES = 4
#: Fewest replicates per condition of a scenario with a comparison row (``above:``/``below:``). A
#: one-sided Mann-Whitney test of 4 against 4 values reaches p < 0.05 only if at most one pair is out
#: of order (p = 0.014 with none, 0.029 with one, 0.057 with two): a single replicate in which, say,
#: no metastasis forms at all decides it. With 8 against 8 the test tolerates about a fifth of the
#: pairs out of order.
MIN_COMPARISON_REPLICATES = 8


@dataclass
class Validation:
    """The outcome of a validation.

    Attributes:
        table: one row per target (:data:`COLUMNS`).
        path: the output directory.
        failures: replicates that failed, ``(scenario, condition, replicate, message)``.
    """

    table: pd.DataFrame
    path: Path
    failures: list[tuple[str, str, int, str]]

    @property
    def passed(self) -> bool:
        """Whether every judged target passed and no replicate failed."""
        return bool((self.table["status"] != "fail").all()) and not self.failures


def condition_for(overrides: dict[str, Any]) -> str:
    """The condition name of a set of overrides: ``reference`` for none.

    Otherwise :func:`~metacoop.experiments.design.condition_name` of them, a mechanism switch
    named after its mechanism (``growth_factor-False``).
    """
    if not overrides:
        return "reference"
    return condition_name({k.rsplit(".", 1)[0] if k.endswith(".enabled") else k: v
                           for k, v in sorted(overrides.items())})


def replicates_for(rows: Sequence[Target], replicates: int) -> int:
    """Replicates per condition of an experiment for ``rows``: ``replicates``, raised.

    At least :data:`MIN_COMPARISON_REPLICATES` when one of the rows compares conditions.
    """
    compares = any(t.rule is not None and t.rule.compares for t in rows)
    return max(replicates, MIN_COMPARISON_REPLICATES) if compares else replicates


def plan(targets: Sequence[Target], replicates: int) -> list[Design]:
    """One validation experiment per scenario needed by the modelled targets.

    Every condition has :func:`replicates_for` replicates.
    """
    from metacoop.config.loader import load_scenario

    by_scenario: dict[str, list[Target]] = {}
    for t in targets:
        if t.modelled:
            by_scenario.setdefault(t.scenario, []).append(t)
    designs = []
    for scenario, rows in by_scenario.items():
        conditions: dict[str, dict[str, Any]] = {}
        for t in rows:
            conditions.setdefault(condition_for(t.overrides), dict(t.overrides))
            if t.rule is not None and t.rule.compares:
                other = {**t.overrides, **t.rule.other}
                conditions.setdefault(condition_for(other), other)
        try:
            seed = load_scenario(scenario).seed
        except InputError as exc:
            ids = ", ".join(t.id for t in rows)
            raise InputError([Problem(f"targets {ids} scenario", scenario, str(exc))]) from None
        names = tuple(sorted({t.observable for t in rows if t.observable in OBSERVABLES}))
        designs.append(Design(kind="validation", scenario=scenario,
                              conditions=tuple(Condition(n, o, dict(o)) for n, o in conditions.items()),
                              replicates=replicates_for(rows, replicates),
                              seed=seed,
                              reference="reference" if "reference" in conditions else None,
                              extra={"observables": list(names)}))
    return designs


def experiment_dir(out: Path, design: Design) -> Path:
    """Where the experiment of one scenario is kept: named after the scenario and a digest of the design.

    Rerunning the same validation finds (and resumes) it; a validation of other targets or
    replicates into the same directory gets experiments of its own instead of a refusal.
    """
    digest = hashlib.sha256(json.dumps(design.to_json(), sort_keys=True).encode()).hexdigest()[:8]
    return out / "experiments" / f"{safe_name(Path(design.scenario).stem)}-{digest}"


def validate(targets: Sequence[Target], out_dir: str | Path, replicates: int = DEFAULT_REPLICATES,
             workers: int | None = None, scheduler: str | None = None, client=None,
             progress: Callable[[str, ExperimentProgress], None] | None = None) -> Validation:
    """Run every scenario the ``targets`` need and judge each target; write CSV and HTML into ``out_dir``."""
    from metacoop.validation.report import write_report

    replicates = whole_number(replicates, "--replicates", 1)
    out = path_argument(out_dir, "--out")
    check_cluster(workers, scheduler, client)
    designs = plan(targets, replicates)
    reps: dict[str, pd.DataFrame] = {}
    failures: list[tuple[str, str, int, str]] = []
    if designs:
        with dask_client(workers, scheduler) if client is None else nullcontext(client) as c:
            for design in designs:
                step = (lambda p, s=design.scenario: progress(s, p)) if progress else None
                result = run_experiment(design, experiment_dir(out, design), client=c, progress=step)
                reps[design.scenario] = result.replicates
                failures += [(design.scenario, cond, i, msg) for cond, i, msg in result.failures]
    table = judge(targets, reps)
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "validation.csv", lambda tmp: table.to_csv(tmp, index=False))
        write_report(table, out / "validation.html", replicates=replicates)
    except OSError as exc:
        raise OutputError(f"{out}: {exc.strerror or exc}") from None
    return Validation(table, out, failures)


def judge(targets: Sequence[Target], reps: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per target: the rule applied to its replicate values (see the module docstring)."""
    rows = []
    for t in targets:
        row = {"id": t.id, "quantity": t.quantity, "source": t.source, "published": t.published,
               "unit": t.unit, "simulated": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0,
               "rule": "", "detail": "", "observable": t.observable, "scenario": t.scenario,
               "condition": "", "fitted": t.fitted, "translation": t.translation}
        if not t.modelled or t.rule is None:
            rows.append({**row, "status": "not modelled", "detail": t.translation})
            continue
        cond = condition_for(t.overrides)
        df = reps.get(t.scenario, pd.DataFrame(columns=["condition", "replicate", "observable", "value"]))
        values = _values(df, cond, t.observable)
        other = _values(df, condition_for({**t.overrides, **t.rule.other}), t.observable) if t.rule.compares \
            else None
        value = t.value if isinstance(t.value, float) else math.nan
        verdict = t.rule.judge(values, value, t.low, t.high, other)
        status = ("pass" if verdict.passed else "fail") if t.verified else "guidance"
        rows.append({**row, "status": status, "simulated": verdict.value, "ci_low": verdict.ci_low,
                     "ci_high": verdict.ci_high, "n": verdict.n,
                     "rule": t.rule.describe(value, t.low, t.high), "detail": verdict.detail,
                     "condition": cond})
    return pd.DataFrame(rows, columns=COLUMNS)


def _values(df: pd.DataFrame, condition: str, observable: str) -> np.ndarray:
    sel = df[(df["condition"] == condition) & (df["observable"] == observable)]
    return sel.sort_values("replicate")["value"].to_numpy(float)
