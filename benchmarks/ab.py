"""Whole runs of one scenario under two commits of this repository, alternated in the same minutes.

    .venv/bin/python benchmarks/ab.py OLD [NEW] [--scenario franssen2019] [--rounds 3] [--threads N]

This machine's speed drifts by a third from one quarter hour to the next, so
two figures measured apart cannot show a change of 10 %. Here each revision is
checked out into a temporary git worktree (``NEW`` left out: this checkout's
own ``src/``, edits included), warmed up once (numba compiles its kernels
into that tree's cache; untimed), then every round runs the scenario once
under ``OLD`` and once under ``NEW``, each in a new process, timing one whole
``metacoop.simulate`` after a short in-process warm-up run. The table gives
every round's wall and CPU seconds, the medians and the ratio of the medians.
The worktrees are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

import metacoop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cases import MachineProbe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

#: What each timed child process runs: a 1-hour warm-up of the scenario, then the whole scenario, timed.
RUN = """\
import sys, time, metacoop
name = sys.argv[1]
metacoop.simulate(metacoop.load_scenario(name, overrides={"duration_h": 1.0}))
config = metacoop.load_scenario(name)
wall, cpu = time.perf_counter(), time.process_time()
metacoop.simulate(config)
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


class Refused(Exception):
    """An argument this script cannot use; the message says which and why."""


def revision(rev: str) -> str:
    """The full commit id of ``rev``, or :class:`Refused` naming it."""
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise Refused(f"OLD/NEW = {rev!r}: not a commit of {REPO} (give a commit id, a branch or HEAD~N)")
    return out.stdout.strip()


def timed_run(src: Path, scenario: str, threads: int | None) -> tuple[float, float]:
    """(wall s, CPU s) of one whole run of ``scenario`` with ``src`` first on the path, in a new process."""
    env = dict(os.environ, PYTHONPATH=str(src))
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, "-c", RUN, scenario], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the run under {src} failed:\n{out.stderr.strip()}")
    wall, cpu = out.stdout.split()[-2:]
    return float(wall), float(cpu)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", help="the revision to compare against (a commit id, a branch, HEAD~1)")
    ap.add_argument("new", nargs="?", default=None, help="the revision to measure (default: this checkout)")
    ap.add_argument("--scenario", default="franssen2019", help="a built-in scenario (franssen2019)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each revision, alternated (3)")
    ap.add_argument("--threads", type=int, default=None, help="numba threads (default: numba's)")
    args = ap.parse_args(argv)
    console = Console()
    try:
        if args.rounds < 1:
            raise Refused(f"--rounds = {args.rounds}: a whole number, at least 1")
        if args.threads is not None and args.threads < 1:
            raise Refused(f"--threads = {args.threads}: a whole number, at least 1")
        trees = {"old": revision(args.old), "new": None if args.new is None else revision(args.new)}
        metacoop.load_scenario(args.scenario)  # (this checkout's scenarios: refused here, not in a child)
    except (Refused, metacoop.InputError) as e:
        console.print(f"[red]error:[/] {e}")
        return 2
    labels = {"old": f"{args.old} ({trees['old'][:8]})",
              "new": "this checkout" if args.new is None else f"{args.new} ({trees['new'][:8]})"}
    with tempfile.TemporaryDirectory(prefix="metacoop-ab-") as tmp:
        made: list[Path] = []
        try:
            srcs = {}
            for key, commit in trees.items():
                if commit is None:
                    srcs[key] = REPO / "src"
                    continue
                where = Path(tmp) / key
                added = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet",
                                        str(where), commit], capture_output=True, text=True)
                if added.returncode != 0:
                    raise RuntimeError(f"git could not check {commit[:8]} out:\n{added.stderr.strip()}")
                made.append(where)
                srcs[key] = where / "src"
            console.print(f"{args.scenario}: warming up (numba compiles each new tree's kernels: a minute)")
            for key in srcs:
                timed_run(srcs[key], args.scenario, args.threads)
            probe = MachineProbe.now()
            times: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
            for r in range(args.rounds):
                for key in ("old", "new"):
                    times[key].append(timed_run(srcs[key], args.scenario, args.threads))
                    wall, cpu = times[key][-1]
                    console.print(f"  round {r + 1}: {labels[key]} {wall:.3f} s wall, {cpu:.3f} s CPU")
        except RuntimeError as e:  # (a checkout or a run that failed: git's or the run's own error output)
            console.print(f"[red]error:[/] {e}")
            return 1
        finally:
            for where in made:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)],
                               capture_output=True)
    table = Table(title=f"{args.scenario}, whole run in one process, {args.rounds} rounds alternated"
                        f"{'' if args.threads is None else f', {args.threads} thread(s)'}")
    table.add_column("revision")
    table.add_column("wall s, each round", justify="right")
    table.add_column("median wall s", justify="right")
    table.add_column("median CPU s", justify="right")
    medians = {}
    for key in ("old", "new"):
        walls = [w for w, _ in times[key]]
        medians[key] = statistics.median(walls)
        table.add_row(labels[key], ", ".join(f"{w:.2f}" for w in walls), f"{medians[key]:.3f}",
                      f"{statistics.median(c for _, c in times[key]):.3f}")
    console.print(table)
    console.print(f"new / old (medians of wall time): {medians['new'] / medians['old']:.3f}")
    console.print(f"machine probe after the warm-up: {probe.text()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
