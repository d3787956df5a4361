"""Properties of scenario loading.

* Valid overrides of numeric keys survive ``to_toml`` -> file -> ``load_scenario`` unchanged.
* Whatever garbage is put under whatever key, ``load_scenario`` either accepts it or raises
  :class:`metacoop.InputError` (a message for the user), never any other exception.
"""

import math
import tempfile
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metacoop
from metacoop.errors import InputError

DEFAULT = metacoop.load_scenario("invasion2d")
RESOLVED = tomllib.loads(metacoop.to_toml(DEFAULT))
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def floats(lo, hi, **kw):
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False, **kw)


# Ranges the schema accepts and that keep the default scenario stable, small and in memory:
# dt_h <= 0.1 with spacing >= 10 µm and motility <= the defaults keeps movement stable; fixed
# field substeps >= 50 keep diffusion stable for D <= 1e4 µm²/h.
NUMERIC = {
    "seed": st.integers(0, 2**63 - 1),
    "duration_h": floats(1e-3, 500.0),
    "dt_h": floats(1e-3, 0.1),
    "output.record_every_h": floats(0.1, 100.0),
    "output.snapshot_every_h": floats(12.0, 1e3),
    "clones.tumour.cycle_cv": floats(0.01, 1.0),
    "clones.tumour.doubling_time_h.epithelial": st.floats(min_value=0.0, exclude_min=True, allow_nan=False),
    "clones.tumour.doubling_time_h.mesenchymal": st.floats(min_value=1e-300, allow_nan=False),
    "clones.tumour.death_rate_per_h.epithelial": floats(0.0, 1e6),
    "clones.tumour.death_rate_per_h.mesenchymal": floats(0.0, 1e300),
    "clones.tumour.diffusion_um2_per_h.epithelial": floats(0.0, 18.0),
    "clones.0.diffusion_um2_per_h.mesenchymal": floats(0.0, 36.0),
    "clones.tumour.haptotaxis_um2_per_h.epithelial": floats(0.0, 180.0),
    "clones.tumour.mmp2_secretion_per_h.mesenchymal": floats(0.0, 1e3),
    "clones.tumour.mt1mmp_degradation_per_h.mesenchymal": floats(0.0, 1e3),
    "clones.tumour.emt_rate_per_h": floats(0.0, 1e3),
    "clones.tumour.met_rate_per_h": floats(0.0, 1e-3),
    "primary.lattice.spacing_um": floats(10.0, 1e3),
    "primary.lattice.capacity_cells_per_point": st.integers(1, 255),
    "primary.initial_tumour.cells": st.integers(0, 201 * 201),
    "primary.initial_tumour.mesenchymal_fraction": floats(0.0, 1.0),
    "primary.vessels.normal": st.integers(0, 1000),
    "primary.vessels.ruptured": st.integers(0, 1000),
    "primary.vessels.min_distance_um": floats(0.0, 900.0),
    "primary.fields.ecm.initial": floats(0.0, 1e6),
    "primary.fields.mmp2.diffusion_um2_per_h": floats(0.0, 1e4),
    "primary.fields.mmp2.decay_per_h": floats(0.0, 1e3),
    "primary.fields.mmp2.substeps": st.integers(50, 100_000),
    "mechanisms.ecm_degradation.mmp2_rate_per_h": floats(0.0, 1e3),
    "mechanisms.intravasation.rate_per_h": st.floats(min_value=0.0, allow_nan=False),
}


def toml_value(value) -> str:
    """The value as it is typed after ``--set key=``."""
    if isinstance(value, float):
        return "inf" if value == math.inf else repr(value)
    return str(value)


def lookup(dump, dotted):
    node = dump
    for part in dotted.split("."):
        if isinstance(node, list):
            node = node[int(part)] if part.isdigit() else next(x for x in node if x.get("name") == part)
        else:
            node = node[part]
    return node


@st.composite
def numeric_overrides(draw):
    keys = draw(st.lists(st.sampled_from(sorted(NUMERIC)), min_size=1, max_size=6, unique=True))
    return {k: draw(NUMERIC[k]) for k in keys}


@SETTINGS
@given(overrides=numeric_overrides(), as_text=st.booleans())
def test_valid_numeric_overrides_round_trip(overrides, as_text):
    given_overrides = [f"{k}={toml_value(v)}" for k, v in overrides.items()] if as_text else overrides
    cfg = metacoop.load_scenario(RESOLVED, given_overrides)
    dump = cfg.model_dump()
    for key, value in overrides.items():
        got = lookup(dump, key)
        assert got == value and type(got) is type(value), (key, value, got)

    text = metacoop.to_toml(cfg)
    assert tomllib.loads(text) == cfg.model_dump(mode="python", exclude_none=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scenario.toml"
        path.write_text(text, encoding="utf-8")
        again = metacoop.load_scenario(path)
    assert again.model_dump() == dump
    assert metacoop.to_toml(again) == text


# --------------------------------------------------------------------------- garbage


def _paths(node, prefix=""):
    """Every dotted key of the resolved default scenario: tables, list entries and values."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{prefix}{k}"
            out.append(p)
            out += _paths(v, p + ".")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            name = v.get("name") if isinstance(v, dict) else None
            for label in {str(i), name} - {None}:
                p = f"{prefix}{label}"
                out.append(p)
                out += _paths(v, p + ".")
    return out


KNOWN_KEYS = sorted(set(_paths(RESOLVED)))
SEGMENTS = sorted({part for key in KNOWN_KEYS for part in key.split(".")})

toml_scalars = st.one_of(
    st.text(max_size=12),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
)
garbage_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)
keys = st.one_of(
    st.sampled_from(KNOWN_KEYS),
    st.tuples(st.sampled_from(KNOWN_KEYS), st.one_of(st.sampled_from(SEGMENTS), st.text(max_size=6)))
    .map(lambda t: f"{t[0]}.{t[1]}"),
)


@st.composite
def garbage_overrides(draw):
    n = draw(st.integers(1, 2))
    if draw(st.booleans()):
        # as typed on the command line: any text after '=' (read as TOML if it parses)
        return [f"{draw(keys)}={draw(st.text(max_size=20))}" for _ in range(n)]
    return {draw(keys): draw(garbage_values) for _ in range(n)}


@SETTINGS
@given(overrides=garbage_overrides())
def test_garbage_gives_an_input_error_or_a_valid_config(overrides):
    try:
        cfg = metacoop.load_scenario("invasion2d", overrides)
    except InputError as exc:
        assert exc.problems or str(exc)
        for p in exc.problems:
            assert isinstance(str(p), str) and str(p)
    else:
        assert isinstance(cfg, metacoop.SimulationConfig)


@SETTINGS
@given(text=st.text(max_size=200))
def test_garbage_scenario_file_gives_an_input_error_or_a_valid_config(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.toml"
        path.write_text(text, encoding="utf-8")
        try:
            metacoop.load_scenario(path)
        except InputError:
            pass
