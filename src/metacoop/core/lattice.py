"""Lattice geometry: a regular 2-D or 3-D grid of points spaced ``dx`` apart.

Arrays over the lattice have shape ``(nz, ny, nx)`` (``nz == 1`` in 2-D) and
C order, so a point's flat index is ``x + nx * (y + ny * z)``. Cells store
that flat index; kernels convert it back with ``divmod``. The same kernels
therefore serve 2-D and 3-D lattices: only ``ndim`` (the number of axes a cell
may move along) differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Lattice:
    """A regular lattice.

    Attributes:
        shape: points along each axis as configured, ``(nx, ny)`` or ``(nx, ny, nz)``.
        spacing_um: distance between neighbouring points, µm.
    """

    shape: tuple[int, ...]
    spacing_um: float

    # The geometry is fixed, so the derived values below are computed once (they are read by
    # every kernel call, several times a step).
    @cached_property
    def ndim(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return len(self.shape)

    @cached_property
    def dims(self) -> tuple[int, int, int]:
        """Array shape ``(nz, ny, nx)`` of every field on this lattice."""
        nx, ny = self.shape[0], self.shape[1]
        nz = self.shape[2] if self.ndim == 3 else 1
        return (nz, ny, nx)

    @cached_property
    def n_points(self) -> int:
        """Number of lattice points."""
        nz, ny, nx = self.dims
        return nz * ny * nx

    @cached_property
    def dims_array(self) -> np.ndarray:
        """``dims`` as an int64 array, the form kernels take (one array, shared: do not modify it)."""
        return np.asarray(self.dims, dtype=np.int64)

    def flat(self, x: np.ndarray, y: np.ndarray, z: np.ndarray | int = 0) -> np.ndarray:
        """Flat indices of points with integer coordinates ``(x, y, z)``."""
        nz, ny, nx = self.dims
        return (np.asarray(x) + nx * (np.asarray(y) + ny * np.asarray(z))).astype(np.int64)

    def coords(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integer coordinates ``(x, y, z)`` of flat indices."""
        nz, ny, nx = self.dims
        flat = np.asarray(flat, dtype=np.int64)
        x = flat % nx
        rest = flat // nx
        return x, rest % ny, rest // ny

    def centre_um(self) -> np.ndarray:
        """Position of the lattice centre, µm, as ``(x, y, z)``."""
        nz, ny, nx = self.dims
        return np.array([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2]) * self.spacing_um

    def distance_from_centre_um(self) -> np.ndarray:
        """Distance of every point from the lattice centre, µm, flat array."""
        x, y, z = self.coords(np.arange(self.n_points))
        c = self.centre_um()
        d = np.stack([x, y, z], axis=1) * self.spacing_um - c
        return np.sqrt((d**2).sum(axis=1))

    def neighbours(self, points: np.ndarray) -> np.ndarray:
        """Flat indices of the ``2 ndim`` von Neumann neighbours of ``points``, -1 past an edge.

        Columns are in the kernels' order: -x, +x, -y, +y (, -z, +z).
        """
        nz, ny, nx = self.dims
        p = np.asarray(points, dtype=np.int64)
        x, y, z = self.coords(p)
        cols = [np.where(x > 0, p - 1, -1), np.where(x < nx - 1, p + 1, -1),
                np.where(y > 0, p - nx, -1), np.where(y < ny - 1, p + nx, -1)]
        if self.ndim == 3:
            cols += [np.where(z > 0, p - nx * ny, -1), np.where(z < nz - 1, p + nx * ny, -1)]
        return np.stack(cols, axis=1)
