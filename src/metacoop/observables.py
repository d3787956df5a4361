"""Named observables computed from a run, as the experiments that they mirror measure them.

Each function takes a :class:`~metacoop.io.results.Result` and returns plain
numbers, so the same definitions serve a single run, an ensemble and the
validation against published figures.

Luzzi et al. 1998 (Am J Pathol 153:865) followed B16F1 cells injected into the
portal vein of mice through the liver. :func:`luzzi_funnel` computes their
six figures from a run of the ``luzzi1998`` scenario:

* ``extravasated_alive_d3`` (LUZ-1): cells alive in the liver tissue at day 3
  per injected cell, a metastasis of two or more cells counting as the one cell
  that founded it (solitary dormant and active cells plus multicellular
  metastases);
* ``micro_per_extravasated_d3`` (LUZ-2): micrometastases of 4 to 16 cells at
  day 3 per cell extravasated by day 3;
* ``micro_d3_to_macro_d13`` (LUZ-3): the fraction of those day-3
  micrometastases that are macroscopic at day 13;
* ``macro_per_injected_d13`` (LUZ-4): macroscopic metastases at day 13 per
  injected cell;
* ``dormant_per_injected_d13`` (LUZ-5): solitary dormant cells at day 13 per
  injected cell;
* ``ki67_solitary_d13`` (LUZ-6): the fraction of solitary cells at day 13
  that are cycling (not dormant), the model's Ki-67 index.

"Macroscopic" means a tumour visible as a nodule: at least
``macroscopic_diameter_um`` across (0.25 mm by default) in the simulated
section, i.e. at least ``capacity * pi * (d / 2 / dx)**2`` cells at the
organ's packing. The figures depend on this threshold (LUZ-3 and LUZ-4 most),
so it is an argument rather than a hidden constant.
"""

from __future__ import annotations

import math

import numpy as np

from metacoop.io.results import Result


def macroscopic_cells(result: Result, organ: str, diameter_um: float) -> int:
    """Cells of a metastasis packed at capacity over a disc (ball in 3-D) of ``diameter_um``."""
    lat = result.config.organs[organ].lattice
    r = diameter_um / 2 / lat.spacing_um
    points = math.pi * r**2 if len(lat.shape) == 2 else 4 / 3 * math.pi * r**3
    return math.ceil(lat.capacity_cells_per_point * points)


def luzzi_funnel(result: Result, organ: str = "liver", day3_h: float = 72.0, day13_h: float = 312.0,
                 macroscopic_diameter_um: float = 250.0) -> dict[str, float]:
    """Luzzi et al. 1998's six figures from one run (see the module docstring)."""
    injected = sum(i.cells for i in result.config.injections)
    f = result.funnel[result.funnel["organ"] == organ].groupby("time_h").sum(numeric_only=True)
    d3, d13 = f.loc[_nearest(f.index, day3_h)], f.loc[_nearest(f.index, day13_h)]
    sizes = result.metastasis_sizes[result.metastasis_sizes["organ"] == organ]
    at3 = _sizes_at(sizes, day3_h)
    at13 = _sizes_at(sizes, day13_h)
    micro3 = set(at3.index[(at3 >= 4) & (at3 <= 16)])
    macro13 = set(at13.index[at13 >= macroscopic_cells(result, organ, macroscopic_diameter_um)])
    solitary13 = d13["solitary"] + d13["dormant"]
    return {
        "extravasated_alive_d3": float(d3["dormant"] + d3["solitary"] + (at3 >= 2).sum()) / injected,
        "micro_per_extravasated_d3": len(micro3) / max(float(d3["extravasated"]), 1.0),
        "micro_d3_to_macro_d13": len(micro3 & macro13) / max(len(micro3), 1),
        "macro_per_injected_d13": len(macro13) / injected,
        "dormant_per_injected_d13": float(d13["dormant"]) / injected,
        "ki67_solitary_d13": float(d13["solitary"]) / max(float(solitary13), 1.0),
        "micro_d3": float(len(micro3)),
        "macro_d13": float(len(macro13)),
    }


def _nearest(values, t: float) -> float:
    values = np.asarray(values, dtype=float)
    return float(values[np.argmin(np.abs(values - t))])


def _sizes_at(sizes, t: float):
    """Cells per metastasis (all clones) at the snapshot nearest ``t``."""
    times = sizes["time_h"].unique()
    if len(times) == 0:
        return sizes.groupby("met_id")["cells"].sum()
    at = sizes[sizes["time_h"] == _nearest(times, t)]
    return at.groupby("met_id")["cells"].sum()


def clone_shares(result: Result) -> dict[str, dict[str, float]]:
    """Where each clone ends up in the metastases at the end of a run (the class action's outcome).

    Returns, per clone name:

    * ``metastases_with``: metastases holding at least one live cell of the clone
      (founders still arrested count; extinct metastases do not);
    * ``fraction_with``: that count over the metastases holding any live cell;
    * ``cells``: the clone's cells in metastases;
    * ``share_of_cells``: that count over all cells in metastases;
    * ``founded``: metastases the clone helped found (a founder of the clone);
    * ``joined``: metastases the clone joined later (a joiner of the clone).
    """
    mets = result.metastases
    names = result.clone_names()
    alive = [c for c in result.compositions() if sum(c.values()) > 0]
    total_cells = sum(sum(c.values()) for c in alive)
    out = {}
    for name in names:
        with_clone = sum(1 for c in alive if c.get(name, 0) > 0)
        cells = sum(c.get(name, 0) for c in alive)
        out[name] = {
            "metastases_with": float(with_clone),
            "fraction_with": with_clone / len(alive) if alive else 0.0,
            "cells": float(cells),
            "share_of_cells": cells / total_cells if total_cells else 0.0,
            "founded": float(sum(name in list(f) for f in mets["founder_clones"])) if len(mets) else 0.0,
            "joined": float(sum(name in list(j) for j in mets["joiner_clones"])) if len(mets) else 0.0,
        }
    return out
