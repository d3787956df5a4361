"""The schedule: named phases in a fixed order, mechanisms slotted into them.

One step of the base clock runs the phases in this order (DESIGN §2):

    FIELDS -> CELL_RULES -> RESOLVE -> INTRAVASATION -> CIRCULATION -> ARREST
    -> ORGANS -> SYSTEMIC -> RECORD

Within a phase mechanisms run by ``order`` then name. A mechanism switched
off in the configuration is simply absent from the plan. ``describe()``
prints the resolved plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Phase(IntEnum):
    """Slots of one step, in execution order."""

    FIELDS = 10
    CELL_RULES = 20
    RESOLVE = 30
    INTRAVASATION = 40
    CIRCULATION = 50
    ARREST = 60
    ORGANS = 70
    SYSTEMIC = 80
    RECORD = 90


@dataclass(frozen=True)
class Slot:
    """One entry of the plan: what runs, when, and how often.

    Attributes:
        phase: the phase it runs in.
        order: position within the phase (lower first).
        name: the mechanism or engine task name.
        every: run every ``every`` base steps (1 = every step).
        run: callable taking the step context.
    """

    phase: Phase
    order: int
    name: str
    every: int
    run: object


def build_plan(slots: list[Slot]) -> list[Slot]:
    """Sort slots into execution order."""
    return sorted(slots, key=lambda s: (s.phase, s.order, s.name))


def describe(plan: list[Slot], dt_h: float) -> str:
    """A table of the plan: phase, order, name and time step."""
    lines = [f"{'phase':<14}{'order':>6}  {'name':<22}{'dt (h)':>10}"]
    for s in plan:
        lines.append(f"{s.phase.name:<14}{s.order:>6}  {s.name:<22}{s.every * dt_h:>10.4g}")
    return "\n".join(lines)
