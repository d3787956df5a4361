"""numba's cache of the kernels is keyed by their sources and by those of the kernel modules they use."""

from __future__ import annotations

import importlib
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
    # Every kernel module: one that metacoop.kernels did not import before keying would cache its
    # kernels where the keying removes numba's files at every start (a compile in every process).
    names = sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))
    assert {"cells", "fields", "vessels"} <= set(names)
    for name in names:
        module = importlib.import_module(f"metacoop.kernels.{name}")
        directory = _cache.cache_directory(name, digests[name])
        for dispatcher in _cache._dispatchers(module):
            assert Path(dispatcher._cache._cache_path).is_relative_to(directory), (name, dispatcher)
            checked.add(id(dispatcher))
    # both builds of a sized kernel, a plain kernel, and an inlined helper of another module are keyed
    for dispatcher in (cells.mark_due.serial, cells.mark_due.parallel,
                       move_clock.decide_moves_clocked.parallel, cells.divide, random.uniform):
        assert id(dispatcher) in checked, dispatcher
    assert numba.config.CACHE_DIR == ""  # other code's cached functions are not moved


def test_watch_compiles_sees_each_compile_once_and_no_cache_load():
    # Real numba compiles of functions made here (never cached): the outer kernel is reported once,
    # with the helper it compiles on the way, under its name without the build suffix; a second call
    # compiles nothing. A cached kernel loaded in a fresh interpreter raises no event at all.
    import subprocess
    import sys

    from metacoop.kernels.compiling import watch_compiles

    @numba.njit
    def helper(x):
        return x + 1

    @numba.njit
    def kernel_parallel(x):
        return helper(x) * 2

    seen = []
    with watch_compiles(lambda name: seen.append(name), lambda: seen.append("done")) as watch:
        assert kernel_parallel(3) == 8
        assert kernel_parallel(4) == 10
    assert seen == ["kernel", "done"] and watch.names == ["kernel"] and watch.kernels == 1
    assert watch.seconds > 0 and watch.summary().startswith("numba compiled 1 kernel in ")
    assert kernel_parallel(5) == 12 and watch.kernels == 1  # (not listening any more)

    code = ("from metacoop.kernels.compiling import watch_compiles\n"
            "from metacoop.kernels.bookkeeping import any_flag\n"
            "import numpy as np\n"
            "with watch_compiles() as w:\n"
            "    any_flag(1, np.zeros(1, np.uint8), np.uint8(1))\n"
            "print(w.kernels, w.names)\n")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]  # (the first compiles the kernel if it is not cached yet, and caches it)
    assert runs[0].split()[0] in ("0", "1") and runs[1].split() == ["0", "[]"]


def test_the_run_progress_bar_names_the_kernel_being_compiled(capsys):
    import io

    from rich.console import Console
    from rich.progress import Progress, TextColumn

    from metacoop import cli
    from metacoop.kernels.compiling import watch_compiles

    @numba.njit
    def fresh_kernel_serial(x):
        return x - 1

    bar = Progress(TextColumn("{task.description}"), console=Console(file=io.StringIO()))
    task = bar.add_task("simulating", total=1)
    during = []
    with cli._showing_compiles(bar, task):
        with watch_compiles(lambda name: during.append(bar.tasks[0].description)):  # (told after the bar)
            fresh_kernel_serial(1)
    assert during == ["compiling fresh_kernel"]
    assert bar.tasks[0].description == "simulating"
    assert "numba compiled 1 kernel in" in capsys.readouterr().err
