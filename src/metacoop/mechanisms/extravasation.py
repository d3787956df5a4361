"""Extravasation: arrested cells leave the capillary into the organ's tissue.

An arrested cell extravasates at its organ's ``extravasation_rate_per_h``
times its clone's ``extravasation_competence`` (death while arrested is the
``death`` mechanism's job). On extravasation it undergoes MET where the
organ says so, then becomes a solitary dormant cell with its clone's
``dormancy_probability`` or starts cycling. The first founder to
extravasate founds its metastasis; cells extravasating into a founded
metastasis they did not found are recorded as joiners. ``extravasation``
modifiers of the organ (a niche, induced E-selectin) multiply the hazard at
the cell's point.
"""

from __future__ import annotations

import numpy as np

from metacoop.core.schedule import Phase
from metacoop.core.state import ACTIVE, ARRESTED, DORMANT
from metacoop.kernels.cells import EPITHELIAL, fresh_cycles
from metacoop.kernels.random import uniforms
from metacoop.mechanisms.base import Mechanism, StepContext


class Extravasation(Mechanism):
    """Arrested cells enter the tissue and found or join metastases.

    A cell arrested part-way through the step is exposed only for the rest of it
    (an infinite rate still means at once).
    """

    name = "extravasation"
    phase = Phase.ORGANS
    order = 10
    summary = (
        "an arrested cell extravasates at the organ's extravasation_rate_per_h times its clone's "
        "extravasation_competence, undergoes MET (if the organ says so), then becomes dormant "
        "with its clone's dormancy_probability or starts cycling; the first founder to "
        "extravasate founds the metastasis, later cells of other CTCs join it"
    )
    sources = (
        "Luzzi et al. 1998 Am J Pathol 153:865 (most arrested cells extravasate)",
        "Chambers, Groom & MacDonald 2002 Nat Rev Cancer 2:563",
    )

    def bind(self, sim) -> None:
        self.rate = {o.name: o.organ.extravasation_rate_per_h * sim.clones.extravasation_competence
                     for o in sim.organs}
        self.clones = sim.clones

    refresh = bind  # bind only derives tables from the clone traits

    def step(self, ctx: StepContext) -> None:
        sim = ctx.sim
        reg = sim.metastases
        t = ctx.time_h + ctx.dt_h
        for site in sim.organs:
            c = site.cells
            if c.n == 0:
                continue
            arrested = np.flatnonzero(c.live("state") == ARRESTED)
            if arrested.size == 0:
                continue
            uid = c.uid[arrested]
            exposure = np.full(arrested.size, ctx.dt_h)
            if site.arrival_exposure_h:
                fresh = site.arrival_exposure_h
                exposure = np.array([fresh.get(int(i), ctx.dt_h) for i in uid])
                fresh.clear()
            rate = self.rate[site.name][c.clone[arrested]]
            f = site.modifiers.factor_at("extravasation", ctx, c.pos[arrested])
            if f is not None:
                rate = np.where(f == 1.0, rate, rate * f)
            with np.errstate(invalid="ignore"):
                p = np.where(np.isinf(rate), 1.0, -np.expm1(-rate * exposure))
            u = uniforms(site.streams.key, self.stream, ctx.step, uid, 0, np.empty(arrested.size))
            out = arrested[u < p]
            if out.size == 0:
                continue
            v = uniforms(site.streams.key, self.stream, ctx.step, c.uid[out], 1, np.empty(out.size))
            dormant = v < self.clones.dormancy_probability[c.clone[out]]
            c.state[out] = np.where(dormant, DORMANT, ACTIVE)
            if site.organ.met_on_extravasation:
                site.set_phenotype(out, EPITHELIAL)
            cycling = out[~dormant]
            fresh_cycles(cycling, c.uid, c.clone, c.phen, c.cycle_h, self.clones.cycle_shape,
                         self.clones.cycle_scale_h, site.streams.key, self.stream, ctx.step)
            site.count("extravasated", c.clone[out])
            for m in np.unique(c.met[out]):
                cells = out[c.met[out] == m]
                uids = c.uid[cells]
                if not reg.founded(m):
                    reg.founded_h[m] = t
                    sim.events.append({
                        "time_h": t, "step": ctx.step, "event": "metastasis_founded",
                        "compartment": site.name, "met_id": int(m),
                        "size": int(reg.founders[m].size), "cell_uids": reg.founders[m].tolist(),
                        "composition": _composition(reg.founder_clones[m], self.clones.names),
                    })
                joiners = cells[~np.isin(uids, reg.founders[m])]
                if joiners.size:
                    reg.record_joiners(m, c.clone[joiners])
                    sim.events.append({
                        "time_h": t, "step": ctx.step, "event": "metastasis_joined",
                        "compartment": site.name, "met_id": int(m), "size": int(joiners.size),
                        "cell_uids": c.uid[joiners].tolist(),
                        "composition": _composition(c.clone[joiners], self.clones.names),
                    })
                sim.events.append({
                    "time_h": t, "step": ctx.step, "event": "extravasation", "compartment": site.name,
                    "met_id": int(m), "size": int(cells.size), "cell_uids": uids.tolist(),
                    "n_dormant": int((c.state[cells] == DORMANT).sum()),
                    "composition": _composition(c.clone[cells], self.clones.names),
                })


def _composition(clones: np.ndarray, names) -> str:
    import json

    per = np.bincount(np.asarray(clones, np.int64), minlength=len(names))
    return json.dumps({names[i]: int(k) for i, k in enumerate(per) if k}, sort_keys=True)
