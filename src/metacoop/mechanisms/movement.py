"""Cell movement: random motility plus haptotaxis up the ECM gradient.

The discrete rule of Anderson (2005) and Franssen et al. (2019): in one step a
cell moves to neighbour ``nb`` with probability ``(D + Phi g) dt / dx**2`` and
otherwise stays. ``D`` (µm²/h) and ``Phi`` (µm²/h per unit ECM density) are
clone traits per phenotype. Two discretisations of the gradient ``g``:

* ``upwind`` (default): ``g = max(0, w_nb - w)``. Never negative, so the rule
  is a valid probability wherever the step obeys
  ``2 ndim (D + Phi) dt / dx**2 <= 1`` (ECM is normalised to [0, 1]).
* ``central`` (Franssen 2019 as published): ``g = +-(w_plus - w_minus) / 4``.
  Negative wherever ``|w_plus - w_minus| > 4 D / Phi``; the scenario is
  refused unless ``Phi <= 4 D`` so that this can never happen.

A move into a point already holding ``capacity`` cells is cancelled; moves are
applied in cell order (decided in parallel, applied serially).

Two exact ways to draw the moves (``clock``):

* ``event``: each cell sleeps until its next candidate step, drawn from a
  geometric law whose rate (the site's ceiling) bounds every cell's move
  probability, and only candidates draw a move (thinning;
  :mod:`metacoop.kernels.move_clock`).
* ``step``: every cell draws every step, skipping the neighbours when its
  draw is above its own bound (:func:`metacoop.kernels.cells.decide_moves`).
* ``auto`` (default): ``event`` while the site's ceiling is at most
  :data:`EVENT_MAX_CEILING`, ``step`` above it, where most cells are
  candidates and the clock costs more than it saves.

They give every cell, in every step, the same probability of each move; they
use different random numbers, so runs agree in distribution, not cell by cell.
Changing clocks mid-run restarts every clock, which is exact (the gaps are
memoryless).

Other mechanisms change movement through the site's modifiers (see
:mod:`metacoop.core.modifiers`): ``motility`` factors multiply ``D`` at a
point (the protease public good) and cues add climbing terms (tracks, leader
signals, EGF). The stability check adds up every enabled mechanism's terms.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from metacoop.config.base import MechanismParams
from metacoop.core.clones import CloneTable
from metacoop.core.schedule import Phase
from metacoop.errors import Problem
from metacoop.kernels.bookkeeping import list_blocks
from metacoop.kernels.cells import apply_listed, apply_moves, decide_moves, lists_movers
from metacoop.kernels.dispatch import runs_parallel
from metacoop.kernels.move_clock import (
    CLOCK_BITS,
    LOW_LEVELS,
    MoveBounds,
    decide_moves_clocked,
    ecm_bits,
    ecm_range,
)
from metacoop.mechanisms.base import Mechanism, StepContext

#: Largest ceiling (move probability bound per step) at which ``clock = "auto"`` uses the event clock. The
#: event clock costs about 0.7 ns per cell and step plus 25-40 ns per candidate, the step clock 6-7 ns per
#: cell (one random draw each), so they break even near a ceiling of 0.13 (benchmarks/README.md).
EVENT_MAX_CEILING = 0.12
#: Factor by which a site's clock rate rises at least when a cell's move probability exceeds it (each
#: rise restarts every clock, a pass with two draws per cell).
CEILING_GROWTH = 1.25


class MovementParams(MechanismParams):
    """Parameters of :class:`Movement`."""

    scheme: Literal["upwind", "central"] = Field(
        "upwind", description="discretisation of the haptotactic gradient"
    )
    ecm_field: str = Field("ecm", description="field that cells climb (normalised density)")
    clock: Literal["auto", "event", "step"] = Field(
        "auto", description="event: cells draw only at candidate steps (exact thinning); step: every cell "
        "draws every step; auto: event while moves are rare (every cell's move probability per step is "
        f"bounded by {EVENT_MAX_CEILING}), step otherwise; all three are exact"
    )


def move_probabilities(clones, dt_h: float, dx_um: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-step ``(D dt/dx², Phi dt/dx²)`` tables ``[clone, phenotype]``, dimensionless."""
    f = dt_h / dx_um**2
    return clones.diffusion_um2_per_h * f, clones.haptotaxis_um2_per_h * f


class Movement(Mechanism):
    """Moves cells by the diffusion-haptotaxis probabilities."""

    name = "movement"
    phase = Phase.CELL_RULES
    order = 30
    Params = MovementParams
    summary = (
        "cells move to a neighbouring lattice point with probability "
        "(D + Phi*g) dt/dx^2, g the ECM gradient towards it; moves into full points are cancelled"
    )
    sources = (
        "Anderson 2005 Math Med Biol 22:163",
        "Franssen et al. 2019 Bull Math Biol 81:1965",
    )

    def bind(self, sim) -> None:
        self.upwind = self.params.scheme == "upwind"
        self.refresh(sim)
        #: Per site, the move rate ``C`` the cells' clocks were drawn with (0: no clock yet).
        self.ceiling = {site.name: 0.0 for site in sim.sites}
        #: Per site, the low ceiling (cells on degraded ECM; 0 once the site's ECM has risen somewhere).
        self.ceiling_low = {site.name: 0.0 for site in sim.sites}
        #: Per site, whether the cells' clocks are running (False after steps drawn by the step clock).
        self.clocked = {site.name: False for site in sim.sites}
        #: Per site, whether its ECM has only fallen so far (the low ceiling needs it), and the ECM as
        #: the last step saw it.
        self.monotone = {site.name: True for site in sim.sites}
        self.previous_ecm = {site.name: site.fields[self.params.ecm_field].flat.copy() for site in sim.sites}
        #: per site, the ECM flat view last surveyed and its integer view (see _clock_rates)
        self._ecm_bits: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def refresh(self, sim) -> None:
        """Derive the per-step move tables from the clone traits (a clone was added)."""
        self.tables = {
            site.name: move_probabilities(sim.clones, sim.dt_h, site.lattice.spacing_um)
            for site in sim.sites
        }
        self.bounds = {site.name: MoveBounds(*self.tables[site.name], site.lattice.ndim, self.upwind)
                       for site in sim.sites}

    def checkpoint(self):
        return dict(self.previous_ecm), {"ceiling": self.ceiling, "ceiling_low": self.ceiling_low,
                                         "clocked": self.clocked, "monotone": self.monotone}

    def restore(self, arrays, state) -> None:
        for key in ("ceiling", "ceiling_low", "clocked", "monotone"):
            getattr(self, key).update(state.get(key, {}))
        for name, previous in arrays.items():
            self.previous_ecm[name][:] = previous

    def step(self, ctx: StepContext) -> None:
        n_clones = len(ctx.sim.clones)
        for site in ctx.sim.sites:
            c = site.cells
            if c.n == 0:
                continue
            p_diff, p_hapt = self.tables[site.name]
            mods = site.modifiers
            boost = mods.factor("motility", ctx)
            cues, sens, level = mods.cue_arrays(ctx, site.lattice.n_points, n_clones) if mods.cues else (
                None, None, None)
            ecm = site.fields[self.params.ecm_field].flat
            lat = site.lattice
            cells = (c.n, c.uid, c.pos, c.clone, c.phen, c.state, c.flags)
            rule = (p_diff, p_hapt, ecm, lat.dims_array, lat.ndim, self.upwind, site.streams.key, self.stream,
                    ctx.step)
            target = site.scratch_int(c.n)
            rates = self._clock_rates(site, ecm, boost, cues, sens)
            if rates is None:
                slope, marks = site.scratch_float(lat.n_points), site.scratch_mask(c.n)
                slots, counts = site.scratch_slots(c.n), np.empty(list_blocks(c.n), np.int64)
                if decide_moves(*cells, *rule, target, boost, cues, sens, level, slope, marks, slots, counts):
                    if lists_movers(c.n, lat.n_points, cues is not None):
                        apply_listed(c.pos, c.phen, target, c.flags, site.occ, site.mes_occ, site.capacity,
                                     slots, counts, beside=True)
                    else:
                        apply_moves(c.n, c.pos, c.phen, target, c.flags, site.occ, site.mes_occ,
                                    site.capacity, slots)
            elif rates[0] > 0.0:  # (0: no cell can move)
                # The serial build makes each move as it decides it; the parallel one leaves them to apply.
                clock = decide_moves_clocked
                serial = not runs_parallel(c.n, clock.min_items)
                if (clock.serial if serial else clock.parallel)(
                        *cells, c.wake, *rule, target, boost, cues, sens, level, *rates,
                        self.bounds[site.name].slope, LOW_LEVELS, site.scratch_mask(c.n),
                        site.scratch_slots(c.n), site.occ, site.mes_occ, site.capacity, serial):
                    apply_moves(c.n, c.pos, c.phen, target, c.flags, site.occ, site.mes_occ, site.capacity,
                                site.scratch_slots(c.n))

    def _clock_rates(self, site, ecm, boost, cues, sens) -> tuple[float, float] | None:
        """The ceilings of the site's event clock this step, ``(high, low)``, or None for the step clock.

        ``high`` is at least every cell's move probability and ``low`` at
        least that of a cell whose neighbours hold no ECM (see
        :func:`~metacoop.kernels.move_clock.move_bound`), the base of the
        ceilings of the clock's levels; ``low`` is 0 once the site's ECM has
        risen at some point (then every cell draws at ``high``).
        When a ceiling must rise it rises by at least a quarter (except the
        low one leaving the high one: it goes to its bound). Whenever a
        ceiling rises, the ECM rises, or the event clock takes over from the
        step clock, every clock of the site restarts (exact: the gaps are
        memoryless). While the ECM has only fallen, one pass over it compares
        it with the last step's and finds its range
        (:func:`~metacoop.kernels.move_clock.ecm_range`). Once ``auto`` has
        handed over to the step clock nothing is measured: the ceiling never
        falls, so the step clock stays (and the ECM's copy is not read again).
        """
        clock = self.params.clock
        name = site.name
        if clock == "step" or (clock == "auto" and self.ceiling[name] > EVENT_MAX_CEILING):
            return None
        restart = not self.clocked[name]
        viewed = self._ecm_bits.get(name)
        if viewed is None or viewed[0] is not ecm:  # (Field.flat is the same view while the values are)
            viewed = self._ecm_bits[name] = (ecm, ecm_bits(ecm))
        rose, lo, hi = ecm_range(ecm, self.previous_ecm[name] if self.monotone[name] else None, viewed[1])
        high, low = self.bounds[name](lo, hi, boost, cues, sens)
        capped = self.ceiling_low[name] >= self.ceiling[name]  # the low ceiling sits at the high one
        if high > self.ceiling[name]:
            self.ceiling[name] = min(1.0, max(high, CEILING_GROWTH * self.ceiling[name]))
            restart = True
        if clock == "auto" and self.ceiling[name] > EVENT_MAX_CEILING:
            self.clocked[name] = False
            return None
        if rose:
            self.monotone[name] = False
            self.ceiling_low[name] = 0.0
            restart = True
        low = min(low, self.ceiling[name])  # (a bound above the high ceiling: the high one serves)
        if self.monotone[name] and low > self.ceiling_low[name]:
            # Grown by a margin only from a value of its own: lifted off the high ceiling, it goes to its
            # bound (a margin there would keep most cells' ceiling a quarter too high for the whole run).
            grown = low if capped else max(low, CEILING_GROWTH * self.ceiling_low[name])
            self.ceiling_low[name] = min(self.ceiling[name], grown)
            restart = True
        if restart:
            site.cells.live("flags")[:] &= ~CLOCK_BITS
            self.clocked[name] = True
        return self.ceiling[name], self.ceiling_low[name]

    @classmethod
    def check(cls, params: MovementParams, config) -> list[Problem]:
        from metacoop.mechanisms import REGISTRY

        problems = []
        clones = CloneTable.from_config(config.clones)
        for site_name, site in config.sites().items():
            boost, extra, adding = 1.0, np.zeros((len(clones), 2)), []
            for name, mech in REGISTRY.items():
                mp = getattr(config.mechanisms, name)
                if mp.enabled and name != cls.name:
                    b, s = mech.motility_terms(mp, config, site_name)
                    boost *= b
                    if s is not None:
                        extra = extra + s
                    if b != 1.0 or (s is not None and np.any(s)):
                        adding.append(name)
            if params.ecm_field not in site.fields:
                problems.append(Problem(
                    "mechanisms.movement.ecm_field", params.ecm_field,
                    f"must name a field of {site_name}: {', '.join(site.fields) or 'none defined'}",
                ))
                continue
            ndim = len(site.lattice.shape)
            p_diff, p_hapt = move_probabilities(clones, config.dt_h, site.lattice.spacing_um)
            p_cue = extra * config.dt_h / site.lattice.spacing_um**2
            for i, clone in enumerate(clones.names):
                for j, phen in enumerate(("epithelial", "mesenchymal")):
                    d, h = p_diff[i, j] * boost, p_hapt[i, j] + p_cue[i, j]
                    where = f"clones.{clone}.diffusion_um2_per_h.{phen}"
                    if cls._unstable(params.scheme, ndim, d, h):
                        text = cls._bound_text(params.scheme, ndim, d, h, config.dt_h)
                        if adding:
                            text += (f" (D and Phi here include what {', '.join(adding)} add at "
                                     f"{site_name}: their largest motility factor and cue sensitivities)")
                        problems.append(Problem(where, float(clones.diffusion_um2_per_h[i, j]), text))
        return problems

    @staticmethod
    def _unstable(scheme: str, ndim: int, d: float, h: float) -> bool:
        if scheme == "upwind":
            return 2 * ndim * (d + h) > 1.0
        return 2 * ndim * d + h / 4 > 1.0 or h > 4 * d + 1e-15

    @staticmethod
    def _bound_text(scheme: str, ndim: int, d: float, h: float, dt_h: float) -> str:
        if scheme == "upwind":
            return (
                f"movement probabilities exceed 1: upwind scheme needs "
                f"2*ndim*(D + Phi)*dt/dx^2 <= 1, got {2 * ndim * (d + h):.3g} "
                f"(dt_h = {dt_h}); reduce dt_h, D or Phi"
            )
        if h > 4 * d:
            return (
                f"central scheme gives negative probabilities where |w+ - w-| > 4D/Phi; "
                f"needs Phi <= 4*D, got Phi*dt/dx^2 = {h:.3g} > 4*D*dt/dx^2 = {4 * d:.3g}; "
                f"use scheme = 'upwind' or lower the haptotaxis"
            )
        return (
            f"central scheme needs 2*ndim*D*dt/dx^2 + Phi*dt/(4 dx^2) <= 1, "
            f"got {2 * ndim * d + h / 4:.3g}; reduce dt_h"
        )
