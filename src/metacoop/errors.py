"""Errors a user can act on.

Every error that comes from bad input (a scenario file, a ``--set`` override,
an output directory) is a :class:`InputError`. The CLI prints its message on
one line per problem and exits with status 2; it never shows a traceback for
them. Each problem names the key path, the value given and what is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input.

    Attributes:
        path: dotted key path in the scenario (``primary.lattice.shape``), or a
            file name for file-level problems.
        value: the offending value as the user wrote it (``repr``-ed on output).
        allowed: what would have been accepted, in words.
    """

    path: str
    value: object
    allowed: str

    def __str__(self) -> str:
        value = _short_repr(self.value)
        where = self.path or "<scenario>"
        return f"{where} = {value}: {self.allowed}"


def _short_repr(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class MetacoopError(Exception):
    """Base class of every error metacoop raises on purpose."""


class InputError(MetacoopError):
    """Bad input the user can fix: the message says what and where."""

    def __init__(self, problems: Iterable[Problem] | str):
        if isinstance(problems, str):
            self.problems: list[Problem] = []
            message = problems
        else:
            self.problems = list(problems)
            message = "; ".join(str(p) for p in self.problems)
        super().__init__(message)


class ConfigError(InputError):
    """The scenario configuration is invalid (schema, physics or resources)."""


class RunDirectoryError(InputError):
    """The output directory cannot be used (unwritable, or holds another run)."""


class SimulationError(MetacoopError):
    """A run stopped because a model invariant broke (a bug or a numerical failure)."""


class OutputError(MetacoopError):
    """Results or a checkpoint could not be written (full disk, directory no longer writable)."""


def path_argument(value: object, name: str, error: type[InputError] = InputError) -> Path:
    """``value`` as a :class:`~pathlib.Path` if it is a ``str`` or path-like, else ``error`` naming ``name``.

    For the path arguments of the Python API (given something else, :class:`~pathlib.Path` raises a
    bare ``TypeError``).
    """
    if isinstance(value, str | os.PathLike):
        return Path(value)
    raise error([Problem(name, value, "a path (str or pathlib.Path)")])
