"""Struct-of-arrays cell state with fixed capacity and explicit growth.

One :class:`CellArrays` holds every cell of one compartment. Slots ``0..n-1``
are the live cells, packed; removal compacts the arrays in order, so "cell
order" (the order in which conflicts are resolved) is a deterministic
function of the run's history. Arrays have a fixed capacity;
:meth:`CellArrays.reserve` grows it (by at least half), so kernels never
allocate.

Bytes of state per cell on a lattice: 8 (uid) + 8 (parent) + 4 (pos)
+ 4 (lineage) + 4 (birth_h) + 4 (cycle_h) + 2 (clone) + 1 (phen) + 1 (flags) = 36.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

#: Name -> (dtype, meaning and unit) of every per-cell array.
CELL_COLUMNS: dict[str, tuple[type, str]] = {
    "uid": (np.int64, "permanent cell id, unique within a run; keys the cell's random draws"),
    "parent": (np.int64, "uid of the mother cell, -1 for a cell present at t = 0"),
    "pos": (np.int32, "flat lattice index x + nx*(y + ny*z); -1 off-lattice"),
    "lineage": (np.int32, "uid of the founding cell of this cell's lineage"),
    "birth_h": (np.float32, "time of birth, h (0 for initial cells)"),
    "cycle_h": (np.float32, "time left until the cell is due to divide, h"),
    "clone": (np.int16, "row of the clone trait table"),
    "phen": (np.int8, "phenotype: 0 epithelial, 1 mesenchymal"),
    "flags": (np.uint8, "per-step request bits (bit 0: death requested)"),
}


class CellArrays:
    """Every cell of one compartment, one array per attribute.

    Attributes:
        n: number of live cells (slots ``0..n-1``).
        uid, parent, pos, lineage, birth_h, cycle_h, clone, phen, flags: arrays
            of length ``capacity``; :attr:`COLUMNS` gives dtypes and units.
    """

    COLUMNS: ClassVar[dict[str, tuple[type, str]]] = CELL_COLUMNS

    uid: np.ndarray
    parent: np.ndarray
    pos: np.ndarray
    lineage: np.ndarray
    birth_h: np.ndarray
    cycle_h: np.ndarray
    clone: np.ndarray
    phen: np.ndarray
    flags: np.ndarray

    def __init__(self, capacity: int = 0):
        self.n = 0
        for name, (dtype, _) in self.COLUMNS.items():
            setattr(self, name, np.zeros(capacity, dtype))

    @property
    def capacity(self) -> int:
        """Number of slots allocated."""
        return int(self.uid.shape[0])

    @classmethod
    def bytes_per_cell(cls) -> int:
        """Bytes of state per cell slot."""
        return int(sum(np.dtype(dt).itemsize for dt, _ in cls.COLUMNS.values()))

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-cell arrays by name (full capacity, not only live slots)."""
        return {name: getattr(self, name) for name in self.COLUMNS}

    def live(self, name: str) -> np.ndarray:
        """View of the live slots of one array."""
        return getattr(self, name)[: self.n]

    def reserve(self, extra: int) -> None:
        """Make room for at least ``extra`` more cells, growing capacity by at least half.

        Growth by 1.5x keeps the copies amortised O(1) per cell while the slack
        stays below half the state (36 bytes per live cell become at most 54
        allocated).
        """
        need = self.n + extra
        if need <= self.capacity:
            return
        new_cap = max(need, self.capacity + self.capacity // 2, 64)
        for name, arr in self.arrays().items():
            grown = np.zeros(new_cap, arr.dtype)
            grown[: self.n] = arr[: self.n]
            setattr(self, name, grown)

    def append(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Append cells given as equal-length arrays (missing columns are 0); return slots."""
        k = len(next(iter(columns.values())))
        self.reserve(k)
        slots = np.arange(self.n, self.n + k)
        for name in self.COLUMNS:
            getattr(self, name)[slots] = columns.get(name, 0)
        self.n += k
        return slots

    def take(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """Copy the given slots out as a dict of arrays (for transfers)."""
        return {name: arr[slots].copy() for name, arr in self.arrays().items()}

    def remove(self, mask: np.ndarray) -> None:
        """Remove live cells where ``mask`` (length ``n``) is true, keeping order."""
        keep = ~np.asarray(mask, dtype=bool)
        k = int(keep.sum())
        if k == self.n:
            return
        for arr in self.arrays().values():
            arr[:k] = arr[: self.n][keep]
        self.n = k

    def live_bytes(self) -> int:
        """Bytes of state held by the live cells."""
        return self.n * self.bytes_per_cell()
