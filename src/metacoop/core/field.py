"""Fields: reaction-diffusion variables on a lattice.

A :class:`Field` holds its values and a ``deltas`` array where mechanisms
accumulate sources during a step (as HAL's ``PDEGrid``); the solver applies
the deltas, then diffuses and decays the field. The solver's scratch buffer
lives in a separate :class:`FieldSolver` made by :func:`make_solver`.

Stability: the explicit scheme needs ``D dt_sub / dx**2 <= 1 / (2 ndim)``. The
number of sub-steps is chosen from that bound unless the scenario fixes it; a
fixed number that breaks the bound is refused before the run
(:func:`required_substeps`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from metacoop.kernels.dispatch import runs_parallel, threads
from metacoop.kernels.fields import add_at_points, add_inplace, diffuse_decay_steps, scale_inplace

#: Fraction of the stability bound used when sub-steps are chosen automatically.
SAFETY = 0.9
#: Sources written at listed points are applied there only while the points number under 1 per this many
#: lattice points; otherwise by one pass over the lattice.
SPARSE_SOURCES = 8


class Field:
    """A field on a lattice.

    Attributes:
        name: field name as in the scenario (``ecm``, ``mmp2``, ...).
        values: shape (nz, ny, nx); units as documented for the field.
        deltas: same shape; sources accumulated during the step, applied by the solver.
        zero: True while every value and every delta is exactly 0 (an organ's MMP-2
            before any cell arrives), so the solver has nothing to do. Whatever
            writes to the deltas or the values must set it to False.
        pending: False while the deltas are known to be exactly 0: the solver
            clears it after applying them, and reading :attr:`deltas` or
            :attr:`flat_deltas` (which every writer does) sets it again. A field
            without sources (the ECM) then costs nothing when it neither diffuses
            nor decays. Skipping the addition of +0 changes no value (a -0 value
            would become +0, but no rule writes one).
        sources_at: while every pending delta was written by :meth:`sources_at_points`,
            the lists of points they were written at (else None: anywhere). The
            solver then applies them at those points only: the same values as
            adding every point's delta, without a pass over the lattice (an
            organ holding a few cells, or a young tumour).
    """

    def __init__(self, name: str, values: np.ndarray, deltas: np.ndarray, zero: bool = False):
        self.name = name
        self.values = values
        self._deltas = deltas
        self.zero = zero
        self.pending = True
        self.sources_at: list[np.ndarray] | None = None
        self._flat_of, self._flat = values, values.reshape(-1)  # (the flat view of `_flat_of`)

    def __repr__(self) -> str:
        return f"Field({self.name!r}, shape={self.values.shape}, dtype={self.values.dtype}, zero={self.zero})"

    @property
    def deltas(self) -> np.ndarray:
        """The sources array (marks the field as having pending sources, anywhere)."""
        self.pending = True
        self.sources_at = None
        return self._deltas

    @deltas.setter
    def deltas(self, array: np.ndarray) -> None:
        self.pending = True
        self.sources_at = None
        self._deltas = array

    def sources_at_points(self, points: np.ndarray | None) -> np.ndarray:
        """The flat sources array, for a writer that adds to it only at ``points`` (a copy it keeps).

        ``points=None`` declares no such limit (as :attr:`flat_deltas`).
        """
        if points is None:
            return self.flat_deltas
        if not self.pending:
            self.sources_at = [points]
        elif self.sources_at is not None:
            self.sources_at.append(points)
        self.pending = True
        return self._deltas.reshape(-1)

    @property
    def flat(self) -> np.ndarray:
        """Flat view of the values (index = lattice flat index).

        The view is kept while :attr:`values` is the same array (read several times a step; a new view
        costs more than the check).
        """
        v = self.values
        if v is not self._flat_of:
            self._flat_of, self._flat = v, v.reshape(-1)
        return self._flat

    @property
    def flat_deltas(self) -> np.ndarray:
        """Flat view of the deltas (marks the field as having pending sources)."""
        return self.deltas.reshape(-1)


def diffusion_number(diffusion_um2_per_h: float, dt_h: float, dx_um: float) -> float:
    """``D dt / dx**2`` for one base step, dimensionless."""
    return diffusion_um2_per_h * dt_h / dx_um**2


def stability_limit(ndim: int) -> float:
    """Largest stable ``D dt / dx**2`` of the explicit scheme in ``ndim`` dimensions."""
    return 1.0 / (2 * ndim)


def required_substeps(diffusion_um2_per_h: float, dt_h: float, dx_um: float, ndim: int) -> int:
    """Smallest number of sub-steps (with the safety margin) that keeps diffusion stable."""
    r = diffusion_number(diffusion_um2_per_h, dt_h, dx_um)
    return max(1, math.ceil(r / (SAFETY * stability_limit(ndim))))


@dataclass
class FieldSolver:
    """Advances one field by one base step: deltas, then diffusion and decay.

    Attributes:
        substeps: explicit sub-steps per base step.
        r: ``D dt_sub / dx**2`` of one sub-step.
        decay: ``exp(-lambda dt_sub)`` of one sub-step.
        scratch: second buffer for the explicit update.
    """

    substeps: int
    r: float
    decay: float
    scratch: np.ndarray

    def step(self, f: Field) -> None:
        """Advance ``f`` by one base step in place (nothing to do for an all-zero field).

        Deltas are added only when some may be non-zero (:attr:`Field.pending`),
        so a field without sources that neither diffuses nor decays costs nothing.
        After an odd number of sub-steps the field's values and the scratch
        buffer trade places instead of being copied: :attr:`Field.values` is
        then another array, so hold the :class:`Field`, not its values, across
        steps.
        """
        if f.zero:
            return
        if f.pending:
            points = f.sources_at
            if points is not None and sum(len(p) for p in points) * SPARSE_SOURCES < f.values.size:
                for p in points:
                    add_at_points(f.values.reshape(-1), f._deltas.reshape(-1), p)
            else:
                add_inplace(f.values, f._deltas)
            f.pending = False
            f.sources_at = None
        if self.r == 0.0:
            if self.decay != 1.0:
                scale_inplace(f.values, self.decay**self.substeps)
            return
        # The wavefront's blocks: the threads of the build that runs.
        blocks = threads() if runs_parallel(f.values.size, diffuse_decay_steps.min_items) else 1
        diffuse_decay_steps(f.values, self.scratch, self.r, self.decay, self.substeps, blocks)
        if self.substeps % 2:  # (the last sub-step wrote the scratch buffer)
            f.values, self.scratch = self.scratch, f.values


def make_solver(
    values: np.ndarray,
    diffusion_um2_per_h: float,
    decay_per_h: float,
    dt_h: float,
    dx_um: float,
    ndim: int,
    substeps: int | None = None,
) -> FieldSolver:
    """Build the solver of one field; ``substeps=None`` chooses them from the bound."""
    n = substeps or required_substeps(diffusion_um2_per_h, dt_h, dx_um, ndim)
    dt_sub = dt_h / n
    return FieldSolver(
        substeps=n,
        r=diffusion_number(diffusion_um2_per_h, dt_sub, dx_um),
        decay=math.exp(-decay_per_h * dt_sub),
        scratch=np.empty_like(values),
    )
