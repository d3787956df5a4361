"""Fuzzing ``metacoop run`` with scenario files of random structure, types and values.

Each example starts from a small valid scenario and replaces a few values at
random key paths (existing or new, at any depth) with random data: huge,
negative, NaN and infinite numbers, empty and unicode strings, booleans,
lists and nested tables. ``metacoop run`` must end with status 0 or 2, and
status 2 must come with ``error:`` lines that name a key, never a traceback.
The command runs in-process (typer's CliRunner) so that the examples
take seconds (300 per run); the subprocess path is covered by tests/unit/test_cli.py.
"""

import string

import tomli_w
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import metacoop
from metacoop.cli import app

BASE = metacoop.to_toml(metacoop.load_scenario("invasion2d", overrides={
    "duration_h": 0.3, "primary.lattice.shape": [21, 21], "primary.initial_tumour.cells": 20,
    "primary.vessels.min_distance_um": 0.0, "output.snapshot_every_h": 0.3, "output.record_every_h": 0.3,
}))

scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e308, -1e308, 1e-308, 2**63, float("nan"), float("inf")]),
    st.text(max_size=20),
    st.text(alphabet="éß∂ƒ©˙∆˚¬…æ漢字😀", max_size=8),
    st.booleans(),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.text(string.ascii_letters + "_é", min_size=1, max_size=8), inner, max_size=3),
), max_leaves=8)


def _paths(table, prefix=()):
    for key, value in table.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _paths(value, (*prefix, key))


def _set(table, path, value):
    node = table
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


@st.composite
def scenarios(draw):
    import tomllib

    table = tomllib.loads(BASE)
    known = sorted(_paths(table))
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            path = draw(st.sampled_from(known))
        else:
            path = (*draw(st.sampled_from(known))[:-1], draw(st.text(string.ascii_letters, min_size=1,
                                                                     max_size=8)))
        _set(table, path, draw(values))
    return table


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=scenarios())
def test_run_on_random_scenarios_ends_with_0_or_2_and_a_clear_message(tmp_path_factory, table):
    d = tmp_path_factory.mktemp("fuzz")
    path = d / "scenario.toml"
    try:
        path.write_text(tomli_w.dumps(table), encoding="utf-8")
    except (ValueError, TypeError, UnicodeEncodeError):
        path.write_bytes(b"broken = [\n")  # not representable as TOML: a truncated file instead
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(d / "out"), "--quiet"])
    event(f"exit {result.exit_code}")
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr, repr(result.exception))
    assert "Traceback" not in result.stderr
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines and all(line.startswith("error:") for line in lines), result.stderr
        assert all(" = " in line for line in lines), result.stderr  # each names a key and its value
