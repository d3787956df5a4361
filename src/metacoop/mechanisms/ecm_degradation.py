"""ECM degradation by MMP-2 (diffusible) and MT1-MMP (at the cell membrane)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from metacoop.config.base import MechanismParams, NonNegative
from metacoop.core.schedule import Phase
from metacoop.errors import Problem
from metacoop.kernels.cells import EPITHELIAL, MESENCHYMAL, counts_serve, scatter_add
from metacoop.kernels.fields import clear_points, degrade_exponential
from metacoop.mechanisms.base import Mechanism, StepContext, field_problems


class DegradationParams(MechanismParams):
    """Parameters of :class:`EcmDegradation`."""

    ecm_field: str = Field("ecm", description="field degraded (normalised ECM density)")
    mmp2_field: str = Field("mmp2", description="protease field (normalised concentration)")
    mmp2_rate_per_h: NonNegative = Field(
        0.09, description="ECM degradation rate per unit MMP-2 concentration, 1/h "
        "(Franssen 2019: Gamma_2 = 1 in units of 1/11.1 h)"
    )


class EcmDegradation(Mechanism):
    """``dw/dt = -(Gamma_2 m + sum_cells Gamma_1) w``, solved exactly over a step."""

    name = "ecm_degradation"
    phase = Phase.FIELDS
    order = 10
    Params = DegradationParams
    summary = (
        "the ECM decays exponentially at a rate mmp2_rate_per_h times the local MMP-2 "
        "concentration plus the clone's mt1mmp_degradation_per_h for each cell at the point"
    )
    sources = ("Franssen et al. 2019 Bull Math Biol 81:1965 (ECM equation)",)

    def bind(self, sim) -> None:
        self.cell_table = sim.clones.mt1mmp_degradation_per_h
        self.cells_active = bool(np.any(self.cell_table > 0))
        #: per site, the cells' summed rate per point, 1/h, in the ECM's type (the degradation computes in
        #: it); all 0 between steps (see :meth:`step`)
        ecm = self.params.ecm_field
        self.rates = {site.name: np.zeros(site.lattice.n_points, site.fields[ecm].values.dtype)
                      for site in sim.sites}

    refresh = bind  # bind only derives tables from the clone traits

    def step(self, ctx: StepContext) -> None:
        """Degrade the ECM of every site with cells or MMP-2.

        The cells' rates are scattered into a per-site array that is all 0
        before the scatter and is brought back to 0 after the degradation: at
        the cells' points only while cells are few (at most one per 8 lattice
        points), which is cheaper than zeroing the whole lattice every step;
        otherwise by the degradation kernel, block by block as it uses them.

        Where only mesenchymal cells degrade and the site's per-point counts
        serve (:func:`~metacoop.kernels.cells.counts_serve`: one clone, many
        cells, none dead or arrested), the kernel reads the count of
        mesenchymal cells at each point times one cell's rate instead, and
        nothing is scattered or cleared (at franssen2019's 40,000-84,000
        cells, a scatter of 33-60 µs a step).
        """
        p = self.params
        for site in ctx.sim.sites:
            c = site.cells
            mmp2 = site.fields[p.mmp2_field]
            if c.n == 0 and mmp2.zero:
                continue  # no cell and no protease: nothing degrades
            ecm = site.fields[p.ecm_field].flat
            table = self.cell_table
            if (self.cells_active and table[0, EPITHELIAL] == 0.0
                    and counts_serve(c.n, c.state, c.flags, table, ecm.shape[0])):
                # Only mesenchymal cells degrade: their count at each point times one cell's rate.
                degrade_exponential(ecm, mmp2.flat, site.mes_occ, p.mmp2_rate_per_h, ctx.dt_h, False,
                                    table[0, MESENCHYMAL])
                continue
            rate = self.rates[site.name]
            scattered = self.cells_active and c.n > 0
            if scattered:
                scatter_add(c.n, c.pos, c.clone, c.phen, c.state, c.flags, table, rate, site.occ,
                            site.mes_occ)
            few = 8 * c.n <= rate.shape[0]
            degrade_exponential(ecm, mmp2.flat, rate, p.mmp2_rate_per_h, ctx.dt_h, scattered and not few)
            if scattered and few:
                clear_points(c.n, c.pos, rate)

    @classmethod
    def check(cls, params: DegradationParams, config) -> list[Problem]:
        return field_problems(cls.name, params, ("ecm_field", "mmp2_field"), config)
