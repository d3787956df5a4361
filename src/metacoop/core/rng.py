"""Random streams: one root seed, one key per compartment, one stream per mechanism.

A run's seed enters one :class:`numpy.random.SeedSequence`. Each compartment
derives its own child sequence from its *name* (not its position in a list),
so adding an organ does not change the primary site's numbers. From the child
we take

* ``key``: a uint64 that keys the counter-based per-cell draws of
  :mod:`metacoop.kernels.random`, and
* ``generator``: a :class:`numpy.random.Generator` for set-up draws (initial
  cell placement, vessel placement) that are not tied to a cell.

Each mechanism's stream id is ``crc32(name)``, a stable hash (Python's
``hash()`` is salted per process), so its draws are unchanged when another
mechanism is switched off.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np


def stream_id(name: str) -> int:
    """Stable 32-bit id of a named random stream."""
    return zlib.crc32(name.encode("utf-8"))


@dataclass(frozen=True)
class CompartmentStreams:
    """The random sources of one compartment.

    Attributes:
        key: uint64 key of the counter-based per-cell draws (kept as ``np.uint64`` so
            numba always compiles kernels for the same integer type).
        generator: NumPy generator for set-up draws.
    """

    key: np.uint64
    generator: np.random.Generator


def compartment_streams(seed: int, compartment: str) -> CompartmentStreams:
    """Derive a compartment's random sources from the run seed and its name."""
    seq = np.random.SeedSequence(seed, spawn_key=(stream_id(compartment),))
    key = np.uint64(seq.generate_state(1, dtype=np.uint64)[0])
    return CompartmentStreams(key=key, generator=np.random.Generator(np.random.PCG64(seq)))
