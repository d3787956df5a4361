"""Counter-based random numbers: a uniform variate is a hash of its coordinates.

``uniform(key, stream, step, uid, k)`` returns the ``k``-th uniform variate of
cell ``uid`` at ``step`` for the mechanism whose stream is ``stream`` in the
compartment whose key is ``key``. Because each draw is a pure function of its
coordinates (as in Philox/Random123, Salmon et al. 2011), the same cell gets the
same number whatever the thread schedule, the cell's slot in memory, or which
other mechanisms are switched on: common random numbers for ablations come for
free. The mixer is the SplitMix64 finaliser (Steele, Lea & Flood 2014), applied
in a chain so that every coordinate passes through a full avalanche.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True, inline="always")
def mix64(x):
    """SplitMix64 finaliser: a bijective avalanche on a uint64."""
    x = np.uint64(x) + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


@njit(cache=True, inline="always")
def draw_prefix(key, stream, step):
    """The part of :func:`hash_draw` shared by every cell's draws in one kernel call."""
    return mix64(mix64(np.uint64(key) ^ np.uint64(stream)) ^ np.uint64(step))


@njit(cache=True, inline="always")
def hash_after(prefix, uid, k):
    """The rest of :func:`hash_draw`, from ``prefix = draw_prefix(key, stream, step)``."""
    return mix64(mix64(prefix ^ np.uint64(uid)) ^ np.uint64(k))


@njit(cache=True, inline="always")
def hash_draw(key, stream, step, uid, k):
    """Return a uint64 hash of the draw coordinates (all taken as uint64), mixed in one after another."""
    return hash_after(draw_prefix(key, stream, step), uid, k)


@njit(cache=True, inline="always")
def _unit(h):
    """The 53 high bits of ``h`` as a float64 on [0, 1)."""
    return np.float64(h >> np.uint64(11)) * _TO_UNIT


@njit(cache=True, inline="always")
def uniform(key, stream, step, uid, k):
    """Return a float64 uniform on [0, 1) with 53 random bits."""
    return _unit(hash_draw(key, stream, step, uid, k))


@njit(cache=True, inline="always")
def uniform_after(prefix, uid, k):
    """``uniform(key, stream, step, uid, k)``, bit for bit, from ``prefix = draw_prefix(key, stream, step)``.

    For loops written without branches, where the compiler does not hoist the prefix by itself.
    """
    return _unit(hash_after(prefix, uid, k))


@njit(cache=True, inline="always")
def unit_threshold(p):
    """The integer ``t`` with ``uniform(...) < p`` exactly where the draw's hash ``h`` has ``h >> 11 < t``.

    A uniform is ``m 2**-53`` with ``m = h >> 11`` an integer below
    ``2**53``, and scaling by a power of two is exact, so ``u < p`` holds
    exactly where ``m < p 2**53``, that is where ``m < ceil(p 2**53)``. The
    threshold is 0 for ``p <= 0`` and for a NaN (``u < NaN`` is false) and
    ``2**53`` from ``p = 1`` on (every draw is below). Loops over many cells
    compare the hashes with a threshold computed once per probability
    (:func:`hash_below`) instead of turning each hash into a float: the
    conversion of an unsigned 64-bit integer has no AVX2 instruction. On 2
    threads, with the same outcome bit for bit, a branch-free EMT/MET pass
    over 1e6 cells whose arrays sat in the cache went from 3.1 to 2.5 ms; in
    the 1e6-cell benchmark, whose arrays come from memory, the death screen
    went from 2.7-3.6 to 2.6-3.1 ms a step and EMT/MET, bound by memory
    there, stayed at 3.0-3.6 ms (runs alternated).
    """
    if not p > 0.0:
        return np.int64(0)
    if p >= 1.0:
        return np.int64(9007199254740992)  # 2**53
    return np.int64(math.ceil(p * 9007199254740992.0))


@njit(cache=True, inline="always")
def hash_below(h, threshold):
    """Whether the uniform of hash ``h`` is below the probability whose :func:`unit_threshold` is given."""
    return np.int64(h >> np.uint64(11)) < threshold


@njit(cache=True)
def unit_thresholds(p, out):
    """:func:`unit_threshold` of every entry of ``p`` (any shape) into ``out`` (int64, the same shape)."""
    flat_p = p.ravel()
    flat_out = out.ravel()
    for j in range(flat_p.shape[0]):
        flat_out[j] = unit_threshold(flat_p[j])
    return out


@njit(cache=True)
def standard_normal(key, stream, step, uid, k):
    """Return a standard normal variate (Box-Muller on draws ``k`` and ``k+1``)."""
    u1 = 1.0 - uniform(key, stream, step, uid, k)  # (0, 1]
    u2 = uniform(key, stream, step, uid, k + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@njit(cache=True)
def gamma_variate(shape, scale, key, stream, step, uid, k0):
    """Return a Gamma(shape, scale) variate by Marsaglia & Tsang (2000).

    Draw indices ``k0, k0+1, ...`` of the given coordinates are consumed; at most
    64 rejection rounds are tried (acceptance is above 95 % for shape >= 1), after
    which the mean is returned so the kernel never loops unboundedly.
    For ``shape < 1`` the boost ``G(a) = G(a+1) * U**(1/a)`` is used.
    """
    a = shape
    boost = 1.0
    k = k0
    if a < 1.0:
        u = 1.0 - uniform(key, stream, step, uid, k)
        k += 1
        boost = u ** (1.0 / a)
        a = a + 1.0
    d = a - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    for _ in range(64):
        x = standard_normal(key, stream, step, uid, k)
        k += 2
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        u = uniform(key, stream, step, uid, k)
        k += 1
        if np.log(u + 1e-300) < 0.5 * x * x + d - d * v + d * np.log(v):
            return d * v * scale * boost
    return shape * scale


@njit(cache=True)
def uniforms(key, stream, step, uids, k, out):
    """Fill ``out[i]`` with ``uniform(key, stream, step, uids[i], k)``."""
    for i in range(uids.shape[0]):
        out[i] = uniform(key, stream, step, uids[i], k)
    return out
