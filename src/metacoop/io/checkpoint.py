"""Checkpoints: the whole state of a simulation between two steps, as data (npz + JSON, never pickle).

A checkpoint is a directory holding ``arrays.npz`` (every array: cells, CTCs,
fields, lattice maps, counters, the clone table, metastasis arrays, field
snapshots, mechanism state) and ``state.json`` (the step reached, scalars,
the event log, time-series rows, metastasis founders and joiners, the
injection generator's state). It is written with
:func:`~metacoop.io.atomic.atomic_write_dir`, so a kill during the write
leaves the previous checkpoint in place. Loading restores a freshly built
``Simulation`` of the same configuration to the saved state; the run then
continues exactly as if it had never stopped (every other random draw is a
hash of its coordinates, so it needs no state).

Field snapshots never change once taken, so a run directory keeps them apart
(:class:`SnapshotFiles`): each is written once, to its own file beside the
checkpoint, and every later checkpoint refers to it. Rewriting them all in
every checkpoint made the bytes written grow with the square of the run's
length (franssen2019: 310 MB over its 12 checkpoints; now 80 MB, plus 40 MB
of snapshot files written once; a long 3-D run would have written tens of
gigabytes).
"""

from __future__ import annotations

import json
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metacoop.core.state import AgentArrays, StromalArrays
from metacoop.errors import InputError, Problem
from metacoop.io.atomic import atomic_write, atomic_write_dir

#: 2: CTC exposure columns and the main_clone snapshot; 3: the cells' movement clock (``wake``); 4: the
#: clock's levels in the cells' flags, and field snapshots in files of their own. Older formats cannot be
#: resumed by this version.
FORMAT = 4


#: Directory, beside the checkpoint in a run directory, of the field snapshots its checkpoints refer to.
SNAPSHOTS = "checkpoint-snapshots"


def latest(run_dir: Path) -> Path | None:
    """The last complete checkpoint of a run directory, or None.

    ``checkpoint/`` normally; if a kill came while it was being replaced, the
    previous one is still there under ``.checkpoint.old-*``.
    """
    run_dir = Path(run_dir)
    if (run_dir / "checkpoint" / "state.json").is_file():
        return run_dir / "checkpoint"
    old = sorted(run_dir.glob(".checkpoint.old-*"), key=lambda p: p.stat().st_mtime)
    old = [p for p in old if (p / "state.json").is_file()]
    return old[-1] if old else None


def remove(run_dir: Path) -> None:
    """Delete every checkpoint of a run directory, and their snapshot files (once the run is complete)."""
    import shutil

    for p in [Path(run_dir) / "checkpoint", *Path(run_dir).glob(".checkpoint.*"), Path(run_dir) / SNAPSHOTS]:
        shutil.rmtree(p, ignore_errors=True)


class SnapshotFiles:
    """The field snapshots of a run directory's checkpoints, one file per snapshot, each written once.

    A snapshot's file is written (atomically) before the first checkpoint
    that refers to it, and never again: a checkpoint on disk only refers to
    complete files. Files past the last checkpoint (from one a kill
    interrupted) are written again when a checkpoint next needs them.
    """

    def __init__(self, run_dir: Path):
        self.directory = Path(run_dir) / SNAPSHOTS
        #: per site, how many of its snapshots have their file (the first ones)
        self.saved: dict[str, int] = {}

    def restored(self, sim) -> None:
        """Count the snapshots of ``sim``, just restored from a checkpoint of this directory, as saved."""
        self.saved = {site: len(snaps) for site, snaps in sim.recorder.snapshots.items()}

    def path(self, site: str, index: int) -> Path:
        """The file of snapshot ``index`` of ``site``."""
        return self.directory / f"{site}-{index:05d}.npz"

    def new(self, sim) -> list[tuple[str, int, dict[str, np.ndarray]]]:
        """The snapshots of ``sim`` that have no file yet, as ``(site, index, data)``."""
        return [(site, i, snaps[i][1]) for site, snaps in sim.recorder.snapshots.items()
                for i in range(self.saved.get(site, 0), len(snaps))]

    def write(self, new: list[tuple[str, int, dict[str, np.ndarray]]]) -> None:
        """Write the files of the snapshots ``new`` (from :meth:`new`), in order."""
        self.directory.mkdir(exist_ok=True)
        for site, i, data in new:
            atomic_write(self.path(site, i), lambda tmp, data=data: _savez(tmp, data))
            self.saved[site] = i + 1


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:  # (a file object: np.savez would add ".npz" to the temporary name)
        np.savez(fh, **arrays)


def _agents(prefix: str, agents: AgentArrays, arrays: dict[str, np.ndarray]) -> int:
    for name, arr in agents.arrays().items():
        arrays[f"{prefix}/{name}"] = arr[: agents.n]
    return agents.n


def _load_agents(prefix: str, agents: AgentArrays, n: int, arrays) -> None:
    agents.n = 0
    if n:  # the generic append: restored cells keep their movement clocks (CellArrays.append clears them)
        AgentArrays.append(agents, {name: arrays[f"{prefix}/{name}"] for name in agents.COLUMNS})


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} to a checkpoint")


def save(sim, path: Path, snapshots: SnapshotFiles | None = None) -> None:
    """Write the state of ``sim`` into the (new) directory ``path``.

    With ``snapshots`` (the run directory's, ``path`` being its checkpoint),
    the field snapshots go to their own files and the checkpoint refers to
    them; without, they are saved in the checkpoint's arrays.
    """
    capture(sim, snapshots).write(path)


@dataclass
class Captured:
    """A simulation's state between two steps, held apart from it: the run goes on while it is written."""

    #: Every array, copied.
    arrays: dict[str, np.ndarray]
    #: ``state.json``'s text.
    state_json: str
    #: The run directory's snapshot files (None: the snapshots are in ``arrays``), and the snapshots
    #: ``(site, index, data)`` that have no file yet.
    snapshots: SnapshotFiles | None
    new_snapshots: list[tuple[str, int, dict[str, np.ndarray]]]

    def write(self, path: Path) -> None:
        """Write the checkpoint into the (new) directory ``path``, after the snapshot files it refers to."""
        if self.snapshots is not None:
            self.snapshots.write(self.new_snapshots)
        path.mkdir(parents=True, exist_ok=False)
        np.savez(path / "arrays.npz", **self.arrays)
        (path / "state.json").write_text(self.state_json, encoding="utf-8")


def capture(sim, snapshots: SnapshotFiles | None = None) -> Captured:
    """Copy the state of ``sim`` for :meth:`Captured.write` (see :func:`save`).

    The arrays are copied and the rest is turned into JSON text here, so
    nothing the run changes afterwards reaches the checkpoint. Field
    snapshots never change once taken and are not copied.
    """
    arrays: dict[str, np.ndarray] = {}
    state: dict[str, Any] = {"format": FORMAT, "step_index": sim.step_index,
                             "injection_next_uid": sim.injection_next_uid, "sites": {}}
    for site in sim.sites:
        p = f"site/{site.name}"
        s = {"n": _agents(f"{p}/cells", site.cells, arrays), "next_uid": site.next_uid,
             "arrival_exposure_h": {str(k): v for k, v in site.arrival_exposure_h.items()},
             "zero": {k: f.zero for k, f in site.fields.items()},
             "agents": {k: _agents(f"{p}/agents/{k}", a, arrays) for k, a in site.agents.items()}}
        for k, f in site.fields.items():
            arrays[f"{p}/field/{k}/values"] = f.values
            arrays[f"{p}/field/{k}/deltas"] = f.deltas
        arrays[f"{p}/occ"] = site.occ
        arrays[f"{p}/vessel"] = site.vessel
        arrays[f"{p}/met_room"] = site.met_room
        for k, v in site.counters.items():
            arrays[f"{p}/counter/{k}"] = v
        state["sites"][site.name] = s
    circ = sim.circulation
    state["circulation"] = {"cells": _agents("circ/cells", circ.cells, arrays),
                            "ctcs": _agents("circ/ctcs", circ.ctcs, arrays), "n_ctcs": circ.n_ctcs,
                            "levels": circ.levels}
    for k, v in circ.counters.items():
        arrays[f"circ/counter/{k}"] = v
    reg = sim.metastases
    for name in ("organ", "opened_h", "founded_h", "switched_h", "cluster", "status", "size", "max_size",
                 "n_joiners"):
        arrays[f"met/{name}"] = getattr(reg, name)[: reg.n]
    state["metastases"] = {"n": reg.n, "founders": [f.tolist() for f in reg.founders],
                           "founder_clones": [f.tolist() for f in reg.founder_clones],
                           "joiner_clones": [{str(k): v for k, v in j.items()} for j in reg.joiner_clones]}
    clones = sim.clones
    for name, arr in clones.arrays().items():
        arrays[f"clones/{name}"] = arr
    state["clone_names"] = list(clones.names)
    state["mechanisms"] = {}
    for mech in sim.mechanisms:
        mech_arrays, mech_state = mech.checkpoint()
        for k, v in mech_arrays.items():
            arrays[f"mech/{mech.name}/{k}"] = v
        if mech_state:
            state["mechanisms"][mech.name] = mech_state
    rec = sim.recorder
    state["recorder"] = {"rows": rec.rows, "met_sizes": rec.met_sizes,
                         "snapshots": {s: [t for t, _ in snaps] for s, snaps in rec.snapshots.items()},
                         "snapshot_keys": {s: [list(d) for _, d in snaps]
                                           for s, snaps in rec.snapshots.items()},
                         "snapshot_files": snapshots is not None}
    new_snapshots = snapshots.new(sim) if snapshots is not None else []
    arrays = {k: np.array(v, copy=True) for k, v in arrays.items()}
    if snapshots is None:
        for s, snaps in rec.snapshots.items():
            for i, (_, data) in enumerate(snaps):
                for k, v in data.items():
                    arrays[f"snap/{s}/{i}/{k}"] = v
    state["events"] = sim.events
    state["injection_rng"] = sim._injection_rng.bit_generator.state
    return Captured(arrays, json.dumps(state, default=_plain), snapshots, new_snapshots)


class CheckpointWriteFailed(Exception):
    """Writing the checkpoint taken at ``time_h`` met ``error`` (raised by :class:`CheckpointWriter`)."""

    def __init__(self, error: OSError, time_h: float):
        super().__init__(f"{error} (checkpoint of t = {time_h:g} h)")
        self.error, self.time_h = error, time_h


class CheckpointWriter:
    """Writes a run directory's checkpoints on a thread of its own: the run does not wait for the disk.

    :meth:`submit` copies the state (:func:`capture`: the arrays, the JSON)
    and hands the rest to the thread: the snapshot files, ``arrays.npz``,
    flushing every file to disk and the atomic rename
    (:func:`~metacoop.io.atomic.atomic_write_dir`). In franssen2019 that rest
    was 20 of the 33 ms each of its 12 checkpoints held the run up. One
    checkpoint is written at a time: :meth:`submit` first waits for the one
    before, and it and :meth:`close` raise :class:`CheckpointWriteFailed`
    when writing it failed (the checkpoint before it is then still the
    last one on disk).
    """

    def __init__(self, path: Path, snapshots: SnapshotFiles | None = None):
        self.path, self.snapshots = Path(path), snapshots
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metacoop-checkpoint")
        self._pending: tuple[Future, float] | None = None

    def submit(self, sim) -> None:
        """Checkpoint ``sim`` as it is now; the writing goes on while the run does."""
        self.wait()
        captured = capture(sim, self.snapshots)
        self._pending = (self._pool.submit(atomic_write_dir, self.path, captured.write), sim.time_h)

    def wait(self) -> None:
        """Wait until the checkpoint being written is on disk."""
        pending, self._pending = self._pending, None
        if pending is not None:
            future, time_h = pending
            try:
                future.result()
            except OSError as exc:
                raise CheckpointWriteFailed(exc, time_h) from exc

    def close(self) -> None:
        """Wait for the checkpoint being written, then end the thread."""
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def load(sim, path: Path) -> None:
    """Restore ``sim`` (just built from the same configuration) to the state saved in ``path``."""
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        npz = np.load(path / "arrays.npz", allow_pickle=False)
        arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError([Problem("checkpoint", str(path), f"cannot be read: {exc}")]) from None
    if state.get("format") != FORMAT:
        raise InputError([Problem("checkpoint", str(path), f"has format {state.get('format')!r}, "
                                                          f"this version reads {FORMAT}")])
    sim.step_index = int(state["step_index"])
    sim.injection_next_uid = int(state["injection_next_uid"])
    clones = sim.clones
    for name, arr in clones.arrays().items():
        arr[...] = arrays[f"clones/{name}"]
    clones.names[:] = state["clone_names"]
    for site in sim.sites:
        p = f"site/{site.name}"
        s = state["sites"][site.name]
        _load_agents(f"{p}/cells", site.cells, s["n"], arrays)
        site.next_uid = int(s["next_uid"])
        site.arrival_exposure_h = {int(k): float(v) for k, v in s["arrival_exposure_h"].items()}
        for k, f in site.fields.items():
            f.values[...] = arrays[f"{p}/field/{k}/values"]
            f.deltas[...] = arrays[f"{p}/field/{k}/deltas"]
            f.zero = bool(s["zero"][k])
        site.occ[...] = arrays[f"{p}/occ"]
        site.mes_occ[...] = site.count_mesenchymal()  # (kept with the cells, so derived, not stored)
        site.vessel[...] = arrays[f"{p}/vessel"]
        site.refresh_vessels()
        site.met_room = arrays[f"{p}/met_room"].copy()
        for k in site.counters:
            site.counters[k][...] = arrays[f"{p}/counter/{k}"]
        for k, n in s["agents"].items():
            _load_agents(f"{p}/agents/{k}", site.agents.setdefault(k, StromalArrays(0)), n, arrays)
    circ = sim.circulation
    c = state["circulation"]
    _load_agents("circ/cells", circ.cells, c["cells"], arrays)
    _load_agents("circ/ctcs", circ.ctcs, c["ctcs"], arrays)
    circ.n_ctcs = int(c["n_ctcs"])
    circ.levels.update(c["levels"])
    for k in circ.counters:
        circ.counters[k][...] = arrays[f"circ/counter/{k}"]
    reg = sim.metastases
    m = state["metastases"]
    reg.n = 0
    reg._grow(int(m["n"]))
    for name in ("organ", "opened_h", "founded_h", "switched_h", "cluster", "status", "size", "max_size",
                 "n_joiners"):
        getattr(reg, name)[: m["n"]] = arrays[f"met/{name}"]
    reg.n = int(m["n"])
    reg.founders = [np.asarray(f, np.int64) for f in m["founders"]]
    reg.founder_clones = [np.asarray(f, np.int16) for f in m["founder_clones"]]
    reg.joiner_clones = [{int(k): v for k, v in j.items()} for j in m["joiner_clones"]]
    for mech in sim.mechanisms:
        prefix = f"mech/{mech.name}/"
        mech.restore({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)},
                     state["mechanisms"].get(mech.name, {}))
    sim.refresh_clones()
    rec = sim.recorder
    r = state["recorder"]
    rec.rows = [tuple(row) for row in r["rows"]]
    rec.met_sizes = [tuple(row) for row in r["met_sizes"]]
    files = SnapshotFiles(path.parent) if r.get("snapshot_files") else None
    for s, times in r["snapshots"].items():
        rec.snapshots[s] = [(t, _snapshot(arrays, files, s, i, r["snapshot_keys"][s][i], path))
                            for i, t in enumerate(times)]
    sim.events[:] = state["events"]
    sim._injection_rng.bit_generator.state = state["injection_rng"]


def _snapshot(arrays, files: SnapshotFiles | None, site: str, index: int, keys: list[str],
              checkpoint: Path) -> dict[str, np.ndarray]:
    """Snapshot ``index`` of ``site``: from the checkpoint's arrays, or from its own file."""
    if files is None:
        return {k: arrays[f"snap/{site}/{index}/{k}"] for k in keys}
    path = files.path(site, index)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in keys}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        text = f"refers to the field snapshot {path}, which cannot be read: {exc}"
        raise InputError([Problem("checkpoint", str(checkpoint), text)]) from None
