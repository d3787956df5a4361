"""Vessel disruption: sustained protease activity and tumour pressure rupture normal vessels.

Each normal blood-vessel point of a site that sheds cells carries a damage
level ``D`` in [0, 1] that relaxes towards the local stimulus
``s = (1 - pressure_weight) * m / (K + m) + pressure_weight * crowding`` with
time constant ``memory_h`` (so only *sustained* activity counts), where
``m`` is the MMP-2 concentration at the point and ``crowding`` the cells on
the point and its neighbours over their capacity. A damaged point ruptures at
hazard ``rupture_rate_per_h * D``; a ruptured point lets epithelial cells and
whole groups in ("pushed" rather than "crawled"). Points ruptured this way
are repaired at ``repair_rate_per_h``, so the conditioning of the route
decays between shedding waves.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from metacoop.config.base import MechanismParams, Positive, Probability, RatePerHour
from metacoop.core.schedule import Phase
from metacoop.core.vessels import NORMAL_VESSEL, RUPTURED_VESSEL
from metacoop.errors import Problem
from metacoop.kernels.vessels import vessel_damage
from metacoop.mechanisms.base import Mechanism, StepContext, field_problems


class DisruptionParams(MechanismParams):
    """Parameters of :class:`VesselDisruption`."""

    enabled: bool = Field(False, description="include this mechanism in the schedule")
    mmp2_field: str = Field("mmp2", description="protease field (normalised concentration)")
    mmp2_half_saturation: Positive = Field(
        0.02, description="MMP-2 giving half the protease stimulus, normalised"
    )
    pressure_weight: Probability = Field(
        0.5, description="share of the stimulus due to crowding (tumour pressure), dimensionless"
    )
    memory_h: Positive = Field(24.0, description="time constant over which damage follows the stimulus, h")
    rupture_rate_per_h: RatePerHour = Field(
        0.02, description="hazard of rupture of a fully damaged vessel point, 1/h (assumption)"
    )
    repair_rate_per_h: RatePerHour = Field(
        0.01, description="hazard that a point ruptured by this mechanism is repaired, 1/h "
        "(about 4 days; assumption)",
    )


class VesselDisruption(Mechanism):
    """Damage, rupture and repair of normal vessel points."""

    name = "vessel_disruption"
    phase = Phase.INTRAVASATION
    order = 5
    Params = DisruptionParams
    summary = (
        "normal vessel points exposed to sustained MMP-2 and crowding accumulate damage (time "
        "constant memory_h) and rupture at rupture_rate_per_h * damage, letting epithelial cells "
        "and groups in; disrupted points are repaired at repair_rate_per_h"
    )
    sources = (
        "Bidard et al. 2008 Cancer Metastasis Rev 27:5 (vessel disruption; 'pushed' intravasation)",
        "Sugino et al. 2002 Am J Pathol 160:1973 (intravasation of cancer-cell clusters)",
    )

    def bind(self, sim) -> None:
        self.sites = [s for s in sim.sites if s.allows_intravasation]
        self.points = {}
        self.damage = {}
        self.disrupted = {}
        #: per site, each point's neighbours (-1 past an edge read as point 0), which of them exist, and
        #: the capacity of the point and its neighbours (the points never change: computed once)
        self.around = {}
        for site in self.sites:
            pts = site.blood_points
            self.points[site.name] = pts
            self.damage[site.name] = np.zeros(pts.size)
            self.disrupted[site.name] = np.zeros(pts.size, bool)
            nb = site.lattice.neighbours(pts)
            self.around[site.name] = (np.maximum(nb, 0), nb >= 0, site.capacity * (1 + (nb >= 0).sum(axis=1)))
        p = self.params
        self.relax = -math.expm1(-sim.dt_h / p.memory_h)
        self.repair_p = -math.expm1(-p.repair_rate_per_h * sim.dt_h)
        self.hazard_per_damage = p.rupture_rate_per_h * sim.dt_h  # (rupture hazard of a step per damage)
        #: per site, the points' draws and their rupture and repair marks (rewritten every step)
        self._scratch = {name: (np.empty(pts.size), np.zeros(pts.size, bool), np.zeros(pts.size, bool))
                         for name, pts in self.points.items()}

    def step(self, ctx: StepContext) -> None:
        p = self.params
        t = ctx.time_h + ctx.dt_h
        for site in self.sites:
            pts = self.points[site.name]
            if pts.size == 0:
                continue
            nb, exists, room = self.around[site.name]
            damage, disrupted = self.damage[site.name], self.disrupted[site.name]
            u, rupture, repair = self._scratch[site.name]
            # The damage and the draws in one pass; a point may rupture only where its draw lies below
            # rupture_rate * damage * dt (the hazard, above the probability 1 - exp(-hazard)).
            candidates, repaired = vessel_damage(
                pts, nb, exists, room, site.occ, site.fields[p.mmp2_field].flat, p.mmp2_half_saturation,
                p.pressure_weight, self.relax, damage, site.vessel, disrupted, self.hazard_per_damage,
                self.repair_p, site.streams.key, self.stream, ctx.step, u, rupture, repair)
            if not candidates and not repaired:
                continue
            if candidates:
                rupture[rupture] = u[rupture] < -np.expm1(-p.rupture_rate_per_h * damage[rupture] * ctx.dt_h)
            for kind, sel, code in (("vessel_rupture", rupture, RUPTURED_VESSEL),
                                    ("vessel_repair", repair, NORMAL_VESSEL)):
                if not sel.any():
                    continue
                site.vessel[pts[sel]] = code
                disrupted[sel] = code == RUPTURED_VESSEL
                x, y, z = site.lattice.coords(pts[sel])
                for j in range(int(sel.sum())):
                    ctx.sim.events.append({"time_h": t, "step": ctx.step, "event": kind,
                                           "compartment": site.name, "x": int(x[j]), "y": int(y[j]),
                                           "z": int(z[j])})

    def checkpoint(self):
        arrays = {f"{k}/damage": v for k, v in self.damage.items()}
        arrays.update({f"{k}/disrupted": v for k, v in self.disrupted.items()})
        return arrays, {}

    def restore(self, arrays, state) -> None:
        for k in self.damage:
            self.damage[k][...] = arrays[f"{k}/damage"]
            self.disrupted[k][...] = arrays[f"{k}/disrupted"]

    @classmethod
    def check(cls, params: DisruptionParams, config) -> list[Problem]:
        return field_problems(cls.name, params, ("mmp2_field",), config)
