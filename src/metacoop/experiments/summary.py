"""One replicate's observables: the numbers every experiment kind reports.

:func:`replicate_observables` turns a finished run into tidy rows
``(observable, value)``. Names are stable and documented here, so that
statistics, queries and reports can refer to them:

* ``metastases`` and ``metastases.<organ>``: live metastases (at least one cell) at the end;
* ``burden_cells``: cells in metastases at the end;
* ``first_metastasis_h``: time the first metastasis was founded (NaN if none);
* ``clone_fraction_with.<clone>``: fraction of live metastases holding a cell of the clone;
* ``clone_share.<clone>``: the clone's share of cells in metastases;
* ``funnel.arrived_per_shed``, ``funnel.arrested_per_arrived``,
  ``funnel.extravasated_per_arrested``, ``funnel.growing_per_extravasated``: the
  cascade funnel over all organs and clones at the end (NaN where the
  denominator is 0; "growing" = cells in micro- and macrometastases);
* ``shed_cells``: cells that entered the blood from the primary site;
* ``primary_cells``: cells in the primary site at the end;
* ``wave.<k>.shed_cells`` and ``wave.<k>.seeding_efficiency`` (runs with
  shedding waves): cells that intravasated in wave ``k``, and metastases
  founded by at least one of them per cell shed in that wave.
"""

from __future__ import annotations

import math

import numpy as np

from metacoop.io.results import Result
from metacoop.observables import clone_shares

#: Observables with a fixed name, and the prefixes of those named after an organ, clone or wave.
FIXED = ("metastases", "burden_cells", "first_metastasis_h", "shed_cells", "primary_cells",
         "funnel.arrived_per_shed", "funnel.arrested_per_arrived", "funnel.extravasated_per_arrested",
         "funnel.growing_per_extravasated")
PREFIXED = ("metastases.", "clone_fraction_with.", "clone_share.", "wave.")


def is_observable(name: str) -> bool:
    """Whether ``name`` is (or may be, for a scenario with that organ, clone or wave) an observable."""
    return name in FIXED or (name.startswith(PREFIXED) and name not in PREFIXED)


def replicate_observables(result: Result) -> dict[str, float]:
    """The observables of one finished run (see the module docstring)."""
    out: dict[str, float] = {}
    mets = result.metastases
    comps = result.compositions()
    alive = [sum(c.values()) > 0 for c in comps]
    out["metastases"] = float(sum(alive))
    for organ in result.config.organs:
        here = [a for a, o in zip(alive, mets["organ"], strict=True) if o == organ]
        out[f"metastases.{organ}"] = float(sum(here))
    out["burden_cells"] = float(sum(sum(c.values()) for c in comps))
    founded = mets["founded_h"].dropna()
    out["first_metastasis_h"] = float(founded.min()) if len(founded) else math.nan
    for clone, s in clone_shares(result).items():
        out[f"clone_fraction_with.{clone}"] = s["fraction_with"]
        out[f"clone_share.{clone}"] = s["share_of_cells"]
    shed = shed_cells(result)
    out["shed_cells"] = shed
    if result.config.primary is not None:
        ts = result.timeseries
        cells = ts[(ts["compartment"] == "primary") & (ts["quantity"] == "cells")]
        out["primary_cells"] = float(cells.loc[cells["time_h"] == cells["time_h"].max(), "value"].sum())
    f = result.funnel
    if len(f):
        last = f[f["time_h"] == f["time_h"].max()].sum(numeric_only=True)
        out["funnel.arrived_per_shed"] = _ratio(last["arrived"], shed)
        out["funnel.arrested_per_arrived"] = _ratio(last["arrested"], last["arrived"])
        out["funnel.extravasated_per_arrested"] = _ratio(last["extravasated"], last["arrested"])
        out["funnel.growing_per_extravasated"] = _ratio(last["micro"] + last["macro"], last["extravasated"])
    waves = result.config.mechanisms.shedding_waves
    if waves.enabled:
        out.update(_wave_efficiency(result, waves.waves_h))
    return out


def shed_cells(result: Result) -> float:
    """Cells that entered the blood from the primary site (summed over intravasation events)."""
    ev = result.events
    return float(ev.loc[(ev["event"] == "intravasation") & (ev["compartment"] == "primary"), "size"].sum())


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def _wave_efficiency(result: Result, windows) -> dict[str, float]:
    ev = result.events
    intra = ev[(ev["event"] == "intravasation") & (ev["compartment"] == "primary")]
    wave_of_uid: dict[int, int] = {}
    shed = np.zeros(len(windows))
    for t, uids in zip(intra["time_h"], intra["cell_uids"], strict=True):
        k = next((i for i, (a, b) in enumerate(windows) if a <= t < b), -1)
        if k >= 0:
            shed[k] += len(uids)
            for u in uids:
                wave_of_uid[int(u)] = k
    seeded = np.zeros(len(windows))
    for uids in result.metastases["founder_uids"]:
        waves = {wave_of_uid.get(int(u), -1) for u in uids} - {-1}
        for k in waves:
            seeded[k] += 1
    out = {}
    for k in range(len(windows)):
        out[f"wave.{k}.shed_cells"] = float(shed[k])
        out[f"wave.{k}.seeding_efficiency"] = _ratio(seeded[k], shed[k])
    return out
