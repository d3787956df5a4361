"""Modifiers: how one mechanism changes the rates of another without branching on it.

Cooperation works through the microenvironment: degraded ECM makes every
nearby cell more motile, a growth factor speeds up every nearby cell's cycle,
a niche raises arrest and extravasation. Each such effect is a *modifier*
that the cooperating mechanism registers on a site when it binds; the rule it
modifies (movement, proliferation, arrest, ...) multiplies the registered
factors in. A mechanism switched off registers nothing, so the rule runs
exactly as without it, and its random draws are untouched.

Kinds of per-point factors (arrays over the lattice, flat, float64; each
factor must be >= 0):

``motility``       multiplies the random motility ``D`` of cells at a point
``cycle_speed``    multiplies the speed of the cell-cycle clock at a point
``arrest``         multiplies the arrest hazard of a CTC arriving at a vessel point
``extravasation``  multiplies the extravasation hazard of an arrested cell
``death``          multiplies the death hazard of arrested and dormant cells
``angiogenesis``   multiplies a metastasis' angiogenic-switch hazard (at its cells)

Besides factors, a site holds *cues* (per-point signals in [0, 1] that cells
climb, with a sensitivity per clone and phenotype), *doorways* (normal vessel
points that epithelial cells may enter too), *escorts* (rules adding cells to
a group entering a vessel) and *gates* (whether intravasation is open now).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from metacoop.kernels.fields import saturation, saturation_at

#: Kinds of per-point multiplicative factors a mechanism may register.
FACTOR_KINDS = ("motility", "cycle_speed", "arrest", "extravasation", "death", "angiogenesis")

#: A per-point provider: called with the step context, returns a flat float64 array over the lattice.
PointProvider = Callable[[object], np.ndarray]
#: A cue's provider: called with the step context and a flat float64 row over the lattice, writes the
#: signal into that row (one row of the array of every cue, so nothing is copied) and returns it.
CueProvider = Callable[[object, np.ndarray], np.ndarray]

#: What :meth:`Modifiers.doorway_mask` returns when no doorway is registered (shared; it has no entry
#: to change, and stays writeable so kernels see the same array type as a real mask).
_NO_DOORWAYS = np.zeros(0, np.uint8)


@dataclass
class Cue:
    """A signal that biases moves: up its gradient, or towards where it is high.

    Attributes:
        name: the registering mechanism and signal, for descriptions.
        values: writes the signal per point, each in [0, 1], into the row it is given
            (:data:`CueProvider`).
        sensitivity: per-step probability scale ``[clone, phenotype]``: the
            probability of moving to a neighbour rises by ``sensitivity * g``
            with ``g = max(0, s_neighbour - s_here)`` (a gradient cue), or
            ``g = s_neighbour`` for a level cue.
        level: whether the cue acts by its level at the neighbour (tracks)
            rather than by its gradient (chemotaxis).
    """

    name: str
    values: CueProvider
    sensitivity: np.ndarray
    level: bool = False


@dataclass
class Modifiers:
    """The modifiers registered on one site (see the module docstring)."""

    factors: dict[str, list[tuple[str, PointProvider]]] = field(
        default_factory=lambda: {k: [] for k in FACTOR_KINDS})
    cues: list[Cue] = field(default_factory=list)
    doorways: list[tuple[str, PointProvider]] = field(default_factory=list)
    escorts: list[tuple[str, Callable]] = field(default_factory=list)
    gates: list[tuple[str, Callable[[float], bool]]] = field(default_factory=list)

    def add_factor(self, kind: str, name: str, provider: PointProvider) -> None:
        """Register a per-point factor of ``kind`` (one of :data:`FACTOR_KINDS`)."""
        if kind not in self.factors:
            raise ValueError(f"unknown modifier kind {kind!r}; kinds: {', '.join(FACTOR_KINDS)}")
        self.factors[kind].append((name, provider))

    def factor(self, kind: str, ctx) -> np.ndarray | None:
        """The product of every factor of ``kind`` per point, or ``None`` when none is registered."""
        return product_of(self.factors[kind], ctx)

    def factor_at(self, kind: str, ctx, points: np.ndarray) -> np.ndarray | None:
        """:meth:`factor` at the lattice points ``points`` only: ``factor(kind, ctx)[points]``, same bits."""
        return product_at(self.factors[kind], ctx, points)

    def cue_arrays(self, ctx, n_points: int, n_clones: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cue values ``(k, n_points)``, sensitivities ``(k, n_clones, 2)``, level flags ``(k,)``."""
        k = len(self.cues)
        values = np.empty((k, n_points))
        sens = np.empty((k, n_clones, 2))
        level = np.zeros(k, np.uint8)
        for i, cue in enumerate(self.cues):
            cue.values(ctx, values[i])
            sens[i] = cue.sensitivity
            level[i] = cue.level
        return values, sens, level

    def doorway_mask(self, ctx, n_points: int) -> np.ndarray:
        """Per point, 1 where some mechanism opens a normal vessel point to epithelial cells."""
        if not self.doorways:
            return _NO_DOORWAYS
        if len(self.doorways) == 1:  # (its own mask, for reading: no copy)
            return np.asarray(self.doorways[0][1](ctx)).astype(np.uint8, copy=False)
        out = np.zeros(n_points, np.uint8)
        for _, p in self.doorways:
            out |= p(ctx).astype(np.uint8)
        return out

    def open(self, time_h: float) -> bool:
        """Whether every registered gate lets cells intravasate at ``time_h``."""
        if not self.gates:  # (most sites: asked every step)
            return True
        return all(g(time_h) for _, g in self.gates)


class SaturatingFactor:
    """A factor ``1 + gain * c / (half_saturation + c)`` at every point, ``c`` the values of ``field``.

    The common shape of a factor that a signal raises (``gain > 0``) or
    lowers (``gain < 0``: ``1 - g c / (K + c)`` is ``1 + (-g) c / (K + c)``
    bit for bit) and that saturates. Called, it gives every point in one pass
    (:func:`~metacoop.kernels.fields.saturation`); :meth:`at` gives the same
    bits at listed points only, for :func:`product_at`.
    """

    __slots__ = ("field", "half_saturation", "gain")

    def __init__(self, field, half_saturation: float, gain: float):
        self.field, self.half_saturation, self.gain = field, half_saturation, gain

    def __call__(self, ctx) -> np.ndarray:
        """The factor at every point (a new array in the field's type)."""
        flat = self.field.flat
        return saturation(flat, self.half_saturation, 1.0, self.gain, np.empty_like(flat))

    def at(self, ctx, points: np.ndarray) -> np.ndarray:
        """The factor at ``points`` (in the field's type, as when called)."""
        flat = self.field.flat
        out = np.empty(points.size, flat.dtype)
        return saturation_at(flat, points, self.half_saturation, 1.0, self.gain, out)


def saturating_factor(field, half_saturation: float, gain: float) -> SaturatingFactor:
    """A :class:`SaturatingFactor` of ``field``: ``1 + gain * c / (half_saturation + c)`` at every point."""
    return SaturatingFactor(field, half_saturation, gain)


def saturating_cue(field, half_saturation: float) -> CueProvider:
    """A cue ``c / (half_saturation + c)`` (receptor occupancy), ``c`` the values of ``field``."""
    return lambda ctx, out: saturation(field.flat, half_saturation, 0.0, 1.0, out)


def product_of(providers: list[tuple[str, Callable]], ctx) -> np.ndarray | None:
    """The elementwise product of ``provider(ctx)`` over ``(name, provider)`` pairs (None if none).

    A provider may return None for a factor of exactly 1 everywhere this step;
    it is left out of the product (None if every provider does).
    The result is for reading: with one array it is that provider's array
    itself (in float64), not a copy (a 201 x 201 copy cost as much as the
    factor). Providers return a new array, or one nobody writes to.
    """
    return _product(p(ctx) for _, p in providers)


def product_at(providers: list[tuple[str, Callable]], ctx, points: np.ndarray) -> np.ndarray | None:
    """:func:`product_of` at the lattice points ``points`` only: ``product_of(providers, ctx)[points]``.

    The same bits, in the same order of multiplications. A provider with an
    ``at(ctx, points)`` method (:class:`SaturatingFactor`) is evaluated at the
    points alone, any other over the lattice and then indexed. Where a few
    cells read a factor (arrested cells, arriving CTCs, a metastasis' cells in
    an organ of 101 x 101 points) this spares the passes over the lattice.
    """
    return _product(_at_points(p, ctx, points) for _, p in providers)


def _at_points(provider, ctx, points: np.ndarray) -> np.ndarray | None:
    """One provider's factor at ``points``: by its ``at`` if it has one, else its whole array indexed."""
    at = getattr(provider, "at", None)
    if at is not None:
        return at(ctx, points)
    f = provider(ctx)
    return None if f is None else np.asarray(f)[points]


def _product(factors) -> np.ndarray | None:
    """The elementwise product of the arrays ``factors`` yields, in order, leaving out each None.

    None if every one is. The first array is not written to (with one array, it is returned as
    it is, in float64).
    """
    out, owned = None, False
    for f in factors:
        if f is None:
            continue
        if out is None:
            out = np.asarray(f, dtype=np.float64)
        elif owned:
            out *= f
        else:  # (a new array: the first provider's is left as it is)
            out, owned = out * f, True
    return out


def hazard_scaled(p: np.ndarray, factor: np.ndarray | None) -> np.ndarray:
    """Per-step probability ``p`` of a constant hazard, with the hazard multiplied by ``factor``.

    ``1 - (1 - p)**factor``; where ``factor`` is exactly 1 (or no factor is
    given) ``p`` is returned unchanged, bit for bit, so a modifier of zero
    strength changes nothing.
    """
    if factor is None:
        return p
    p = np.broadcast_to(np.asarray(p, np.float64), factor.shape).copy()
    scaled = factor != 1.0
    if scaled.any():
        f, q = factor[scaled], p[scaled]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = -np.expm1(f * np.log1p(-q))
        out[q >= 1.0] = np.where(f[q >= 1.0] > 0, 1.0, 0.0)
        p[scaled] = out
    return p
