"""numba's on-disk cache of the kernels, kept apart for each version of their sources.

numba checks a cached kernel against its own module's source only (its
documented limit: "changes in functions defined in a different file" are not
seen). Our kernels inline helpers from other kernel modules (the random hash
of :mod:`metacoop.kernels.random` is inlined into nearly every one), so after
an edit of such a helper the kernels of the other modules would be loaded
from the cache as they were compiled before: old code, silently. Each kernel
module's dispatchers therefore cache into a directory of their own, named by a
digest of the module's source and of the sources of the kernel modules it
imports, transitively (:func:`source_digests`); an edit anywhere in that
chain starts a new directory, and the module's older directories are removed
(as are numba's own cache files of the kernels, from before they were keyed).

A ``NUMBA_CACHE_DIR`` set by the user is left alone, and numba's setting is
restored after the kernels are keyed, so other code's cached functions are not
moved. Where the directory cannot be written, numba falls back to its usual
locations, as it does for any cache.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numba
from numba.core.registry import CPUDispatcher

#: Imports of another kernel module, as written in the sources.
_IMPORT = re.compile(rb"^from metacoop\.kernels\.(\w+) import", re.MULTILINE)


def source_digests(directory: Path) -> dict[str, str]:
    """Per module of ``directory`` (by stem), the SHA-256 of its source and of its kernel imports' digests.

    A module's digest changes when its own source changes or when that of any
    kernel module it imports, directly or through others, does.
    """
    sources = {p.stem: p.read_bytes() for p in sorted(Path(directory).glob("*.py"))}
    uses = {name: sorted({m.decode() for m in _IMPORT.findall(src)} & sources.keys())
            for name, src in sources.items()}
    digests: dict[str, str] = {}

    def digest(name: str, seen: tuple[str, ...] = ()) -> str:
        if name not in digests:
            h = hashlib.sha256(sources[name])
            for used in uses[name]:
                if used not in seen:  # (an import cycle would fail at import anyway)
                    h.update(digest(used, (*seen, name)).encode())
            digests[name] = h.hexdigest()
        return digests[name]

    for name in sources:
        digest(name)
    return digests


def cache_directory(name: str, digest: str) -> Path:
    """The cache directory of kernel module ``name`` at source digest ``digest``."""
    return Path(__file__).parent / "__pycache__" / f"numba-{name}-{digest[:16]}"


def _dispatchers(module: ModuleType) -> list[CPUDispatcher]:
    """The numba dispatchers defined in ``module`` (both builds of each sized kernel)."""
    found: dict[int, CPUDispatcher] = {}
    for value in vars(module).values():
        for d in (value, getattr(value, "serial", None), getattr(value, "parallel", None)):
            if isinstance(d, CPUDispatcher) and d.py_func.__module__ == module.__name__:
                found[id(d)] = d
    return list(found.values())


def key_caches_by_sources() -> None:
    """Point the cache of every imported kernel module's dispatchers at its digest's directory."""
    if numba.config.CACHE_DIR:
        return  # the user's NUMBA_CACHE_DIR
    here = Path(__file__).parent
    for stale in [*here.glob("__pycache__/*.nbi"), *here.glob("__pycache__/*.nbc")]:
        try:
            stale.unlink(missing_ok=True)  # (numba's own files from before the kernels were keyed)
        except OSError:
            break  # (a directory we cannot write: numba will not write there either)
    for name, digest in source_digests(here).items():
        module = sys.modules.get(f"{__package__}.{name}")
        if module is None:
            continue
        directory = cache_directory(name, digest)
        for old in here.joinpath("__pycache__").glob(f"numba-{name}-*"):
            if old != directory:
                shutil.rmtree(old, ignore_errors=True)
        numba.config.CACHE_DIR = str(directory)
        try:
            for dispatcher in _dispatchers(module):
                dispatcher.enable_caching()
        finally:
            numba.config.CACHE_DIR = ""
