"""Named observables that published experiments measured, computed from any run.

Each observable is a function of one finished run (a
:class:`~metacoop.io.results.Result`) returning one number, registered here
with its unit and a definition in words. A target row of the validation file
(see :mod:`metacoop.validation.targets`) names one of them, or one of the
experiment observables of :mod:`metacoop.experiments.summary`. Observables
marked *yes/no* are 1.0 or 0.0 per run; their ensemble value is the fraction
of replicates where they hold.

Conventions:

* "the organ" of an injection experiment is the organ the first injection's
  vessel leads to (the liver for an intraportal injection);
* times of a time course are measured from the first injection, or from the
  start of the run when nothing was injected, at the resolution of
  ``output.record_every_h``;
* a tumour's mass is its cells over :data:`CELLS_PER_GRAM` (a 10-µm cell is
  about 1e-9 g; the usual rule of thumb of 1e9 cells per gram of tumour).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.integrate import trapezoid

from metacoop.experiments.summary import shed_cells
from metacoop.io.results import Result
from metacoop.observables import luzzi_funnel

#: Tumour cells per gram of tumour tissue (rule of thumb: 1 cm³ ~ 1 g ~ 1e9 cells).
CELLS_PER_GRAM = 1e9
#: Hours per month (365.25 d / 12).
HOURS_PER_MONTH = 730.5


@dataclass(frozen=True)
class Observable:
    """One named observable.

    Attributes:
        name: stable name used in target files and datasets.
        unit: unit of the value (``yes/no`` for observables that are 1 or 0 per run).
        definition: what is measured, in words (printed by ``metacoop validate --list``).
        compute: the function of a finished run.
    """

    name: str
    unit: str
    definition: str
    compute: Callable[[Result], float]


OBSERVABLES: dict[str, Observable] = {}


def observable(name: str, unit: str, definition: str):
    """Register the decorated function of a run as the observable ``name``."""

    def register(fn: Callable[[Result], float]) -> Callable[[Result], float]:
        OBSERVABLES[name] = Observable(name, unit, definition, fn)
        return fn

    return register


def compute(result: Result, names) -> dict[str, float]:
    """The registered observables ``names`` of one run (NaN where a run has nothing to measure)."""
    return {n: float(OBSERVABLES[n].compute(result)) for n in names}


# -- helpers -----------------------------------------------------------------------------------------


def injected_organ(result: Result) -> str:
    """The organ of an injection experiment: the one the first injection's vessel sends most cells to."""
    cfg = result.config
    if cfg.injections:
        route = cfg.circulation.routes.get(cfg.injections[0].vessel, {})
        if route:
            return max(route, key=route.get)
    return next(iter(cfg.organs))


def start_h(result: Result) -> float:
    """Time course origin: the first injection, or the start of the run."""
    injections = result.config.injections
    return float(min(i.time_h for i in injections)) if injections else 0.0


def series(result: Result, compartment: str | None, quantity: str) -> pd.Series:
    """A timeseries quantity over time, summed over clones and phenotypes (and organs if ``None``)."""
    ts = result.timeseries
    sel = ts[ts["quantity"] == quantity]
    if compartment is not None:
        sel = sel[sel["compartment"] == compartment]
    elif result.config.organs:
        sel = sel[sel["compartment"].isin(list(result.config.organs))]
    return sel.groupby("time_h")["value"].sum().sort_index()


def at_time(s: pd.Series, t: float) -> float:
    """Value of a series at the recorded time nearest ``t``."""
    if s.empty:
        return math.nan
    return float(s.iloc[int(np.argmin(np.abs(s.index.to_numpy(float) - t)))])


def time_course(s: pd.Series, t0: float) -> dict[str, float]:
    """Onset, peak and return of a transient, in hours after ``t0`` (NaN if it never rises).

    Onset is the first time above a quarter of the peak; return the first time after the
    peak below a tenth of it.
    """
    s = s[s.index >= t0]
    if s.empty or not (s.max() > 0):
        return {"onset": math.nan, "peak": math.nan, "back": math.nan}
    t = s.index.to_numpy(float) - t0
    v = s.to_numpy(float)
    k = int(np.argmax(v))
    after = np.flatnonzero(v[k:] < 0.1 * v[k])
    return {"onset": float(t[np.argmax(v > 0.25 * v[k])]), "peak": float(t[k]),
            "back": float(t[k + after[0]]) if after.size else math.nan}


def _luzzi(key: str, day3_h: float = 72.0) -> Callable[[Result], float]:
    def value(r: Result) -> float:
        if not r.config.injections:
            return math.nan  # Luzzi's figures are per injected cell
        return luzzi_funnel(r, organ=injected_organ(r), day3_h=day3_h)[key]

    return value


def _live_compositions(result: Result) -> list[dict[str, int]]:
    return [c for c in result.compositions() if sum(c.values()) > 0]


def _second_clone_hits(result: Result) -> list[bool] | None:
    """For each live metastasis, whether it holds a cell of the second clone (None: one clone only)."""
    names = [c.name for c in result.config.clones]
    if len(names) < 2:
        return None
    return [c.get(names[1], 0) > 0 for c in _live_compositions(result)]


# -- Luzzi et al. 1998 and other injection experiments ----------------------------------------------

for _name, _key, _definition in (
    ("extravasated_alive_d3", "extravasated_alive_d3",
     "cells alive in the organ's tissue at day 3 per injected cell (a multicellular metastasis counts "
     "as the one cell that founded it)"),
    ("micro_per_extravasated_d3", "micro_per_extravasated_d3",
     "micrometastases of 4-16 cells at day 3 per cell extravasated by day 3"),
    ("micro_d3_to_macro_d13", "micro_d3_to_macro_d13",
     "fraction of the day-3 micrometastases that are macroscopic (0.25 mm across) at day 13"),
    ("macro_per_injected_d13", "macro_per_injected_d13",
     "macroscopic metastases at day 13 per injected cell"),
    ("dormant_per_injected_d13", "dormant_per_injected_d13",
     "solitary dormant cells at day 13 per injected cell"),
    ("ki67_solitary_d13", "ki67_solitary_d13",
     "fraction of solitary cells at day 13 that are cycling (not dormant): the model's Ki-67 index"),
):
    observable(_name, "fraction", _definition)(_luzzi(_key))

observable("extravasated_alive_d1", "fraction",
           "cells alive in the organ's tissue at 24 h per injected cell (as extravasated_alive_d3)")(
    _luzzi("extravasated_alive_d3", day3_h=24.0))


@observable("extravasated_of_present_d3", "fraction",
            "of the tumour cells present in the organ at day 3, the fraction outside the vessels "
            "(extravasated) rather than arrested in them")
def extravasated_of_present_d3(result: Result) -> float:
    organ = injected_organ(result)
    t = start_h(result) + 72.0
    inside = at_time(series(result, organ, "cells.arrested"), t)
    out = sum(at_time(series(result, organ, f"cells.{s}"), t)
              for s in ("dormant", "solitary", "micro", "macro"))
    return out / (out + inside) if out + inside > 0 else math.nan


@observable("early_efficient_late_inefficient", "yes/no",
            "the early steps are efficient and growth after extravasation is not: at least half the "
            "injected cells are alive in the tissue at day 3 and at most 5 % of those form a macroscopic "
            "metastasis by day 13")
def early_efficient_late_inefficient(result: Result) -> float:
    if not result.config.injections:
        return math.nan
    f = luzzi_funnel(result, organ=injected_organ(result))
    extravasated = f["extravasated_alive_d3"]
    return float(extravasated >= 0.5 and f["macro_per_injected_d13"] <= 0.05 * extravasated)


# -- the pre-metastatic niche (Kaplan et al. 2005; Dawson et al. 2009) ------------------------------


@observable("niche_before_arrival", "yes/no",
            "in every organ where tumour cells arrested, the niche formed (event niche_formed) before the "
            "first tumour cell arrested there")
def niche_before_arrival(result: Result) -> float:
    ev = result.events
    arrests = ev[ev["event"] == "arrest"].groupby("organ")["time_h"].min()
    if arrests.empty:
        return math.nan
    formed = ev[ev["event"] == "niche_formed"].groupby("compartment")["time_h"].min()
    return float(all(organ in formed.index and formed[organ] < t for organ, t in arrests.items()))


@observable("bmdc_peak", "normalised density",
            "the highest VEGFR1+ bone-marrow-derived-cell density reached at any point of any organ")
def bmdc_peak(result: Result) -> float:
    s = series(result, None, "bmdc.max")
    return float(s.max()) if not s.empty else 0.0


@observable("any_metastasis", "yes/no", "at least one live metastasis (of any size) at the end of the run")
def any_metastasis(result: Result) -> float:
    return float(len(_live_compositions(result)) > 0)


# -- the class action (Miller 1983; Bidard et al. 2008) ---------------------------------------------


@observable("second_clone_in_metastases", "yes/no",
            "a cell of the second clone (the non-metastatic one) is in at least one live metastasis at "
            "the end of the run")
def second_clone_in_metastases(result: Result) -> float:
    hits = _second_clone_hits(result)
    return math.nan if hits is None else float(any(hits))


@observable("second_clone_metastases", "metastases",
            "live metastases holding at least one cell of the second clone (the non-metastatic one) at the "
            "end of the run")
def second_clone_metastases(result: Result) -> float:
    hits = _second_clone_hits(result)
    return math.nan if hits is None else float(sum(hits))


# -- the primary tumour and its shedding (Butler & Gullino 1975; Coumans et al. 2013) ---------------


@observable("shed_per_gram_per_day", "cells per g per 24 h",
            "cells entering the blood from the primary site per day per gram of primary tumour "
            "(time-averaged cells over CELLS_PER_GRAM)")
def shed_per_gram_per_day(result: Result) -> float:
    shed = shed_cells(result)
    cells = series(result, "primary", "cells")
    if len(cells) < 2:
        return math.nan
    t = cells.index.to_numpy(float)
    mean_cells = float(trapezoid(cells.to_numpy(float), t) / (t[-1] - t[0]))
    return shed / (mean_cells / CELLS_PER_GRAM) / ((t[-1] - t[0]) / 24.0)


@observable("arterial_to_efferent", "ratio",
            "tumour cells reaching a capillary bed beyond the first one (arterial blood) per cell shed into "
            "the tumour's efferent vein: the fraction that survives the transit and passes the first bed")
def arterial_to_efferent(result: Result) -> float:
    first = set(result.config.circulation.routes.get("primary", {}))
    f = result.funnel
    if f.empty:
        return math.nan
    last = f[f["time_h"] == f["time_h"].max()]
    beyond = float(last.loc[~last["organ"].isin(first), "arrived"].sum())
    shed = float(last.groupby("organ")["shed"].sum().iloc[0]) if len(last) else 0.0
    return beyond / shed if shed else math.nan


@observable("primary_doubling_months", "months",
            "volume doubling time of the primary tumour over the run: duration * ln 2 / ln(N_end / N_0)")
def primary_doubling_months(result: Result) -> float:
    cells = series(result, "primary", "cells")
    if len(cells) < 2 or not cells.iloc[-1] > cells.iloc[0] > 0:
        return math.nan
    span = cells.index[-1] - cells.index[0]
    return span * math.log(2) / math.log(cells.iloc[-1] / cells.iloc[0]) / HOURS_PER_MONTH


@observable("primary_fold_change", "ratio", "primary-site cells at the end over cells at the start")
def primary_fold_change(result: Result) -> float:
    cells = series(result, "primary", "cells")
    return float(cells.iloc[-1] / cells.iloc[0]) if len(cells) and cells.iloc[0] > 0 else math.nan


# -- the circulation (Meng et al. 2004) --------------------------------------------------------------


@observable("ctc_half_life_h", "h",
            "half-life of tumour cells in the blood: ln 2 over the slope of a least-squares line through "
            "log(cells in the circulation) over time, from the first record after the first injection "
            "until fewer than 1 % of the peak remain")
def ctc_half_life_h(result: Result) -> float:
    s = series(result, "circulation", "cells")
    s = s[s.index > start_h(result)]
    if s.empty or not s.max() > 0:
        return math.nan
    k = int(np.argmax(s.to_numpy()))
    s = s.iloc[k:]
    s = s[s > 0.01 * s.iloc[0]]
    if len(s) < 3:
        return math.nan
    slope = np.polyfit(s.index.to_numpy(float), np.log(s.to_numpy(float)), 1)[0]
    return math.log(2) / -slope if slope < 0 else math.inf


# -- adhesion induction in the liver (Khatib et al. 1999) ---------------------------------------------

for _name, _quantity, _part, _definition in (
    ("tnf_peak_h", "tnf.total", "peak", "hours from injection to the peak of TNF-alpha/IL-1 in the organs"),
    ("eselectin_onset_h", "cam.total", "onset",
     "hours from injection until organ E-selectin first exceeds a quarter of its peak"),
    ("eselectin_peak_h", "cam.total", "peak", "hours from injection to the peak of organ E-selectin"),
    ("eselectin_return_h", "cam.total", "back",
     "hours from injection until organ E-selectin, past its peak, is below a tenth of the peak"),
):
    observable(_name, "h", _definition)(
        lambda r, q=_quantity, p=_part: time_course(series(r, None, q), start_h(r))[p])
