"""The driver: builds the compartments and the schedule, then steps the clock.

``Simulation(config)`` builds everything from a validated configuration (no
globals, no I/O). Each call to :meth:`Simulation.step` runs the plan once
(see :mod:`metacoop.core.schedule`; ``describe_schedule()`` prints it):

1. FIELDS: every field applies the sources accumulated last step, then
   diffuses and decays (``fields``); ECM degradation follows.
2. CELL_RULES: phenotype switch, death requests, movement, proliferation,
   secretion, in every lattice site (primary and organs).
3. RESOLVE: requested deaths are applied at once.
4. INTRAVASATION: cells on vessel points enter the circulation as CTCs.
5. CIRCULATION: injections (``inject``), transit (``transit``), CTC death,
   disaggregation.
6. ARREST: CTCs reaching a capillary bed are counted (``arrivals``), arrest,
   or pass on along the organ's drainage route (``pass_through``).
7. ORGANS: dormancy, extravasation, then the metastasis registry is brought
   up to date (``metastases``), then the angiogenic switch.
8. SYSTEMIC: systemic factor levels (``systemic``).
9. RECORD: time series and snapshots at their intervals; accounting checked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from metacoop.compartments.circulation import Circulation
from metacoop.compartments.metastases import STATUS, MetastasisRegistry
from metacoop.compartments.site import Site, exact_counts, fractions_of
from metacoop.config.schema import SimulationConfig
from metacoop.core.clones import PHENOTYPES, TRAIT_COLUMNS
from metacoop.core.rng import compartment_streams
from metacoop.core.schedule import Phase, Slot, build_plan, describe
from metacoop.core.state import uid_base
from metacoop.errors import InputError, Problem, SimulationError
from metacoop.kernels.dispatch import SmallWorkTrials, small_work_parallel
from metacoop.mechanisms import REGISTRY, Mechanism, StepContext
from metacoop.observers.recorder import Recorder

#: Every this many steps, a site with at least ``SORT_MIN_CELLS`` cells sorts them by lattice point
#: (:meth:`~metacoop.compartments.site.Site.sort_cells`). Below that the lattice arrays fit in the
#: cache and the order does not matter (franssen2019 at 50,000 cells: no faster sorted).
SORT_EVERY_STEPS = 256
SORT_MIN_CELLS = 100_000

#: The engine's own tasks in the schedule: (phase, order, name, what it does).
ENGINE_TASKS = (
    (Phase.FIELDS, 0, "fields", "every field applies last step's sources, then diffuses and decays"),
    (Phase.RESOLVE, 0, "resolve", "cells whose death was requested this step are removed; every "
     f"{SORT_EVERY_STEPS} steps a site with at least {SORT_MIN_CELLS:,} cells puts them in lattice order"),
    (Phase.CIRCULATION, 0, "inject", "scheduled injections put cells into the blood"),
    (Phase.CIRCULATION, 5, "transit", "CTCs travel towards their next capillary bed"),
    (Phase.ARREST, 0, "arrivals", "CTCs reaching an organ's capillary bed are counted"),
    (Phase.ARREST, 100, "pass_through", "CTCs that did not arrest pass on along the organ's drainage"),
    (Phase.ORGANS, 25, "metastases", "metastasis sizes and statuses are brought up to date"),
    (Phase.SYSTEMIC, 0, "systemic", "systemic factor levels follow the primary burden"),
)


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
        if not isinstance(config, SimulationConfig):
            raise InputError([Problem("config", config, "a SimulationConfig from metacoop.load_scenario")])
        self.config = config
        self.check_every_step = check
        self.dt_h = config.dt_h
        self.n_steps = config.n_steps
        self.clones = config.clone_table()
        self.step_index = 0
        self.events: list[dict] = []
        #: the next id of an injected cell (injections count as one more compartment)
        self.injection_next_uid = uid_base(len(config.sites()))
        self.sites: list[Site] = []
        for index, (name, site_cfg) in enumerate(config.sites().items()):
            site = Site(name, site_cfg, config, self.clones, compartment_streams(config.seed, name), index)
            site.seed_tumour(site_cfg, self.clones)
            site.place_vessels(site_cfg)
            self.sites.append(site)
        self.primary = self.sites[0] if config.primary is not None else None
        self.organs = [s for s in self.sites if s.is_organ]
        for i, organ in enumerate(self.organs):
            organ.organ_index = i
        circ_streams = compartment_streams(config.seed, "circulation")
        self.circulation = Circulation(config, [o.name for o in self.organs], len(self.clones),
                                       circ_streams.key, self.events)
        self._injection_rng = compartment_streams(config.seed, "injections").generator
        self.metastases = MetastasisRegistry()
        self.mechanisms: list[Mechanism] = [
            mech(params, self)
            for name, mech in REGISTRY.items()
            if (params := getattr(config.mechanisms, name)).enabled
        ]
        slots = [Slot(phase, order, name, 1, getattr(self, f"_{name}_task"))
                 for phase, order, name, _ in ENGINE_TASKS]
        slots += [Slot(m.phase, m.order, m.name, 1, m.step) for m in self.mechanisms]
        self.plan = build_plan(slots)
        self.recorder = Recorder(self)
        self.recorder.record(0, 0.0)
        self.recorder.snapshot(0.0)
        #: Times whole steps to choose whether small kernels run on several threads (speed only).
        self.trials = SmallWorkTrials()

    @property
    def time_h(self) -> float:
        """Simulated time reached, h."""
        return self.step_index * self.dt_h

    @property
    def n_cells(self) -> int:
        """Live cells in every compartment."""
        return sum(s.cells.n for s in self.sites) + self.circulation.cells.n

    def site(self, name: str) -> Site:
        """The lattice site called ``name``."""
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(name)

    def metastases_rows(self) -> list[dict]:
        """One dict per founded metastasis, with its current clone composition."""
        reg = self.metastases
        k = len(self.clones)
        counts = np.zeros(reg.n * k, np.int64)
        for organ in self.organs:
            met = organ.cells.live("met").astype(np.int64)
            sel = met >= 0
            counts += np.bincount(met[sel] * k + organ.cells.live("clone")[sel], minlength=reg.n * k)
        counts = counts.reshape(reg.n, k)
        composition = {int(m): {self.clones.names[c]: int(counts[m, c]) for c in np.flatnonzero(counts[m])}
                       for m in np.flatnonzero(counts.sum(axis=1))}
        return reg.table([o.name for o in self.organs], self.clones.names, composition)

    def refresh_clones(self) -> None:
        """Tell every mechanism that the clone trait table changed (a clone was added)."""
        for mech in self.mechanisms:
            mech.refresh(self)

    def clones_table(self) -> pd.DataFrame:
        """One row per clone that exists: name, parent clone, time it arose and every trait."""
        t = self.clones
        n = t.n_existing
        names = list(t.names)
        data = {"clone": names, "parent_clone": [names[p] if p >= 0 else None for p in t.parent[:n]],
                "created_h": t.created_h[:n].copy()}
        for trait in TRAIT_COLUMNS:
            arr = getattr(t, trait)[:n]
            if arr.ndim == 2:
                for j, phen in enumerate(PHENOTYPES):
                    data[f"{trait}.{phen}"] = arr[:, j].copy()
            else:
                data[trait] = arr.copy()
        df = pd.DataFrame(data)
        return df.astype({"clone": "string", "parent_clone": "string"})

    def describe_schedule(self) -> str:
        """The resolved plan: phases, tasks in order and their time steps."""
        return describe(self.plan, self.dt_h)

    def step(self) -> None:
        """Advance the simulation by one base step."""
        start = time.perf_counter()
        small_work_parallel(self.trials.setting())
        step = self.step_index
        ctx = StepContext(self, step, self.time_h, self.dt_h)
        for site in self.sites:
            site.step_first_uid = site.next_uid
            site.arrivals_pos.clear()
            site.arrivals_clone.clear()
        for slot in self.plan:
            if slot.every == 1 or step % slot.every == 0:
                slot.run(ctx)
        self.step_index += 1
        final = self.step_index == self.n_steps
        if self.check_every_step or self.step_index % self.recorder.record_every == 0 or final:
            self.check_accounting()
            self.check_fields()
        self.recorder.after_step(self.step_index, self.time_h, final=final)
        self.trials.record(time.perf_counter() - start)

    def run(self, progress: Callable[[Progress], None] | None = None, every_s: float = 0.2,
            after_step: Callable[[], None] | None = None) -> None:
        """Run to the end of the scenario, calling ``progress`` about every ``every_s`` seconds.

        ``after_step`` (if given) is called after every step (checkpoints).
        """
        start = time.perf_counter()
        last = -every_s
        while self.step_index < self.n_steps:
            self.step()
            if after_step is not None:
                after_step()
            now = time.perf_counter() - start
            if progress is not None and (now - last >= every_s or self.step_index == self.n_steps):
                last = now
                progress(Progress(self.step_index, self.n_steps, self.time_h, self.n_cells, now))

    def check_fields(self) -> None:
        """Raise :class:`~metacoop.errors.SimulationError` on a NaN, infinite or negative value.

        Fields are concentrations and densities: a value that is not finite or
        is below zero is a numerical failure, reported with the field, the
        compartment, the lattice point and the time, never clamped.
        """
        for site in self.sites:
            for name, f in site.fields.items():
                if f.zero:
                    continue
                v = f.flat
                bad = ~np.isfinite(v) | (v < 0)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    x, y, z = (int(c[0]) for c in site.lattice.coords(np.array([i])))
                    where = f"(x={x}, y={y})" if site.lattice.ndim == 2 else f"(x={x}, y={y}, z={z})"
                    raise SimulationError(
                        f"field {name} of {site.name} is {v[i]!r} at lattice point {where} at "
                        f"t = {self.time_h:.4g} h ({int(bad.sum())} bad points); concentrations must be "
                        "finite and non-negative"
                    )

    def check_accounting(self) -> None:
        """Raise :class:`~metacoop.errors.SimulationError` if any cell is unaccounted for."""
        for site in self.sites:
            site.check_accounting(self.time_h)
        circ = self.circulation
        circ.check_accounting(self.time_h)
        n = len(self.clones)
        emigrated = sum((s.counters["emigrated"] for s in self.sites), np.zeros(n, np.int64))
        arrested = sum((s.counters["immigrated"] for s in self.organs), np.zeros(n, np.int64))
        for what, sent, got in (("sites -> circulation", emigrated, circ.counters["immigrated"]),
                                ("circulation -> organs", circ.counters["emigrated"], arrested)):
            if not np.array_equal(sent, got):
                raise SimulationError(
                    f"cells lost between compartments ({what}) at t = {self.time_h:.4g} h: "
                    f"sent {sent.tolist()}, received {got.tolist()}"
                )

    # -- engine tasks -------------------------------------------------------
    def _fields_task(self, ctx: StepContext) -> None:
        for site in self.sites:
            for name, f in site.fields.items():
                site.solvers[name].step(f)

    def _resolve_task(self, ctx: StepContext) -> None:
        sort = ctx.step > 0 and ctx.step % SORT_EVERY_STEPS == 0  # (seeding already lays cells out nearby)
        for site in self.sites:
            if site.cells.n:  # an empty site (an organ before any arrival) has no death to resolve
                site.resolve_deaths()
            if sort and site.cells.n >= SORT_MIN_CELLS:
                site.sort_cells()

    def _inject_task(self, ctx: StepContext) -> None:
        for inj in self.config.injections:
            if round(inj.time_h / self.dt_h) != ctx.step:
                continue
            self._inject_one(inj, ctx)

    def _inject_one(self, inj, ctx: StepContext) -> None:
        rng = self._injection_rng
        k = inj.cells
        clone = np.repeat(np.arange(self.clones.n_existing, dtype=np.int16),
                          exact_counts(fractions_of(inj.clone_fractions, self.clones), k))
        rng.shuffle(clone)
        phen = np.zeros(k, np.int8)
        phen[: round(inj.mesenchymal_fraction * k)] = 1
        rng.shuffle(phen)
        sizes = np.array(sorted(inj.cluster_sizes))
        cells_per_size = exact_counts(np.array([inj.cluster_sizes[s] for s in sizes]), k)
        n_ctc = cells_per_size // sizes
        singles = k - int((n_ctc * sizes).sum())
        group_sizes = np.concatenate([np.repeat(sizes, n_ctc), np.ones(singles, np.int64)])
        labels = np.repeat(np.arange(group_sizes.size), group_sizes)
        uid = np.arange(self.injection_next_uid, self.injection_next_uid + k, dtype=np.int64)
        self.injection_next_uid += k
        t = ctx.time_h
        cells = {"uid": uid, "parent": np.full(k, -1), "lineage": uid, "met": np.full(k, -1),
                 "birth_h": np.full(k, t), "cycle_h": np.zeros(k), "clone": clone, "phen": phen}
        circ = self.circulation
        route = np.full(group_sizes.size, circ.route_index(inj.vessel), np.int16)
        circ.add_ctcs(cells, labels, route, -1, ctx.step, ctx.time_h, remaining_h=inj.transit_h)
        per = np.bincount(clone, minlength=len(self.clones))
        circ.counters["injected"] += per
        self.events.append({
            "time_h": t, "step": ctx.step, "event": "injection", "compartment": circ.name,
            "route": inj.vessel, "size": k, "n_epithelial": int((phen == 0).sum()),
            "n_mesenchymal": int((phen == 1).sum()),
            "composition": _json({self.clones.names[i]: int(v) for i, v in enumerate(per) if v}),
        })

    def _transit_task(self, ctx: StepContext) -> None:
        self.circulation.advance(ctx.time_h, ctx.dt_h)

    def _arrivals_task(self, ctx: StepContext) -> None:
        circ = self.circulation
        slots = circ.arrived()
        if slots.size == 0:
            return
        at = np.full(circ.ctcs.n, -1, np.int64)
        at[slots] = circ.ctcs.dest[slots]
        organ_of_cell = at[circ.member_slots()]
        clone = circ.cells.live("clone")
        for organ in self.organs:
            organ.count("arrived", clone[organ_of_cell == organ.organ_index])

    def _pass_through_task(self, ctx: StepContext) -> None:
        circ = self.circulation
        slots = circ.arrived()
        if slots.size == 0:
            return
        drains = np.array([circ.route_index(o.organ.drains_to) for o in self.organs], np.int16)
        circ.reroute(slots, drains[circ.ctcs.dest[slots]], ctx.step)

    def _metastases_task(self, ctx: StepContext) -> None:
        reg = self.metastases
        if reg.n == 0:
            return
        t = ctx.time_h + ctx.dt_h
        for organ in self.organs:
            c = organ.cells
            changes, organ.met_room = reg.update(organ.organ_index, c.live("met"), c.live("state"),
                                                 organ.organ.avascular_max_cells)
            for m, old, new in changes:
                self.events.append({"time_h": t, "step": ctx.step, "event": "status_change",
                                    "compartment": organ.name, "met_id": m, "size": int(reg.size[m]),
                                    "status_from": STATUS[old], "status_to": STATUS[new]})

    def _systemic_task(self, ctx: StepContext) -> None:
        circ = self.circulation
        if not circ.levels:
            return
        burden = self.primary.cells.n if self.primary is not None else 0
        for name, f in self.config.circulation.factors.items():
            c = f.clearance_per_h
            source = f.secretion_per_cell_per_h * burden
            if c > 0:
                decay = math.exp(-c * ctx.dt_h)
                circ.levels[name] = circ.levels[name] * decay + source / c * (1.0 - decay)
            else:
                circ.levels[name] += source * ctx.dt_h


def _json(obj) -> str:
    import json

    return json.dumps(obj, sort_keys=True)
