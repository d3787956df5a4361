"""A run directory: one run's results, described by its ``manifest.json``.

Layout::

    manifest.json        version, resolved config, seed, times, status, checksums
    timeseries.parquet   tidy time series (see metacoop.observers.recorder)
    events.parquet       one row per event (intravasations, ...)
    metastases.parquet   one row per metastasis (founders, joiners, status, composition)
    metastasis_sizes.parquet  cells per metastasis and clone at every snapshot
    funnel.parquet       the cascade funnel per organ and clone
    clones.parquet       one row per clone (parent clone, time it arose, traits)
    fields.zarr/         field and occupancy snapshots, one group per compartment

The manifest is written first with status ``running`` and last with status
``completed`` (or ``failed`` and the reason). A directory whose manifest does
not say ``completed`` is never presented as a complete result.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from metacoop.errors import Problem, RunDirectoryError, path_argument
from metacoop.io.atomic import atomic_write_json, sha256_path

try:
    import fcntl
except ImportError:  # (not on Windows: runs there are not locked)
    fcntl = None  # type: ignore[assignment]

MANIFEST = "manifest.json"
#: The design file that makes a directory an experiment directory (``metacoop experiment`` writes it).
EXPERIMENT = "experiment.json"
#: The page ``metacoop report`` writes into the run or experiment directory unless told otherwise.
REPORT_PAGE = "report.html"
#: What metacoop writes into a completed run's directory after the run: ``--force`` replaces it with
#: the run, as it is the old run's.
DERIVED_FILES = (REPORT_PAGE,)
#: The file a process writing the run holds locked (``flock``) while it writes (see RunDirectory.lock).
LOCK = ".metacoop-lock"
FORMAT = "metacoop-run/1"


def now_iso() -> str:
    """Current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def environment() -> dict[str, str]:
    """Versions of the software a run depends on."""
    import numba
    import numpy

    from metacoop import __version__

    return {
        "metacoop": __version__,
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "platform": platform.platform(),
    }


def entries(folder: Path, where: str) -> list[str]:
    """Names of what ``folder`` holds but its lock file ([] if it does not exist).

    A file in the folder's place is a RunDirectoryError naming ``where`` (the option that gave it).
    """
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise RunDirectoryError([Problem(where, str(folder), "exists and is not a directory")])
    return [p.name for p in folder.iterdir() if p.name != LOCK]


class DirectoryLock:
    """An ``flock`` on ``folder/LOCK``: one process at a time writes the folder (a run or an experiment).

    The system releases the lock when its process ends, however it ends, so
    the work of a killed process can be taken up at once. A folder that does
    not exist is not locked (the caller's own checks refuse it). ``where``
    names the folder in the error (the option that gave it).
    """

    def __init__(self, folder: Path, where: str):
        self.path = folder / LOCK
        self.where = where
        self._fd: int | None = None

    def acquire(self) -> None:
        """Hold the folder until :meth:`release`; raise a RunDirectoryError if another process holds it."""
        if fcntl is None or self._fd is not None or not self.path.parent.is_dir():
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise RunDirectoryError([Problem(self.where, str(self.path.parent),
                                                 "is being written by another metacoop process; wait "
                                                 "for it to end, or stop it and resume")]) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)  # (its holder removed the file as we opened it: lock the one there now)

    def release(self) -> None:
        """Release the lock and remove its file (nothing if not held)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class RunDirectory:
    """The directory one run writes into.

    Args:
        path: directory; created if missing.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = path_argument(path, "run directory", RunDirectoryError)
        self.manifest_path = self.path / MANIFEST
        self._lock = DirectoryLock(self.path, "run directory")

    def lock(self) -> None:
        """Hold the directory for this process until :meth:`unlock`; raise if another process holds it.

        Two processes writing one run (a resume started while the run still
        goes on, a job retried by a scheduler) would overwrite each other's
        checkpoints and results (see :class:`DirectoryLock`).
        """
        self._lock.acquire()

    def unlock(self) -> None:
        """Release :meth:`lock` and remove its file (nothing if not held)."""
        self._lock.release()

    def check_new(self, force: bool = False) -> dict[str, Any] | None:
        """Raise what :meth:`prepare` would for what the directory holds now, changing nothing.

        For a caller that reports the run before it starts (the CLI's heading):
        a file in the way, an incomplete run, a completed one without
        ``force``, or other files. Returns the manifest of the completed run
        ``force`` would replace, or None for a new or empty directory.
        """
        where = "--out"
        names = entries(self.path, where)
        if MANIFEST in names:
            manifest = self.read_manifest(require_complete=False)
            status = manifest.get("status", "unknown")
            if status != "completed":
                raise RunDirectoryError([Problem(where, str(self.path),
                                                 f"holds an incomplete run (status {status}); continue "
                                                 f"it with metacoop run --resume {self.path}, or remove it "
                                                 "or choose another output directory")])
            if not force:
                raise RunDirectoryError([Problem(where, str(self.path),
                                                 "already holds a completed run; use --force to "
                                                 "replace it, or choose another output directory")])
            run_files = {MANIFEST, *DERIVED_FILES, *manifest.get("files", {})}
            others = sorted(n for n in names if n not in run_files)
            if others:  # (refused before anything is deleted: --force must not lose a run and then fail)
                raise RunDirectoryError([Problem(where, str(self.path),
                                                 f"holds files besides its completed run "
                                                 f"({', '.join(others)}); --force replaces only a run and "
                                                 "its report: move them, or choose another output "
                                                 "directory")])
            return manifest
        if names:
            raise RunDirectoryError([Problem(where, str(self.path),
                                             "is not empty; choose a new or empty directory")])
        return None

    def prepare(self, force: bool = False) -> None:
        """Create the directory and make sure it can hold a new run; raise otherwise.

        A directory holding a completed run is refused unless ``force``, which
        deletes that run's files (those its manifest lists, the manifest and
        :data:`DERIVED_FILES`) first, if the directory holds nothing else; a
        directory holding an incomplete run is always refused (see
        :meth:`check_new`).
        """
        where = "--out"
        self.check_new(force)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirectoryError([Problem(where, str(self.path),
                                             f"cannot be created: {exc.strerror or exc}")]) from None
        self.lock()
        replaced = self.check_new(force)  # (again, now that no other process can start a run here)
        if replaced is not None:  # (a completed run and force: check_new refused anything else)
            self._delete_run(replaced)
        try:
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".probe-"):
                pass
        except OSError as exc:
            raise RunDirectoryError([Problem(where, str(self.path),
                                             f"is not writable: {exc.strerror or exc}")]) from None

    def resumable(self) -> dict[str, Any]:
        """The manifest of the interrupted run the directory holds; raise if it holds none."""
        if not self.manifest_path.exists():
            raise RunDirectoryError([Problem("--resume", str(self.path), "holds no run to resume")])
        manifest = self.read_manifest(require_complete=False)
        if manifest.get("status") == "completed":
            raise RunDirectoryError([Problem("--resume", str(self.path),
                                             "holds a completed run; nothing to resume")])
        return manifest

    def _delete_run(self, manifest: dict[str, Any]) -> None:
        for name in [*manifest.get("files", {}), *DERIVED_FILES]:
            p = self.path / name
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
        self.manifest_path.unlink()

    def verify(self) -> list[str]:
        """Check the directory against its manifest; return the problems found (none: intact).

        A completed run's every listed file must exist with the recorded size
        and SHA-256.
        """
        manifest = self.read_manifest(require_complete=True)
        files = manifest.get("files", {})
        problems = []
        if not files:
            problems.append("the manifest lists no data files")
        for name, info in files.items():
            p = self.path / name
            if not p.exists():
                problems.append(f"{name}: missing")
                continue
            got = self.checksums([name])[name]
            if got["bytes"] != info.get("bytes"):
                problems.append(f"{name}: {got['bytes']} bytes, manifest says {info.get('bytes')}")
            elif got["sha256"] != info.get("sha256"):
                problems.append(f"{name}: SHA-256 differs from the manifest")
        return problems

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write the manifest atomically."""
        atomic_write_json(self.manifest_path, manifest)

    def read_manifest(self, require_complete: bool = True) -> dict[str, Any]:
        """Read the manifest; with ``require_complete`` refuse a run not marked completed."""
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirectoryError([Problem("run", str(self.path), "holds no manifest.json")]) from None
        except (OSError, ValueError) as exc:
            raise RunDirectoryError([Problem("run", str(self.path),
                                             f"manifest.json cannot be read: {exc}")]) from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise RunDirectoryError([Problem("run", str(self.path),
                                             f"manifest.json is not a {FORMAT} manifest")])
        if require_complete and manifest.get("status") != "completed":
            reason = f": {manifest['reason']}" if manifest.get("reason") else ""
            raise RunDirectoryError([Problem("run", str(self.path),
                                             f"is not a completed run (status {manifest.get('status')}"
                                             f"{reason})")])
        return manifest

    def checksums(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """SHA-256 and size of each named file or directory."""
        out = {}
        for name in names:
            p = self.path / name
            files = [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else [p]
            size = sum(f.stat().st_size for f in files)
            out[name] = {"sha256": sha256_path(p), "bytes": size}
        return out
