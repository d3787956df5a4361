"""The circulation: where intravasated cells go, grouped into CTC entities.

A CTC entity is a single cell or a cluster that entered together. Its cells
are kept in a :class:`CirculatingCells` array (the lattice-free version of the
site's cell state, plus the id of the CTC each cell travels in), and the CTC
table records size, origin and composition. In this version the circulation
is a hand-off point: it receives and records; transit, survival, routing and
arrest come with the cascade.
"""

from __future__ import annotations

import json

import numpy as np

from metacoop.compartments.site import VESSEL_NAMES
from metacoop.core.lattice import Lattice
from metacoop.core.state import CELL_COLUMNS, CellArrays


class CirculatingCells(CellArrays):
    """Cells in the circulation: the site columns plus the CTC each belongs to."""

    COLUMNS = {**CELL_COLUMNS, "ctc": (np.int64, "id of the CTC entity the cell travels in")}
    ctc: np.ndarray


class Circulation:
    """Receives intravasating cells and records each CTC entity.

    Attributes:
        cells: the circulating cells.
        counters: per-clone ``immigrated`` counts (cells received).
        n_ctcs: CTC entities received so far.
        events: the run's event log (rows appended here).
    """

    name = "circulation"

    def __init__(self, n_clones: int, events: list[dict]):
        self.cells = CirculatingCells(0)
        self.counters = {"immigrated": np.zeros(n_clones, np.int64)}
        self.n_ctcs = 0
        self.events = events
        self._n_clones = n_clones

    def receive(
        self,
        leaving: dict[str, np.ndarray],
        points: np.ndarray,
        origin: str,
        vessel_state: np.ndarray,
        time_h: float,
        step: int,
        clone_names: tuple[str, ...],
        lattice: Lattice,
    ) -> np.ndarray:
        """Take cells that left ``origin`` through vessel ``points``; one CTC per point.

        Returns:
            The CTC id of each received cell.
        """
        uniq, group = np.unique(points, return_inverse=True)
        ctc_ids = self.n_ctcs + np.arange(uniq.size, dtype=np.int64)
        self.n_ctcs += uniq.size
        member_ctc = ctc_ids[group]
        leaving = dict(leaving)
        leaving["ctc"] = member_ctc
        leaving["pos"] = np.full(member_ctc.size, -1, np.int32)
        leaving["flags"] = np.zeros(member_ctc.size, np.uint8)
        self.cells.append(leaving)
        self.counters["immigrated"] += np.bincount(leaving["clone"], minlength=self._n_clones)
        x, y, z = lattice.coords(uniq)
        for g, ctc in enumerate(ctc_ids):
            members = group == g
            clones = leaving["clone"][members]
            phens = leaving["phen"][members]
            per_clone = np.bincount(clones, minlength=len(clone_names))
            composition = {clone_names[c]: int(k) for c, k in enumerate(per_clone) if k}
            self.events.append({
                "time_h": time_h,
                "step": step,
                "event": "intravasation",
                "compartment": origin,
                "ctc_id": int(ctc),
                "x": int(x[g]),
                "y": int(y[g]),
                "z": int(z[g]),
                "vessel": VESSEL_NAMES.get(int(vessel_state[np.flatnonzero(members)[0]]), "none"),
                "size": int(members.sum()),
                "n_epithelial": int((phens == 0).sum()),
                "n_mesenchymal": int((phens == 1).sum()),
                "composition": json.dumps(composition, sort_keys=True),
                "cell_uids": leaving["uid"][members].tolist(),
            })
        return member_ctc

    def clone_counts(self) -> np.ndarray:
        """Circulating cells per clone."""
        return np.bincount(self.cells.live("clone"), minlength=self._n_clones)

    def check_accounting(self, time_h: float) -> None:
        """Raise unless cells received equal cells present (no fates yet), per clone."""
        from metacoop.errors import SimulationError

        if not np.array_equal(self.counters["immigrated"], self.clone_counts()):
            raise SimulationError(
                f"cell accounting broken in circulation at t = {time_h:.4g} h: received "
                f"{self.counters['immigrated'].tolist()} but {self.clone_counts().tolist()} present"
            )
