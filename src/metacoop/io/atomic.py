"""Atomic writes: write to a temporary sibling, flush to disk, then rename.

A reader (or a crash) sees either the old file or the complete new one, never
a half-written file under the final name. Directories (Zarr stores) are
written the same way: built under a temporary name, then renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Names of the temporaries below (:func:`_tmp_name`, :func:`_old_name`): what a writer killed
#: mid-write leaves behind.
TEMPORARY = re.compile(r"\..+\.(tmp|old)-\d+")


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _old_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.old-{os.getpid()}")


def remove_temporaries(folder: Path) -> None:
    """Delete the temporaries that killed writers left in ``folder``.

    Only for a folder no live process writes to (a run directory its lock holds).
    """
    for entry in Path(folder).iterdir():
        if TEMPORARY.fullmatch(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` to produce a file, then move it to ``path`` atomically."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=str, allow_nan=True) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_tree(root: Path) -> None:
    """Flush every file of the tree at ``root`` to disk, then its directories (deepest first)."""
    dirs = []
    for folder, _, files in os.walk(root):
        dirs.append(folder)
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                os.fsync(fh.fileno())
    for folder in reversed(dirs):
        _fsync_dir(Path(folder))


def atomic_write_dir(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_dir)`` to produce a directory, then move it to ``path``.

    An existing directory at ``path`` is replaced: it is first renamed aside,
    so ``path`` is at every moment either the old or the new complete tree.
    Every file of the new tree is flushed to disk before the rename, so that
    after a power cut ``path`` does not name a tree of empty files while the
    old one is gone.
    """
    path = Path(path)
    tmp = _tmp_name(path)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = _old_name(path)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(path.parent)


def sha256_path(path: Path) -> str:
    """SHA-256 of a file, or of a directory tree (relative names and file contents, sorted)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode("utf-8") + b"\0")
            h.update(bytes.fromhex(sha256_path(f)))
        return h.hexdigest()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
