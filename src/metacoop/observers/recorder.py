"""Recording: time series rows at ``record_every_h``, field snapshots at ``snapshot_every_h``.

The time series is tidy (one row per time, compartment, quantity, clone and
phenotype):

* every site: ``vessels.<normal|ruptured|lymphatic>`` (vessel points of each
  kind, which vessel disruption changes), stromal agents by kind
  (``macrophages``); ``cells`` per clone and phenotype; cumulative per-clone
  counters (``initial``, ``born``, ``died``, ``emigrated``, ``immigrated``,
  ``emt``, ``met``, ``arrived``, ``extravasated``, ``woke``); per-field
  summaries (``<field>.mean``, ``.min``, ``.max``, ``.total``; ``total`` is
  the sum over points times the point volume in µm^ndim, conserved by
  diffusion);
* organs also: cells per clone by where they stand in the cascade
  (``cells.arrested``, ``cells.dormant``, ``cells.solitary``, ``cells.micro``,
  ``cells.macro``) and metastases by status (``metastases.<status>``);
* circulation: ``cells`` per clone and phenotype, its counters (``injected``,
  ``immigrated``, ``died``, ``emigrated``), ``ctcs`` (entities in transit),
  ``ctcs_created`` and each systemic factor's level (``<factor>.level``).

Metastasis sizes by clone are recorded at every snapshot time. Snapshots hold
every field, cells per point by phenotype, the clone with most cells at each
point (``main_clone``), stromal agents per point by kind, and the vessel map
(``vessel_state``: 0 none, 1 normal, 2 ruptured, 3 lymphatic).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from metacoop.compartments.metastases import MACRO, MICRO, SOLITARY, STATUS
from metacoop.core.clones import PHENOTYPES
from metacoop.core.state import ARRESTED, DORMANT
from metacoop.core.vessels import VESSEL_NAMES

TIMESERIES_COLUMNS = ("time_h", "step", "compartment", "quantity", "clone", "phenotype", "value")


def main_clone(pos: np.ndarray, clone: np.ndarray, n_clones: int, n_points: int) -> np.ndarray:
    """Per lattice point, the index of the clone with most cells there (ties: the lower index; -1: empty)."""
    out = np.full(n_points, -1, np.int16)
    if pos.size == 0:
        return out
    keys, counts = np.unique(pos.astype(np.int64) * n_clones + clone, return_counts=True)
    point, cl = np.divmod(keys, n_clones)
    order = np.lexsort((-counts, point))  # by point, most cells first; equal counts keep clone order
    point, cl = point[order], cl[order]
    first = np.r_[True, point[1:] != point[:-1]]
    out[point[first]] = cl[first]
    return out


class Recorder:
    """Collects rows and snapshots during a run."""

    def __init__(self, sim):
        cfg = sim.config.output
        self.sim = sim
        self.record_every = max(1, round(cfg.record_every_h / sim.dt_h))
        self.snapshot_every = max(1, round(cfg.snapshot_every_h / sim.dt_h))
        self.rows: list[tuple] = []
        self.snapshots: dict[str, list[tuple[float, dict[str, np.ndarray]]]] = {
            s.name: [] for s in sim.sites
        }
        self.met_sizes: list[tuple] = []
        self.funnel_steps = {round(t / sim.dt_h) for t in cfg.funnel_times_h}

    def after_step(self, step_done: int, time_h: float, final: bool = False) -> None:
        """Record if ``step_done`` (steps completed) falls on an interval or the run ends."""
        if step_done % self.record_every == 0 or final or step_done in self.funnel_steps:
            self.record(step_done, time_h)
        if step_done % self.snapshot_every == 0 or final:
            self.snapshot(time_h)

    def record(self, step: int, time_h: float) -> None:
        """Append the time-series rows of the current state."""
        if self.rows and self.rows[-1][1] == step:
            return
        sim = self.sim
        names = sim.clones.names
        nclones = len(names)
        rows = self.rows
        for site in sim.sites:
            c = site.cells
            key = c.live("clone").astype(np.int64) * 2 + c.live("phen")
            counts = np.bincount(key, minlength=2 * nclones)
            for ci, cname in enumerate(names):
                for pi, pname in enumerate(PHENOTYPES):
                    rows.append((time_h, step, site.name, "cells", cname, pname, float(counts[2 * ci + pi])))
                for kind, arr in site.counters.items():
                    rows.append((time_h, step, site.name, kind, cname, None, float(arr[ci])))
            vol = site.lattice.spacing_um**site.lattice.ndim
            for fname, f in site.fields.items():
                v = f.values
                rows.append((time_h, step, site.name, f"{fname}.mean", None, None, float(v.mean())))
                rows.append((time_h, step, site.name, f"{fname}.min", None, None, float(v.min())))
                rows.append((time_h, step, site.name, f"{fname}.max", None, None, float(v.max())))
                rows.append((time_h, step, site.name, f"{fname}.total", None, None,
                             float(v.sum(dtype=np.float64)) * vol))
            if site.has_vessels:
                per = np.bincount(site.vessel[site.vessel > 0], minlength=4)
                for code, label in VESSEL_NAMES.items():
                    rows.append((time_h, step, site.name, f"vessels.{label}", None, None, float(per[code])))
            for kind, agents in site.agents.items():
                rows.append((time_h, step, site.name, kind, None, None, float(agents.n)))
            if site.is_organ:
                self._record_organ(site, step, time_h)
        circ = sim.circulation
        key = circ.cells.live("clone").astype(np.int64) * 2 + circ.cells.live("phen")
        counts = np.bincount(key, minlength=2 * nclones)
        for ci, cname in enumerate(names):
            for pi, pname in enumerate(PHENOTYPES):
                rows.append((time_h, step, circ.name, "cells", cname, pname, float(counts[2 * ci + pi])))
            for kind, arr in circ.counters.items():
                rows.append((time_h, step, circ.name, kind, cname, None, float(arr[ci])))
        rows.append((time_h, step, circ.name, "ctcs", None, None, float(circ.ctcs.n)))
        rows.append((time_h, step, circ.name, "ctcs_created", None, None, float(circ.n_ctcs)))
        for fname, level in circ.levels.items():
            rows.append((time_h, step, circ.name, f"{fname}.level", None, None, float(level)))

    def _record_organ(self, site, step: int, time_h: float) -> None:
        """Cells per clone by cascade stage, and metastases by status, in one organ."""
        reg = self.sim.metastases
        names = self.sim.clones.names
        c = site.cells
        clone = c.live("clone")
        state = c.live("state")
        met = c.live("met")
        status = np.full(c.n, -1, np.int64)
        has = met >= 0
        status[has] = reg.status[met[has]]
        tissue = state != ARRESTED
        stages = {
            "cells.arrested": state == ARRESTED,
            "cells.dormant": tissue & (state == DORMANT) & (status != MACRO),
            "cells.solitary": tissue & (state != DORMANT) & (status == SOLITARY),
            "cells.micro": tissue & (state != DORMANT) & (status == MICRO),
            "cells.macro": tissue & (status == MACRO),
        }
        for quantity, sel in stages.items():
            per = np.bincount(clone[sel], minlength=len(names))
            for ci, cname in enumerate(names):
                self.rows.append((time_h, step, site.name, quantity, cname, None, float(per[ci])))
        mine = reg.organ[: reg.n] == site.organ_index
        per_status = np.bincount(reg.status[: reg.n][mine], minlength=len(STATUS))
        for code, label in enumerate(STATUS):
            self.rows.append((time_h, step, site.name, f"metastases.{label}", None, None,
                              float(per_status[code])))

    def snapshot(self, time_h: float) -> None:
        """Copy every field and the cell occupancy by phenotype of every site."""
        for site in self.sim.sites:
            snaps = self.snapshots[site.name]
            if snaps and math.isclose(snaps[-1][0], time_h):
                continue
            c = site.cells
            data = {fname: f.values.copy() for fname, f in site.fields.items()}
            # (the site keeps both counts per point: cells, and mesenchymal cells among them)
            epithelial, mesenchymal = site.occ - site.mes_occ, site.mes_occ.copy()
            for pname, per_point in zip(PHENOTYPES, (epithelial, mesenchymal), strict=True):
                data[f"{pname}_cells"] = per_point.reshape(site.lattice.dims)
            data["main_clone"] = main_clone(c.live("pos"), c.live("clone"), len(self.sim.clones),
                                            site.lattice.n_points).reshape(site.lattice.dims)
            for kind, agents in site.agents.items():
                occ = np.bincount(agents.live("pos"), minlength=site.lattice.n_points)
                data[kind] = np.minimum(occ, 255).astype(np.uint8).reshape(site.lattice.dims)
            data["vessel_state"] = site.vessel.reshape(site.lattice.dims).copy()
            snaps.append((time_h, data))
        self._record_metastasis_sizes(time_h)

    def _record_metastasis_sizes(self, time_h: float) -> None:
        reg = self.sim.metastases
        if self.met_sizes and self.met_sizes[-1][0] == time_h:
            return
        for site in self.sim.organs:
            c = site.cells
            sel = (c.live("met") >= 0) & (c.live("state") != ARRESTED)
            if not sel.any():
                continue
            met = c.live("met")[sel].astype(np.int64)
            clone = c.live("clone")[sel].astype(np.int64)
            n_clones = len(self.sim.clones)
            counts = np.bincount(met * n_clones + clone, minlength=reg.n * n_clones)
            for flat in np.flatnonzero(counts):
                m, ci = divmod(int(flat), n_clones)
                self.met_sizes.append((time_h, m, site.name, self.sim.clones.names[ci],
                                       STATUS[reg.status[m]], int(counts[flat])))

    def metastasis_sizes(self) -> pd.DataFrame:
        """Cells per metastasis and clone at every snapshot time."""
        df = pd.DataFrame.from_records(
            self.met_sizes, columns=["time_h", "met_id", "organ", "clone", "status", "cells"])
        return df.astype({"met_id": np.int64, "cells": np.int64, "organ": "string", "clone": "string",
                          "status": "string"})

    def timeseries(self) -> pd.DataFrame:
        """The time series as a tidy DataFrame."""
        df = pd.DataFrame.from_records(self.rows, columns=list(TIMESERIES_COLUMNS))
        df["step"] = df["step"].astype(np.int64)
        for col in ("compartment", "quantity", "clone", "phenotype"):
            df[col] = df[col].astype("string")
        return df

    def fields(self) -> xr.DataTree:
        """Field and occupancy snapshots: one DataTree node (a Dataset) per site."""
        nodes = {}
        for site in self.sim.sites:
            snaps = self.snapshots[site.name]
            lat = site.lattice
            nz, ny, nx = lat.dims
            dx = lat.spacing_um
            times = np.array([t for t, _ in snaps])
            spatial = ("z", "y", "x") if lat.ndim == 3 else ("y", "x")
            squeeze = (lambda a: a) if lat.ndim == 3 else (lambda a: a[..., 0, :, :])
            data_vars = {}
            for name in snaps[0][1]:
                stack = np.stack([d[name] for _, d in snaps])
                data_vars[name] = _variable(("time",) + spatial, squeeze(stack))
            data_vars["vessel"] = _variable(spatial, squeeze(site.vessel.reshape(lat.dims)))
            axes = {"time": (times, "h"), "x": (np.arange(nx) * dx, "um"), "y": (np.arange(ny) * dx, "um")}
            if lat.ndim == 3:
                axes["z"] = (np.arange(nz) * dx, "um")
            ds = xr.Dataset(data_vars, coords=_indexed_coordinates(axes))
            ds["vessel"].attrs["flag_meanings"] = "0 none, 1 normal, 2 ruptured, 3 lymphatic (at the end)"
            ds["vessel_state"].attrs["flag_meanings"] = "0 none, 1 normal, 2 ruptured, 3 lymphatic"
            ds["main_clone"].attrs["flag_meanings"] = ("index (in clones.parquet order) of the clone with "
                                                       "most cells at the point; -1 none")
            ds.attrs["compartment"] = site.name
            ds.attrs["spacing_um"] = dx
            nodes[site.name] = ds
        return xr.DataTree.from_dict(nodes)


def _variable(dims, data: np.ndarray) -> xr.Variable:
    """An xarray Variable around the NumPy array ``data``, without xarray's duck-array checks.

    Given plain arrays, xarray asks whether each is a Dask array, and the first
    time it asks it imports Dask (0.3 s in a new process, with ``dask.array``)
    wherever Dask is installed. The arrays here are NumPy's, so that question
    is skipped; :func:`_indexed_coordinates` does the same for the coordinates.
    """
    return xr.Variable(dims, data, fastpath=True)


def _indexed_coordinates(axes: dict[str, tuple[np.ndarray, str]]) -> xr.Coordinates:
    """Coordinates ``{name: (values, units)}``, each with its pandas index, as xarray would make them."""
    indexes = {name: xr.indexes.PandasIndex(pd.Index(values, name=name), name)
               for name, (values, _) in axes.items()}
    variables = {}
    for name, (_, units) in axes.items():
        variables[name] = indexes[name].create_variables()[name]
        variables[name].attrs["units"] = units
    return xr.Coordinates(variables, indexes=indexes)
