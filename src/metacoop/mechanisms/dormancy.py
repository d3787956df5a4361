"""Dormancy: solitary dormant cells wake up and start cycling."""

from __future__ import annotations

import numpy as np

from metacoop.core.clones import per_step_probability
from metacoop.core.schedule import Phase
from metacoop.core.state import ACTIVE, DORMANT
from metacoop.kernels.cells import fresh_cycles
from metacoop.kernels.random import uniforms
from metacoop.mechanisms.base import Mechanism, StepContext


class Dormancy(Mechanism):
    """Dormant cells wake at their clone's ``wake_rate_per_h`` (they die at the death mechanism's rate)."""

    name = "dormancy"
    phase = Phase.ORGANS
    order = 5  # before extravasation, so a cell never wakes in the step it became dormant
    summary = (
        "dormant cells neither divide nor move; each wakes at its clone's wake_rate_per_h and "
        "starts a new cell cycle (dormant cells die at dormant_death_rate_per_h, see death)"
    )
    sources = ("Luzzi et al. 1998 Am J Pathol 153:865 (solitary dormant cells)",)

    def bind(self, sim) -> None:
        self.p = per_step_probability(sim.clones.wake_rate_per_h, sim.dt_h)
        self.active = bool((self.p > 0).any())
        self.clones = sim.clones

    refresh = bind  # bind only derives tables from the clone traits

    def step(self, ctx: StepContext) -> None:
        if not self.active:
            return
        t = ctx.time_h + ctx.dt_h
        for site in ctx.sim.organs:
            c = site.cells
            dormant = np.flatnonzero(c.live("state") == DORMANT)
            if dormant.size == 0:
                continue
            u = uniforms(site.streams.key, self.stream, ctx.step, c.uid[dormant], 0,
                         np.empty(dormant.size))
            wake = dormant[u < self.p[c.clone[dormant]]]
            if wake.size == 0:
                continue
            c.state[wake] = ACTIVE
            fresh_cycles(wake, c.uid, c.clone, c.phen, c.cycle_h, self.clones.cycle_shape,
                         self.clones.cycle_scale_h, site.streams.key, self.stream, ctx.step)
            site.count("woke", c.clone[wake])
            for i in wake:
                ctx.sim.events.append({"time_h": t, "step": ctx.step, "event": "wake",
                                       "compartment": site.name, "met_id": int(c.met[i]), "size": 1,
                                       "cell_uids": [int(c.uid[i])]})
