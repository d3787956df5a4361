"""MMP-2 secretion: cells add protease to a diffusible field at their point."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from metacoop.config.base import MechanismParams
from metacoop.core.schedule import Phase
from metacoop.errors import Problem
from metacoop.mechanisms.base import Mechanism, StepContext, field_problems


class SecretionParams(MechanismParams):
    """Parameters of :class:`Mmp2Secretion`."""

    field: str = Field("mmp2", description="field the protease is added to (normalised concentration)")


class Mmp2Secretion(Mechanism):
    """Each cell adds ``mmp2_secretion_per_h * dt`` to the MMP-2 field at its point."""

    name = "mmp2_secretion"
    phase = Phase.CELL_RULES
    order = 50
    Params = SecretionParams
    summary = (
        "each cell secretes MMP-2 at its clone's mmp2_secretion_per_h (concentration per h), "
        "added to the field at its lattice point; the field then diffuses and decays"
    )
    sources = ("Franssen et al. 2019 Bull Math Biol 81:1965 (MMP-2 source term)",)

    def bind(self, sim) -> None:
        self.table = sim.clones.mmp2_secretion_per_h * sim.dt_h
        self.active = bool(np.any(self.table > 0))

    refresh = bind  # bind only derives tables from the clone traits

    def step(self, ctx: StepContext) -> None:
        if not self.active:
            return
        for site in ctx.sim.sites:
            site.secrete(self.params.field, self.table)

    @classmethod
    def check(cls, params: SecretionParams, config) -> list[Problem]:
        return field_problems(cls.name, params, ("field",), config)
