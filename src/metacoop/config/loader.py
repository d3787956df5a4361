"""Loading scenarios: built-in names or TOML files, ``--set`` overrides, validation.

``load_scenario`` is the one entry point: it reads the TOML, applies dotted
overrides to the raw table, validates it with the schema, runs the cross-key
checks, and returns a :class:`SimulationConfig`. Every failure is an
:class:`~metacoop.errors.InputError` whose problems name the key path, the
value and what is allowed.
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ValidationError

from metacoop.config.checks import check_config
from metacoop.config.schema import SimulationConfig
from metacoop.errors import ConfigError, InputError, Problem

DEFAULT_SCENARIO = "default"


def _presets_dir():
    return resources.files("metacoop").joinpath("config", "presets")


def builtin_scenarios() -> dict[str, str]:
    """Built-in scenario names with their one-line descriptions."""
    out = {}
    for entry in sorted(_presets_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            raw = tomllib.loads(entry.read_text(encoding="utf-8"))
            out[entry.name[: -len(".toml")]] = str(raw.get("description", ""))
    return out


def read_scenario_table(source: str | Path | None, _seen: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """Read a scenario's raw TOML table; return it with a label saying where it came from.

    A scenario may start from another with ``extends = "NAME_OR_PATH"``: the
    base's table is read first and this file's keys are merged over it (tables
    merge key by key; any other value, lists included, replaces the base's).
    A relative path is taken from the extending file's folder.
    """
    raw, label = _read_one(source)
    base = raw.pop("extends", None)
    if base is None:
        return raw, label
    if not isinstance(base, str):
        raise InputError([Problem("extends", base, "must be a built-in scenario name or a .toml path")])
    if base in _seen or base == label:
        raise InputError([Problem("extends", base, f"scenarios extend each other in a loop: "
                                                   f"{' -> '.join((*_seen, label, base))}")])
    if ("/" in base or base.endswith(".toml")) and not Path(base).is_absolute() and Path(label).exists():
        base = str(Path(label).parent / base)
    base_raw, _ = read_scenario_table(base, (*_seen, label))
    return _merge(base_raw, raw), label


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_one(source: str | Path | None) -> tuple[dict[str, Any], str]:
    if source is None:
        source = DEFAULT_SCENARIO
    text_source = str(source)
    preset = _presets_dir().joinpath(f"{text_source}.toml")
    if "/" not in text_source and not text_source.endswith(".toml") and preset.is_file():
        label = f"built-in scenario {text_source!r}"
        return _parse_toml(preset.read_text(encoding="utf-8"), label), text_source
    path = Path(text_source)
    if not path.exists():
        names = ", ".join(builtin_scenarios())
        raise InputError([Problem("scenario", text_source,
                                  f"is neither a built-in scenario ({names}) nor an existing file")])
    if path.is_dir():
        raise InputError([Problem("scenario", text_source, "is a directory; give a .toml file")])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([Problem("scenario", text_source, f"cannot be read: {exc}")]) from None
    return _parse_toml(text, str(path)), str(path)


def _parse_toml(text: str, label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError([Problem(label, "<file>", f"is not valid TOML: {exc}")]) from None


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``dotted.key=value``; the value is read as a TOML value, else as a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InputError([Problem("--set", text, "must look like dotted.key=value")])
    value = value.strip()
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key, parsed


def apply_overrides(raw: dict[str, Any],
                    overrides: Iterable[str] | Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Set dotted keys in the raw table (lists are indexed by position or by ``name``).

    ``overrides`` is a mapping of dotted keys to values, ``"dotted.key=value"``
    strings (one string is one override), or ``None`` for none.
    """
    for key, value in _override_items(overrides):
        parts = key.split(".")
        node: Any = raw
        for depth, part in enumerate(parts[:-1]):
            node = _descend(node, part, ".".join(parts[: depth + 1]), key)
        last = parts[-1]
        if isinstance(node, list):
            node[_list_index(node, last, key)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise InputError([Problem(key, node, f"{'.'.join(parts[:-1])} is a value, not a table")])
    return raw


def _descend(node: Any, part: str, so_far: str, key: str) -> Any:
    if isinstance(node, dict):
        if part not in node:
            node[part] = _schema_default(so_far.split("."), key)
        child = node[part]
    elif isinstance(node, list):
        child = node[_list_index(node, part, key)]
    else:
        raise InputError([Problem(key, node, f"cannot descend into {so_far}")])
    if not isinstance(child, (dict, list)):
        raise InputError([Problem(key, child, f"{so_far} is a value, not a table")])
    return child


def _schema_default(parts: list[str], key: str) -> Any:
    """The schema's default for the table at ``parts`` as plain data (``{}`` if none).

    Overriding one key of a table the scenario leaves at its default (say
    ``clones.tumour.diffusion_um2_per_h.epithelial``) keeps the other keys of
    that default table.
    """
    ann: Any = SimulationConfig
    for part in parts[:-1]:
        ann = _child_annotation(ann, part)
        if ann is None:
            return {}
    parent = _unwrap(ann)
    if not (isinstance(parent, type) and issubclass(parent, BaseModel)):
        return {}
    field = parent.model_fields.get(parts[-1])
    if field is None or (field.default_factory is None and field.default is None):
        return {}
    value = field.get_default(call_default_factory=True)
    plain = _plain(value)
    return plain if isinstance(plain, (dict, list)) else {}


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python", exclude_none=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _list_index(node: list, part: str, key: str) -> int:
    if part.isdigit() and int(part) < len(node):
        return int(part)
    for i, item in enumerate(node):
        if isinstance(item, dict) and item.get("name") == part:
            return i
    names = [str(item.get("name")) for item in node if isinstance(item, dict)]
    raise InputError([Problem(key, part, f"no entry with that index or name; entries: {', '.join(names)}")])


def _override_items(overrides: Iterable[str] | Mapping[str, Any] | str | None) -> list[tuple[str, Any]]:
    """``(dotted key, value)`` pairs of overrides given in any of the forms :func:`apply_overrides` takes."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        bad = [k for k in overrides if not isinstance(k, str)]
        if bad:
            raise InputError([Problem("overrides", bad[0], "a key must be a dotted key string, "
                                      "such as 'primary.lattice.shape'")])
        return list(overrides.items())
    if isinstance(overrides, str):
        overrides = [overrides]
    elif not isinstance(overrides, Iterable):
        raise InputError([Problem("overrides", overrides, "must be a mapping of dotted keys to values or "
                                  "a list of 'dotted.key=value' strings")])
    items = []
    for text in overrides:
        if not isinstance(text, str):
            raise InputError([Problem("overrides", text, "each override in a list must be a "
                                      "'dotted.key=value' string")])
        items.append(parse_override(text))
    return items


def as_config(config: SimulationConfig | str | os.PathLike | Mapping[str, Any]) -> SimulationConfig:
    """``config`` itself if it is a :class:`SimulationConfig`, else the scenario it names, loaded.

    A built-in scenario name, a TOML file path or a raw scenario table is
    loaded with :func:`load_scenario` (validated and checked). Anything else
    is an :class:`~metacoop.errors.InputError` saying what is accepted.
    """
    if isinstance(config, SimulationConfig):
        return config
    if isinstance(config, os.PathLike):
        return load_scenario(Path(config))
    if isinstance(config, str | Mapping):
        return load_scenario(config)
    raise InputError([Problem("config", config, "a SimulationConfig from metacoop.load_scenario, a "
                              "built-in scenario name, a TOML file path or a scenario table")])


def validate_table(raw: dict[str, Any]) -> SimulationConfig:
    """Validate a raw scenario table with the schema (types and ranges only)."""
    try:
        return SimulationConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_problems_from(exc, raw)) from None


def load_scenario(
    source: str | Path | Mapping[str, Any] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | str | None = (),
    seed: int | None = None,
    check: bool = True,
) -> SimulationConfig:
    """Load, override, validate and check a scenario.

    Args:
        source: a built-in scenario name, a TOML file path, or a raw table;
            ``None`` is the default scenario.
        overrides: ``"dotted.key=value"`` strings (or one such string), a mapping
            of dotted keys to values, or ``None``.
        seed: replaces the scenario's seed when given.
        check: run the cross-key checks (stability, geometry, memory).

    Returns:
        The validated configuration.
    """
    if isinstance(source, Mapping):
        raw = typing.cast(dict, _deep_copy(source))
    else:
        raw, _ = read_scenario_table(source)
    apply_overrides(raw, overrides)
    if seed is not None:
        raw["seed"] = seed
    config = validate_table(raw)
    if check:
        check_config(config)
    return config


def to_toml(config: SimulationConfig) -> str:
    """The fully resolved configuration as TOML text (every default written out)."""
    if not isinstance(config, SimulationConfig):
        raise InputError([Problem("config", config, "a SimulationConfig from metacoop.load_scenario")])
    return tomli_w.dumps(_string_keys(config.model_dump(mode="python", exclude_none=True)))


def _string_keys(obj: Any) -> Any:
    """TOML keys are strings: write integer keys (``cluster_sizes``) as their decimal text."""
    if isinstance(obj, Mapping):
        return {str(k): _string_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_string_keys(v) for v in obj]
    return obj


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj


def _problems_from(exc: ValidationError, raw: dict[str, Any]) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = err["loc"]
        path = _path_text(loc, raw)
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            hint = f"unknown key; allowed keys here: {', '.join(allowed)}" if allowed else "unknown key"
            problems.append(Problem(path, err.get("input"), hint))
        elif kind == "missing":
            problems.append(Problem(path, "<missing>", "this key is required"))
        else:
            problems.append(Problem(path, err.get("input"), err["msg"]))
    return problems


def _path_text(loc: tuple, raw: dict[str, Any]) -> str:
    """Dotted path; list positions of named entries are shown by name."""
    parts = []
    node: Any = raw
    for part in loc:
        if part == "[key]":  # pydantic's marker for an invalid dict key: the key is already shown
            continue
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            item = node[part]
            name = item.get("name") if isinstance(item, dict) else None
            parts.append(str(name) if isinstance(name, str) and name else str(part))
            node = item
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


def _allowed_keys(loc: tuple) -> list[str]:
    """Keys the schema accepts at ``loc`` (empty when ``loc`` is not a table of the schema)."""
    ann: Any = SimulationConfig
    for part in loc:
        ann = _child_annotation(ann, part)
        if ann is None:
            return []
    model = _unwrap(ann)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _unwrap(ann: Any) -> Any:
    """Strip ``Annotated`` and ``Optional`` from an annotation."""
    while True:
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            ann = args[0] if len(args) == 1 else ann
            if len(args) != 1:
                return ann
        else:
            return ann


def _child_annotation(ann: Any, part: Any) -> Any:
    ann = _unwrap(ann)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        field = ann.model_fields.get(str(part))
        return field.annotation if field is not None else None
    origin = typing.get_origin(ann)
    if origin is dict:
        return typing.get_args(ann)[1]
    if origin is list:
        return typing.get_args(ann)[0]
    return None
