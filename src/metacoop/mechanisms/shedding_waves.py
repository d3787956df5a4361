"""Temporal cooperation: cells are shed in successive waves.

Intravasation is open only during the scenario's waves (time windows
``[start, end)``), so cells leave the primary site in bursts; cells enter
the blood at the end of a step, and a step is open when that time is in a
window, so every ``intravasation`` event falls inside one. What earlier waves leave behind
(tracks, ruptured vessels, a niche, induced adhesion molecules) persists and
decays with each mechanism's own time constant, so later waves meet a
conditioned route. Which wave a cell left in follows from the time of its
``intravasation`` event.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from metacoop.config.base import MechanismParams, NonNegative
from metacoop.core.schedule import Phase
from metacoop.errors import Problem
from metacoop.mechanisms.base import Mechanism, StepContext

Window = Annotated[list[NonNegative], Field(min_length=2, max_length=2)]


class WavesParams(MechanismParams):
    """Parameters of :class:`SheddingWaves`."""

    enabled: bool = Field(False, description="include this mechanism in the schedule")
    waves_h: list[Window] = Field(
        default_factory=lambda: [[48.0, 72.0], [144.0, 168.0]], min_length=1, max_length=10_000,
        description="shedding windows [start, end), h; intravasation is closed between them",
    )


class SheddingWaves(Mechanism):
    """Registers an intravasation gate on every site that sheds cells."""

    name = "shedding_waves"
    phase = Phase.INTRAVASATION
    order = 0
    Params = WavesParams
    summary = (
        "cells intravasate only during the shedding windows waves_h; conditioning left by earlier "
        "waves persists with each mechanism's own time constant"
    )
    sources = ("Bidard et al. 2008 Cancer Metastasis Rev 27:5 (temporal cooperation)",)

    def bind(self, sim) -> None:
        windows = [tuple(w) for w in self.params.waves_h]

        def gate(time_h: float) -> bool:
            return any(a <= time_h < b for a, b in windows)

        for site in sim.sites:
            site.modifiers.gates.append((self.name, gate))

    def step(self, ctx: StepContext) -> None:
        """Nothing to do each step: intravasation consults the gate."""

    def wave_of(self, time_h: float) -> int:
        """Index of the wave whose window holds ``time_h`` (-1 between waves)."""
        for i, (a, b) in enumerate(self.params.waves_h):
            if a <= time_h < b:
                return i
        return -1

    @classmethod
    def check(cls, params: WavesParams, config) -> list[Problem]:
        problems = []
        for i, (a, b) in enumerate(params.waves_h):
            if b <= a:
                problems.append(Problem(f"mechanisms.{cls.name}.waves_h.{i}", [a, b],
                                        "each wave is [start, end) with end > start, h"))
        return problems
