"""The result of a run, in memory and on disk.

:class:`Result` holds tidy pandas tables and an :class:`xarray.DataTree` of
field snapshots; :func:`write_results` writes them atomically into a run
directory and :func:`open_run` reads a completed run back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xarray as xr

from metacoop.config.schema import SimulationConfig
from metacoop.errors import InputError, Problem, RunDirectoryError
from metacoop.io.atomic import atomic_write, atomic_write_dir
from metacoop.io.rundir import RunDirectory

DATA_FILES = ["timeseries.parquet", "events.parquet", "metastases.parquet", "metastasis_sizes.parquet",
              "funnel.parquet", "clones.parquet", "fields.zarr"]

#: Columns of ``events.parquet`` (every event kind fills the ones that apply).
EVENT_SCHEMA = pa.schema([
    ("time_h", pa.float64()),
    ("step", pa.int64()),
    ("event", pa.string()),
    ("compartment", pa.string()),
    ("ctc_id", pa.int64()),
    ("x", pa.int64()),
    ("y", pa.int64()),
    ("z", pa.int64()),
    ("vessel", pa.string()),
    ("size", pa.int64()),
    ("n_epithelial", pa.int64()),
    ("n_mesenchymal", pa.int64()),
    ("composition", pa.string()),
    ("cell_uids", pa.list_(pa.int64())),
    ("age_h", pa.float64()),
    ("route", pa.string()),
    ("organ", pa.string()),
    ("met_id", pa.int64()),
    ("cause", pa.string()),
    ("status_from", pa.string()),
    ("status_to", pa.string()),
    ("n_dormant", pa.int64()),
    ("shed_ctc_ids", pa.list_(pa.int64())),
    ("clone", pa.string()),
    ("parent_clone", pa.string()),
])

#: Columns of ``metastases.parquet``: one row per founded metastasis.
METASTASIS_SCHEMA = pa.schema([
    ("met_id", pa.int64()),
    ("organ", pa.string()),
    ("opened_h", pa.float64()),
    ("founded_h", pa.float64()),
    ("founded_by_cluster", pa.bool_()),
    ("n_founders", pa.int64()),
    ("founder_uids", pa.list_(pa.int64())),
    ("founder_clones", pa.list_(pa.string())),
    ("n_joiners", pa.int64()),
    ("joiner_clones", pa.list_(pa.string())),
    ("switched_h", pa.float64()),
    ("status", pa.string()),
    ("size", pa.int64()),
    ("max_size", pa.int64()),
    ("composition", pa.string()),
])


@dataclass
class Result:
    """Everything one run produced.

    Attributes:
        config: the resolved configuration.
        timeseries: tidy table (time_h, step, compartment, quantity, clone, phenotype, value).
        events: one row per event; columns of :data:`EVENT_SCHEMA`.
        metastases: one row per founded metastasis; columns of :data:`METASTASIS_SCHEMA`.
        metastasis_sizes: cells per metastasis and clone at every snapshot time.
        funnel: the cascade funnel per organ and clone (see :mod:`metacoop.observers.funnel`).
        clones: one row per clone at the end of the run (name, parent clone, time it
            arose, traits), including clones created by diversification.
        fields: field snapshots, one node per compartment (dims time, [z,] y, x).
        manifest: provenance (versions, seed, times, status, checksums).
        path: the run directory, if the run was written to disk.
    """

    config: SimulationConfig
    timeseries: pd.DataFrame
    events: pd.DataFrame
    metastases: pd.DataFrame
    metastasis_sizes: pd.DataFrame
    funnel: pd.DataFrame
    clones: pd.DataFrame
    fields: xr.DataTree
    manifest: dict[str, Any]
    path: Path | None = None

    def cells(self, compartment: str = "primary") -> pd.DataFrame:
        """Live cells over time in one compartment: rows time_h, columns (clone, phenotype).

        ``compartment`` is a site's name (``primary``, an organ's) or ``circulation``;
        another name is an :class:`~metacoop.errors.InputError` that lists the run's.
        """
        ts = self.timeseries
        names = list(ts["compartment"].unique())
        if compartment not in names:
            raise InputError([Problem("compartment", compartment, f"one of this run's: {', '.join(names)}")])
        sel = ts[(ts["compartment"] == compartment) & (ts["quantity"] == "cells")]
        return sel.pivot_table(index="time_h", columns=["clone", "phenotype"], values="value",
                               aggfunc="sum", observed=True)

    def total_cells(self, compartment: str = "primary") -> pd.Series:
        """Total live cells over time in one compartment."""
        return self.cells(compartment).sum(axis=1)

    def clone_names(self) -> list[str]:
        """Clone names in clone-index order, clones made by diversification included."""
        if len(self.clones) and "clone" in self.clones:
            return [str(c) for c in self.clones["clone"]]
        return [c.name for c in self.config.clones]

    def compositions(self) -> list[dict[str, int]]:
        """Live cells per clone of each metastasis at the end, in the order of :attr:`metastases`."""
        return [composition(c) for c in self.metastases["composition"]]


def composition(text: object) -> dict[str, int]:
    """A composition column (metastases or events): JSON ``{clone: cells}``, empty when missing."""
    return json.loads(text) if isinstance(text, str) and text else {}


def events_table(rows: list[dict]) -> pa.Table:
    """Events as an Arrow table with the fixed :data:`EVENT_SCHEMA`."""
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)


def metastases_table(rows: list[dict]) -> pa.Table:
    """Metastases as an Arrow table with the fixed :data:`METASTASIS_SCHEMA`."""
    return pa.Table.from_pylist(rows, schema=METASTASIS_SCHEMA)


def write_results(rundir: RunDirectory, tables: dict[str, pa.Table | pd.DataFrame],
                  fields: xr.DataTree) -> None:
    """Write the data files of a run atomically (tables by file stem, then the fields)."""
    for stem, table in tables.items():
        if isinstance(table, pd.DataFrame):
            table = pa.Table.from_pandas(table, preserve_index=False)
        atomic_write(rundir.path / f"{stem}.parquet", lambda tmp, t=table: pq.write_table(t, tmp))
    atomic_write_dir(rundir.path / "fields.zarr",
                     lambda tmp: fields.to_zarr(tmp, mode="w", consolidated=False))


def open_run(path: str | Path) -> Result:
    """Open a completed run directory; refuse one whose manifest is not ``completed``."""
    from metacoop.config.loader import validate_table

    rundir = RunDirectory(path)
    manifest = rundir.read_manifest(require_complete=True)
    try:
        tables = {stem: pd.read_parquet(rundir.path / f"{stem}.parquet")
                  for stem in ("timeseries", "events", "metastases", "metastasis_sizes", "funnel")}
        clones = rundir.path / "clones.parquet"  # absent from runs written before it existed
        tables["clones"] = pd.read_parquet(clones) if clones.exists() else pd.DataFrame(
            {"clone": [c["name"] for c in manifest["config"]["clones"]]})
        fields = xr.open_datatree(rundir.path / "fields.zarr", engine="zarr", consolidated=False)
    except Exception as exc:  # any reader error means a damaged run directory
        raise RunDirectoryError([Problem("run", str(path), f"cannot be read: {exc}")]) from None
    return Result(validate_table(manifest["config"]), fields=fields, manifest=manifest, path=rundir.path,
                  **tables)
