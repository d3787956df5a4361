"""Paracrine loop with macrophages: CSF-1 out, EGF back, and doorways into vessels.

Tumour cells secrete CSF-1 at their clone's ``csf1_secretion_per_h``.
Macrophages (stromal agents of the primary site, placed at random) perform a
random walk with diffusion ``macrophage_diffusion_um2_per_h`` and climb the
CSF-1 receptor occupancy ``c / (K + c)`` with sensitivity
``macrophage_chemotaxis_um2_per_h``; each secretes EGF at
``egf_secretion_per_h``. Tumour cells climb the EGF receptor occupancy with
their clone's ``egf_chemotaxis_um2_per_h``. A normal vessel point with a
macrophage on it or next to it is a doorway (a tumour microenvironment of
metastasis, TMEM): epithelial cells may enter it as if it were ruptured.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from metacoop.config.base import MechanismParams, NonNegative, Positive
from metacoop.core.modifiers import Cue, saturating_cue
from metacoop.core.schedule import Phase
from metacoop.core.state import StromalArrays
from metacoop.core.vessels import NORMAL_VESSEL
from metacoop.errors import Problem
from metacoop.kernels.cells import mark_near, random_walk
from metacoop.kernels.fields import add_counted, count_points
from metacoop.kernels.random import uniforms
from metacoop.mechanisms.base import Mechanism, StepContext

#: Draw index of the macrophages' initial placement (their walk uses index 0).
PLACEMENT_DRAW = 7


class ParacrineParams(MechanismParams):
    """Parameters of :class:`Paracrine`."""

    enabled: bool = Field(False, description="include this mechanism in the schedule")
    macrophages: int = Field(200, ge=0, le=10_000_000, description="macrophages in the primary site, count")
    macrophage_diffusion_um2_per_h: NonNegative = Field(
        60.0, description="random motility of macrophages, µm²/h"
    )
    macrophage_chemotaxis_um2_per_h: NonNegative = Field(
        120.0, description="macrophage sensitivity to CSF-1, µm²/h per unit receptor occupancy"
    )
    egf_secretion_per_h: NonNegative = Field(
        0.2, description="EGF secreted per macrophage, normalised concentration per h"
    )
    csf1_half_saturation: Positive = Field(
        0.02, description="CSF-1 giving half receptor occupancy, normalised"
    )
    egf_half_saturation: Positive = Field(0.02, description="EGF giving half receptor occupancy, normalised")
    csf1_field: str = Field("csf1", description="field of tumour-made CSF-1")
    egf_field: str = Field("egf", description="field of macrophage-made EGF")


class Paracrine(Mechanism):
    """Macrophage agents, CSF-1/EGF secretion, the EGF cue and TMEM doorways."""

    name = "paracrine"
    phase = Phase.CELL_RULES
    order = 27
    Params = ParacrineParams
    summary = (
        "tumour cells secrete CSF-1; macrophages climb it and secrete EGF; tumour cells climb EGF "
        "(egf_chemotaxis_um2_per_h); a normal vessel point with a macrophage at or next to it "
        "lets epithelial cells in (TMEM doorway)"
    )
    sources = (
        "Wyckoff et al. 2004 Cancer Res 64:7022 (CSF-1/EGF paracrine loop)",
        "Wyckoff et al. 2007 Cancer Res 67:2649 (intravasation next to perivascular macrophages)",
        "Harney et al. 2015 Cancer Discov 5:932 (TMEM doorways open the vessel)",
    )

    @classmethod
    def site_fields(cls, params: ParacrineParams) -> dict[str, dict[str, dict]]:
        return {"primary": {
            params.csf1_field: {"description": "CSF-1 made by tumour cells, normalised",
                                "diffusion_um2_per_h": 3600.0, "decay_per_h": 0.2},
            params.egf_field: {"description": "EGF made by macrophages, normalised",
                               "diffusion_um2_per_h": 3600.0, "decay_per_h": 0.2},
        }}

    @classmethod
    def motility_terms(cls, params: ParacrineParams, config, site: str):
        if site != "primary":
            return 1.0, None
        return 1.0, np.array([c.egf_chemotaxis_um2_per_h.as_tuple() for c in config.clones])

    def bind(self, sim) -> None:
        p = self.params
        self.site = sim.primary
        if self.site is None:
            return
        site = self.site
        n_points = site.lattice.n_points
        k = p.macrophages
        ids = np.arange(k, dtype=np.int64)
        u = uniforms(site.streams.key, self.stream, 0, ids, PLACEMENT_DRAW, np.empty(k))
        mac = StromalArrays(0)
        mac.append({"uid": ids, "pos": np.minimum((u * n_points).astype(np.int64), n_points - 1)})
        site.agents["macrophages"] = mac
        scale = sim.dt_h / site.lattice.spacing_um**2
        self.p_diff = p.macrophage_diffusion_um2_per_h * scale
        self.p_chem = p.macrophage_chemotaxis_um2_per_h * scale
        csf1, egf = site.fields[p.csf1_field], site.fields[p.egf_field]

        self.scale = scale
        self.cue = Cue(f"{self.name}.egf", saturating_cue(egf, p.egf_half_saturation), np.zeros(0))
        site.modifiers.cues.append(self.cue)
        site.modifiers.doorways.append((self.name, self.doorways))
        self._doorways = np.zeros(site.lattice.n_points, np.uint8)  # (the doorway mask, rewritten each step)
        self._counts = np.zeros(site.lattice.n_points, np.int64)  # (macrophages per point; 0 between steps)
        self.csf1, self.egf = csf1, egf
        self.refresh(sim)

    def refresh(self, sim) -> None:
        if self.site is None:
            return
        self.csf1_table = np.repeat(sim.clones.csf1_secretion_per_h[:, None] * sim.dt_h, 2, axis=1)
        self.secreting = bool(self.csf1_table.any())
        self.cue.sensitivity = sim.clones.egf_chemotaxis_um2_per_h * self.scale

    def doorways(self, ctx) -> np.ndarray:
        """Normal vessel points with a macrophage on them or next to them (uint8 per point, 1 there)."""
        site = self.site
        mac = site.agents["macrophages"]
        lat = site.lattice
        return mark_near(mac.live("pos"), lat.dims_array, lat.ndim, site.vessel, NORMAL_VESSEL,
                         self._doorways)

    def step(self, ctx: StepContext) -> None:
        site = self.site
        if site is None:
            return
        p = self.params
        if self.secreting:
            site.secrete(p.csf1_field, self.csf1_table)
        mac = site.agents["macrophages"]
        if mac.n == 0:
            return
        random_walk(mac.n, mac.uid, mac.pos, self.p_diff, self.p_chem, self.csf1.flat, p.csf1_half_saturation,
                    site.lattice.dims_array, site.lattice.ndim, site.streams.key, self.stream, ctx.step)
        if p.egf_secretion_per_h > 0:
            self.egf.zero = False
            # Added at the macrophages' points only (and applied there by the solver): the values of
            # adding a whole-lattice bincount, without three passes over the lattice every step.
            points = count_points(mac.n, mac.pos, self._counts)
            deltas = self.egf.sources_at_points(points)
            add_counted(points, self._counts, p.egf_secretion_per_h * ctx.dt_h, deltas)

    @classmethod
    def check(cls, params: ParacrineParams, config) -> list[Problem]:
        if config.primary is None:
            return []
        ndim = len(config.primary.lattice.shape)
        scale = config.dt_h / config.primary.lattice.spacing_um**2
        motility = params.macrophage_diffusion_um2_per_h + params.macrophage_chemotaxis_um2_per_h
        total = 2 * ndim * motility * scale
        if total > 1.0:
            return [Problem(f"mechanisms.{cls.name}.macrophage_chemotaxis_um2_per_h",
                            params.macrophage_chemotaxis_um2_per_h,
                            "macrophage move probabilities exceed 1: "
                            f"2*ndim*(D + chi)*dt/dx^2 = {total:.3g}; "
                            "reduce dt_h or the macrophage motility")]
        return []
