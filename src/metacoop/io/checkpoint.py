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
from pathlib import Path
from typing import Any

import numpy as np

from metacoop.core.state import AgentArrays, StromalArrays
from metacoop.errors import InputError, Problem
from metacoop.io.atomic import atomic_write

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

    def write_new(self, sim) -> None:
        """Write the file of every snapshot of ``sim`` that has none yet."""
        self.directory.mkdir(exist_ok=True)
        for site, snaps in sim.recorder.snapshots.items():
            for i in range(self.saved.get(site, 0), len(snaps)):
                atomic_write(self.path(site, i), lambda tmp, data=snaps[i][1]: _savez(tmp, data))
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
    if snapshots is not None:
        snapshots.write_new(sim)
    else:
        for s, snaps in rec.snapshots.items():
            for i, (_, data) in enumerate(snaps):
                for k, v in data.items():
                    arrays[f"snap/{s}/{i}/{k}"] = v
    state["events"] = sim.events
    state["injection_rng"] = sim._injection_rng.bit_generator.state
    path.mkdir(parents=True, exist_ok=False)
    np.savez(path / "arrays.npz", **arrays)
    (path / "state.json").write_text(json.dumps(state, default=_plain), encoding="utf-8")


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
