"""The driver: builds the compartments and the schedule, then steps the clock.

``Simulation(config)`` builds everything from a validated configuration (no
globals, no I/O). Each call to :meth:`Simulation.step` runs the plan once
(see :mod:`metacoop.core.schedule`):

1. FIELDS: every field applies the sources accumulated last step, then
   diffuses and decays (``fields``); ECM degradation follows.
2. CELL_RULES: phenotype switch, death requests, movement, proliferation,
   secretion (each a mechanism that can be switched off).
3. RESOLVE: requested deaths are applied at once.
4. INTRAVASATION: cells on vessel points enter the circulation.
5. RECORD: time series and snapshots at their intervals; accounting checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from metacoop.compartments.circulation import Circulation
from metacoop.compartments.site import Site
from metacoop.config.schema import SimulationConfig
from metacoop.core.rng import compartment_streams
from metacoop.core.schedule import Phase, Slot, build_plan, describe
from metacoop.errors import SimulationError
from metacoop.mechanisms import REGISTRY, Mechanism, StepContext
from metacoop.observers.recorder import Recorder


@dataclass(frozen=True)
class Progress:
    """What a progress callback is told.

    Attributes:
        step: steps completed.
        n_steps: steps in the run.
        time_h: simulated time reached, h.
        cells: live cells in all compartments.
        wall_s: wall time since the run started, s.
    """

    step: int
    n_steps: int
    time_h: float
    cells: int
    wall_s: float


class Simulation:
    """One stochastic realisation of a scenario.

    Args:
        config: a validated (and checked) configuration.
        check: verify the cell-accounting invariant after every step (otherwise
            at every record interval).
    """

    def __init__(self, config: SimulationConfig, check: bool = False):
        self.config = config
        self.check_every_step = check
        self.dt_h = config.dt_h
        self.n_steps = config.n_steps
        self.clones = config.clone_table()
        self.step_index = 0
        self.events: list[dict] = []
        self.next_uid = 0
        self.sites: list[Site] = []
        for name, site_cfg in config.sites().items():
            site = Site(name, site_cfg, config, self.clones, compartment_streams(config.seed, name))
            self.next_uid += site.seed_tumour(site_cfg, self.clones, self.next_uid)
            site.place_vessels(site_cfg)
            self.sites.append(site)
        self.primary = self.sites[0]
        self.circulation = Circulation(len(self.clones), self.events)
        self.mechanisms: list[Mechanism] = [
            mech(params, self)
            for name, mech in REGISTRY.items()
            if (params := getattr(config.mechanisms, name)).enabled
        ]
        slots = [
            Slot(Phase.FIELDS, 0, "fields", 1, self._solve_fields),
            Slot(Phase.RESOLVE, 0, "resolve", 1, self._resolve),
        ]
        slots += [Slot(m.phase, m.order, m.name, 1, m.step) for m in self.mechanisms]
        self.plan = build_plan(slots)
        self.recorder = Recorder(self)
        self.recorder.record(0, 0.0)
        self.recorder.snapshot(0.0)

    @property
    def time_h(self) -> float:
        """Simulated time reached, h."""
        return self.step_index * self.dt_h

    @property
    def n_cells(self) -> int:
        """Live cells in every compartment."""
        return sum(s.cells.n for s in self.sites) + self.circulation.cells.n

    def describe_schedule(self) -> str:
        """The resolved plan: phases, tasks in order and their time steps."""
        return describe(self.plan, self.dt_h)

    def step(self) -> None:
        """Advance the simulation by one base step."""
        ctx = StepContext(self, self.step_index, self.time_h, self.dt_h)
        for slot in self.plan:
            if self.step_index % slot.every == 0:
                slot.run(ctx)
        self.step_index += 1
        final = self.step_index == self.n_steps
        if self.check_every_step or self.step_index % self.recorder.record_every == 0 or final:
            self.check_accounting()
        self.recorder.after_step(self.step_index, self.time_h, final=final)

    def run(self, progress: Callable[[Progress], None] | None = None, every_s: float = 0.2) -> None:
        """Run to the end of the scenario, calling ``progress`` about every ``every_s`` seconds."""
        start = time.perf_counter()
        last = -every_s
        while self.step_index < self.n_steps:
            self.step()
            now = time.perf_counter() - start
            if progress is not None and (now - last >= every_s or self.step_index == self.n_steps):
                last = now
                progress(Progress(self.step_index, self.n_steps, self.time_h, self.n_cells, now))

    def check_accounting(self) -> None:
        """Raise :class:`~metacoop.errors.SimulationError` if any cell is unaccounted for."""
        for site in self.sites:
            site.check_accounting(self.time_h)
        self.circulation.check_accounting(self.time_h)
        emigrated = sum(s.counters["emigrated"] for s in self.sites)
        received = self.circulation.counters["immigrated"]
        if not (emigrated == received).all():
            raise SimulationError(
                f"cells lost between compartments at t = {self.time_h:.4g} h: sites emigrated "
                f"{emigrated.tolist()}, circulation received {received.tolist()}"
            )

    def _solve_fields(self, ctx: StepContext) -> None:
        for site in self.sites:
            for name, f in site.fields.items():
                site.solvers[name].step(f)

    def _resolve(self, ctx: StepContext) -> None:
        for site in self.sites:
            site.resolve_deaths()
