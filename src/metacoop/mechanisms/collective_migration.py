"""Collective migration: leaders open tracks, followers use them, groups detach together.

Leader cells are the mesenchymal cells of clones with ``leader = true``
(high protease, high motility). Leaders degrade the ECM as every cell does
(``ecm_degradation``) and mark where they are with a short-range signal
(``leader_field``, secreted at ``leader_signal_per_h``). Every other cell is
a follower: besides its own diffusion and haptotaxis it follows two cues,

* tracks: a move into a point whose ECM is degraded to ``w`` is more likely by
  ``track_following_um2_per_h * (1 - w) dt/dx^2`` (a level cue: followers
  enter tracks and run along them, whichever way they lead);
* leaders: followers climb the signal's receptor occupancy ``s / (K + s)``
  with sensitivity ``leader_attraction_um2_per_h``.

Groups detach together: when cells enter a vessel point, each active cell on
a neighbouring point joins their CTC with probability ``escort_probability``
times its clone's cohesion, so clusters leave through vessels as groups.
Tracks persist and refill slowly: the ECM relaxes back towards its initial
density at ``track_recovery_per_h``.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from metacoop.config.base import MechanismParams, NonNegative, Positive, Probability, RatePerHour
from metacoop.core.modifiers import Cue, saturating_cue
from metacoop.core.schedule import Phase
from metacoop.errors import Problem
from metacoop.kernels.cells import listed_near
from metacoop.kernels.fields import clipped_complement, relax_toward
from metacoop.kernels.random import uniforms
from metacoop.mechanisms.base import Mechanism, StepContext, field_problems


class CollectiveParams(MechanismParams):
    """Parameters of :class:`CollectiveMigration`."""

    enabled: bool = Field(False, description="include this mechanism in the schedule")
    ecm_field: str = Field("ecm", description="ECM field whose degraded tracks followers use")
    leader_field: str = Field("leader_signal", description="field of the leaders' short-range signal")
    leader_signal_per_h: NonNegative = Field(
        0.5, description="signal secreted per leader cell, normalised concentration per h"
    )
    leader_half_saturation: Positive = Field(0.05, description="signal giving half receptor occupancy")
    track_following_um2_per_h: NonNegative = Field(
        60.0, description="followers' sensitivity to degraded-ECM tracks, µm²/h per unit track depth "
        "(same order as haptotaxis; assumption)",
    )
    leader_attraction_um2_per_h: NonNegative = Field(
        60.0, description="followers' sensitivity to the leader signal, µm²/h per unit occupancy (assumption)"
    )
    escort_probability: Probability = Field(
        0.5, description="probability that a cell next to a vessel point cells are entering joins "
        "them, times its clone's cohesion",
    )
    track_recovery_per_h: RatePerHour = Field(
        0.002, description="rate at which degraded ECM relaxes back to its initial density, 1/h "
        "(tracks last weeks; assumption)",
    )


class CollectiveMigration(Mechanism):
    """Leader signal, follower cues, escorts at intravasation and track recovery."""

    name = "collective_migration"
    phase = Phase.CELL_RULES
    order = 28
    Params = CollectiveParams
    summary = (
        "mesenchymal cells of leader clones open ECM tracks and emit a short-range signal; other "
        "cells climb tracks (1 - ECM) and the signal; cells next to a vessel point that cells "
        "enter join them with escort_probability * cohesion, so groups leave together"
    )
    sources = (
        "Friedl et al. 1995 Cancer Res 55:4557 (coordinated cluster migration)",
        "Gaggioli et al. 2007 Nat Cell Biol 9:1392 (leader cells make tracks for followers)",
        "Cheung et al. 2013 Cell 155:1639 (leader cells in collective invasion)",
    )

    @classmethod
    def site_fields(cls, params: CollectiveParams) -> dict[str, dict[str, dict]]:
        return {"primary": {params.leader_field: {
            "description": "short-range signal of leader cells, normalised",
            "diffusion_um2_per_h": 360.0, "decay_per_h": 0.5}}}

    @classmethod
    def motility_terms(cls, params: CollectiveParams, config, site: str):
        if site != "primary":
            return 1.0, None
        follow = params.track_following_um2_per_h + params.leader_attraction_um2_per_h
        return 1.0, np.full((len(config.clones), 2), follow)

    def bind(self, sim) -> None:
        p = self.params
        self.recover = -math.expm1(-p.track_recovery_per_h * sim.dt_h)
        self.cohesion = sim.clones.cohesion
        self.sites = [sim.primary] if sim.primary is not None else []
        self.initial_ecm = {}
        self.cues = []
        #: per site, the group each lattice point joins in :meth:`escort` (-1 between calls)
        self._near: dict[str, np.ndarray] = {}
        for site in self.sites:
            ecm = site.fields[p.ecm_field]
            signal = site.fields[p.leader_field]
            self.initial_ecm[site.name] = ecm.flat.copy()

            def track(ctx, out, ecm=ecm):
                return clipped_complement(ecm.flat, 0.0, 1.0, out)  # clip(1 - w, 0, 1)

            scale = sim.dt_h / site.lattice.spacing_um**2
            tracks = Cue(f"{self.name}.tracks", track, np.zeros(0), level=True)
            occupancy = saturating_cue(signal, p.leader_half_saturation)
            leaders = Cue(f"{self.name}.leaders", occupancy, np.zeros(0))
            site.modifiers.cues += [tracks, leaders]
            self.cues.append((tracks, leaders, scale))
            site.modifiers.escorts.append((self.name, self.escort))
        self.refresh(sim)

    def refresh(self, sim) -> None:
        p = self.params
        leader = np.zeros((len(sim.clones), 2), bool)
        leader[:, 1] = sim.clones.leader
        self.secretion = np.where(leader, p.leader_signal_per_h * sim.dt_h, 0.0)
        self.active = bool(self.secretion.any())
        for tracks, leaders, scale in self.cues:
            tracks.sensitivity = np.where(leader, 0.0, p.track_following_um2_per_h * scale)
            leaders.sensitivity = np.where(leader, 0.0, p.leader_attraction_um2_per_h * scale)

    def step(self, ctx: StepContext) -> None:
        p = self.params
        for site in self.sites:
            if self.recover > 0:
                relax_toward(site.fields[p.ecm_field].flat, self.initial_ecm[site.name], self.recover)
            if self.active:
                site.secrete(p.leader_field, self.secretion)

    def escort(self, ctx: StepContext, site, leaving: np.ndarray, group_point: np.ndarray) -> None:
        """Add cells next to an entering group to it (in place: ``leaving`` and ``group_point``)."""
        c = site.cells
        entry = np.unique(group_point[leaving])
        if entry.size == 0 or self.params.escort_probability == 0.0:
            return
        # The group each point next to an entry point joins (-1: none), in an array kept at -1 between
        # calls: only these few points are written, and put back below.
        near = self._near.get(site.name)
        if near is None:
            near = self._near[site.name] = np.full(site.lattice.n_points, -1, np.int64)
        nb = site.lattice.neighbours(entry)
        for d in range(nb.shape[1] - 1, -1, -1):  # the first neighbour direction wins ties
            ok = nb[:, d] >= 0
            near[nb[ok, d]] = entry[ok]
        near[entry] = -1  # cells on the vessel point itself decided already
        cand = np.empty(c.n, np.int64)
        cand = cand[: listed_near(c.n, c.pos, c.state, c.flags, leaving, near, cand)]
        joins = near[c.pos[cand]]
        near[nb[nb >= 0]] = -1
        if cand.size == 0:
            return
        u = uniforms(site.streams.key, self.stream, ctx.step, c.uid[cand], 0, np.empty(cand.size))
        going = u < self.params.escort_probability * self.cohesion[c.clone[cand]]
        go = cand[going]
        leaving[go] = True
        group_point[go] = joins[going]

    @classmethod
    def check(cls, params: CollectiveParams, config) -> list[Problem]:
        return field_problems(cls.name, params, ("ecm_field",), config, sites=("primary",))
