"""The result of a run, in memory and on disk.

:class:`Result` holds tidy pandas tables and an :class:`xarray.DataTree` of
field snapshots; :func:`write_results` writes them atomically into a run
directory and :func:`open_run` reads a completed run back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xarray as xr

from metacoop.config.schema import SimulationConfig
from metacoop.errors import Problem, RunDirectoryError
from metacoop.io.atomic import atomic_write, atomic_write_dir
from metacoop.io.rundir import RunDirectory

DATA_FILES = ["timeseries.parquet", "events.parquet", "fields.zarr"]

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
])


@dataclass
class Result:
    """Everything one run produced.

    Attributes:
        config: the resolved configuration.
        timeseries: tidy table (time_h, step, compartment, quantity, clone, phenotype, value).
        events: one row per event; columns of :data:`EVENT_SCHEMA`.
        fields: field snapshots, one node per compartment (dims time, [z,] y, x).
        manifest: provenance (versions, seed, times, status, checksums).
        path: the run directory, if the run was written to disk.
    """

    config: SimulationConfig
    timeseries: pd.DataFrame
    events: pd.DataFrame
    fields: xr.DataTree
    manifest: dict[str, Any]
    path: Path | None = None

    def cells(self, compartment: str = "primary") -> pd.DataFrame:
        """Live cells over time in one compartment: rows time_h, columns (clone, phenotype)."""
        ts = self.timeseries
        sel = ts[(ts["compartment"] == compartment) & (ts["quantity"] == "cells")]
        return sel.pivot_table(index="time_h", columns=["clone", "phenotype"], values="value",
                               aggfunc="sum", observed=True)

    def total_cells(self, compartment: str = "primary") -> pd.Series:
        """Total live cells over time in one compartment."""
        return self.cells(compartment).sum(axis=1)


def events_table(rows: list[dict]) -> pa.Table:
    """Events as an Arrow table with the fixed :data:`EVENT_SCHEMA`."""
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)


def write_results(rundir: RunDirectory, timeseries: pd.DataFrame, events: pa.Table,
                  fields: xr.DataTree) -> None:
    """Write the data files of a run atomically."""
    atomic_write(rundir.path / "timeseries.parquet",
                 lambda tmp: pq.write_table(pa.Table.from_pandas(timeseries, preserve_index=False), tmp))
    atomic_write(rundir.path / "events.parquet", lambda tmp: pq.write_table(events, tmp))
    atomic_write_dir(rundir.path / "fields.zarr",
                     lambda tmp: fields.to_zarr(tmp, mode="w", consolidated=False))


def open_run(path: str | Path) -> Result:
    """Open a completed run directory; refuse one whose manifest is not ``completed``."""
    from metacoop.config.loader import validate_table

    rundir = RunDirectory(path)
    manifest = rundir.read_manifest(require_complete=True)
    try:
        timeseries = pd.read_parquet(rundir.path / "timeseries.parquet")
        events = pd.read_parquet(rundir.path / "events.parquet")
        fields = xr.open_datatree(rundir.path / "fields.zarr", engine="zarr", consolidated=False)
    except Exception as exc:  # any reader error means a damaged run directory
        raise RunDirectoryError([Problem("run", str(path), f"cannot be read: {exc}")]) from None
    return Result(validate_table(manifest["config"]), timeseries, events, fields, manifest, rundir.path)
