"""Emboli protection: cells travelling in clusters resist shear, immune killing and anoikis.

Multicellular resistance. A CTC of ``s`` cells has every death hazard of
a single cell multiplied by ``g = 1 - cohesion * (1 - cluster_hazard_factor[s])``
where ``cluster_hazard_factor`` is the circulation's table (the last entry
applies to every larger size) and ``cohesion`` the mean clone cohesion of the
CTC's cells, a clone trait. Switched off, clusters die as fast as single
cells. On by default: it is part of the Franssen et al. (2019) model.
"""

from __future__ import annotations

import numpy as np

from metacoop.core.schedule import Phase
from metacoop.kernels.bookkeeping import cluster_hazard_factor
from metacoop.mechanisms.base import Mechanism, StepContext


class EmboliProtection(Mechanism):
    """Registers the cluster hazard factor on the circulation."""

    name = "emboli_protection"
    phase = Phase.CIRCULATION
    order = 9
    summary = (
        "a CTC of s cells dies at the single-cell hazards times "
        "1 - cohesion * (1 - cluster_hazard_factor[s]) (mean clone cohesion of its cells)"
    )
    sources = (
        "Franssen et al. 2019 Bull Math Biol 81:1965 (cluster survival 2.5e-2 vs 5e-4)",
        "Aceto et al. 2014 Cell 158:1110 (clusters are more efficient seeds)",
        "Liotta, Saidel & Kleinerman 1976 Cancer Res 36:889 (emboli size and metastasis)",
    )

    def bind(self, sim) -> None:
        self.table = np.asarray(sim.config.circulation.cluster_hazard_factor, dtype=np.float64)
        cohesion = sim.clones.cohesion
        circ = sim.circulation
        table = self.table

        single_is_one = table[0] == 1.0

        def factor(ctx):
            n = circ.ctcs.n
            if single_is_one and circ.cells.n == n:
                return None  # every CTC a single cell, whose factor is exactly 1 (see product_of)
            return cluster_hazard_factor(n, circ.member_slots(), circ.cells.clone, cohesion, circ.ctcs.size,
                                         table, np.empty(n))

        circ.hazard_modifiers.append((self.name, factor))

    def step(self, ctx: StepContext) -> None:
        """Nothing to do each step: circulation_death reads the factor."""
