"""Plain-Python twins of the lattice kernels, one cell at a time, shared by the kernel tests."""

from __future__ import annotations

import numpy as np

from metacoop.kernels.bookkeeping import list_blocks
from metacoop.kernels.cells import DEAD, MOVING


def chosen_moves(flags: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The destinations a decide kernel chose, -1 for cells that stay; clears :data:`MOVING` again.

    The kernels mark a mover with ``MOVING`` in ``flags`` and write ``target`` for movers only.
    """
    moving = (flags & MOVING) != 0
    flags &= ~MOVING
    return np.where(moving, target, -1)


def mover_lists(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Scratch for the mover lists of :func:`~metacoop.kernels.cells.decide_moves`: slots, block counts."""
    return np.empty(n, np.int64), np.empty(list_blocks(n), np.int64)


def neighbours(p: int, dims, ndim: int) -> list[int]:
    """Neighbours of flat point ``p`` in the kernels' order -x +x -y +y (-z +z); -1 past an edge."""
    nz, ny, nx = dims
    z, rest = divmod(p, nx * ny)
    y, x = divmod(rest, nx)
    nb = [p - 1 if x > 0 else -1, p + 1 if x < nx - 1 else -1,
          p - nx if y > 0 else -1, p + nx if y < ny - 1 else -1]
    if ndim == 3:
        nb += [p - nx * ny if z > 0 else -1, p + nx * ny if z < nz - 1 else -1]
    return nb


def decide_moves_twin(c, u, p_diff, p_hapt, ecm, dims, ndim, upwind, boost=None, cues=None, cue_sens=None,
                      level=None) -> np.ndarray:
    """The rule of ``decide_moves``' docstring, one cell at a time, in the kernel's summation order.

    ``u`` holds each cell's uniform draw; ``boost`` and the cues are optional (no modifiers).
    """
    n_cues = 0 if cues is None else cues.shape[0]
    expect = np.full(c["uid"].size, -1, np.int64)
    for i in range(c["uid"].size):
        if c["flags"][i] & DEAD or c["state"][i] != 0:
            continue
        cl, ph, p = int(c["clone"][i]), int(c["phen"][i]), int(c["pos"][i])
        pd = p_diff[cl, ph] * (boost[p] if boost is not None and boost.size else 1.0)
        hp = p_hapt[cl, ph]
        sens = [cue_sens[k, cl, ph] for k in range(n_cues)]
        if pd == 0.0 and hp == 0.0 and not any(s != 0.0 for s in sens):
            continue
        nbs = neighbours(p, dims, ndim)
        acc = 0.0
        for d, nb in enumerate(nbs):
            if nb < 0:
                continue
            if upwind:
                g = max(0.0, ecm[nb] - ecm[p])
            else:
                other = nbs[d ^ 1]
                g = 0.25 * (ecm[nb] - (ecm[other] if other >= 0 else ecm[p]))
            acc += pd + hp * g
            for k, s in enumerate(sens):
                gk = cues[k, nb] if level[k] else cues[k, nb] - cues[k, p]
                if s != 0.0 and gk > 0.0:
                    acc += s * gk
            if u[i] < acc:
                expect[i] = nb
                break
    return expect
