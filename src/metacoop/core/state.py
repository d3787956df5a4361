"""Struct-of-arrays agent state with fixed capacity and explicit growth.

:class:`AgentArrays` is a set of equal-length 1-D arrays, one per attribute
listed in its ``COLUMNS``. Slots ``0..n-1`` are the live agents, packed.
Removal keeps the order of the survivors (:meth:`AgentArrays.remove`), except
for cells, where the last survivors fill the holes (:meth:`CellArrays.remove`);
either way "agent order" (the order in which conflicts are resolved) is a
deterministic function of the run's history.
Arrays have a fixed capacity; :meth:`AgentArrays.reserve` grows it (by at
least half), so kernels never allocate.

:class:`CellArrays` holds the cells of a lattice site. Bytes of state per cell:
8 (uid) + 8 (parent) + 4 (pos) + 8 (lineage) + 4 (met) + 4 (birth_h)
+ 4 (cycle_h) + 2 (wake) + 2 (clone) + 1 (phen) + 1 (state) + 1 (flags) = 47.

Cell ids. Every compartment that creates cells issues ids from its own
counter, starting at ``compartment index << UID_BITS`` (see :func:`uid_base`),
so a birth in one organ never shifts the ids, and with them the random draws,
of cells born later elsewhere: switching an organ mechanism off leaves the
primary site's draws unchanged.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from metacoop.kernels.cells import compact_cells
from metacoop.kernels.move_clock import CLOCK_BITS

#: Bits of a cell id left for the count of cells one compartment creates (1.1e12).
UID_BITS = 40


def uid_base(compartment: int) -> int:
    """First cell id issued by the compartment with index ``compartment`` (0 for the first site)."""
    return int(compartment) << UID_BITS


#: Cell states. Only ACTIVE cells move, divide and intravasate.
ACTIVE, ARRESTED, DORMANT = 0, 1, 2
STATE_NAMES = ("active", "arrested", "dormant")

#: Name -> (dtype, meaning and unit) of every per-cell array.
CELL_COLUMNS: dict[str, tuple[type, str]] = {
    "uid": (np.int64, "permanent cell id, unique within a run; keys the cell's random draws"),
    "parent": (np.int64, "uid of the mother cell, -1 for a cell present at t = 0 or injected"),
    "pos": (np.int32, "flat lattice index x + nx*(y + ny*z); -1 off-lattice"),
    "lineage": (np.int64, "uid of the founding cell of this cell's lineage"),
    "met": (np.int32, "id of the metastasis the cell belongs to, -1 for none"),
    "birth_h": (np.float32, "time of birth, h (0 for initial cells)"),
    "cycle_h": (np.float32, "time left until the cell is due to divide, h"),
    "wake": (np.uint16, "step (mod 2**16) of the cell's next candidate move, valid while flags bit 1 is set "
                        "(see metacoop.kernels.move_clock)"),
    "clone": (np.int16, "row of the clone trait table"),
    "phen": (np.int8, "phenotype: 0 epithelial, 1 mesenchymal"),
    "state": (np.uint8, "0 active, 1 arrested in a capillary, 2 dormant"),
    "flags": (np.uint8, "bit 0: death requested this step; bits 1-4: the movement clock (metacoop.kernels."
                        "move_clock)"),
}


class AgentArrays:
    """Agents of one kind in one compartment, one array per column.

    Attributes:
        n: number of live agents (slots ``0..n-1``).
    """

    COLUMNS: ClassVar[dict[str, tuple[type, str]]] = {}
    _first_column: ClassVar[str | None] = None

    def __init__(self, capacity: int = 0):
        self.n = 0
        for name, (dtype, _) in self.COLUMNS.items():
            setattr(self, name, np.zeros(capacity, dtype))

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        #: the column whose length :attr:`capacity` reads
        cls._first_column = next(iter(cls.COLUMNS), None)

    @property
    def capacity(self) -> int:
        """Number of slots allocated."""
        return getattr(self, self._first_column).shape[0]

    @classmethod
    def bytes_per_agent(cls) -> int:
        """Bytes of state per slot."""
        return int(sum(np.dtype(dt).itemsize for dt, _ in cls.COLUMNS.values()))

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name (full capacity, not only live slots)."""
        return {name: getattr(self, name) for name in self.COLUMNS}

    def live(self, name: str) -> np.ndarray:
        """View of the live slots of one array."""
        return getattr(self, name)[: self.n]

    def reserve(self, extra: int) -> None:
        """Make room for at least ``extra`` more agents, growing capacity by at least half.

        Growth by 1.5x keeps the copies amortised O(1) per agent while the slack
        stays below half the state.
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
        """Append agents given as equal-length arrays; return their slots.

        Missing columns are 0; keys that are not columns are ignored.
        """
        k = len(next(iter(columns.values())))
        self.reserve(k)
        start, end = self.n, self.n + k
        for name in self.COLUMNS:
            getattr(self, name)[start:end] = columns.get(name, 0)
        self.n = end
        return np.arange(start, end)

    def take(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """Copy the given slots (integers) out as a dict of arrays (for transfers)."""
        slots = np.asarray(slots)
        if slots.dtype != bool:
            slots = slots.astype(np.intp, copy=False)  # (an empty list would index as floats)
        return {name: getattr(self, name)[slots] for name in self.COLUMNS}  # (indexing by an array copies)

    def remove(self, mask: np.ndarray) -> None:
        """Remove live agents where ``mask`` (length ``n``) is true, keeping order."""
        kept = np.flatnonzero(~np.asarray(mask, dtype=bool))  # (once: a boolean index is searched per column)
        k = kept.size
        if k == self.n:
            return
        for arr in self.arrays().values():
            arr[:k] = arr[kept]
        self.n = k


class StromalArrays(AgentArrays):
    """Stromal agents of one kind in a lattice site (e.g. macrophages): id and position only."""

    COLUMNS = {
        "uid": (np.int64, "agent id, unique within its kind and site; keys its random draws"),
        "pos": (np.int32, "flat lattice index x + nx*(y + ny*z)"),
    }
    uid: np.ndarray
    pos: np.ndarray


class CellArrays(AgentArrays):
    """Every cell of one lattice compartment; :data:`CELL_COLUMNS` gives dtypes and units."""

    COLUMNS = CELL_COLUMNS

    uid: np.ndarray
    parent: np.ndarray
    pos: np.ndarray
    lineage: np.ndarray
    met: np.ndarray
    birth_h: np.ndarray
    cycle_h: np.ndarray
    wake: np.ndarray
    clone: np.ndarray
    phen: np.ndarray
    state: np.ndarray
    flags: np.ndarray

    @classmethod
    def bytes_per_cell(cls) -> int:
        """Bytes of state per cell slot."""
        return cls.bytes_per_agent()

    def append(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """As :meth:`AgentArrays.append`; arriving cells start without a movement clock.

        Whatever ``flags`` they bring, the clock bits are cleared, so a cell
        never wakes on a step counted in another compartment.
        """
        slots = super().append(columns)
        self.flags[self.n - slots.size : self.n] &= ~CLOCK_BITS
        return slots

    def remove(self, mask: np.ndarray) -> None:
        """Remove live cells where ``mask`` (length ``n``) is true; the last survivors fill the holes.

        See :meth:`remove_slots`. Subclasses with more columns use the generic,
        order-keeping :meth:`AgentArrays.remove`.
        """
        if self.COLUMNS is not CELL_COLUMNS:
            super().remove(mask)
            return
        self.remove_slots(np.flatnonzero(np.asarray(mask, dtype=bool)))

    def permute(self, order: np.ndarray) -> None:
        """Put the live cells in the order of ``order`` (a permutation of ``0..n-1``)."""
        for arr in self.arrays().values():
            arr[: self.n] = arr[: self.n][order]

    def remove_slots(self, slots: np.ndarray) -> None:
        """Remove the live cells in ``slots`` (ascending, distinct), in place.

        With ``m`` cells left, the survivors in slots ``m`` and above move, in
        order, into the holes below ``m``; every other cell keeps its slot. The
        work is proportional to the number removed (see
        :func:`~metacoop.kernels.cells.compact_cells`).
        """
        self.n = compact_cells(self.n, np.asarray(slots, dtype=np.int64), self.uid, self.parent, self.pos,
                               self.lineage, self.met, self.birth_h, self.cycle_h, self.wake, self.clone,
                               self.phen, self.state, self.flags)
