"""The built-in experiment kinds: each turns a scenario and options into a :class:`Design`.

* ``ablation``: every cooperation mechanism on (``all_on``, the reference),
  one condition per mechanism switched off (``no_<name>``), and ``all_off``.
* ``mixing``: the initial fraction of the first (metastatic) clone from 0 to 1,
  the rest of the tumour being the second clone (Miller 1983 co-implantation).
* ``waves``: shedding in the scenario's waves (``waves``) against continuous
  shedding (``continuous``); the per-wave seeding efficiency is an observable.
* ``injection``: experimental metastasis, varying the number of injected cells
  and the cluster size of the first injection (Luzzi, Fidler set-ups).
* ``sweep``: any grid of values, ``--vary key=v1,v2,...`` (every combination).
* ``sensitivity``: SALib samples of parameter ranges ``--vary key=low,high``
  (Morris or Sobol; see :mod:`metacoop.experiments.sensitivity`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from metacoop.config.loader import as_config
from metacoop.config.schema import SimulationConfig
from metacoop.errors import InputError, Problem
from metacoop.experiments.design import Condition, Design, condition_name, expand_grid, whole_number
from metacoop.experiments.sensitivity import sample_conditions
from metacoop.mechanisms import COOPERATION

#: Mechanisms the ablation switches (diversification changes what a clone is, so it is left as set).
ABLATED = tuple(m for m in COOPERATION if m != "diversification")

#: Keys ``--vary`` accepts per kind (sweep and sensitivity take any scenario key).
VARY_KEYS = {"ablation": (), "waves": (), "mixing": ("fraction",), "injection": ("cells", "cluster_size")}

#: Default values of the kinds that vary something.
MIXING_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
INJECTION_CELLS = (1000, 10000)
INJECTION_CLUSTER_SIZES = (1, 4)


def _ablation(config: SimulationConfig, vary: Mapping[str, Sequence[Any]]) -> tuple[list[Condition], str]:
    on = {f"mechanisms.{m}.enabled": True for m in ABLATED}
    conds = [Condition("all_on", dict(on), {"off": "none"})]
    for m in ABLATED:
        conds.append(Condition(f"no_{m}", {**on, f"mechanisms.{m}.enabled": False}, {"off": m}))
    conds.append(Condition("all_off", {k: False for k in on}, {"off": "all"}))
    return conds, "all_on"


def _mixing(config: SimulationConfig, vary: Mapping[str, Sequence[Any]]) -> tuple[list[Condition], None]:
    if len(config.clones) < 2:
        raise InputError([Problem("clones", [c.name for c in config.clones],
                                  "a mixing experiment needs at least two clones (metastatic first)")])
    a, b = config.clones[0].name, config.clones[1].name
    fractions = vary.get("fraction", MIXING_FRACTIONS)
    conds = []
    for f in fractions:
        f = float(f)
        if not 0.0 <= f <= 1.0:
            raise InputError([Problem("--vary fraction", f, "fractions of the first clone lie in [0, 1]")])
        conds.append(Condition(f"{a}_fraction-{f:g}",
                               {"primary.initial_tumour.clone_fractions": {a: f, b: round(1.0 - f, 12)}},
                               {f"{a}_fraction": f}))
    return conds, None


def _waves(config: SimulationConfig, vary: Mapping[str, Sequence[Any]]) -> tuple[list[Condition], str]:
    return [Condition("waves", {"mechanisms.shedding_waves.enabled": True}, {"shedding": "waves"}),
            Condition("continuous", {"mechanisms.shedding_waves.enabled": False},
                      {"shedding": "continuous"})], "waves"


def _injection(config: SimulationConfig, vary: Mapping[str, Sequence[Any]]) -> tuple[list[Condition], None]:
    if not config.injections:
        raise InputError([Problem("injections", [], "an injection experiment needs a scenario with at least "
                                                    "one injection (e.g. luzzi1998)")])
    grid = {"cells": vary.get("cells", INJECTION_CELLS),
            "cluster_size": vary.get("cluster_size", INJECTION_CLUSTER_SIZES)}
    conds = []
    for combo in expand_grid(grid):
        size = int(combo["cluster_size"])
        conds.append(Condition(condition_name(combo),
                               {"injections.0.cells": int(combo["cells"]),
                                # a string key, as in a TOML file: the design round-trips through JSON
                                "injections.0.cluster_sizes": {str(size): 1.0}}, combo))
    return conds, None


def _sweep(config: SimulationConfig, vary: Mapping[str, Sequence[Any]]) -> tuple[list[Condition], None]:
    if not vary:
        raise InputError([Problem("--vary", None, "a sweep needs at least one --vary key=v1,v2,...")])
    return [Condition(condition_name(combo), dict(combo), dict(combo)) for combo in expand_grid(vary)], None


KindBuilder = Callable[[SimulationConfig, Mapping[str, Sequence[Any]]], tuple[list[Condition], str | None]]

KINDS: dict[str, KindBuilder] = {
    "ablation": _ablation,
    "mixing": _mixing,
    "waves": _waves,
    "injection": _injection,
    "sweep": _sweep,
}


def build_design(kind: str, scenario: str, config: SimulationConfig | str | Mapping[str, Any],
                 replicates: int, seed: int,
                 vary: Mapping[str, Sequence[Any]] | None = None,
                 base_overrides: Mapping[str, Any] | None = None, method: str = "morris",
                 samples: int = 10) -> Design:
    """The design of a ``kind`` experiment on ``scenario``.

    ``config`` is its resolved configuration, or what
    :func:`~metacoop.config.loader.load_scenario` loads into it. ``method``
    and ``samples`` are the sensitivity analysis' method (``morris`` or
    ``sobol``) and number of trajectories or base samples.
    """
    kinds = [*KINDS, "sensitivity"]
    if kind not in kinds:
        raise InputError([Problem("kind", kind, f"unknown experiment kind; kinds: {', '.join(kinds)}")])
    config = as_config(config)
    replicates = whole_number(replicates, "--replicates", 1)
    seed = whole_number(seed, "--seed", 0)
    for name, table in (("--vary", vary), ("--set", base_overrides)):
        if table is not None and not isinstance(table, Mapping):
            raise InputError([Problem(name, table, "a mapping of dotted keys to values, or None")])
    allowed = VARY_KEYS.get(kind)
    if allowed is not None:
        for key in vary or {}:
            if key not in allowed:
                raise InputError([Problem(f"--vary {key}", list((vary or {})[key]),
                                          f"a {kind} experiment varies "
                                          + (", ".join(allowed) if allowed else "nothing")
                                          + "; use a sweep for other keys")])
    extra: dict[str, Any] = {}
    if kind == "sensitivity":
        conditions, extra = sample_conditions(dict(vary or {}), method, samples)
        reference = None
    else:
        conditions, reference = KINDS[kind](config, dict(vary or {}))
    names = [c.name for c in conditions]
    if len(set(names)) != len(names):
        raise InputError([Problem("--vary", names, "two conditions would get the same name")])
    return Design(kind=kind, scenario=scenario, conditions=tuple(conditions), replicates=replicates,
                  seed=seed, base_overrides=dict(base_overrides or {}), reference=reference, extra=extra)
