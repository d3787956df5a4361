"""The validation targets: published figures, each mapped to a scenario, an observable and a rule.

A targets file is a CSV with the columns of ``shared/validation/targets.csv``
(:data:`SOURCE_COLUMNS`: id, source, quantity, value, low, high, unit,
condition, verified, url) and the mapping columns (:data:`MAPPING_COLUMNS`):

* ``scenario``: the built-in scenario (or TOML path) that sets up the experiment;
* ``overrides``: ``dotted.key=value`` pairs separated by ``;`` applied to it
  (empty for the scenario as it is);
* ``observable``: a name from :mod:`metacoop.validation.observables` or
  :mod:`metacoop.experiments.summary`;
* ``rule``: how the simulated value is judged (:mod:`metacoop.validation.rules`);
* ``fitted``: whether the scenario's parameters were chosen to reproduce this
  row (``yes: ...``) or the row is an independent check (``no``);
* ``translation``: how the experiment becomes a scenario and what the model
  leaves out.

A row with an empty ``observable`` is reported as *not modelled*, with its
translation as the reason. A row whose ``verified`` is not ``yes`` is run and
shown as *guidance*, not judged. The shipped file is
``metacoop/validation/data/targets.csv``; a user's file needs the same
columns and may add rows.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from metacoop.config.loader import parse_override
from metacoop.errors import InputError, Problem
from metacoop.validation.rules import Rule, parse_rule

SOURCE_COLUMNS = ("id", "source", "quantity", "value", "low", "high", "unit", "condition", "verified", "url")
MAPPING_COLUMNS = ("scenario", "overrides", "observable", "rule", "fitted", "translation")


@dataclass(frozen=True)
class Target:
    """One row of a targets file (see the module docstring)."""

    id: str
    source: str
    quantity: str
    value: float | str
    low: float
    high: float
    unit: str
    verified: bool
    scenario: str
    overrides: dict[str, Any] = field(default_factory=dict)
    observable: str = ""
    rule: Rule | None = None
    fitted: str = ""
    translation: str = ""
    url: str = ""
    condition: str = ""

    @property
    def modelled(self) -> bool:
        """Whether the row maps to an observable (otherwise it is reported as not modelled)."""
        return bool(self.observable)

    @property
    def published(self) -> str:
        """The published value and range, as text."""
        text = f"{self.value:g}" if isinstance(self.value, float) else str(self.value)
        if not (math.isnan(self.low) and math.isnan(self.high)):
            lo = "" if math.isnan(self.low) else f"{self.low:g}"
            hi = "" if math.isnan(self.high) else f"{self.high:g}"
            text += f" [{lo}, {hi}]"
        return text


def shipped_targets_path() -> Path:
    """The targets file shipped with metacoop."""
    return Path(str(resources.files("metacoop.validation") / "data" / "targets.csv"))


def load_targets(path: str | Path | None = None) -> list[Target]:
    """Read and check a targets file (the shipped one by default); refuse bad rows by id and column."""
    path = Path(path) if path is not None else shipped_targets_path()
    label = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError([Problem("--targets", label, f"cannot be read as CSV: {exc}")]) from None
    missing = [c for c in (*SOURCE_COLUMNS, *MAPPING_COLUMNS) if c not in columns]
    if missing:
        raise InputError([Problem("--targets", label, f"lacks the columns {', '.join(missing)} (a targets "
                                                      "file has the columns of the shipped one)")])
    problems: list[Problem] = []
    targets: list[Target] = []
    seen: set[str] = set()
    for n, row in enumerate(rows, start=2):
        rid = (row.get("id") or "").strip()
        where = f"{label} row {rid or f'at line {n}'}"
        if not rid:
            problems.append(Problem(where, "", "every row needs an id"))
            continue
        if rid in seen:
            problems.append(Problem(where, rid, "ids must be unique"))
            continue
        seen.add(rid)
        try:
            target = _target(row, where)
            if target.scenario.endswith(".toml") and not Path(target.scenario).is_absolute():
                # a scenario file named in a targets file is found beside it
                target = replace(target, scenario=str(path.parent / target.scenario))
            targets.append(target)
        except InputError as exc:
            problems.extend(exc.problems)
    if problems:
        raise InputError(problems)
    return targets


def _target(row: dict[str, str], where: str) -> Target:
    from metacoop.experiments.summary import is_observable
    from metacoop.validation.observables import OBSERVABLES

    text = {k: (v or "").strip() for k, v in row.items() if k is not None}
    value = _number(text["value"], f"{where} value", allow_text=True)
    low = _number(text["low"], f"{where} low")
    high = _number(text["high"], f"{where} high")
    observable = text["observable"]
    rule = None
    overrides: dict[str, Any] = {}
    if observable:
        if observable not in OBSERVABLES and not is_observable(observable):
            known = ", ".join(sorted(OBSERVABLES))
            raise InputError([Problem(f"{where} observable", observable,
                                      f"unknown observable; named ones: {known} (or an experiment "
                                      "observable)")])
        if not text["scenario"]:
            raise InputError([Problem(f"{where} scenario", "", "a row with an observable needs a scenario")])
        overrides = parse_overrides(text["overrides"], f"{where} overrides")
        rule = parse_rule(text["rule"], f"{where} rule")
        rule.check_target(value, low, high, f"{where} rule")
    return Target(id=text["id"], source=text["source"], quantity=text["quantity"], value=value, low=low,
                  high=high, unit=text["unit"], verified=text["verified"].lower() == "yes",
                  scenario=text["scenario"], overrides=overrides, observable=observable, rule=rule,
                  fitted=text["fitted"], translation=text["translation"], url=text["url"],
                  condition=text["condition"])


def parse_overrides(text: str, where: str) -> dict[str, Any]:
    """``key=value; key=value`` as a dict (values read as TOML values, like ``--set``)."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        try:
            key, value = parse_override(part)
        except InputError:
            raise InputError([Problem(where, part, "overrides look like dotted.key=value; "
                                                   "other.key=value")]) from None
        out[key] = value
    return out


def _number(text: str, where: str, allow_text: bool = False) -> float | str:
    if not text:
        return math.nan
    try:
        x = float(text)
    except ValueError:
        if allow_text:
            return text
        raise InputError([Problem(where, text, "must be a number or empty")]) from None
    if math.isnan(x):
        raise InputError([Problem(where, text, "must be a number or empty")])
    return x
