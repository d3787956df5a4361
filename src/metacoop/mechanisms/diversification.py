"""Phenotypic diversification: a daughter cell may found a new clone with traits near its parent's.

At each division the daughter founds a new clone with probability
``new_clone_probability`` (Nicolson 1984; Anderson et al. 2006). The new
clone's traits are its parent clone's, with each trait listed in ``traits``
moved by an independent normal shift of standard deviation ``trait_sd``:
rates are multiplied by ``exp(shift)``, probabilities moved by ``shift`` on
the logit scale (see :data:`metacoop.core.clones.VARIABLE_TRAITS`). So
cooperation can arise (a new producer of a public good), be exploited by
non-producers, and be lost. The trait table grows up to ``max_new_clones``
new rows; every new clone records its parent clone and the time it arose
(``clones.parquet`` and ``new_clone`` events), and its cells keep their
lineage.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from metacoop.config.base import MechanismParams, NonNegative, Probability
from metacoop.core.clones import VARIABLE_TRAITS
from metacoop.core.schedule import Phase
from metacoop.core.state import CELL_COLUMNS
from metacoop.errors import Problem
from metacoop.kernels.random import uniforms
from metacoop.mechanisms.base import Mechanism, StepContext


class DiversificationParams(MechanismParams):
    """Parameters of :class:`Diversification`."""

    enabled: bool = Field(False, description="include this mechanism in the schedule")
    new_clone_probability: Probability = Field(
        1e-3, description="probability that a daughter cell founds a new clone, per division"
    )
    trait_sd: NonNegative = Field(
        0.2, description="standard deviation of each trait's shift (log scale for rates, logit scale "
        "for probabilities), dimensionless",
    )
    traits: list[str] = Field(
        default_factory=lambda: list(VARIABLE_TRAITS), description="traits that vary between a clone "
        "and the clones it gives rise to",
    )
    max_new_clones: int = Field(200, ge=0, le=30_000, description="most clones created in a run, count")


class Diversification(Mechanism):
    """New clones at division; the trait table grows and every mechanism refreshes its tables."""

    name = "diversification"
    phase = Phase.CELL_RULES
    order = 45
    Params = DiversificationParams
    summary = (
        "a daughter cell founds a new clone with probability new_clone_probability; its traits are "
        "the parent clone's shifted by normal noise of trait_sd (log scale for rates, logit for "
        "probabilities); the trait table and lineage record every new clone's parent"
    )
    sources = (
        "Nicolson 1984 Clin Exp Metastasis 2:85 (generation of phenotypic diversity)",
        "Anderson et al. 2006 Cell 127:905 (clonal selection in a hybrid model)",
    )

    def bind(self, sim) -> None:
        self.full = False

    def checkpoint(self):
        return {}, {"full": self.full}

    def restore(self, arrays, state) -> None:
        self.full = bool(state.get("full", False))

    def step(self, ctx: StepContext) -> None:
        sim = ctx.sim
        p = self.params
        table = sim.clones
        t = ctx.time_h + ctx.dt_h
        added = False
        for site in sim.sites:
            c = site.cells
            uid = c.uid[: c.n]  # ids this site issued this step: its daughters
            newborn = np.flatnonzero((uid >= site.step_first_uid) & (uid < site.next_uid))
            if newborn.size == 0 or self.full:
                continue
            u = uniforms(site.streams.key, self.stream, ctx.step, c.uid[newborn], 0, np.empty(newborn.size))
            for i in newborn[u < p.new_clone_probability]:
                if table.n_existing >= len(table):
                    self.full = True
                    sim.events.append({"time_h": t, "step": ctx.step, "event": "clone_table_full",
                                       "compartment": site.name, "size": table.n_existing})
                    break
                parent = int(c.clone[i])
                uid = int(c.uid[i])
                shifts = {trait: p.trait_sd * self._normal(site, ctx.step, uid, k)
                          for k, trait in enumerate(p.traits)}
                row = table.n_existing
                name = f"{table.names[parent]}_{row}"
                table.add(parent, name, t, shifts)
                c.clone[i] = row
                site.counters["born"][parent] -= 1
                site.counters["born"][row] += 1
                added = True
                sim.events.append({
                    "time_h": t, "step": ctx.step, "event": "new_clone", "compartment": site.name,
                    "size": 1, "cell_uids": [uid], "clone": name, "parent_clone": table.names[parent],
                })
        if added:
            sim.refresh_clones()

    def _normal(self, site, step: int, uid: int, k: int) -> float:
        """A standard normal variate for trait ``k`` of the clone founded by cell ``uid`` (Box-Muller)."""
        ids = np.array([uid], np.int64)
        u1 = uniforms(site.streams.key, self.stream, step, ids, 1 + 2 * k, np.empty(1))[0]
        u2 = uniforms(site.streams.key, self.stream, step, ids, 2 + 2 * k, np.empty(1))[0]
        return math.sqrt(-2.0 * math.log1p(-u1)) * math.cos(2.0 * math.pi * u2)

    @classmethod
    def check(cls, params: DiversificationParams, config) -> list[Problem]:
        problems = [
            Problem(f"mechanisms.{cls.name}.traits.{i}", trait,
                    f"not a trait that can vary; traits: {', '.join(VARIABLE_TRAITS)}")
            for i, trait in enumerate(params.traits) if trait not in VARIABLE_TRAITS
        ]
        most = np.iinfo(CELL_COLUMNS["clone"][0]).max + 1
        if len(config.clones) + params.max_new_clones > most:
            problems.append(Problem(f"mechanisms.{cls.name}.max_new_clones", params.max_new_clones,
                                    f"the scenario's {len(config.clones)} clones plus new ones must not "
                                    f"exceed {most} (clone ids are 16-bit)"))
        return problems
