"""Reference pages of the documentation site, generated from the code so that they never drift.

Each function returns one Markdown page:

* :func:`model_reference`: the schedule of one step and every mechanism of
  :data:`metacoop.mechanisms.REGISTRY`, with its summary, the rules and
  equations of its module and class docstrings, its ``Params`` fields (key,
  type, default, description with the unit) and its sources;
* :func:`config_reference`: every key path of
  :class:`metacoop.config.schema.SimulationConfig` and its nested models, with
  type, admissible range, default and description;
* :func:`cli_reference`: every command of the ``metacoop`` typer app, with its
  usage line, help text and the help of each argument and option as the
  command's own ``--help`` renders it.

:func:`pages` gives all three by their path in the site; ``docs/gen_pages.py``
(an MkDocs hook) adds them to the site at build time, so they are not stored
in the repository.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import sys
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

#: Characters escaped in Markdown text outside code spans.
_ESCAPE = str.maketrans({c: "\\" + c for c in "\\*_[]|"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;"})
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
_REQUIRED = object()


# ---------------------------------------------------------------------------- Markdown helpers


def md_text(text: str) -> str:
    """Escape ``text`` for a Markdown paragraph or table cell, keeping its `code spans` as code.

    Line breaks become spaces, so the result fits in one table cell.
    """
    parts = re.split(r"(`[^`]*`)", " ".join(str(text).split()))
    return "".join(p if i % 2 else p.translate(_ESCAPE) for i, p in enumerate(parts))


def rst_to_markdown(doc: str) -> str:
    """Turn a docstring (reStructuredText-flavoured, as written in this package) into Markdown.

    Roles such as ``:class:`~a.B``` become code spans, double back-quotes single
    ones, and a paragraph ending in ``::`` introduces a fenced literal block.
    """
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    literal = False
    for line in lines:
        if literal:
            if line.strip() and not line.startswith(" "):
                _close_fence(out)
                literal = False
            else:
                if line.strip() or out[-1] != "```text":
                    out.append(line[4:] if line.startswith("    ") else line.strip())
                continue
        line = _ROLE.sub(lambda m: f"`{m.group(1)}`", line)
        line = _LITERAL.sub(lambda m: f"`{m.group(1)}`", line)
        if line.rstrip().endswith("::"):
            out += [line.rstrip()[:-1], "", "```text"]
            literal = True
        else:
            out.append(line)
    if literal:
        _close_fence(out)
    return "\n".join(out).strip()


def _close_fence(out: list[str]) -> None:
    while out[-1] == "":
        out.pop()
    out += ["```", ""]


def toml_value(value: Any) -> str:
    """``value`` as it would be written in a scenario file (inline TOML)."""
    if isinstance(value, BaseModel):
        return toml_value(value.model_dump(exclude_defaults=True))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)
        return text if len(text) <= 12 else f"{value:.10g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = []
        for k, v in value.items():
            key = str(k) if re.fullmatch(r"[A-Za-z0-9_-]+", str(k)) else json.dumps(str(k))
            items.append(f"{key} = {toml_value(v)}")
        return "{ " + ", ".join(items) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _code(text: str) -> str:
    """A code span that holds ``text`` whatever back-quotes it contains."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


# ---------------------------------------------------------------------------- types and defaults


def _bound(value: float) -> str:
    if isinstance(value, int) and value > 2**20 and value & (value - 1) == 0:
        return f"2^{value.bit_length() - 1}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _flat(metadata) -> list:
    """Constraint objects of ``metadata``, the contents of ``Field(...)`` entries included."""
    out = []
    for item in metadata:
        out += item.metadata if isinstance(item, FieldInfo) else [item]
    return out


def _constraints(metadata, noun: str = "items") -> str:
    """The range set by ``ge``/``gt``/``le``/``lt`` and length constraints, in words."""
    found: dict[str, Any] = {}
    for m in _flat(metadata):
        for attr in ("ge", "gt", "le", "lt", "min_length", "max_length"):
            if getattr(m, attr, None) is not None:
                found[attr] = getattr(m, attr)
    low = ("[", found["ge"]) if "ge" in found else ("(", found["gt"]) if "gt" in found else None
    high = ("]", found["le"]) if "le" in found else (")", found["lt"]) if "lt" in found else None
    text = []
    if low and high:
        text.append(f"in {low[0]}{_bound(low[1])}, {_bound(high[1])}{high[0]}")
    elif low:
        text.append(("≥ " if low[0] == "[" else "> ") + _bound(low[1]))
    elif high:
        text.append(("≤ " if high[0] == "]" else "< ") + _bound(high[1]))
    if "min_length" in found and "max_length" in found:
        text.append(f"{found['min_length']} to {found['max_length']} {noun}")
    elif "min_length" in found:
        text.append(f"at least {found['min_length']} {noun}")
    elif "max_length" in found:
        text.append(f"at most {found['max_length']} {noun}")
    return ", ".join(text)


def type_name(annotation: Any, metadata=()) -> str:
    """A short English name of a pydantic field type, with its admissible range."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *meta = get_args(annotation)
        return type_name(base, [*meta, *metadata])
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        text = " or ".join(type_name(a) for a in args)
        return text + (" or unset" if len(args) < len(get_args(annotation)) else "")
    if origin is Literal:
        return "one of " + ", ".join(toml_value(a) for a in get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation)
        size = _constraints(metadata)
        return f"list ({size}) of {type_name(item)}" if size else f"list of {type_name(item)}"
    if origin is dict:
        key, value = (type_name(a) for a in get_args(annotation))
        value = f"({value})" if value.startswith("table") else value
        return f"table: {key} → {value}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        fields = annotation.model_fields
        if set(fields) == {"epithelial", "mesenchymal"}:
            f = fields["epithelial"]
            return "per phenotype (epithelial, mesenchymal): " + type_name(f.annotation, f.metadata)
        return "table"
    if annotation is str and any(getattr(m, "pattern", None) for m in _flat(metadata)):
        return "name"
    name = {bool: "bool", int: "int", float: "float", str: "str"}.get(annotation, str(annotation))
    limits = _constraints(metadata, "characters")
    return f"{name} {limits}" if limits else name


def field_default(field: FieldInfo) -> Any:
    """The default of a pydantic field (its factory called), or ``_REQUIRED``."""
    if field.is_required():
        return _REQUIRED
    return field.get_default(call_default_factory=True)


def default_cell(value: Any) -> str:
    """A default as shown in a table: inline TOML as code, *required* or *unset*."""
    if value is _REQUIRED:
        return "*required*"
    if value is None:
        return "*unset*"
    return _code(toml_value(value))


# ---------------------------------------------------------------------------- the model


def _module_doc(cls: type) -> str:
    return (sys.modules[cls.__module__].__doc__ or "").strip()


def params_rows(params: type[BaseModel], prefix: str = "") -> list[list[str]]:
    """One table row ``[key, type, default, description]`` per field of a ``Params`` model."""
    rows = []
    for key, field in params.model_fields.items():
        rows.append([_code(prefix + key), md_text(type_name(field.annotation, field.metadata)),
                     default_cell(field_default(field)), md_text(field.description or "")])
    return rows


def model_reference() -> str:
    """The "model" page: the schedule of one step and every mechanism with its rules and parameters."""
    from metacoop.core.simulation import ENGINE_TASKS
    from metacoop.mechanisms import COOPERATION, REGISTRY

    out = ["# The model", "",
           "This page is generated from the code (`metacoop.docs_gen.model_reference`): the mechanism "
           "registry `metacoop.mechanisms.REGISTRY`, each mechanism's module and class docstrings, "
           "`summary`, `sources` and `Params` model. A mechanism's parameters are the keys of its "
           "table `[mechanisms.NAME]` in a scenario; every mechanism has `enabled`, and switching one "
           "off removes it from the schedule without changing the random draws of the others. "
           "`metacoop describe SCENARIO` prints the same for a given scenario, and `metacoop describe "
           "--odd` writes an ODD protocol.", "",
           "Units are part of the parameter names (`_h`, `_per_h`, `_um`, `_um2_per_h`) or given at "
           "the end of the description; concentrations and densities are normalised to [0, 1].", "",
           "## Schedule of one step", "",
           "Each step runs the phases in this order; within a phase, tasks run by order, then by name. "
           "Engine tasks always run; mechanisms run when enabled.", ""]
    slots = [(phase, order, name, "engine", "always", text) for phase, order, name, text in ENGINE_TASKS]
    for name, mech in REGISTRY.items():
        on = "on" if mech.Params.model_fields["enabled"].default else "off"
        slots.append((mech.phase, mech.order, name, "mechanism", on, mech.summary))
    rows = []
    for phase, order, name, kind, on, text in sorted(slots, key=lambda s: (s[0], s[1], s[2])):
        label = f"[{_code(name)}](#{name})" if kind == "mechanism" else _code(name)
        rows.append([phase.name, str(order), label, kind, on, md_text(text)])
    out += _table(["phase", "order", "task", "kind", "default", "what it does"], rows)
    groups = [("The cascade", [n for n in REGISTRY if n not in COOPERATION]),
              ("The class action: cooperation through the microenvironment",
               [n for n in REGISTRY if n in COOPERATION])]
    for title, names in groups:
        out += ["", f"## {title}", ""]
        if names and names[0] in COOPERATION:
            out += ["Each cooperation mechanism changes the others' rules only through modifiers it "
                    "registers on a site (`metacoop.core.modifiers`); all but `emboli_protection` are "
                    "off by default and on in the `default` and `classaction` scenarios.", ""]
        for name in names:
            out += _mechanism_section(name, REGISTRY[name], name in COOPERATION)
    return "\n".join(out).rstrip() + "\n"


def _mechanism_section(name: str, mech, cooperation: bool) -> list[str]:
    enabled = mech.Params.model_fields["enabled"].default
    facts = [f"`{mech.__module__}.{mech.__qualname__}`", f"phase `{mech.phase.name}`, order {mech.order}",
             "on by default" if enabled else "off by default"]
    if cooperation:
        facts.append("cooperation mechanism")
    out = [f"### {name}", "", md_text(mech.summary[:1].upper() + mech.summary[1:]).rstrip(".") + ".", "",
           " · ".join(facts), ""]
    module_doc = _module_doc(mech)
    if module_doc:
        out += [rst_to_markdown(module_doc), ""]
    class_doc = mech.__dict__.get("__doc__")
    if class_doc:
        out += [rst_to_markdown(class_doc), ""]
    out += [f"**Parameters** (`[mechanisms.{name}]`):", ""]
    out += _table(["key", "type", "default", "description"], params_rows(mech.Params)) + [""]
    if mech.sources:
        out += ["**Sources:**", ""] + [f"- {md_text(s)}" for s in mech.sources] + [""]
    return out


# ---------------------------------------------------------------------------- the configuration


def _nested(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The model a field holds and how: ``model``, ``dict`` (by name), ``list``; ``(None, "")`` if none."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _nested(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _nested(arg)
            if found[0] is not None:
                return found
        return None, ""
    if origin in (dict, list):
        item = get_args(annotation)[-1]
        item = get_args(item)[0] if get_origin(item) is Annotated else item
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item, origin.__name__
        return None, ""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if set(annotation.model_fields) == {"epithelial", "mesenchymal"}:
            return None, ""
        return annotation, "model"
    return None, ""


def _first_line(doc: str | None) -> str:
    return inspect.cleandoc(doc or "").split("\n\n")[0].replace("\n", " ")


def config_rows(model: type[BaseModel], prefix: str = "",
                defaults: BaseModel | None = None) -> list[list[str]]:
    """Rows ``[key path, type, default, description]`` for every key of ``model``, nested keys included.

    ``defaults`` is the instance a parent field's default gives (its keys then
    default to its values); tables by name are shown as ``<name>``, arrays of
    tables as ``<name>`` (entries with a ``name``) or ``<i>``.
    """
    rows = []
    for key, field in model.model_fields.items():
        path = prefix + key
        default = getattr(defaults, key) if defaults is not None else field_default(field)
        sub, how = _nested(field.annotation)
        description = field.description or (_first_line(sub.__doc__) if sub is not None else "")
        if sub is None:
            kind = type_name(field.annotation, field.metadata)
        else:
            kind = {"model": "table", "dict": "tables by name", "list": "array of tables"}[how]
            if how == "model" and type(None) in get_args(field.annotation):
                kind += " or unset"
        shown = "—" if how == "model" and isinstance(default, BaseModel) else default_cell(default)
        rows.append([_code(path), md_text(kind), shown, md_text(description)])
        if sub is not None:
            if how == "model":
                rows += config_rows(sub, path + ".", default if isinstance(default, BaseModel) else None)
            else:
                item = "<name>" if how == "dict" or "name" in sub.model_fields else "<i>"
                rows += config_rows(sub, f"{path}.{item}.")
    return rows


def config_reference() -> str:
    """The configuration page: every key of a scenario, with type, range, default and description."""
    from metacoop.config.schema import SimulationConfig
    from metacoop.mechanisms import REGISTRY

    header = ["key", "type", "default", "description"]
    out = ["# Configuration reference", "",
           "This page is generated from the scenario schema (`metacoop.config.schema.SimulationConfig` "
           "and the models it nests) by `metacoop.docs_gen.config_reference`.", "",
           "A scenario is a TOML file; `metacoop config default` prints every key of the default "
           "scenario with its value, and a file may start from another with `extends = \"NAME\"`. "
           "Unknown keys are errors. Keys are shown as the dotted paths that `--set` accepts: "
           "`<name>` stands for a name you choose (an organ, a field, a route) or, in the `clones` list, "
           "a clone's name; `<i>` for a position in a list. A *name* starts with a letter and holds "
           "letters, digits and `_`, at most 64 characters.", "",
           "**Units** are part of the key names: `_h` hours, `_per_h` per hour (a hazard or rate), "
           "`_um` µm, `_um2_per_h` µm²/h, `_cells` cells; otherwise the description ends with the unit. "
           "Concentrations and ECM density are normalised to [0, 1] (dimensionless).", ""]
    top = [r for r in config_rows(SimulationConfig) if "." not in r[0].strip("`")]
    out += ["## Top level", "", "Keys outside any table; the tables are described below.", ""]
    out += _table(header, top)
    for key, field in SimulationConfig.model_fields.items():
        sub, how = _nested(field.annotation)
        if sub is None or key == "mechanisms":
            continue
        toml_header = {"model": f"[{key}]", "dict": f"[{key}.<name>]", "list": f"[[{key}]]"}[how]
        what = f": {md_text(field.description)}." if field.description else "."
        out += ["", f"## {key}", "", f"Table `{toml_header}`{what}", ""]
        if sub.__doc__:
            out += [rst_to_markdown(sub.__doc__), ""]
        rows = [r for r in config_rows(SimulationConfig) if r[0].strip("`").startswith(key + ".")]
        out += _table(header, rows)
    out += ["", "## mechanisms", "",
            "Table `[mechanisms.NAME]`, one per mechanism: `enabled` and the mechanism's parameters. "
            "What each mechanism does is on [the model page](model.md).", ""]
    for name, mech in REGISTRY.items():
        out += [f"### mechanisms.{name}", "", f"[{_code(name)}](model.md#{name}): {md_text(mech.summary)}.",
                ""]
        out += _table(header, params_rows(mech.Params, f"mechanisms.{name}.")) + [""]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------- the command line


def _help_text(text: str | None) -> list[str]:
    r"""A click help string as Markdown paragraphs (``\b`` lines dropped, text after ``\f`` hidden)."""
    text = (text or "").split("\f")[0]
    paragraphs = [p for p in inspect.cleandoc(text).split("\n\n") if p.strip()]
    out = []
    for p in paragraphs:
        lines = [line for line in p.splitlines() if line.strip() != "\b"]
        out += [md_text(" ".join(lines)), ""]
    return out


def cli_reference() -> str:
    """The command-line page: every command of ``metacoop.cli.app`` with its usage and options."""
    import typer

    from metacoop.cli import app

    group = typer.main.get_command(app)
    root = group.context_class(group, info_name="metacoop")
    out = ["# Command line", "",
           "This page is generated from the `metacoop` command itself (`metacoop.cli.app`, by "
           "`metacoop.docs_gen.cli_reference`): the same text as `metacoop COMMAND --help`.", ""]
    out += _help_text(group.help)
    commands = _commands(group, root)
    out += _table(["command", "what it does"],
                  [[f"[{_code(path)}](#{path.replace(' ', '-')})", md_text(_first_line(cmd.help))]
                   for path, cmd, _ in commands])
    for path, cmd, ctx in commands:
        out += ["", f"## {path}", ""]
        out += _help_text(cmd.help)
        out += ["```text", cmd.get_usage(ctx).strip(), "```", ""]
        rows = []
        for param in cmd.get_params(ctx):
            if param.name == "help" or getattr(param, "hidden", False):
                continue
            record = param.get_help_record(ctx)
            if record is None:
                continue
            names, help_ = record
            rows.append([_code(names), md_text(help_)])
        if rows:
            out += _table(["argument or option", "description"], rows)
    return "\n".join(out).rstrip() + "\n"


def _commands(group, ctx, prefix: str = "metacoop") -> list[tuple[str, Any, Any]]:
    """``(command path, command, context)`` of every visible command of ``group``, subgroups expanded."""
    found = []
    for name, cmd in group.commands.items():
        if getattr(cmd, "hidden", False):
            continue
        sub = cmd.context_class(cmd, info_name=name, parent=ctx)
        path = f"{prefix} {name}"
        if getattr(cmd, "commands", None):
            found += _commands(cmd, sub, path)
        else:
            found.append((path, cmd, sub))
    return found


def pages() -> dict[str, str]:
    """Every generated page: ``{path under docs/: Markdown}``."""
    return {
        "reference/model.md": model_reference(),
        "reference/configuration.md": config_reference(),
        "reference/cli.md": cli_reference(),
    }
