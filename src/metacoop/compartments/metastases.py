"""The metastasis registry: who founded each metastasis, who joined it, how it grew.

A CTC that arrests in an organ either joins a founded metastasis within the
organ's ``join_radius_um`` of its arrest point, or opens a new *pending*
metastasis whose founders are all the cells of that CTC (so a cluster records
every founder). The metastasis is *founded* when its first founder
extravasates. Cells that extravasate into a founded metastasis they did not
found are *joiners* (a colonisation event). Every cell carries the id of its
metastasis (``met``), and daughters inherit it.

Status, updated every step from the cells:

* ``pending``: arrested founders only, none extravasated yet;
* ``dormant``: every cell is dormant;
* ``solitary``: a single cell that is not dormant;
* ``micro``: two or more cells, not yet through the angiogenic switch;
* ``macro``: through the angiogenic switch;
* ``extinct``: founded, and no cell left.
"""

from __future__ import annotations

import json

import numpy as np

from metacoop.kernels.metastases import update_statuses

STATUS = ("pending", "dormant", "solitary", "micro", "macro", "extinct")
PENDING, S_DORMANT, SOLITARY, MICRO, MACRO, EXTINCT = range(6)


class MetastasisRegistry:
    """Every metastasis of a run, as growable arrays plus per-metastasis founder lists.

    Attributes:
        organ: organ index of each metastasis.
        opened_h: time its founding CTC arrested, h.
        founded_h: time its first founder extravasated, h (NaN while pending).
        switched_h: time of its angiogenic switch, h (NaN before).
        cluster: whether it was founded by a cluster.
        status: current status code (see :data:`STATUS`).
        size: current number of extravasated cells.
        max_size: largest size reached.
        founders: founder cell uids per metastasis.
        founder_clones: founder clone indices per metastasis.
        joiner_clones: clone index -> joiner cell count, per metastasis.
    """

    def __init__(self):
        self.n = 0
        self.organ = np.zeros(0, np.int16)
        self.opened_h = np.zeros(0)
        self.founded_h = np.zeros(0)
        self.switched_h = np.zeros(0)
        self.cluster = np.zeros(0, bool)
        self.status = np.zeros(0, np.int8)
        self.size = np.zeros(0, np.int64)
        self.max_size = np.zeros(0, np.int64)
        self.founders: list[np.ndarray] = []
        self.founder_clones: list[np.ndarray] = []
        self.joiner_clones: list[dict[int, int]] = []
        self.n_joiners = np.zeros(0, np.int64)

    def _grow(self, k: int) -> None:
        need = self.n + k
        if need <= self.organ.shape[0]:
            return
        cap = max(need, 2 * self.organ.shape[0], 64)
        for name in ("organ", "opened_h", "founded_h", "switched_h", "cluster", "status", "size",
                     "max_size", "n_joiners"):
            old = getattr(self, name)
            new = np.zeros(cap, old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def open(self, organ: int, time_h: float, uids: np.ndarray, clones: np.ndarray) -> int:
        """Open a pending metastasis founded by the cells of one arrested CTC; return its id."""
        self._grow(1)
        m = self.n
        self.n += 1
        self.organ[m] = organ
        self.opened_h[m] = time_h
        self.founded_h[m] = np.nan
        self.switched_h[m] = np.nan
        self.cluster[m] = uids.size > 1
        self.status[m] = PENDING
        self.founders.append(np.asarray(uids, np.int64).copy())
        self.founder_clones.append(np.asarray(clones, np.int16).copy())
        self.joiner_clones.append({})
        return m

    def founded(self, m: int) -> bool:
        """Whether metastasis ``m`` has been founded."""
        return not np.isnan(self.founded_h[m])

    def record_joiners(self, m: int, clones: np.ndarray) -> None:
        """Count cells of ``clones`` that joined metastasis ``m``."""
        per = self.joiner_clones[m]
        for c, k in zip(*np.unique(clones, return_counts=True), strict=True):
            per[int(c)] = per.get(int(c), 0) + int(k)
        self.n_joiners[m] += clones.size

    def update(self, organ_index: int, met: np.ndarray, state: np.ndarray,
               avascular_max_cells: int) -> tuple[list[tuple[int, int, int]], np.ndarray]:
        """Recompute sizes and statuses of one organ's metastases from its cells.

        Args:
            organ_index: the organ whose cells are given.
            met: metastasis id of each live cell of the organ.
            state: state of each live cell.
            avascular_max_cells: the organ's size limit of a metastasis before its angiogenic switch.

        Returns:
            ``(met, old_status, new_status)`` for every metastasis whose status changed, and the
            room of every metastasis (cells it may still gain; effectively unlimited for those
            vascularised or of other organs).
        """
        room = np.empty(self.n, np.int64)
        changed = update_statuses(organ_index, met, state, self.n, self.organ, self.founded_h,
                                  self.switched_h, self.status, self.size, self.max_size, avascular_max_cells,
                                  room)
        return [(int(m), int(old), int(new)) for m, old, new in changed], room

    def table(self, organ_names: list[str], clone_names: tuple[str, ...],
              final_composition: dict[int, dict[str, int]]) -> list[dict]:
        """One row per founded metastasis (pending ones that never founded are left out)."""
        rows = []
        for m in range(self.n):
            if not self.founded(m):
                continue
            fc = self.founder_clones[m]
            joined = self.joiner_clones[m]
            rows.append({
                "met_id": m,
                "organ": organ_names[self.organ[m]],
                "opened_h": float(self.opened_h[m]),
                "founded_h": float(self.founded_h[m]),
                "founded_by_cluster": bool(self.cluster[m]),
                "n_founders": int(self.founders[m].size),
                "founder_uids": self.founders[m].tolist(),
                "founder_clones": sorted({clone_names[c] for c in fc}),
                "n_joiners": int(self.n_joiners[m]),
                "joiner_clones": sorted(clone_names[c] for c in joined),
                "switched_h": float(self.switched_h[m]),
                "status": STATUS[self.status[m]],
                "size": int(self.size[m]),
                "max_size": int(self.max_size[m]),
                "composition": json.dumps(final_composition.get(m, {}), sort_keys=True),
            })
        return rows
