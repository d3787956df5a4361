"""What an experiment is: named conditions (overrides of one scenario) times seeded replicates.

Everything here is pure data and functions, unit-tested on its own:
:func:`expand_grid` turns ``{key: [values]}`` into the list of every
combination, and :func:`replicate_seeds` gives replicate ``i`` the same seed
in every condition (common random numbers across conditions), spawned from
the root seed with ``numpy.random.SeedSequence``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metacoop.errors import InputError, Problem

#: Characters allowed in a condition name (it becomes a directory and a hive partition value,
#: so ``=`` and ``/`` are not allowed).
_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


@dataclass(frozen=True)
class Condition:
    """One arm of an experiment.

    Attributes:
        name: unique, filesystem-safe label (``all_on``, ``no_niche``, ``metastatic_fraction-0.25``).
        overrides: dotted-key overrides applied to the scenario (as ``--set``).
        values: what varies in this condition, for tables (key -> value).
    """

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Design:
    """A whole experiment: kind, scenario, conditions, replicates, root seed.

    Attributes:
        kind: the experiment kind (``ablation``, ``mixing``, ``sweep``, ...).
        scenario: built-in scenario name or TOML path.
        conditions: the arms, in report order.
        replicates: replicates per condition.
        seed: root seed of the replicate seeds.
        base_overrides: overrides applied to every condition (``--set``).
        reference: the condition others are compared with (ablation: ``all_on``), or None.
        extra: kind-specific settings kept with the design (sensitivity: method and problem).
    """

    kind: str
    scenario: str
    conditions: tuple[Condition, ...]
    replicates: int
    seed: int
    base_overrides: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def seeds(self) -> list[int]:
        """The replicate seeds (the same in every condition)."""
        return replicate_seeds(self.seed, self.replicates)

    def tasks(self) -> list[tuple[Condition, int, int]]:
        """Every ``(condition, replicate index, seed)`` of the experiment, in a fixed order."""
        seeds = self.seeds()
        return [(c, i, seeds[i]) for c in self.conditions for i in range(self.replicates)]

    def to_json(self) -> dict[str, Any]:
        """Plain data describing the design (written to ``experiment.json``)."""
        return {"kind": self.kind, "scenario": self.scenario, "replicates": self.replicates,
                "seed": self.seed, "base_overrides": self.base_overrides, "reference": self.reference,
                "extra": self.extra,
                "conditions": [{"name": c.name, "overrides": c.overrides, "values": c.values}
                               for c in self.conditions]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Design:
        """Inverse of :meth:`to_json`."""
        return cls(kind=data["kind"], scenario=data["scenario"], replicates=int(data["replicates"]),
                   seed=int(data["seed"]), base_overrides=dict(data.get("base_overrides", {})),
                   reference=data.get("reference"), extra=dict(data.get("extra", {})),
                   conditions=tuple(Condition(c["name"], dict(c["overrides"]), dict(c.get("values", {})))
                                    for c in data["conditions"]))


def replicate_seeds(root: int, n: int) -> list[int]:
    """``n`` replicate seeds spawned from ``root`` (``SeedSequence(root).spawn(n)``), as 63-bit ints.

    ``root`` and ``n`` are whole numbers, at least 0; anything else is an
    :class:`~metacoop.errors.InputError`.
    """
    whole_number(root, "seed", 0)
    whole_number(n, "replicates", 0)
    children = np.random.SeedSequence(int(root)).spawn(int(n))
    return [int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for c in children]


def whole_number(value: object, name: str, least: int) -> int:
    """``value`` as an int if it is an integer (not a bool) of at least ``least``; else an InputError."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise InputError([Problem(name, value, f"a whole number, at least {least}")])
    return int(value)


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the values in ``grid`` (keys in the given order, last key fastest).

    ``{"a": [1, 2], "b": ["x"]}`` gives ``[{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]``; an
    empty grid gives one empty combination.
    """
    keys = list(grid)
    for k in keys:
        if isinstance(grid[k], (str, bytes)) or not isinstance(grid[k], Sequence) or not len(grid[k]):
            raise InputError([Problem(f"--vary {k}", grid[k], "a non-empty list of values")])
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


def read_grid(path: str | Path) -> dict[str, list[Any]]:
    """A grid from a TOML file: every array is a list of values of its dotted key.

    ``[mechanisms.niche]`` then ``arrest_gain = [0, 1, 2]`` gives
    ``{"mechanisms.niche.arrest_gain": [0, 1, 2]}``; a key may also be written
    dotted and quoted at the top level (``"clones.metastatic.cohesion" = [0.5, 1.0]``).
    """
    import tomllib

    from metacoop.errors import InputError, Problem

    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError([Problem("--grid", str(p), f"cannot be read as TOML: {exc}")]) from None
    grid: dict[str, list[Any]] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, Mapping):
                walk(value, path + ".")
            elif isinstance(value, list) and value:
                grid[path] = list(value)
            else:
                raise InputError([Problem(f"--grid {path}", value, "give a non-empty array of values")])

    walk(raw, "")
    if not grid:
        raise InputError([Problem("--grid", str(p), "holds no array of values")])
    return grid


def safe_name(text: str) -> str:
    """``text`` with every run of characters not allowed in a condition or directory name as ``_``."""
    return _SAFE.sub("_", text)


def condition_name(values: Mapping[str, Any]) -> str:
    """A filesystem-safe name for a combination of values (``key-value`` joined by ``+``)."""
    if not values:
        return "base"
    parts = []
    for k, v in values.items():
        text = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)
        parts.append(f"{k.split('.')[-1]}-{text}")
    return safe_name("+".join(parts))[:120]
