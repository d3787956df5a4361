"""Experiment designs and statistics, without Dask and without simulating.

Covers :mod:`metacoop.experiments.design` (grid expansion, replicate seeds,
condition names, the JSON form of a design), :mod:`metacoop.experiments.kinds`
(every built-in kind on real presets, and the overrides each condition makes
loadable) and :mod:`metacoop.experiments.stats` (Holm, Cliff's delta, the
bootstrap interval and the statistics table) against hand-computed values,
brute force and sampling distributions.

Statistical assertions draw their data from fixed seeds, so each test is
deterministic; the bounds were set from the sampling distribution of the
quantity (given next to each), not tuned to the draw.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

import metacoop
from metacoop.errors import InputError
from metacoop.experiments import stats
from metacoop.experiments.design import Condition, Design, condition_name, expand_grid, replicate_seeds
from metacoop.experiments.kinds import (
    ABLATED,
    INJECTION_CELLS,
    INJECTION_CLUSTER_SIZES,
    KINDS,
    MIXING_FRACTIONS,
    build_design,
)
from metacoop.mechanisms import COOPERATION

SAFE_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
SETTINGS = settings(max_examples=150, deadline=None)


def problem_paths(excinfo) -> list[str]:
    return [p.path for p in excinfo.value.problems]


@pytest.fixture(scope="module")
def configs():
    """The resolved presets the kinds are built on (loading is cheap)."""
    return {name: metacoop.load_scenario(name) for name in ("classaction", "luzzi1998", "invasion2d")}


# --------------------------------------------------------------------------- expand_grid


def test_expand_grid_order_keys_as_given_last_key_fastest():
    grid = {"b": [1, 2], "a": ["x", "y", "z"]}
    combos = expand_grid(grid)
    assert combos == [
        {"b": 1, "a": "x"}, {"b": 1, "a": "y"}, {"b": 1, "a": "z"},
        {"b": 2, "a": "x"}, {"b": 2, "a": "y"}, {"b": 2, "a": "z"},
    ]
    assert all(list(c) == ["b", "a"] for c in combos), "keys keep the grid's order, not sorted"


def test_expand_grid_count_is_product_of_lengths():
    grid = {"a": [1, 2, 3], "b": (True, False), "c": [0.1, 0.2, 0.3, 0.4], "d": ["only"]}
    assert len(expand_grid(grid)) == 3 * 2 * 4 * 1


def test_expand_grid_docstring_example_and_empty_grid():
    assert expand_grid({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert expand_grid({}) == [{}]


@pytest.mark.parametrize("bad", ["abc", b"abc", [], (), 3, None, {"x": 1}, {1, 2}])
def test_expand_grid_rejects_non_lists_naming_the_key(bad):
    with pytest.raises(InputError, match=r"^--vary the_key = .*: a non-empty list of values"):
        expand_grid({"ok": [1, 2], "the_key": bad})


@pytest.mark.parametrize("change, path", [
    ({"replicates": "3"}, "--replicates"), ({"replicates": 2.5}, "--replicates"),
    ({"replicates": 0}, "--replicates"),
    ({"seed": -1}, "--seed"), ({"seed": "x"}, "--seed"),
    ({"vary": ["duration_h=1"]}, "--vary"), ({"vary": {"duration_h": "12"}}, "--vary duration_h"),
    ({"base_overrides": ["duration_h=1"]}, "--set"), ({"config": 3}, "config"),
])
def test_build_design_refuses_arguments_of_the_wrong_kind(change, path):
    """BUG: a replicate count of '3' raised TypeError, 2.5 or a seed of -1 or 'x' made a Design that
    failed later, a vary or base_overrides given as a list raised ValueError, a config given as a string
    raised AttributeError."""
    from metacoop.experiments import build_design

    args = {"kind": "sweep", "scenario": "invasion2d", "config": "invasion2d", "replicates": 2, "seed": 1,
            "vary": {"duration_h": [1.0, 2.0]}, "base_overrides": None, **change}
    with pytest.raises(InputError) as ei:
        build_design(**args)
    assert [p.path for p in ei.value.problems] == [path]


_values = st.one_of(st.integers(-1000, 1000), st.text(max_size=4), st.booleans(),
                    st.floats(allow_nan=False))


@SETTINGS
@given(st.dictionaries(st.text(min_size=1, max_size=6),
                       st.lists(_values, min_size=1, max_size=4, unique_by=repr), max_size=4))
def test_expand_grid_every_combination_exactly_once(grid):
    combos = expand_grid(grid)
    keys = list(grid)
    assert all(list(c) == keys for c in combos)
    # Compare by repr so 1, 1.0 and True (equal in Python) stay distinct values.
    seen = Counter(tuple(repr(c[k]) for k in keys) for c in combos)
    expected = {tuple(repr(v) for v in combo) for combo in itertools.product(*grid.values())}
    assert set(seen) == expected
    assert all(count == 1 for count in seen.values())
    assert len(combos) == math.prod(len(v) for v in grid.values())
    # Last key fastest: the combination index is the mixed-radix number of the value indices.
    for idx, combo in enumerate(combos):
        rest, digits = idx, []
        for k in reversed(keys):
            rest, d = divmod(rest, len(grid[k]))
            digits.append(d)
        picked = [repr(grid[k][d]) for k, d in zip(keys, reversed(digits), strict=True)]
        assert [repr(combo[k]) for k in keys] == picked


# --------------------------------------------------------------------------- replicate seeds


def _reference_seeds(root: int, n: int) -> list[int]:
    return [int(c.generate_state(1, np.uint64)[0] >> 1) for c in np.random.SeedSequence(root).spawn(n)]


@pytest.mark.parametrize("root", [0, 1, 1998, 2008, 2**32 + 7, 2**63 - 1, 2**80 + 3])
def test_replicate_seeds_are_spawned_seedsequence_states(root):
    seeds = replicate_seeds(root, 12)
    assert seeds == _reference_seeds(root, 12)
    assert all(type(s) is int for s in seeds), "plain ints (they go to JSON and to load_scenario)"
    assert all(0 <= s < 2**63 for s in seeds)
    assert len(set(seeds)) == 12


def test_replicate_seeds_zero_replicates():
    assert replicate_seeds(5, 0) == []


@pytest.mark.parametrize("root, n, path", [(1, -3, "replicates"), (-1, 2, "seed"), (1.5, 2, "seed"),
                                           (1, "2", "replicates"), (True, 2, "seed")])
def test_replicate_seeds_refuse_what_is_not_a_whole_number_at_least_0(root, n, path):
    """BUG: ``replicate_seeds(1, -3)`` raised OverflowError from NumPy's SeedSequence."""
    with pytest.raises(InputError) as ei:
        replicate_seeds(root, n)
    (problem,) = ei.value.problems
    assert problem.path == path and "at least 0" in problem.allowed


@SETTINGS
@given(st.integers(0, 2**64), st.integers(0, 40), st.integers(0, 40))
def test_replicate_seeds_prefix_stable(root, k, extra):
    """Adding replicates to an experiment keeps the seeds of the ones already run."""
    assert replicate_seeds(root, k + extra)[:k] == replicate_seeds(root, k)


@SETTINGS
@given(st.integers(0, 2**64), st.integers(0, 2**64))
def test_replicate_seeds_differ_between_roots(a, b):
    if a == b:
        assert replicate_seeds(a, 8) == replicate_seeds(b, 8)
    else:
        sa, sb = replicate_seeds(a, 8), replicate_seeds(b, 8)
        assert sa != sb
        assert not set(sa) & set(sb), "63-bit seeds from distinct roots should not collide"


def test_replicate_seeds_below_2_pow_63_over_many():
    seeds = np.array(replicate_seeds(20080101, 5000), dtype=object)
    assert all(0 <= s < 2**63 for s in seeds)
    # Top bit of the 64-bit state is dropped, the next one should be a fair coin (binomial, 5000 draws:
    # sd = 35; 4 sd bound).
    top = sum((s >> 62) & 1 for s in seeds)
    assert abs(top - 2500) < 4 * math.sqrt(5000 * 0.25)


# --------------------------------------------------------------------------- Design


def _design(**kw) -> Design:
    conds = (Condition("all_on", {"mechanisms.niche.enabled": True}, {"off": "none"}),
             Condition("no_niche", {"mechanisms.niche.enabled": False}, {"off": "niche"}),
             Condition("frac-0.25", {"primary.initial_tumour.clone_fractions": {"a": 0.25, "b": 0.75}},
                       {"a_fraction": 0.25}))
    args = dict(kind="ablation", scenario="classaction", conditions=conds, replicates=5, seed=2008,
                base_overrides={"duration_h": 48.0, "output.record_every_h": 6.0}, reference="all_on")
    args.update(kw)
    return Design(**args)


def test_design_tasks_common_random_numbers():
    d = _design()
    tasks = d.tasks()
    assert len(tasks) == len(d.conditions) * d.replicates
    assert d.seeds() == replicate_seeds(2008, 5)
    # Condition-major, replicate index ascending.
    assert [(c.name, i) for c, i, _ in tasks] == [(c.name, i) for c in d.conditions for i in range(5)]
    by_rep: dict[int, set[int]] = {}
    for _c, i, seed in tasks:
        by_rep.setdefault(i, set()).add(seed)
    assert all(len(s) == 1 for s in by_rep.values()), "replicate i has one seed in every condition"
    assert [by_rep[i].pop() for i in range(5)] == d.seeds()
    assert len(set(d.seeds())) == 5, "replicates within a condition differ"


def test_design_tasks_seeds_prefix_stable_when_replicates_grow():
    small, big = _design(replicates=3), _design(replicates=7)
    assert {(c.name, i, s) for c, i, s in small.tasks()} <= {(c.name, i, s) for c, i, s in big.tasks()}


def test_design_json_roundtrip_exact():
    d = _design()
    assert Design.from_json(d.to_json()) == d
    text = json.dumps(d.to_json())
    assert Design.from_json(json.loads(text)) == d
    assert json.dumps(Design.from_json(json.loads(text)).to_json()) == text


def test_design_json_roundtrip_without_reference_and_defaults():
    d = _design(kind="sweep", reference=None, base_overrides={})
    back = Design.from_json(json.loads(json.dumps(d.to_json())))
    assert back == d and back.reference is None


@pytest.mark.parametrize("kind,scenario", [("ablation", "classaction"), ("mixing", "classaction"),
                                           ("waves", "classaction"), ("sweep", "classaction")])
def test_built_design_json_roundtrip_exact(configs, kind, scenario):
    vary = None
    if kind == "sweep":
        vary = {"duration_h": [24.0, 48.5], "mechanisms.niche.enabled": [True, False]}
    d = build_design(kind, scenario, configs[scenario], 3, 77, vary=vary, base_overrides={"dt_h": 0.025})
    assert Design.from_json(d.to_json()) == d
    assert Design.from_json(json.loads(json.dumps(d.to_json()))) == d


def test_injection_design_json_reloads_to_same_configs(configs):
    """What experiment.json gives back loads to the very same configurations."""
    d = build_design("injection", "luzzi1998", configs["luzzi1998"], 2, 1)
    back = Design.from_json(json.loads(json.dumps(d.to_json())))
    assert [c.name for c in back.conditions] == [c.name for c in d.conditions]
    for a, b in zip(d.conditions, back.conditions, strict=True):
        built, reread = (metacoop.load_scenario("luzzi1998", c.overrides) for c in (a, b))
        assert built == reread


def test_injection_design_json_roundtrip_exact(configs):
    d = build_design("injection", "luzzi1998", configs["luzzi1998"], 2, 1)
    assert Design.from_json(json.loads(json.dumps(d.to_json()))) == d


# --------------------------------------------------------------------------- condition_name


def test_condition_name_examples():
    assert condition_name({}) == "base"
    assert condition_name({"metastatic_fraction": 0.25}) == "metastatic_fraction-0.25"
    assert condition_name({"cells": 1000, "cluster_size": 4}) == "cells-1000+cluster_size-4"
    assert condition_name({"mechanisms.niche.enabled": False}) == "enabled-False", "last part of a dotted key"
    assert condition_name({"x": 1e-7}) == "x-1e-07"
    assert condition_name({"x": "a b/c=d"}) == "x-a_b_c_d"


_any_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)


@SETTINGS
@given(st.dictionaries(st.text(max_size=30), _any_value, min_size=1, max_size=6))
def test_condition_name_is_filesystem_and_hive_safe(values):
    name = condition_name(values)
    assert SAFE_NAME.fullmatch(name), name
    assert not set(name) & set("=/\\ \t\n%:*?\"'<>|")
    assert name not in {"", ".", ".."}
    assert len(name) <= 120
    assert condition_name(values) == name, "stable"
    assert condition_name(dict(values)) == name


def test_condition_name_stable_under_key_order_inside_dict_values():
    assert condition_name({"k": {"a": 1, "b": 2}}) == condition_name({"k": {"b": 2, "a": 1}})


_typical = st.one_of(st.integers(-10**6, 10**6), st.booleans(),
                     st.floats(allow_nan=False, allow_infinity=False),
                     st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8))


@SETTINGS
@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True),
                       st.lists(_typical, min_size=1, max_size=4, unique_by=str), min_size=1, max_size=3))
def test_condition_name_distinct_for_distinct_typical_values(grid):
    names = [condition_name(c) for c in expand_grid(grid)]
    assert len(set(names)) == len(names), names


# --------------------------------------------------------------------------- build_design


def test_ablated_is_cooperation_without_diversification():
    assert ABLATED == tuple(m for m in COOPERATION if m != "diversification")
    assert "diversification" not in ABLATED and len(ABLATED) == len(COOPERATION) - 1


def test_ablation_design(configs):
    d = build_design("ablation", "classaction", configs["classaction"], 4, 11,
                     base_overrides={"duration_h": 24.0})
    assert (d.kind, d.scenario, d.replicates, d.seed, d.reference) == \
        ("ablation", "classaction", 4, 11, "all_on")
    assert d.base_overrides == {"duration_h": 24.0}
    names = [c.name for c in d.conditions]
    assert names == ["all_on", *(f"no_{m}" for m in ABLATED), "all_off"]
    keys = {f"mechanisms.{m}.enabled" for m in ABLATED}
    by = {c.name: c for c in d.conditions}
    assert by["all_on"].overrides == dict.fromkeys(sorted(keys), True)
    assert by["all_off"].overrides == dict.fromkeys(sorted(keys), False)
    for m in ABLATED:
        ov = by[f"no_{m}"].overrides
        assert set(ov) == keys
        assert [k for k, v in ov.items() if v is False] == [f"mechanisms.{m}.enabled"]
        assert by[f"no_{m}"].values == {"off": m}
    assert "mechanisms.diversification.enabled" not in set().union(*(c.overrides for c in d.conditions))


def test_ablation_conditions_load_with_that_mechanism_off(configs):
    base = {"duration_h": 24.0}
    d = build_design("ablation", "classaction", configs["classaction"], 2, 3, base_overrides=base)
    diversification = configs["classaction"].mechanisms.diversification.enabled
    for c in d.conditions:
        cfg = metacoop.load_scenario("classaction", {**d.base_overrides, **c.overrides})
        off = {m for m in ABLATED if not getattr(cfg.mechanisms, m).enabled}
        expected = {"all_on": set(), "all_off": set(ABLATED)}.get(c.name, {c.name.removeprefix("no_")})
        assert off == expected, c.name
        assert cfg.mechanisms.diversification.enabled == diversification, "left as set"
        assert cfg.duration_h == 24.0


def test_mixing_design(configs):
    cfg = configs["classaction"]
    first, second = cfg.clones[0].name, cfg.clones[1].name
    d = build_design("mixing", "classaction", cfg, 2, 5)
    assert d.reference is None and len(d.conditions) == len(MIXING_FRACTIONS)
    fractions = []
    for c, f in zip(d.conditions, MIXING_FRACTIONS, strict=True):
        (key, cf), = c.overrides.items()
        assert key == "primary.initial_tumour.clone_fractions"
        assert list(cf) == [first, second]
        assert cf[first] == f
        assert math.isclose(sum(cf.values()), 1.0, abs_tol=1e-12)
        assert c.values == {f"{first}_fraction": f}
        assert c.name == f"{first}_fraction-{f:g}" and SAFE_NAME.fullmatch(c.name)
        fractions.append(cf[first])
    assert min(fractions) == 0.0 and max(fractions) == 1.0 and fractions == sorted(fractions)


def test_mixing_conditions_load_with_stated_fractions(configs):
    d = build_design("mixing", "classaction", configs["classaction"], 2, 5,
                     vary={"fraction": [0.0, 0.3, "0.7", 1.0 / 3.0, 1]})
    assert len(d.conditions) == 5
    for c in d.conditions:
        cfg = metacoop.load_scenario("classaction", {**d.base_overrides, **c.overrides})
        cf = cfg.primary.initial_tumour.clone_fractions
        assert set(cf) == {"metastatic", "nonmetastatic"}
        assert cf["metastatic"] == c.values["metastatic_fraction"]
        assert math.isclose(sum(cf.values()), 1.0, abs_tol=1e-9)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_mixing_fraction_out_of_range(configs, bad):
    with pytest.raises(InputError) as exc:
        build_design("mixing", "classaction", configs["classaction"], 2, 5, vary={"fraction": [0.5, bad]})
    assert problem_paths(exc) == ["--vary fraction"]


def test_mixing_needs_two_clones(configs):
    with pytest.raises(InputError, match="clones") as exc:
        build_design("mixing", "invasion2d", configs["invasion2d"], 2, 5)
    assert problem_paths(exc) == ["clones"]


def test_waves_design(configs):
    d = build_design("waves", "classaction", configs["classaction"], 3, 9)
    assert [c.name for c in d.conditions] == ["waves", "continuous"] and d.reference == "waves"
    loaded = [metacoop.load_scenario("classaction", c.overrides).mechanisms.shedding_waves.enabled
              for c in d.conditions]
    assert loaded == [True, False]


def test_injection_needs_injections(configs):
    with pytest.raises(InputError, match="injection") as exc:
        build_design("injection", "classaction", configs["classaction"], 2, 5)
    assert problem_paths(exc) == ["injections"]


def test_injection_design_default_grid(configs):
    d = build_design("injection", "luzzi1998", configs["luzzi1998"], 2, 5)
    assert d.reference is None
    expected = list(itertools.product(INJECTION_CELLS, INJECTION_CLUSTER_SIZES))
    assert len(d.conditions) == len(INJECTION_CELLS) * len(INJECTION_CLUSTER_SIZES)
    for c, (cells, size) in zip(d.conditions, expected, strict=True):
        assert c.overrides == {"injections.0.cells": cells, "injections.0.cluster_sizes": {str(size): 1.0}}
        assert c.values == {"cells": cells, "cluster_size": size}
        assert c.name == condition_name({"cells": cells, "cluster_size": size})
        inj = metacoop.load_scenario("luzzi1998", c.overrides).injections[0]
        assert inj.cells == cells and inj.cluster_sizes == {size: 1.0}
        assert inj.vessel == configs["luzzi1998"].injections[0].vessel, "the rest of the injection is kept"


def test_injection_design_custom_grid(configs):
    d = build_design("injection", "luzzi1998", configs["luzzi1998"], 2, 5,
                     vary={"cells": [500, 2000, 8000], "cluster_size": [1, 2]})
    assert [(c.values["cells"], c.values["cluster_size"]) for c in d.conditions] == \
        list(itertools.product([500, 2000, 8000], [1, 2]))


@pytest.mark.parametrize("vary", [None, {}])
def test_sweep_needs_vary(configs, vary):
    with pytest.raises(InputError, match="--vary") as exc:
        build_design("sweep", "classaction", configs["classaction"], 2, 5, vary=vary)
    assert problem_paths(exc) == ["--vary"]


def test_sweep_design(configs):
    vary = {"mechanisms.niche.enabled": [True, False], "duration_h": [24.0, 48.0, 96.0]}
    d = build_design("sweep", "classaction", configs["classaction"], 2, 5, vary=vary)
    assert d.reference is None
    assert [c.overrides for c in d.conditions] == expand_grid(vary)
    assert [c.values for c in d.conditions] == expand_grid(vary)
    assert [c.name for c in d.conditions] == [condition_name(v) for v in expand_grid(vary)]
    for c in d.conditions:
        cfg = metacoop.load_scenario("classaction", c.overrides)
        assert cfg.mechanisms.niche.enabled == c.values["mechanisms.niche.enabled"]
        assert cfg.duration_h == c.values["duration_h"]


def test_sweep_names_that_collide_are_refused(configs):
    with pytest.raises(InputError) as exc:
        build_design("sweep", "classaction", configs["classaction"], 2, 5, vary={"a.label": ["p q", "p/q"]})
    assert problem_paths(exc) == ["--vary"]


def test_unknown_kind_lists_the_kinds(configs):
    with pytest.raises(InputError) as exc:
        build_design("ablations", "classaction", configs["classaction"], 2, 5)
    assert problem_paths(exc) == ["kind"]
    for kind in KINDS:
        assert kind in str(exc.value)


@pytest.mark.parametrize("replicates", [0, -1])
def test_replicates_below_one(configs, replicates):
    with pytest.raises(InputError) as exc:
        build_design("ablation", "classaction", configs["classaction"], replicates, 5)
    assert problem_paths(exc) == ["--replicates"]


def test_build_design_copies_base_overrides(configs):
    base = {"duration_h": 24.0}
    d = build_design("waves", "classaction", configs["classaction"], 1, 5, base_overrides=base)
    base["duration_h"] = 1.0
    assert d.base_overrides == {"duration_h": 24.0}


@pytest.mark.parametrize("kind,scenario,vary", [
    ("ablation", "classaction", None),
    ("mixing", "classaction", None),
    ("waves", "classaction", None),
    ("injection", "luzzi1998", None),
    ("sweep", "classaction", {"mechanisms.paracrine.enabled": [True, False], "dt_h": [0.05, 0.025]}),
    ("sweep", "luzzi1998", {"injections.0.cells": [100, 5000]}),
])
def test_every_condition_loads(configs, kind, scenario, vary):
    base = {"duration_h": 36.0}
    d = build_design(kind, scenario, configs[scenario], 2, 13, vary=vary, base_overrides=base)
    names = [c.name for c in d.conditions]
    assert len(set(names)) == len(names) and all(SAFE_NAME.fullmatch(n) for n in names)
    for c in d.conditions:
        cfg = metacoop.load_scenario(scenario, {**d.base_overrides, **c.overrides})
        assert cfg.duration_h == 36.0


# --------------------------------------------------------------------------- holm


def _holm_reference(p):
    """Holm (1979) step-down, written out: adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))."""
    p = list(p)
    idx = [i for i, v in enumerate(p) if not math.isnan(v)]
    m = len(idx)
    srt = sorted(idx, key=lambda i: p[i])
    out = [math.nan] * len(p)
    for pos, i in enumerate(srt):
        out[i] = max(min(1.0, (m - j) * p[srt[j]]) for j in range(pos + 1))
    return out


@pytest.mark.parametrize("p,expected", [
    ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
    ([0.01, math.nan, 0.04, 0.03, math.nan, 0.005], [0.03, math.nan, 0.06, 0.06, math.nan, 0.02]),
    ([0.9, 0.2, 0.4], [0.9, 0.6, 0.8]),
    ([0.5, 0.6], [1.0, 1.0]),
    ([0.3, 0.8], [0.6, 0.8]),
    ([0.02, 0.02], [0.04, 0.04]),
    ([0.04], [0.04]),
    ([math.nan, 0.04], [math.nan, 0.04]),
    ([math.nan, math.nan], [math.nan, math.nan]),
    ([], []),
])
def test_holm_hand_computed(p, expected):
    got = stats.holm(np.array(p))
    assert got.shape == (len(p),)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0, equal_nan=True)


@SETTINGS
@given(st.lists(st.one_of(st.floats(0.0, 1.0), st.just(math.nan)), max_size=12))
def test_holm_properties(p):
    p = np.array(p, dtype=float)
    adj = stats.holm(p)
    np.testing.assert_allclose(adj, _holm_reference(p), rtol=1e-12, atol=1e-300, equal_nan=True)
    nan = np.isnan(p)
    assert np.array_equal(np.isnan(adj), nan), "NaN stays NaN, nothing else becomes NaN"
    ok = ~nan
    assert np.all(adj[ok] >= p[ok]) and np.all(adj[ok] <= 1.0)
    order = np.argsort(p[ok], kind="stable")
    assert np.all(np.diff(adj[ok][order]) >= 0), "monotone in the sorted order"
    # NaNs are not counted: holm on the finite values alone gives the same numbers.
    np.testing.assert_allclose(stats.holm(p[ok]), adj[ok], rtol=0, atol=0)


# --------------------------------------------------------------------------- Cliff's delta


def _cliffs_brute(x, y):
    gt = sum(1 for a in x for b in y if a > b)
    lt = sum(1 for a in x for b in y if a < b)
    return (gt - lt) / (len(x) * len(y))


_samples = st.lists(st.integers(-5, 5) | st.floats(-100, 100), min_size=1, max_size=15)


@SETTINGS
@given(_samples, _samples)
def test_cliffs_delta_brute_force_and_antisymmetric(x, y):
    d = stats.cliffs_delta(np.array(x, float), np.array(y, float))
    assert d == pytest.approx(_cliffs_brute(x, y), abs=1e-12)
    assert stats.cliffs_delta(np.array(y, float), np.array(x, float)) == pytest.approx(-d, abs=1e-12)
    assert -1.0 <= d <= 1.0


def test_cliffs_delta_extremes_and_empty():
    assert stats.cliffs_delta(np.array([5.0, 6, 7]), np.array([1.0, 2, 4.99])) == 1.0
    assert stats.cliffs_delta(np.array([1.0, 2]), np.array([3.0, 4, 5])) == -1.0
    assert stats.cliffs_delta(np.array([2.0, 2]), np.array([2.0, 2, 2])) == 0.0
    assert math.isnan(stats.cliffs_delta(np.array([]), np.array([1.0])))
    assert math.isnan(stats.cliffs_delta(np.array([1.0]), np.array([])))


# --------------------------------------------------------------------------- bootstrap CI


def test_bootstrap_ci_coverage_of_normal_mean():
    """Coverage of the 95 % percentile interval for n = 30 normal samples, 300 trials.

    The percentile bootstrap of the mean uses the plug-in (ddof = 0) spread and normal-like
    quantiles, so for small n it is a little too narrow: its coverage at n = 30 is about
    93-94 %, not 95 %. With 300 trials the binomial sd of the coverage is ~0.014, so
    [0.88, 0.99] is about 4 sd on either side of 0.935 and still rejects a badly wrong interval
    (e.g. a 90 % or a 99 % one, or a CI of the median of skewed data).
    """
    rng = np.random.default_rng(123)
    mu, sigma, trials = 3.0, 2.0, 300
    covered, widths = 0, []
    for _ in range(trials):
        x = rng.normal(mu, sigma, 30)
        lo, hi = stats.bootstrap_ci(x)
        assert lo <= x.mean() <= hi
        covered += lo <= mu <= hi
        widths.append(hi - lo)
    assert 0.88 <= covered / trials <= 0.99
    # Mean width close to 2 * 1.96 * sigma / sqrt(n) (shrunk by sqrt((n - 1) / n) and by E[s] < sigma).
    assert np.mean(widths) == pytest.approx(2 * 1.96 * sigma / math.sqrt(30), rel=0.08)


def test_bootstrap_ci_reproducible_and_level():
    x = np.random.default_rng(7).exponential(size=25)
    assert stats.bootstrap_ci(x) == stats.bootstrap_ci(x.copy())
    lo95, hi95 = stats.bootstrap_ci(x)
    lo80, hi80 = stats.bootstrap_ci(x, level=0.8)
    assert lo95 < lo80 < x.mean() < hi80 < hi95


def test_bootstrap_ci_degenerate_and_too_small():
    assert stats.bootstrap_ci(np.full(6, 2.5)) == (2.5, 2.5)
    assert stats.bootstrap_ci(np.array([0.0, 0.0])) == (0.0, 0.0)
    for x in ([], [4.0]):
        lo, hi = stats.bootstrap_ci(np.array(x))
        assert math.isnan(lo) and math.isnan(hi)


# --------------------------------------------------------------------------- summarize


def _tidy(data: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    rows = []
    for (cond, obs), values in data.items():
        for r, v in enumerate(values):
            rows.append({"condition": cond, "replicate": r, "seed": 1000 + r, "observable": obs, "value": v})
    return pd.DataFrame(rows, columns=["condition", "replicate", "seed", "observable", "value"])


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(42)
    nan = math.nan
    data = {
        ("all_on", "metastases"): list(rng.poisson(8, 10).astype(float)),
        ("no_niche", "metastases"): list(rng.poisson(4, 10).astype(float)),
        ("all_off", "metastases"): list(rng.poisson(1, 10).astype(float)),
        ("all_on", "first_metastasis_h"): [12.0, 30.5, nan, 18.2, 22.0, nan, 40.0, 15.5],
        ("no_niche", "first_metastasis_h"): [nan, 55.0, 61.5, nan, nan, 48.0, 70.25, 52.0],
        ("all_off", "first_metastasis_h"): [nan] * 8,
    }
    return data, _tidy(data)


def _finite(v):
    a = np.asarray(v, float)
    return a[~np.isnan(a)]


def test_summarize_table(synthetic):
    data, reps = synthetic
    order = ["all_on", "no_niche", "all_off"]
    table = stats.summarize(reps, reference="all_on", order=order)
    assert list(table.columns) == stats.COLUMNS
    assert list(zip(table["observable"], table["condition"], strict=True)) == \
        [(o, c) for o in ("first_metastasis_h", "metastases") for c in order]
    for obs in ("first_metastasis_h", "metastases"):
        block = table[table["observable"] == obs].set_index("condition")
        ref = _finite(data[("all_on", obs)])
        for cond in order:
            x = _finite(data[(cond, obs)])
            row = block.loc[cond]
            assert row["n"] == x.size
            if x.size == 0:
                assert all(math.isnan(row[k]) for k in stats.COLUMNS[3:]), (obs, cond)
                continue
            assert row["mean"] == pytest.approx(x.mean(), rel=1e-12)
            assert row["median"] == pytest.approx(np.median(x), rel=1e-12)
            assert row["sd"] == pytest.approx(np.std(x, ddof=1), rel=1e-12)
            assert (row["ci_low"], row["ci_high"]) == stats.bootstrap_ci(x)
            assert row["ci_low"] <= row["mean"] <= row["ci_high"]
            if cond == "all_on":
                assert all(math.isnan(row[k]) for k in ("effect", "cliffs_delta", "p_value", "p_holm"))
            else:
                assert row["effect"] == pytest.approx(x.mean() - ref.mean(), rel=1e-12)
                assert row["cliffs_delta"] == pytest.approx(_cliffs_brute(x, ref), abs=1e-12)
                p = sps.mannwhitneyu(x, ref, alternative="two-sided").pvalue
                assert row["p_value"] == pytest.approx(p, rel=1e-12)
        np.testing.assert_allclose(block["p_holm"].to_numpy(float),
                                   stats.holm(block["p_value"].to_numpy(float)), equal_nan=True)
    # The hand check on the effect's sign: switching the niche off lowers the count and delays the first one.
    m = table.set_index(["observable", "condition"])
    assert m.loc[("metastases", "no_niche"), "effect"] < 0
    assert m.loc[("first_metastasis_h", "no_niche"), "effect"] > 0


def test_summarize_nan_excluded_counts_finite(synthetic):
    _, reps = synthetic
    table = stats.summarize(reps, reference="all_on", order=["all_on", "no_niche", "all_off"])
    n = table.set_index(["observable", "condition"])["n"]
    assert n[("first_metastasis_h", "all_on")] == 6
    assert n[("first_metastasis_h", "no_niche")] == 5
    assert n[("first_metastasis_h", "all_off")] == 0
    assert n[("metastases", "all_off")] == 10
    assert table["n"].dtype.kind == "i"


def test_summarize_default_order_and_no_reference(synthetic):
    _, reps = synthetic
    table = stats.summarize(reps)
    assert list(table["condition"].unique()) == sorted(["all_on", "no_niche", "all_off"])
    assert table[["effect", "cliffs_delta", "p_value", "p_holm"]].isna().all().all()


def test_summarize_identical_constant_samples_p_is_one():
    reps = _tidy({("ref", "x"): [3.0] * 5, ("same", "x"): [3.0] * 4, ("other", "x"): [4.0] * 4})
    table = stats.summarize(reps, reference="ref").set_index("condition")
    assert table.loc["same", "p_value"] == 1.0 and table.loc["same", "effect"] == 0.0
    assert table.loc["same", "cliffs_delta"] == 0.0
    assert table.loc["other", "cliffs_delta"] == 1.0 and table.loc["other", "effect"] == 1.0


def test_summarize_empty():
    table = stats.summarize(_tidy({}), reference="all_on")
    assert list(table.columns) == stats.COLUMNS and len(table) == 0


def test_summarize_under_the_null():
    """Every condition drawn from the reference's distribution: p-values ~ U(0, 1).

    50 observables x 8 conditions (10 replicates, skewed lognormal values) against a reference of
    30. Within an observable the 8 p-values share the reference sample, so they are correlated;
    across observables they are independent. Hence uniformity is checked with a KS test on one
    p-value per observable (condition ``o mod 8`` of observable ``o``, 50 i.i.d. values,
    threshold p > 1e-3), and the pooled 400 only for loose moments: mean in [0.4, 0.6] and the
    fraction below 0.05 in [0.01, 0.10] (Mann-Whitney's normal approximation with continuity
    correction is slightly conservative). Holm-adjusted values are >= raw ones and keep the
    family-wise error per observable near 5 %: at most 10 of 50 observables may show any
    p_holm < 0.05 (binomial(50, 0.05) exceeds 10 with probability < 1e-3).
    """
    rng = np.random.default_rng(2008)
    conds = [f"c{i}" for i in range(8)]
    data = {}
    for o in range(50):
        obs = f"obs{o:02d}"
        data[("ref", obs)] = list(rng.lognormal(size=30))
        for c in conds:
            data[(c, obs)] = list(rng.lognormal(size=10))
    table = stats.summarize(_tidy(data), reference="ref", order=["ref", *conds])
    compared = table[table["condition"] != "ref"]
    assert compared["p_value"].notna().all() and len(compared) == 400
    picked = [g.set_index("condition").loc[f"c{i % 8}", "p_value"]
              for i, (_, g) in enumerate(compared.groupby("observable", sort=True))]
    assert sps.kstest(picked, "uniform").pvalue > 1e-3
    p = compared["p_value"].to_numpy(float)
    assert 0.4 <= p.mean() <= 0.6
    assert 0.01 <= (p < 0.05).mean() <= 0.10
    p_holm = compared["p_holm"].to_numpy(float)
    assert np.all(p_holm >= p) and np.all(p_holm <= 1.0)
    assert compared.groupby("observable")["p_holm"].min().lt(0.05).sum() <= 10
    assert table.loc[table["condition"] == "ref", "p_holm"].isna().all()


@pytest.mark.parametrize("kind, scenario, vary", [
    ("mixing", "classaction", {"fractions": [0.5]}),
    ("ablation", "classaction", {"fraction": [0.5]}),
    ("injection", "luzzi1998", {"cell": [10]}),
])
def test_keys_a_kind_does_not_vary_are_refused(kind, scenario, vary):
    cfg = metacoop.load_scenario(scenario)
    key = next(iter(vary))
    with pytest.raises(InputError, match=f"--vary {key}.*use a sweep"):
        build_design(kind, scenario, cfg, 1, 1, vary)


def test_a_grid_file_gives_dotted_keys_and_refuses_what_is_not_an_array(tmp_path):
    from metacoop.experiments.design import read_grid

    f = tmp_path / "g.toml"
    f.write_text('"clones.metastatic.cohesion" = [0.5, 1.0]\n[mechanisms.niche]\narrest_gain = [0, 2]\n',
                 encoding="utf-8")
    grid = read_grid(f)
    assert grid == {"clones.metastatic.cohesion": [0.5, 1.0], "mechanisms.niche.arrest_gain": [0, 2]}
    cfg = metacoop.load_scenario("classaction")
    design = build_design("sweep", "classaction", cfg, 1, 1, grid)
    assert len(design.conditions) == 4
    for text, match in (('x = 3\n', "--grid x"), ('x = []\n', "--grid x"), ("x = [", "cannot be read"),
                        ("", "holds no array")):
        f.write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=match):
            read_grid(f)
