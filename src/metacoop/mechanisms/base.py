"""What a mechanism is: a small, switchable rule with a slot in the schedule.

A mechanism has a ``name`` (its key under ``[mechanisms]`` in a scenario and
its random stream), a ``phase`` and an ``order`` in the schedule, a pydantic
``Params`` model whose fields carry units, a ``step(ctx)`` that updates the
state, a ``check`` run on the configuration before the run, and a
plain-English ``describe()``. It never branches on other mechanisms: turning
one off removes it from the plan and leaves the others' draws unchanged.

A mechanism that moves, adds, removes or switches the phenotype of a site's
cells keeps the site's per-point counts, ``occ`` (cells) and ``mes_occ``
(mesenchymal cells), which capacity and the secretions read: through the
site's methods (``immigrate``, ``emigrate``, ``resolve_deaths``,
``set_phenotype``) or the kernels that take both counts (``apply_moves``,
``divide``, ``vacate``). ``Simulation(check=True)`` compares both with the
cells after every step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from metacoop.config.base import MechanismParams
from metacoop.core.rng import stream_id
from metacoop.core.schedule import Phase
from metacoop.errors import Problem

if TYPE_CHECKING:
    from metacoop.config.schema import SimulationConfig
    from metacoop.core.simulation import Simulation


@dataclass(frozen=True)
class StepContext:
    """What a mechanism needs to know about the current step.

    Attributes:
        sim: the simulation (sites, circulation, clone table, event log).
        step: index of the base step being taken (0-based).
        time_h: simulated time at the start of the step, h.
        dt_h: length of the step, h.
    """

    sim: Simulation
    step: int
    time_h: float
    dt_h: float


class Mechanism(ABC):
    """Base class of every mechanism; see the module docstring."""

    name: ClassVar[str]
    phase: ClassVar[Phase]
    order: ClassVar[int] = 0
    Params: ClassVar[type[MechanismParams]] = MechanismParams
    summary: ClassVar[str] = ""
    sources: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: MechanismParams, sim: Simulation):
        self.params = params
        self.stream = stream_id(self.name)
        self.bind(sim)

    def bind(self, sim: Simulation) -> None:  # noqa: B027 - optional hook
        """Precompute per-step tables from the configuration (optional)."""

    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict]:
        """State this mechanism keeps between steps: ``(arrays, JSON-able data)`` (none by default)."""
        return {}, {}

    def restore(self, arrays: dict[str, np.ndarray], state: dict) -> None:  # noqa: B027 - optional hook
        """Inverse of :meth:`checkpoint`, called on a freshly bound mechanism."""

    def refresh(self, sim: Simulation) -> None:  # noqa: B027 - optional hook
        """Recompute tables derived from the clone trait table (a clone was added to it)."""

    @abstractmethod
    def step(self, ctx: StepContext) -> None:
        """Apply the rule for one step."""

    @classmethod
    def check(cls, params: MechanismParams, config: SimulationConfig) -> list[Problem]:
        """Problems with this mechanism's settings in ``config`` (run before the run)."""
        return []

    @classmethod
    def site_fields(cls, params: MechanismParams) -> dict[str, dict[str, dict]]:
        """Fields this mechanism needs, added to sites that do not define them.

        Returns ``{"primary" | "organs": {field name: FieldConfig keys}}``; the
        scenario may define a field of the same name to change its settings.
        """
        return {}

    @classmethod
    def systemic_factors(cls, params: MechanismParams) -> dict[str, dict]:
        """Systemic factors this mechanism needs, added to ``circulation.factors`` if missing."""
        return {}

    @classmethod
    def motility_terms(cls, params: MechanismParams, config: SimulationConfig, site: str):
        """What this mechanism adds to movement at ``site``, for the stability check.

        Returns ``(boost, sensitivity)``: the largest factor it multiplies the
        random motility by, and the cue sensitivities it adds ``[clone,
        phenotype]`` in µm²/h (cue signals are in [0, 1]); ``(1.0, None)`` for none.
        """
        return 1.0, None

    def describe(self) -> str:
        """Plain-English description with parameters (units in their names) and sources."""
        return self.description(self.params)

    @classmethod
    def description(cls, params: MechanismParams) -> str:
        """What :meth:`describe` prints, for given parameters (no simulation needed)."""
        lines = [f"{cls.name}: {cls.summary}"]
        fields = type(params).model_fields
        for key, value in params.model_dump().items():
            if key != "enabled":
                unit = fields[key].description or ""
                lines.append(f"    {key} = {value!r}" + (f"  ({unit})" if unit else ""))
        for src in cls.sources:
            lines.append(f"    source: {src}")
        return "\n".join(lines)


def field_problems(mechanism: str, params: MechanismParams, keys: tuple[str, ...], config: SimulationConfig,
                   sites: tuple[str, ...] | None = None) -> list[Problem]:
    """Problems for parameters ``keys`` of ``params`` that do not name a field of every site.

    ``sites`` limits the check to those sites (default: every site of the scenario).
    """
    problems = []
    for name, site in config.sites().items():
        if sites is not None and name not in sites:
            continue
        for key in keys:
            value = getattr(params, key)
            if value not in site.fields:
                known = ", ".join(site.fields) or "none defined"
                problems.append(Problem(f"mechanisms.{mechanism}.{key}", value,
                                        f"must name a field of {name}: {known}"))
    return problems


#: Empty modifier arrays passed to kernels when nothing is registered.
NO_FACTOR = np.zeros(0, np.float64)
NO_MASK = np.zeros(0, np.uint8)
