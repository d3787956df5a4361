"""Scenario loading through the Python API: presets, overrides, validation messages.

Every bad input must raise :class:`metacoop.InputError` (usually the
:class:`metacoop.ConfigError` subclass) whose problems name the key path, the
value given and what is allowed; never another exception type.
"""

import math
import tomllib
import tracemalloc

import pytest

import metacoop
from metacoop.config import checks
from metacoop.config.loader import parse_override
from metacoop.errors import ConfigError, InputError, Problem

SMALL = {
    "duration_h": 2.0,
    "primary.lattice.shape": [41, 41],
    "primary.initial_tumour.cells": 50,
}


def problems_of(excinfo) -> list[Problem]:
    return list(excinfo.value.problems)


def paths_of(excinfo) -> list[str]:
    return [p.path for p in excinfo.value.problems]


def one_problem(excinfo, path: str) -> Problem:
    matches = [p for p in excinfo.value.problems if p.path == path]
    assert matches, f"no problem at {path!r}; got {paths_of(excinfo)}"
    return matches[0]


# --------------------------------------------------------------------------- presets


def test_builtin_scenarios_have_descriptions():
    names = metacoop.builtin_scenarios()
    assert {"default", "invasion3d"} <= set(names)
    for name, desc in names.items():
        assert desc.strip(), f"built-in scenario {name!r} has no description"


@pytest.mark.parametrize("name", sorted(metacoop.builtin_scenarios()))
def test_presets_validate_and_pass_checks(name):
    cfg = metacoop.load_scenario(name)
    assert cfg.name == name
    assert cfg.n_steps >= 1


def test_none_means_default():
    assert metacoop.load_scenario(None).model_dump() == metacoop.load_scenario("default").model_dump()


@pytest.mark.parametrize("name", ["default", "invasion3d"])
def test_to_toml_round_trips_through_a_file(tmp_path, name):
    cfg = metacoop.load_scenario(name)
    text = metacoop.to_toml(cfg)
    parsed = tomllib.loads(text)
    assert parsed["name"] == name
    path = tmp_path / "resolved.toml"
    path.write_text(text, encoding="utf-8")
    again = metacoop.load_scenario(path)
    assert again.model_dump() == cfg.model_dump()
    # and the resolved text is a fixed point
    assert metacoop.to_toml(again) == text


def test_to_toml_writes_every_default():
    parsed = tomllib.loads(metacoop.to_toml(metacoop.load_scenario("invasion2d")))
    clone = parsed["clones"][0]
    assert clone["doubling_time_h"] == {"epithelial": 33.3, "mesenchymal": 22.2}
    assert set(parsed["mechanisms"]) >= {"movement", "proliferation", "intravasation"}
    assert parsed["mechanisms"]["intravasation"]["rate_per_h"] == math.inf


# --------------------------------------------------------------------------- overrides


def test_string_and_mapping_overrides_agree():
    a = metacoop.load_scenario("invasion2d", ["duration_h=2", "primary.lattice.shape=[41, 41]",
                                           "primary.initial_tumour.cells=50"])
    b = metacoop.load_scenario("invasion2d", SMALL)
    assert a.model_dump() == b.model_dump()
    assert a.duration_h == 2.0 and a.primary.lattice.shape == [41, 41]


def test_override_value_that_is_not_toml_is_a_string():
    assert parse_override("name=abc") == ("name", "abc")
    assert parse_override(" duration_h = 2.5 ") == ("duration_h", 2.5)
    assert parse_override("primary.lattice.shape=[3,4]") == ("primary.lattice.shape", [3, 4])
    cfg = metacoop.load_scenario("invasion2d", ["name=renamed"])
    assert cfg.name == "renamed"


def test_list_entries_are_addressed_by_name_or_index():
    by_name = metacoop.load_scenario("invasion2d", ["clones.tumour.emt_rate_per_h=0.5"])
    by_index = metacoop.load_scenario("invasion2d", ["clones.0.emt_rate_per_h=0.5"])
    assert by_name.clones[0].emt_rate_per_h == 0.5
    assert by_name.model_dump() == by_index.model_dump()


def test_seed_argument_replaces_the_scenario_seed():
    assert metacoop.load_scenario("invasion2d", seed=1234).seed == 1234
    # --seed wins over a --set of the seed
    assert metacoop.load_scenario("invasion2d", ["seed=5"], seed=7).seed == 7


def test_overrides_do_not_touch_the_source_mapping():
    raw = tomllib.loads(metacoop.to_toml(metacoop.load_scenario("invasion2d")))
    before = repr(raw)
    metacoop.load_scenario(raw, {"primary.lattice.shape": [41, 41], "clones.tumour.cycle_cv": 0.5})
    assert repr(raw) == before


def test_no_overrides_and_one_override_string():
    """BUG: ``overrides=None`` raised TypeError ('NoneType' object is not iterable), and one string
    was read character by character ("must look like dotted.key=value" for 'd')."""
    assert metacoop.load_scenario("invasion2d", None).model_dump() == \
        metacoop.load_scenario("invasion2d").model_dump()
    assert metacoop.load_scenario("invasion2d", "duration_h=2").duration_h == 2.0


@pytest.mark.parametrize("overrides, value, allowed", [
    (5, 5, "a mapping of dotted keys"),
    (["duration_h=2", 3], 3, "'dotted.key=value' string"),
    ({("duration_h",): 2}, ("duration_h",), "dotted key string"),
])
def test_overrides_of_the_wrong_form_are_input_errors(overrides, value, allowed):
    with pytest.raises(InputError) as ei:
        metacoop.load_scenario("invasion2d", overrides)
    (problem,) = problems_of(ei)
    assert problem.path == "overrides" and problem.value == value and allowed in problem.allowed


def test_override_of_one_phenotype_keeps_the_other_default():
    """BUG: a sub-table absent from the file is created empty, so its sibling defaults are lost.

    ``metacoop config default`` shows ``clones.tumour.diffusion_um2_per_h.mesenchymal = 36.0``
    but ``--set clones.tumour.diffusion_um2_per_h.epithelial=5`` fails with
    "mesenchymal = '<missing>': this key is required".
    """
    cfg = metacoop.load_scenario("invasion2d", ["clones.tumour.diffusion_um2_per_h.epithelial=5"])
    assert cfg.clones[0].diffusion_um2_per_h.as_tuple() == (5.0, 36.0)
    cfg = metacoop.load_scenario("invasion2d", ["clones.tumour.doubling_time_h.mesenchymal=10"])
    assert cfg.clones[0].doubling_time_h.as_tuple() == (33.3, 10.0)


# --------------------------------------------------------------------------- schema errors


def test_config_error_is_an_input_error():
    assert issubclass(ConfigError, InputError)
    assert issubclass(InputError, metacoop.MetacoopError)


def test_unknown_top_level_key_lists_allowed_keys():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", ["duration=3"])
    p = one_problem(ei, "duration")
    assert p.value == 3
    assert "unknown key" in p.allowed
    for key in ("duration_h", "dt_h", "seed", "primary", "clones"):
        assert key in p.allowed


def test_unknown_nested_key_lists_allowed_keys():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", ["primary.lattice.shapee=[41,41]"])
    p = one_problem(ei, "primary.lattice.shapee")
    assert p.value == [41, 41]
    assert "shape" in p.allowed and "spacing_um" in p.allowed and "capacity_cells_per_point" in p.allowed


def test_unknown_key_in_a_named_list_entry_is_shown_by_name():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", ["clones.tumour.emt_rate=1"])
    p = one_problem(ei, "clones.tumour.emt_rate")
    assert "emt_rate_per_h" in p.allowed


def test_unknown_key_in_a_field_table_lists_field_keys():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", ["primary.fields.mmp2.diffusion=1"])
    p = one_problem(ei, "primary.fields.mmp2.diffusion")
    assert "diffusion_um2_per_h" in p.allowed and "substeps" in p.allowed


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", ['duration_h="ten"'])
    p = one_problem(ei, "duration_h")
    assert p.value == "ten"
    assert "number" in p.allowed
    assert "duration_h = 'ten'" in str(ei.value)


def test_missing_required_key_is_named(tmp_path):
    raw = tomllib.loads(metacoop.to_toml(metacoop.load_scenario("invasion2d")))
    del raw["duration_h"]
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario(raw)
    assert "required" in one_problem(ei, "duration_h").allowed


def test_negative_rate_is_refused():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", ["clones.tumour.death_rate_per_h.epithelial=-1"])
    p = one_problem(ei, "clones.tumour.death_rate_per_h.epithelial")
    assert p.value == -1
    assert "greater than or equal to 0" in p.allowed


def test_probability_above_one_is_refused():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", ["primary.initial_tumour.mesenchymal_fraction=1.5"])
    p = one_problem(ei, "primary.initial_tumour.mesenchymal_fraction")
    assert p.value == 1.5
    assert "less than or equal to 1" in p.allowed


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_rates_are_refused(value):
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", [f"clones.tumour.emt_rate_per_h={value}"])
    assert paths_of(ei) == ["clones.tumour.emt_rate_per_h"]


def test_lattice_with_wrong_dimension_is_refused():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", ["primary.lattice.shape=[41,41,41,41]"])
    assert "primary.lattice.shape" in paths_of(ei)


def test_bad_field_name_is_refused():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", ["primary.fields.1bad.initial=1"])
    assert any(p.startswith("primary.fields.1bad") for p in paths_of(ei))


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", ["duration_h=-1",
                                              "primary.initial_tumour.mesenchymal_fraction=2",
                                              "clones.tumour.cycle_cv=0"])
    assert set(paths_of(ei)) == {"duration_h", "primary.initial_tumour.mesenchymal_fraction",
                                 "clones.tumour.cycle_cv"}


# --------------------------------------------------------------------------- override syntax errors


@pytest.mark.parametrize("text", ["duration_h", "=3", "  =  ", ""])
def test_set_without_key_or_equals_is_refused(text):
    with pytest.raises(InputError) as ei:
        metacoop.load_scenario("invasion2d", [text])
    p = one_problem(ei, "--set")
    assert p.value == text
    assert "dotted.key=value" in p.allowed


def test_set_on_an_unknown_clone_lists_the_clones():
    with pytest.raises(InputError) as ei:
        metacoop.load_scenario("invasion2d", ["clones.nope.emt_rate_per_h=1"])
    p = one_problem(ei, "clones.nope.emt_rate_per_h")
    assert p.value == "nope"
    assert "tumour" in p.allowed


def test_set_on_a_list_index_out_of_range_is_refused():
    with pytest.raises(InputError) as ei:
        metacoop.load_scenario("invasion2d", ["clones.3.emt_rate_per_h=1"])
    assert "tumour" in one_problem(ei, "clones.3.emt_rate_per_h").allowed


def test_set_below_a_value_is_refused():
    with pytest.raises(InputError) as ei:
        metacoop.load_scenario("invasion2d", ["duration_h.x=1"])
    p = one_problem(ei, "duration_h.x")
    assert "not a table" in p.allowed


def test_set_below_a_list_element_value_is_an_input_error():
    """BUG: ``primary.lattice.shape.0.x=1`` raises TypeError from apply_overrides.

    ``_descend`` returns the list element 201 (an int); the final assignment
    ``node[last] = value`` then fails with "'int' object does not support item assignment".
    """
    with pytest.raises(InputError) as ei:
        metacoop.load_scenario("invasion2d", ["primary.lattice.shape.0.x=1"])
    assert ei.value.problems and ei.value.problems[0].path == "primary.lattice.shape.0.x"


# --------------------------------------------------------------------------- cross-key checks


def test_clone_fractions_naming_an_unknown_clone():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d",
                               {**SMALL, "primary.initial_tumour.clone_fractions": {"nope": 1.0}})
    p = one_problem(ei, "primary.initial_tumour.clone_fractions.nope")
    assert p.value == 1.0
    assert "tumour" in p.allowed


def test_clone_fractions_must_sum_to_one():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", {**SMALL,
                                           "primary.initial_tumour.clone_fractions": {"tumour": 0.5}})
    p = one_problem(ei, "primary.initial_tumour.clone_fractions")
    assert p.value == {"tumour": 0.5}
    assert "sum to 1" in p.allowed


def _two_clones():
    base = tomllib.loads(metacoop.to_toml(metacoop.load_scenario("invasion2d", SMALL)))
    second = dict(base["clones"][0], name="helper")
    base["clones"].append(second)
    return base


def test_two_clones_with_fractions_summing_to_one_are_accepted():
    raw = _two_clones()
    cfg = metacoop.load_scenario(raw, {"primary.initial_tumour.clone_fractions": {"tumour": 0.25,
                                                                                  "helper": 0.75}})
    assert [c.name for c in cfg.clones] == ["tumour", "helper"]
    # and a clone of a two-clone scenario can be overridden by name
    cfg = metacoop.load_scenario(raw, ["clones.helper.emt_rate_per_h=0.5"])
    assert cfg.clones[1].emt_rate_per_h == 0.5 and cfg.clones[0].emt_rate_per_h == 0.002


def test_duplicate_clone_names_are_refused():
    raw = _two_clones()
    raw["clones"][1]["name"] = "tumour"
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario(raw)
    assert "unique" in one_problem(ei, "clones.1.name").allowed


def test_unstable_fixed_field_substeps_are_refused():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", {**SMALL, "primary.fields.mmp2.substeps": 1,
                                           "primary.fields.mmp2.diffusion_um2_per_h": 1e6})
    p = one_problem(ei, "primary.fields.mmp2.substeps")
    assert p.value == 1
    assert "unstable" in p.allowed and "substeps >=" in p.allowed


def test_automatic_substeps_accept_large_diffusion():
    cfg = metacoop.load_scenario("invasion2d", {**SMALL, "primary.fields.mmp2.diffusion_um2_per_h": 1e4})
    assert cfg.primary.fields["mmp2"].substeps is None


def test_unstable_movement_time_step_is_refused():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", {**SMALL, "dt_h": 50.0})
    p = one_problem(ei, "clones.tumour.diffusion_um2_per_h.mesenchymal")
    assert "dt_h" in p.allowed and "reduce" in p.allowed
    assert "output.record_every_h" in paths_of(ei)


def test_problem_values_are_plain_numbers():
    """BUG: the movement check puts a numpy scalar in Problem.value.

    The message reads ``clones.tumour.diffusion_um2_per_h.epithelial = np.float64(18.0): ...``
    (mechanisms/movement.py, ``Movement.check``: ``clones.diffusion_um2_per_h[i, j]``).
    """
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", {**SMALL, "dt_h": 50.0})
    p = one_problem(ei, "clones.tumour.diffusion_um2_per_h.epithelial")
    assert type(p.value) is float and p.value == 18.0
    assert "np.float64" not in str(ei.value)


def test_too_many_initial_cells_are_refused():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", {**SMALL, "primary.initial_tumour.cells": 41 * 41 * 4 + 1})
    assert "at most 6724" in one_problem(ei, "primary.initial_tumour.cells").allowed


def test_too_small_seeding_radius_is_refused():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", {**SMALL, "primary.initial_tumour.radius_um": 10.0})
    assert "larger radius" in one_problem(ei, "primary.initial_tumour.radius_um").allowed


def test_too_many_vessels_are_refused():
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", {**SMALL, "primary.vessels.min_distance_um": 1000.0})
    assert "µm from the centre" in one_problem(ei, "primary.vessels").allowed


@pytest.mark.parametrize("name, shape", [("default", [100000, 100000]),
                                         ("invasion3d", [100000, 100000, 100])])
def test_lattice_too_large_for_memory(name, shape):
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario(name, {"primary.lattice.shape": shape})
    p = one_problem(ei, "primary.lattice.shape")
    assert p.value == shape
    assert "memory" in p.allowed and "GiB" in p.allowed and "smaller lattice" in p.allowed


def test_memory_problem_is_reported_with_the_others():
    """BUG: check_config only estimates memory when no other problem was found.

    Its docstring promises "every problem"; a 3-D lattice of 10^12 points on the 2-D default
    scenario reports only the movement stability of dt_h, so a user who fixes dt_h meets a
    second, unrelated error. The estimate only needs schema-valid values, so it can always run
    (checks.py, ``if not problems:`` before the memory estimate).
    """
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", {"primary.lattice.shape": [100000, 100000, 100]})
    assert "primary.lattice.shape" in paths_of(ei)
    assert "memory" in one_problem(ei, "primary.lattice.shape").allowed


def test_memory_check_of_a_large_lattice_uses_little_memory(monkeypatch):
    """BUG: the geometry checks build per-point distance arrays before the memory check.

    For a 49-million-point lattice (e.g. [7000, 7000]) ``load_scenario`` takes ~10 s and ~4 GB
    just to say the run does not fit; on a smaller machine it would die with MemoryError.
    Here: with 64 MiB available, refusing a 4-million-point lattice must not itself allocate
    more than 64 MiB (checks.py ``_distances`` / ``Lattice.distance_from_centre_um``).
    """
    limit = 64 * 2**20
    monkeypatch.setattr(checks, "available_memory_bytes", lambda: limit)
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as ei:
            metacoop.load_scenario("invasion2d", {"primary.lattice.shape": [2000, 2000],
                                               "primary.initial_tumour.radius_um": 100.0})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "memory" in one_problem(ei, "primary.lattice.shape").allowed
    assert peak < limit, f"checking used {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("overrides", [
    {"duration_h": 1e308, "output.snapshot_every_h": 0.1},
    {"duration_h": 1e308, "output.snapshot_every_h": 0.1, "output.record_every_h": 0.1},
])
def test_absurd_duration_is_a_config_error(overrides):
    """BUG: ``duration_h=1e308`` with ``output.snapshot_every_h=0.1`` raises OverflowError.

    checks.estimate_memory_bytes: ``math.ceil(config.duration_h / config.output.snapshot_every_h)``
    is ``math.ceil(inf)``; the CLI prints a traceback.
    """
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario("invasion2d", overrides)
    assert ei.value.problems


@pytest.mark.parametrize("cv", [5e-324, 1e-200, 1e-10, 1e-6])
def test_tiny_cycle_cv_is_refused_or_handled(cv):
    """BUG: ``cycle_cv`` accepts any value > 0, but core/clones.py ``cycle_gamma`` breaks for tiny ones.

    ``k = 1 / cv**2`` overflows to a ZeroDivisionError for cv = 5e-324 (a traceback from
    load_scenario), and for cv = 1e-10 ``2 ** (1 / k) - 1`` rounds to 0, so every cycle lasts
    0 h instead of the doubling time. Fix: a lower bound on ``cycle_cv`` in the schema (e.g.
    ``ge=1e-3``) and ``math.expm1(math.log(2) / k)`` in ``cycle_gamma``.
    """
    try:
        cfg = metacoop.load_scenario("invasion2d", {"clones.tumour.cycle_cv": cv})
    except ConfigError as exc:
        assert [p.path for p in exc.problems] == ["clones.tumour.cycle_cv"]
        return
    table = cfg.clone_table()
    mean_cycle_h = table.cycle_shape * table.cycle_scale_h
    # as cv -> 0 every cycle lasts exactly the doubling time
    assert mean_cycle_h == pytest.approx(table.doubling_time_h, rel=1e-3)


# --------------------------------------------------------------------------- files


def test_missing_scenario_file_names_the_builtins(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(InputError) as ei:
        metacoop.load_scenario(missing)
    p = one_problem(ei, "scenario")
    assert p.value == str(missing)
    assert "default" in p.allowed and "invasion3d" in p.allowed


def test_unknown_builtin_name_is_refused():
    with pytest.raises(InputError) as ei:
        metacoop.load_scenario("no_such_scenario")
    assert "built-in" in one_problem(ei, "scenario").allowed


def test_directory_is_not_a_scenario(tmp_path):
    with pytest.raises(InputError) as ei:
        metacoop.load_scenario(tmp_path)
    assert "directory" in one_problem(ei, "scenario").allowed


def test_invalid_utf8_is_an_input_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(InputError) as ei:
        metacoop.load_scenario(path)
    assert "cannot be read" in one_problem(ei, "scenario").allowed


def test_invalid_toml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\nduration_h = \n', encoding="utf-8")
    with pytest.raises(InputError) as ei:
        metacoop.load_scenario(path)
    p = one_problem(ei, str(path))
    assert "not valid TOML" in p.allowed and "line 2" in p.allowed


def test_scenario_file_with_a_schema_error(tmp_path):
    path = tmp_path / "s.toml"
    text = metacoop.to_toml(metacoop.load_scenario("invasion2d")).replace("spacing_um = 10.0",
                                                                         "spacing_um = -10.0")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        metacoop.load_scenario(path)
    assert paths_of(ei) == ["primary.lattice.spacing_um"]
    assert one_problem(ei, "primary.lattice.spacing_um").value == -10.0


def test_problem_text_has_path_value_and_allowed():
    p = Problem("a.b", "x" * 200, "must be short")
    text = str(p)
    assert text.startswith("a.b = 'xxx") and text.endswith(": must be short")
    assert len(text) < 120


@pytest.mark.parametrize("name", sorted(metacoop.builtin_scenarios()))
def test_every_builtin_scenario_round_trips_through_its_resolved_toml(tmp_path, name):
    cfg = metacoop.load_scenario(name)
    path = tmp_path / f"{name}.toml"
    path.write_text(metacoop.to_toml(cfg))
    assert metacoop.load_scenario(path).model_dump() == cfg.model_dump()


def test_default_is_the_full_cascade_with_two_clones_and_every_mechanism_on():
    cfg = metacoop.load_scenario(None)
    assert len(cfg.clones) == 2 and len(cfg.organs) >= 2
    off = [name for name in type(cfg.mechanisms).model_fields if not getattr(cfg.mechanisms, name).enabled]
    assert off == ["diversification"]  # every cooperation mechanism on; clones stay as configured


def test_extends_merges_tables_key_by_key_and_replaces_other_values(tmp_path):
    (tmp_path / "base.toml").write_text('extends = "classaction"\nduration_h = 12.0\n'
                                        '[organs.lung]\narrest_probability = 0.9\n', encoding="utf-8")
    child = tmp_path / "sub" / "child.toml"
    child.parent.mkdir()
    child.write_text('extends = "../base.toml"\nname = "child"\n[organs.lung]\njoin_radius_um = 5.0\n'
                     '[mechanisms.shedding_waves]\nwaves_h = [[1.0, 2.0]]\n', encoding="utf-8")
    cfg = metacoop.load_scenario(child)
    ca = metacoop.load_scenario("classaction")
    assert cfg.name == "child" and cfg.duration_h == 12.0
    assert cfg.organs["lung"].arrest_probability == 0.9 and cfg.organs["lung"].join_radius_um == 5.0
    assert cfg.organs["lung"].extravasation_rate_per_h == ca.organs["lung"].extravasation_rate_per_h
    assert cfg.mechanisms.shedding_waves.waves_h == [[1.0, 2.0]]  # lists replace, not merge
    assert cfg.clones == ca.clones


def test_extends_loops_and_bad_bases_are_refused_with_the_chain(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(f'extends = "{b}"\n', encoding="utf-8")
    b.write_text(f'extends = "{a}"\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"extends .* loop: .*a\.toml -> .*b\.toml -> .*a\.toml"):
        metacoop.load_scenario(a)
    c = tmp_path / "c.toml"
    c.write_text('extends = 3\n', encoding="utf-8")
    with pytest.raises(InputError, match="extends = 3: must be a built-in scenario name"):
        metacoop.load_scenario(c)
    c.write_text('extends = "nope"\n', encoding="utf-8")
    with pytest.raises(InputError, match="neither a built-in scenario"):
        metacoop.load_scenario(c)
