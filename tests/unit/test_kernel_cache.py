"""numba's cache of the kernels is keyed by their sources and by those of the kernel modules they use."""

from __future__ import annotations

import os
from pathlib import Path

import numba
import pytest

import metacoop.kernels
from metacoop.kernels import _cache


def test_a_module_digest_follows_the_kernel_modules_it_imports(tmp_path):
    # a imports b, b imports c; d stands alone. Editing c must change the digests of c, b and a (their
    # compiled code may inline c's helpers), and only theirs.
    files = {
        "a": "from metacoop.kernels.b import g\n\ndef f():\n    return g()\n",
        "b": "from metacoop.kernels.c import h\n\ndef g():\n    return h()\n",
        "c": "def h():\n    return 1\n",
        "d": "import numpy as np\n\ndef k():\n    return 2\n",
    }
    for name, text in files.items():
        (tmp_path / f"{name}.py").write_text(text)
    before = _cache.source_digests(tmp_path)
    assert sorted(before) == ["a", "b", "c", "d"] and len(set(before.values())) == 4
    (tmp_path / "c.py").write_text("def h():\n    return 2\n")
    after = _cache.source_digests(tmp_path)
    assert {name for name in files if after[name] != before[name]} == {"a", "b", "c"}
    assert _cache.source_digests(tmp_path) == after  # (the same sources, the same digests)


@pytest.mark.skipif(bool(os.environ.get("NUMBA_CACHE_DIR")), reason="a user's NUMBA_CACHE_DIR is left alone")
def test_every_kernel_caches_in_its_module_digest_directory_and_numba_setting_is_restored():
    from metacoop.kernels import cells, move_clock, random

    here = Path(metacoop.kernels.__file__).parent
    digests = _cache.source_digests(here)
    checked = set()
    for name in ("bookkeeping", "cells", "fields", "metastases", "move_clock", "random"):
        module = getattr(metacoop.kernels, name)
        directory = _cache.cache_directory(name, digests[name])
        for dispatcher in _cache._dispatchers(module):
            assert Path(dispatcher._cache._cache_path).is_relative_to(directory), (name, dispatcher)
            checked.add(id(dispatcher))
    # both builds of a sized kernel, a plain kernel, and an inlined helper of another module are keyed
    for dispatcher in (cells.mark_due.serial, cells.mark_due.parallel,
                       move_clock.decide_moves_clocked.parallel, cells.divide, random.uniform):
        assert id(dispatcher) in checked, dispatcher
    assert numba.config.CACHE_DIR == ""  # other code's cached functions are not moved
