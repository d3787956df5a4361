"""The cascade funnel: how many cells reached each step, per organ and clone.

Columns, all cell counts (cumulative ones count cells ever reaching the step):

* ``shed``: cells that entered the blood from any site, plus injected cells (cumulative, whole run);
* ``arrived``: cells in CTCs that reached the organ's capillary bed alive (cumulative; a cell
  passing through twice counts twice);
* ``arrested``: cells arrested in the organ (cumulative);
* ``extravasated``: cells that left the organ's capillaries into its tissue (cumulative);
* ``dormant``, ``solitary``, ``micro``, ``macro``: cells now in the organ as dormant solitary
  cells, active solitary cells, cells of micrometastases, cells of macrometastases.
"""

from __future__ import annotations

import pandas as pd

STAGES = ("shed", "arrived", "arrested", "extravasated", "dormant", "solitary", "micro", "macro")
_SOURCE = {
    "arrived": "arrived",
    "arrested": "immigrated",
    "extravasated": "extravasated",
    "dormant": "cells.dormant",
    "solitary": "cells.solitary",
    "micro": "cells.micro",
    "macro": "cells.macro",
}


def funnel(timeseries: pd.DataFrame, organs: list[str], times_h: list[float]) -> pd.DataFrame:
    """Funnel rows at each of ``times_h`` (and the last recorded time) for every organ and clone."""
    ts = timeseries
    recorded = sorted(ts["time_h"].unique())
    wanted = sorted({_nearest(recorded, t) for t in times_h} | {recorded[-1]})
    rows = []
    circ = ts[ts["compartment"] == "circulation"]
    for t in wanted:
        at = ts[ts["time_h"] == t]
        c = circ[circ["time_h"] == t]
        shed = (c[c["quantity"].isin(["immigrated", "injected"])]
                .groupby("clone", observed=True)["value"].sum())
        for organ in organs:
            o = at[at["compartment"] == organ]
            for clone in shed.index:
                row = {"time_h": float(t), "organ": organ, "clone": str(clone), "shed": int(shed[clone])}
                for stage, quantity in _SOURCE.items():
                    v = o[(o["quantity"] == quantity) & (o["clone"] == clone)]["value"]
                    row[stage] = int(v.sum())
                rows.append(row)
    return pd.DataFrame(rows, columns=["time_h", "organ", "clone", *STAGES])


def _nearest(recorded: list[float], t: float) -> float:
    return min(recorded, key=lambda r: abs(r - t))
