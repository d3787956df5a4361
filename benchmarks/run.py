"""metacoop benchmark suite: one command, tables of figures and ratios.

    /work/venv/bin/python benchmarks/run.py [--quick] [--json PATH] [--profile] [--only SECTION ...]

Sections (see benchmarks/README.md for what each one times):

1.  cells     cell-updates per second of the cell rules, 1e4/1e5/1e6 cells, 2-D and 3-D
1b. (cells)   where a step goes at 1e6 cells, per schedule slot
2.  (cells)   cost per step between sizes
3.  fields    voxel-updates per second of the diffusion solver
4.  memory    bytes of state per cell at 1e6 cells (from section 1's 2-D 1e6 run)
5.  scenario  wall time of the whole default scenario
6.  threads   1-thread vs 2-thread speedup on the 1e6 2-D cell benchmark
7.  cascade   wall time of the whole franssen2019 (primary + 2 organs) and default scenarios
7b. (cascade) share of the franssen2019 run's wall time by compartment and lattice site
7c. (cascade) share of the franssen2019 run's wall time by phase and slot
7d. precision franssen2019 and default over seeds with float32 and float64 fields: outcomes and speed
8.  experiments replicates per hour on 1 and 2 Dask workers, and the experiment layer's overhead
9.  peers     MetaSpread and a Mesa growth model side by side with metacoop
10. builds    default and franssen2019 on one thread: each kernel's serial against its parallel build

then a summary against the targets; ``--profile`` adds a cProfile of the 1e6 2-D case.
Each section notes how much CPU other processes took while it ran.

Every figure is the median of several repetitions, shown with min and max.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import platform
import pstats
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_cases as bc  # noqa: E402
import metacoop  # noqa: E402
from metacoop.core.state import CellArrays  # noqa: E402

# Targets of the performance issue (issue 7), judged on 2 cores; the earlier foundation targets were
# 2e7 cell-updates/s, 64 bytes/cell and 2 min for the full franssen2019 run (kept as the first judgement).
TARGET_CELL_RATE = 1e8  # cell-updates per second, cell rules, at 1e6 cells on 2 threads
TARGET_RATIO = 12.0  # cost per step for 10x the cells
TARGET_BYTES = 48  # bytes of state per cell, lineage included
TARGET_CASCADE_S = 120.0  # wall s of the full franssen2019 run on 2 cores (foundation target)
STRETCH_CASCADE_S = 5.0  # the performance issue's target for the same run
TARGET_STARTUP_S = 2.0  # from a new process to the first step, compiled kernels cached
TARGET_THREAD_SPEEDUP = 1.5  # 2 threads against 1, cell rules at 1e6 cells
TARGET_FIELD_RATE = 2e9  # voxel-updates/s of every field of a site together (section 3b, largest grid)

#: Share of all CPUs taken by other processes above which a section is flagged as disturbed.
NOISY_SHARE = 0.05

SECTIONS = ("cells", "fields", "memory", "scenario", "threads", "cascade", "precision", "experiments",
            "peers", "builds")


@dataclass(frozen=True)
class Plan:
    """Sizes and repetition counts of one benchmark run."""

    cell_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    #: timed steps per repetition at each of ``cell_sizes`` (more steps where a step is short)
    cell_steps: tuple[int, ...] = (40, 20, 20)
    dims: tuple[int, ...] = (2, 3)
    reps: int = 9
    warmup: int = 3
    field_grids: tuple[tuple[int, int, int], ...] = ((1, 256, 256), (1, 1024, 1024), (1, 2048, 2048),
                                                     (128, 128, 128))
    field_dtypes: tuple[str, ...] = ("float32", "float64")
    field_reps: int = 9
    field_min_rep_s: float = 0.25
    #: section 3b: lattices of the default scenario's primary site whose FIELDS phase is timed
    site_field_grids: tuple[tuple[int, int], ...] = ((201, 201), (1024, 1024), (2048, 2048))
    scenario_reps: int = 5
    thread_cells: int = 1_000_000
    thread_counts: tuple[int, ...] = (1, 2)
    #: scenario of section 7 (a primary site and organs: every compartment of the cascade)
    cascade_scenario: str = "franssen2019"
    #: base steps of its runs; None = the scenario's own duration (27,600 steps for franssen2019)
    cascade_steps: int | None = None
    cascade_reps: int = 3
    #: section 7d: the scenarios whose presets run their fields in float32, the seeds of the float32 /
    #: float64 comparison, and its base steps (None: each scenario's whole run)
    precision_scenarios: tuple[str, ...] = ("franssen2019", "default")
    precision_seeds: tuple[int, ...] = tuple(range(1, 9))
    precision_steps: int | None = None
    #: section 8: replicates of the default scenario shortened to this many hours (half a default run)
    experiment_replicates: int = 6
    experiment_duration_h: float = 120.0
    #: section 9: 40-s steps of the MetaSpread / franssen2019 comparison (and a short run to separate
    #: start-up from stepping), and the cells the growth model grows to
    peer_steps: tuple[int, int] = (10, 300)
    growth_target: int = 100_000
    #: section 10: scenarios run on one thread with both builds of each kernel timed on every
    #: ``builds_every``-th call, and their base steps (None: each scenario's whole run)
    builds_scenarios: tuple[str, ...] = ("default", "franssen2019")
    builds_steps: int | None = None
    builds_every: int = 50


FULL = Plan()
QUICK = Plan(cell_steps=(20, 10, 5), reps=3, warmup=2, field_reps=3, field_min_rep_s=0.1, scenario_reps=3,
             cascade_steps=2_760, precision_seeds=(1, 2, 3), precision_steps=2_760,
             experiment_replicates=4, experiment_duration_h=6.0, peer_steps=(10, 60),
             growth_target=10_000, builds_steps=2_760, builds_every=20)


def steps_for(plan: Plan, n: int) -> int:
    """Timed steps per repetition at ``n`` cells."""
    sizes = list(plan.cell_sizes)
    return plan.cell_steps[sizes.index(n)] if n in sizes else plan.cell_steps[-1]


# -- formatting -------------------------------------------------------------------


def sci(x: float) -> str:
    """3 significant digits in scientific notation."""
    return f"{x:.2e}"


def fixed(x: float, digits: int = 3) -> str:
    """``digits`` significant digits, no exponent for ordinary magnitudes."""
    if x == 0 or not math.isfinite(x):
        return str(x)
    mag = math.floor(math.log10(abs(x)))
    dec = max(0, digits - 1 - mag)
    return f"{x:.{dec}f}"


def stat_text(s: bc.Stat, fmt=sci, scale: float = 1.0) -> str:
    """``median (min–max)``."""
    return f"{fmt(s.median * scale)} ({fmt(s.min * scale)}–{fmt(s.max * scale)})"


class Section:
    """Context manager: note how much CPU other processes took while a section ran."""

    def __init__(self, console: Console, name: str, log: dict):
        self.console, self.name, self.log = console, name, log

    def __enter__(self) -> Section:
        self.start = bc.CpuSnapshot.now()
        return self

    def __exit__(self, *exc) -> None:
        share = self.start.others_share(bc.CpuSnapshot.now())
        self.log[self.name] = share
        if math.isfinite(share) and share > NOISY_SHARE:
            self.console.print(f"[yellow]   warning: other processes used {100 * share:.0f} % of the CPUs "
                               f"during '{self.name}'; its figures are disturbed.[/]")
        elif math.isfinite(share):
            self.console.print(f"[dim]   other processes used {100 * share:.0f} % of the CPUs during "
                               f"'{self.name}'.[/]")


def mark(ok: bool) -> str:
    """Pass/fail mark."""
    return "[green]✓ met[/]" if ok else "[red]✗ missed[/]"


def cells_text(n: int) -> str:
    """1e4-style label of a target population."""
    e = round(math.log10(n))
    return f"1e{e}" if 10**e == n else f"{n:,}"


# -- sections --------------------------------------------------------------------------


def environment_table(console: Console, plan: Plan, quick: bool) -> dict:
    """Print and return what the figures were measured on."""
    try:
        commit = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(HERE.parent), "status", "--porcelain", "src"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        commit = commit + (" (src modified)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    env = {
        "metacoop": metacoop.__version__,
        "commit": commit or "unknown",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba threads": f"{numba.get_num_threads()} (max {numba.config.NUMBA_NUM_THREADS}, "
                         f"layer {numba.threading_layer() if _layer_ready() else 'not yet chosen'})",
        "cpu": f"{_cpu_name()}, {os.cpu_count()} logical CPUs",
        # (PYTHONDONTWRITEBYTECODE: a new process then compiles metacoop's modules from source, about 0.1 s
        # of the start-up that section 7 counts; an installed package has them compiled)
        "environment variables": ", ".join(f"{k}={os.environ[k]}" for k in sorted(os.environ)
                                           if k.startswith(("OMP_", "NUMBA_", "MKL_", "OPENBLAS_",
                                                            "PYTHONDONTWRITEBYTECODE")))
                                 or "none of OMP_*, NUMBA_*, PYTHONDONTWRITEBYTECODE",
        "machine probe (start)": bc.MachineProbe.now().text(),
        "mode": "quick" if quick else "full",
        "repetitions": f"cells {plan.reps} (fresh Simulation each, {plan.warmup} warm-up steps, then "
                       f"{'/'.join(map(str, plan.cell_steps))} timed steps at "
                       f"{'/'.join(cells_text(n) for n in plan.cell_sizes)} cells), "
                       f"fields {plan.field_reps}, scenario {plan.scenario_reps}, cascade "
                       f"{plan.cascade_reps} ({plan.cascade_scenario}: "
                       f"{'full run' if plan.cascade_steps is None else f'{plan.cascade_steps:,} steps'})",
    }
    t = Table(title="Environment", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    for k, v in env.items():
        t.add_row(k, str(v))
    console.print(t)
    return env


def _layer_ready() -> bool:
    try:
        numba.threading_layer()
        return True
    except ValueError:
        return False


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_cells(console: Console, plan: Plan) -> dict[tuple[int, int], bc.CellResult]:
    """Section 1: cell benchmarks at every size and dimension."""
    results = {}
    for ndim in plan.dims:
        for n in plan.cell_sizes:
            with console.status(f"cell rules: {cells_text(n)} cells, {ndim}-D"):
                results[(ndim, n)] = bc.cell_benchmark(n, ndim, steps_for(plan, n), plan.reps, plan.warmup)
    t = Table(title="1. Cell rules through the engine (Simulation.step on the default scenario)",
              caption="Scenario: load_scenario('default') with the lattice shown (2 cells/point on average; "
                      "the engine seeds the tumour packed at capacity 4 in the central disc/ball), "
                      "vessels.min_distance_um = 0, and in 3-D dt_h = 0.05 (0.1 h is refused in 3-D). "
                      "Each repetition is a fresh Simulation (same seed, so the same work): warm-up steps, "
                      "then the timed steps; 'cells start→end' spans the timed steps. "
                      "cell rules = CELL_RULES + RESOLVE + INTRAVASATION slots (phenotype_switch, death, "
                      "movement, proliferation, mmp2_secretion, resolve, intravasation), each timed inside "
                      "sim.step(); fields = FIELDS slots (field solve, ecm_degradation); whole step = "
                      "sim.step(), with recording and accounting checks pushed past the end of the run. "
                      "cell-updates/s = sum over timed steps of the cells at the start of the step / "
                      "seconds. "
                      f"Target: >= {sci(TARGET_CELL_RATE)} cell-updates/s for the cell rules.",
              caption_justify="left")
    for col in ("case", "lattice", "cells start→end", "thr", "cell rules ms/step",
                "cell rules cell-updates/s", f"≥ {sci(TARGET_CELL_RATE)}", "fields ms/step",
                "whole step ms/step", "whole step cell-updates/s"):
        t.add_column(col, justify="right" if col not in ("case", "lattice") else "left")
    for (ndim, n), r in results.items():
        t.add_row(
            f"{ndim}-D {cells_text(n)}", "x".join(map(str, r.shape)), f"{r.n_start:,}→{r.n_end:,}",
            str(r.threads), stat_text(r.cell_per_step, fixed, 1e3), stat_text(r.cell_rate),
            mark(r.cell_rate.median >= TARGET_CELL_RATE), stat_text(r.field_per_step, fixed, 1e3),
            stat_text(r.step_per_step, fixed, 1e3), stat_text(r.step_rate),
        )
    console.print(t)
    return results


def ratios_table(console: Console, plan: Plan, results: dict[tuple[int, int], bc.CellResult]) -> list[dict]:
    """Section 2: cost per step between successive sizes."""
    rows = []
    t = Table(title="2. Cost per step between sizes (from section 1)",
              caption="ratio = median time per step at the larger size / at the smaller; range = "
                      "\\[min_big/max_small, max_big/min_small]. Ideal for 10x the cells is 10x; target "
                      f"<= {TARGET_RATIO:g}x (judged on the median, scaled to exactly 10x the cells).",
              caption_justify="left")
    for col in ("case", "cells ratio", "cell rules time ratio", "whole step time ratio", "ideal",
                f"≤ {TARGET_RATIO:g}x (cell rules)", f"≤ {TARGET_RATIO:g}x (whole step)"):
        t.add_column(col, justify="left" if col == "case" else "right")
    for ndim in plan.dims:
        sizes = [n for n in plan.cell_sizes if (ndim, n) in results]
        for small, big in zip(sizes, sizes[1:], strict=False):
            a, b = results[(ndim, small)], results[(ndim, big)]
            cells = b.mean_cells / a.mean_cells
            rc = bc.ratio(b.cell_per_step, a.cell_per_step)
            rs = bc.ratio(b.step_per_step, a.step_per_step)
            norm = (big / small) / cells
            rows.append({"ndim": ndim, "small": small, "big": big, "cells_ratio": cells,
                         "cell_rules": rc.__dict__, "whole_step": rs.__dict__})
            t.add_row(f"{ndim}-D {cells_text(big)} / {cells_text(small)}", f"{cells:.2f}x",
                      stat_text(rc, lambda x: f"{x:.2f}x"), stat_text(rs, lambda x: f"{x:.2f}x"),
                      f"{big / small:g}x", mark(rc.median * norm <= TARGET_RATIO),
                      mark(rs.median * norm <= TARGET_RATIO))
    console.print(t)
    return rows


def run_fields(console: Console, plan: Plan) -> list[bc.FieldResult]:
    """Section 3: the diffusion solver on its own."""
    results = []
    for dims in plan.field_grids:
        for dtype in plan.field_dtypes:
            label = "x".join(map(str, dims[::-1] if dims[0] > 1 else dims[1:][::-1]))
            with console.status(f"fields: {label} {dtype}"):
                results.append(bc.field_benchmark(dims, dtype, plan.field_reps, plan.field_min_rep_s))
    t = Table(title="3. Field diffusion: voxel-updates per second per field",
              caption="solver = FieldSolver.step from make_solver (adds the deltas, then every explicit "
                      "sub-step of diffuse_decay_steps; MMP-2 parameters D = 360 µm²/h, decay 0.009/h, "
                      "dt 0.1 h, dx 10 µm); kernel = one sub-step (diffuse_decay_steps, substeps=1). "
                      "voxel-updates = voxels x "
                      "sub-steps. GB/s = least traffic of the kernel (one read and one write per voxel). "
                      "build = the kernel build the engine picks for this size (serial, parallel, or either: "
                      "parallel while whole steps run faster so, see metacoop.kernels.dispatch).",
              caption_justify="left")
    for col in ("grid", "dtype", "sub-steps", "build", "solver voxel-updates/s", "kernel voxel-updates/s",
                "kernel GB/s", "solver ms/step"):
        t.add_column(col, justify="left" if col in ("grid", "dtype", "build") else "right")
    for r in results:
        nz, ny, nx = r.dims
        grid = f"{nx}x{ny}" if nz == 1 else f"{nx}x{ny}x{nz}"
        per_step = r.solver_rate.inverse(r.voxels * r.substeps)
        t.add_row(grid, r.dtype, str(r.substeps), r.build, stat_text(r.solver_rate), stat_text(r.kernel_rate),
                  stat_text(r.bandwidth(r.kernel_rate), fixed), stat_text(per_step, fixed, 1e3))
    console.print(t)
    return results


def run_site_fields(console: Console, plan: Plan) -> list[bc.SiteFieldResult]:
    """Section 3b: every field of a site together (the FIELDS phase of the default scenario)."""
    results = []
    for shape in plan.site_field_grids:
        with console.status(f"fields of a site: {'x'.join(map(str, shape))}"):
            results.append(bc.site_fields_benchmark(shape, plan.field_reps, plan.field_min_rep_s))
    t = Table(title="3b. All fields of a site together: the default scenario's FIELDS phase, in its preset's "
                    "precision",
              caption="Every field solver (deltas, diffusion sub-steps, decay) and the ECM degradation, "
                      "on the primary site with every field filled with random positive values. "
                      "voxel-updates = points x the sub-steps of every field (1 for the ECM, which only "
                      "degrades), as in section 3; points/s counts all fields of a point once.",
              caption_justify="left")
    for col in ("grid", "dtype", "fields (sub-steps)", "voxel-updates/s", "points/s", "ms/step"):
        t.add_column(col, justify="left" if col in ("grid", "dtype", "fields (sub-steps)") else "right")
    for r in results:
        per_step = r.point_rate.inverse(r.points)
        t.add_row("x".join(map(str, r.shape)), r.dtype,
                  ", ".join(f"{k} ({v})" for k, v in r.substeps.items()),
                  stat_text(r.rate), stat_text(r.point_rate), stat_text(per_step, fixed, 1e3))
    console.print(t)
    return results


def memory_table(console: Console, results: dict[tuple[int, int], bc.CellResult], plan: Plan) -> dict:
    """Section 4: bytes of state per cell at the largest 2-D size."""
    key = (2, max(plan.cell_sizes)) if (2, max(plan.cell_sizes)) in results else max(results)
    r = results[key]
    built, end = r.memory_built, r.memory_end
    t = Table(title=f"4. Bytes of state per cell ({key[0]}-D, {cells_text(key[1])} cells)",
              caption="declared = CellArrays.bytes_per_cell(); live = sum of nbytes of the live slots / n; "
                      "allocated = sum of nbytes of the whole arrays (capacity) / n. 'after' = after the "
                      "warm-up and timed steps of a section 1 repetition (the first division grows capacity "
                      "by half). "
                      f"Target: <= {TARGET_BYTES} bytes/cell.",
              caption_justify="left")
    for col in ("quantity", "cells", "capacity", "bytes/cell", f"≤ {TARGET_BYTES}"):
        t.add_column(col, justify="left" if col == "quantity" else "right")
    rows = [
        ("declared: CellArrays.bytes_per_cell()", built, built["declared_per_cell"], True),
        ("measured: live slots nbytes / n (at build)", built, built["live_per_cell"], True),
        ("measured: allocated nbytes / n (at build)", built, built["allocated_per_cell"], True),
        ("measured: allocated nbytes / n (after)", end, end["allocated_per_cell"], True),
        ("  + per-cell scratch kept by the site (after)", end,
         end["allocated_per_cell"] + end["scratch_per_cell"], True),
        ("  context: lattice arrays (fields, occ, vessel) / n", end, end["lattice_per_cell"], False),
    ]
    for label, m, value, judged in rows:
        t.add_row(label, f"{int(m['cells']):,}", f"{int(m['capacity']):,}", f"{value:.1f}",
                  mark(value <= TARGET_BYTES) if judged else "")
    console.print(t)
    cols = ", ".join(f"{k} {np.dtype(dt).itemsize}" for k, (dt, _) in CellArrays.COLUMNS.items())
    console.print(f"   columns (bytes): {cols}")
    return {"case": list(key), "built": built, "after": end}


def run_scenario(console: Console, plan: Plan) -> bc.ScenarioResult:
    """Section 5: the whole default scenario, and how soon a new process takes its first step."""
    with console.status("whole default scenario"):
        r = bc.scenario_benchmark("default", plan.scenario_reps)
    with console.status("start-up: a new process until its first franssen2019 step"):
        r.startup = bc.startup_benchmark("franssen2019", plan.scenario_reps)
    t = Table(title="5. Whole default scenario: metacoop.simulate(load_scenario('default')), no output dir",
              caption="wall time of simulate() (build, every step, recording, result tables); after one "
                      "untimed 1 h run that loads the kernels. CTCs = CTCs shed into the circulation "
                      "(intravasation events).",
              caption_justify="left")
    for col in ("scenario", "simulated", "steps", "wall s", "steps/s", "simulated days / wall min",
                "final cells", "CTCs"):
        t.add_column(col, justify="left" if col == "scenario" else "right")
    t.add_row(r.name, f"{r.duration_h:g} h", f"{r.n_steps:,}", stat_text(r.wall, fixed),
              stat_text(r.steps_per_s, fixed), stat_text(r.days_per_minute, fixed),
              f"{r.cells_final:,}", str(r.ctcs))
    console.print(t)
    console.print("start-up: a new Python process imports metacoop, loads and checks franssen2019, builds "
                  "it (kernels from numba's cache) and takes its first step in "
                  f"{stat_text(r.startup, fixed)} s (target ≤ {TARGET_STARTUP_S:g} s) "
                  f"{mark(r.startup.median <= TARGET_STARTUP_S)}")
    return r


def run_precision(console: Console, plan: Plan) -> list[bc.PrecisionResult]:
    """Section 7d: each of ``plan.precision_scenarios`` over seeds with float32 and float64 fields."""
    return [run_precision_of(console, plan, name) for name in plan.precision_scenarios]


def run_precision_of(console: Console, plan: Plan, name: str) -> bc.PrecisionResult:
    """Section 7d for the scenario ``name``: a table of its outcomes in both precisions."""
    what = "full runs" if plan.precision_steps is None else f"{plan.precision_steps:,} steps"
    seeds = len(plan.precision_seeds)
    with console.status(f"precision: {name} ({what}), {seeds} seeds x float64 and float32"):
        r = bc.precision_benchmark(name, plan.precision_seeds, plan.precision_steps)
    own = metacoop.load_scenario(name).field_precision
    short = (f" — [bold yellow]SHORTENED to {r.n_steps:,} of {r.full_n_steps:,} steps (--quick)[/]"
             if r.shortened else "")
    t = Table(title=f"7d. {name} with float32 and float64 fields over seeds "
                    f"{r.seeds[0]}-{r.seeds[-1]}{short}",
              caption=f"{name} runs its fields in {own}. Each seed runs in both precisions, back to back; "
                      "a run's path changes with the last bit of a field as it does with the seed, so "
                      "outcomes (at the primary site at the end; CTCs and metastases over the run) are "
                      "compared over seeds: mean ± standard error, and the two-sided p-value of Welch's "
                      "t-test of equal means ('-' where both are constant). Wall s per run (in this "
                      "process, after a warm-up run), median (min–max) over the seeds: float64 "
                      f"{stat_text(r.wall('float64'), fixed)}, "
                      f"float32 {stat_text(r.wall('float32'), fixed)}; "
                      "speed-up float64 / float32, seed by seed: "
                      f"{stat_text(r.speedup, fixed)}x.",
              caption_justify="left")
    for col in ("outcome", "float64", "float32", "Welch p"):
        t.add_column(col, justify="left" if col == "outcome" else "right")
    for c in r.comparisons():
        t.add_row(c.outcome, *(f"{c.mean[p]:.5g} ± {c.sem[p]:.2g}" for p in bc.PRECISIONS),
                  f"{c.p:.2f}" if math.isfinite(c.p) else "-")
    console.print(t)
    return r


def run_experiments(console: Console, plan: Plan):
    """Section 8: replicates per hour on 1 and 2 Dask workers, and the experiment layer's overhead."""
    from bench_experiments import experiment_benchmark

    with console.status("experiment layer: plain loop and 1 Dask worker alternating, then 2 workers"):
        r = experiment_benchmark(plan.experiment_duration_h, plan.experiment_replicates)
    t = Table(title=f"8. Experiments: {r.replicates} replicates of '{r.scenario}' shortened to "
                    f"{r.duration_h:g} h", caption="plain loop = simulate(config, run_dir) in this process; "
              "experiment = run_experiment on a started LocalCluster (start-up shown apart); the plain loop "
              "and the 1-worker experiment alternate, 2 rounds each, and show their means; overhead = "
              "1 worker / plain loop - 1 (target under 5 %)", caption_justify="left")
    for col in ("way", "wall s", "replicates / hour", "cluster start s", "vs plain loop"):
        t.add_column(col, justify="left" if col == "way" else "right")
    t.add_row("plain loop", f"{r.loop_s:.1f}", f"{r.per_hour(r.loop_s):,.0f}", "", "")
    for w, s in r.workers_s.items():
        t.add_row(f"experiment, {w} worker{'s' if w > 1 else ''}", f"{s:.1f}", f"{r.per_hour(s):,.0f}",
                  f"{r.startup_s[w]:.1f}", f"{s / r.loop_s - 1:+.1%}")
    console.print(t)
    mark_ = mark(r.overhead < 0.05)
    console.print(f"experiment-layer overhead on 1 worker: {r.overhead:+.1%} {mark_}; "
                  f"2 workers / 1 worker speed-up: {r.workers_s[1] / r.workers_s[2]:.2f}x")
    return r


def run_builds(console: Console, plan: Plan) -> list:
    """Section 10: each sized kernel's serial build against its parallel build, both on one thread."""
    from bench_builds import GAP_FLAG, GAP_MIN_TIMED, GAP_MIN_US, builds_benchmark

    results = []
    for name in plan.builds_scenarios:
        what = "whole run" if plan.builds_steps is None else f"{plan.builds_steps:,} steps"
        with console.status(f"builds: {name} ({what}) on one thread, both builds timed"):
            r = builds_benchmark(name, plan.builds_steps, plan.builds_every)
        t = Table(title=f"10. {name} on one thread: each kernel's serial build against its parallel build "
                        f"({r.n_steps:,} steps)",
                  caption=(f"Every {r.every}th call of each kernel is timed {r.reps} times in each build on "
                           "copies of its arguments (median; then medians over the timed calls). On one "
                           "thread the serial build runs below PARALLEL_MIN_ITEMS items; a serial build "
                           f"more than {GAP_FLAG:g}x slower than the parallel one (at least {GAP_MIN_US:g} "
                           f"µs, over {GAP_MIN_TIMED} or more timed calls) is flagged: a code-generation "
                           "problem worth a look (see bench_builds.py). items = the work size the kernel's "
                           "dispatch reads (cells or points), median."),
                  caption_justify="left")
        for col in ("kernel", "calls", "timed", "items", "serial µs", "parallel µs (1 thread)",
                    "serial / parallel", ""):
            t.add_column(col, justify="left" if col == "kernel" else "right")
        for k in r.kernels:
            d = k.to_dict()
            t.add_row(k.name, f"{k.calls:,}", f"{d['timed']:,}", f"{d['median_items']:,.0f}",
                      f"{k.serial_us:.1f}", f"{k.parallel_us:.1f}", f"{k.ratio:.2f}",
                      "[bold red]look[/]" if k.flagged else "")
        console.print(t)
        flagged = [k.name for k in r.kernels if k.flagged]
        console.print(f"{name}: {len(flagged)} of {len(r.kernels)} kernels flagged"
                      + (f" ({', '.join(flagged)})" if flagged else ""))
        results.append(r)
    return results


#: metacoop's per-step figure against MetaSpread is taken over this many times MetaSpread's steps.
METACOOP_PER_STEP_SPAN = 10


def run_peers(console: Console, plan: Plan, cascade: dict | None = None) -> dict:
    """Section 9: MetaSpread and Mesa against metacoop, in the same run (see bench_peers.py)."""
    import bench_peers as bp

    short, n = plan.peer_steps
    with console.status("peers: installing MetaSpread into its own environment (first use only)"):
        bp.peer_python()
    # metacoop's extra steps cost less than its start-up varies (about 0.1 s against 0.2 s at n steps), so
    # its per-step figure is taken over ten times as many steps (later steps, more cells: conservative).
    long = METACOOP_PER_STEP_SPAN * n
    with console.status(f"peers: MetaSpread and metacoop franssen2019, {short} and {n} steps"):
        ms = {k: bp.run_metaspread(k) for k in (short, n)}
        mc = {k: bp.run_metacoop_franssen(k) for k in (short, n, long)}
    t = Table(title=f"9a. MetaSpread {bp.METASPREAD.split('==')[1]} (Mesa) vs metacoop franssen2019: "
                    "the same 40-s steps, whole commands", caption="wall = the whole command (start-up, "
              "steps, output); per step = (wall at the longest run - wall at the shortest) / extra steps "
              f"(metacoop also runs {METACOOP_PER_STEP_SPAN}x the steps: its extra steps at {n:,} cost less "
              "than its start-up varies); "
              "cells = live cells each tool wrote at the end, per grid / site. Each tool runs its own "
              "model of Franssen et al. 2019, so cell counts agree only in order of magnitude.",
              caption_justify="left")
    for col in ("tool", "steps", "wall s", "per step ms", "cells at the end"):
        t.add_column(col, justify="left" if col in ("tool", "cells at the end") else "right")
    per_step = {}
    for tool, runs in (("MetaSpread", ms), ("metacoop", mc)):
        last = max(runs)
        per_step[tool] = (runs[last].wall_s - runs[short].wall_s) / (last - short)
        for k, r in runs.items():
            t.add_row(tool, f"{k:,}", f"{r.wall_s:.2f}", f"{1e3 * per_step[tool]:.2f}" if k == last else "",
                      ", ".join(f"{g} {c:,}" for g, c in r.cells.items()))
    console.print(t)
    full_steps = 27_600
    projected = ms[short].wall_s + per_step["MetaSpread"] * (full_steps - short)
    main = cascade["main"] if cascade else None
    # a whole command against a whole process: start-up included on both sides where section 7 has it
    whole = main is not None and bool(main.process_s)
    measured = (float(np.median(main.process_s if whole else main.wall_s))
                if main is not None and not main.shortened else None)
    ratio = per_step["MetaSpread"] / max(per_step["metacoop"], 1e-9)
    text = (f"MetaSpread / metacoop: {ms[n].wall_s / mc[n].wall_s:.0f}x at {n:,} steps (whole commands), "
            f"{ratio:.0f}x per step; MetaSpread's full {full_steps:,}-step run, projected: "
            f"{projected / 3600:.1f} h")
    if measured:
        text += (f", {projected / measured:,.0f}x metacoop's measured {measured:.1f} s (section 7"
                 + (", in a new process)" if whole else ")"))
    console.print(text)
    with console.status(f"peers: growth to {plan.growth_target:,} cells in Mesa and metacoop"):
        growth = [bp.run_mesa_growth(plan.growth_target), bp.run_metacoop_growth(plan.growth_target)]
    g = Table(title=f"9b. Lattice growth from 1 cell to {plan.growth_target:,} (divide p = 0.5 into an empty "
                    "neighbour, die q = 0.01, per step)", caption="agent-steps = cells alive at the start of "
              "each step, summed; rate = agent-steps per second of stepping (construction and compilation "
              "excluded). Steps differ a little: a metacoop cell waiting for room divides as soon as it has "
              "some, a Mesa cell tries again with p = 0.5.", caption_justify="left")
    for col in ("tool", "steps", "cells", "agent-steps", "stepping s", "agent-steps/s"):
        g.add_column(col, justify="left" if col == "tool" else "right")
    for r in growth:
        g.add_row(r.tool, str(r.steps), f"{r.cells:,}", f"{r.agent_steps:,}", f"{r.wall_s:.3f}", sci(r.rate))
    console.print(g)
    console.print(f"metacoop / Mesa growth rate: {growth[1].rate / growth[0].rate:.0f}x")
    return {"metaspread": {str(k): r.to_dict() for k, r in ms.items()},
            "metacoop_franssen": {str(k): r.to_dict() for k, r in mc.items()},
            "per_step_s": per_step, "metaspread_projected_full_s": projected,
            "growth": [r.to_dict() for r in growth]}


def run_threads(console: Console, plan: Plan) -> dict[int, bc.CellResult]:
    """Section 6: thread scaling of the 1e6 2-D cell benchmark."""
    n = plan.thread_cells
    with console.status(f"threads: {cells_text(n)} cells, 2-D"):
        res = bc.thread_benchmark(n, 2, plan.thread_counts, steps_for(plan, n), plan.reps, plan.warmup)
    t = Table(title=f"6. Threads: {cells_text(n)} cells, 2-D "
                    "(metacoop.kernels.dispatch.set_threads; repetitions interleaved)",
              caption="speedup = median time at 1 thread / median time at this count; range as in "
                      "section 2. Only the prange kernels run in parallel; apply_moves and divide are "
                      "serial by design (cell-order conflict resolution); scatter_add gives each "
                      "thread a range of lattice points (sums in cell order, as on one thread).",
              caption_justify="left")
    for col in ("threads", "cells start→end", "cell rules ms/step", "cell rules cell-updates/s",
                "fields ms/step", "whole step ms/step", "speedup cell rules", "speedup fields",
                "speedup whole step"):
        t.add_column(col, justify="right")
    if not res:
        console.print("[yellow]no thread counts available[/]")
        return res
    base = res[min(res)]
    for k, r in res.items():
        t.add_row(str(k), f"{r.n_start:,}→{r.n_end:,}", stat_text(r.cell_per_step, fixed, 1e3),
                  stat_text(r.cell_rate), stat_text(r.field_per_step, fixed, 1e3),
                  stat_text(r.step_per_step, fixed, 1e3),
                  stat_text(bc.ratio(base.cell_per_step, r.cell_per_step), lambda x: f"{x:.2f}x"),
                  stat_text(bc.ratio(base.field_per_step, r.field_per_step), lambda x: f"{x:.2f}x"),
                  stat_text(bc.ratio(base.step_per_step, r.step_per_step), lambda x: f"{x:.2f}x"))
    console.print(t)
    return res


def cascade_target_text() -> str:
    """The section 7 targets, as printed."""
    return f"< {TARGET_CASCADE_S / 60:g} min on 2 cores (stretch < {STRETCH_CASCADE_S:g} s)"


def run_cascade(console: Console, plan: Plan, default: bc.ScenarioResult | None = None,
                overrides: dict | None = None) -> dict:
    """Section 7: whole cascade scenarios, and where the franssen2019 run's time goes (7b, 7c).

    ``default`` is section 5's result, reused when that section ran.
    ``overrides`` (for tests) change the cascade scenario and are shown in the caption.
    """
    name = plan.cascade_scenario
    what = "full run" if plan.cascade_steps is None else f"{plan.cascade_steps:,} steps"
    with console.status(f"cascade: {name} ({what}) x {plan.cascade_reps}"):
        main = bc.cascade_benchmark(name, plan.cascade_reps, plan.cascade_steps, overrides)
    reused = default is not None
    if default is None:
        with console.status("cascade: default scenario"):
            default = bc.scenario_benchmark("default", plan.scenario_reps)
    with console.status(f"cascade: {name} ({what}), instrumented run"):
        breakdown = bc.cascade_breakdown(name, plan.cascade_steps, overrides)
    cascade = {"main": main, "default": default, "default_from_section_5": reused, "breakdown": breakdown,
               "instrumented_matches": breakdown.digest == main.digest, "overrides": dict(overrides or {})}
    cascade_table(console, cascade)
    compartment_table(console, cascade)
    slot_share_table(console, cascade)
    return cascade


def _cascade_marks(cascade: dict) -> tuple[str, str]:
    """Marks against the target and the stretch target; only the full, unmodified franssen2019 is judged."""
    r = cascade["main"]
    if r.shortened:
        text = f"not judged: {r.n_steps:,} of {r.full_n_steps:,} steps"
        return text, text
    if r.name != "franssen2019" or cascade.get("overrides"):
        return "not judged", "not judged"
    whole = r.process.median if r.process is not None else r.wall.median  # (the issue counts start-up)
    return mark(r.wall.median < TARGET_CASCADE_S), mark(whole < STRETCH_CASCADE_S)


def cascade_table(console: Console, cascade: dict) -> None:
    """Table 7: wall time of the cascade scenarios."""
    main, default = cascade["main"], cascade["default"]
    short = (f" — [bold yellow]{main.name} SHORTENED to {main.n_steps:,} of its {main.full_n_steps:,} steps "
             f"(--quick)[/]" if main.shortened else "")
    cores = os.cpu_count()
    dt_h = main.duration_h / main.n_steps
    about = ("a primary site and two organs, 201x201 each, and every step of the cascade (fields, "
             "cell rules, intravasation, circulation, arrest, extravasation); "
             if main.name == "franssen2019" else "")
    t = Table(title=f"7. Cascade scenarios: metacoop.simulate(load_scenario(name)), no output dir{short}",
              caption="wall time of simulate() (build, every step, recording, result tables), median "
                      f"(min–max) of {main.wall.n} runs, after one untimed 1 h run that loads the kernels. "
                      f"{main.name}: {about}{main.full_n_steps:,} steps of {dt_h * 3600:.3g} s = "
                      f"{main.full_n_steps * dt_h:.4g} h when run in full. "
                      + ("With --quick it runs a shortened duration (see 'steps'), which is not judged: the "
                         "population, and the cost of a step, grow over the run. " if main.shortened else "")
                      + f"Targets for the full {main.name} run: {cascade_target_text()}; this machine: "
                        f"{cores} logical CPUs, {main.threads} numba threads. "
                      + ("default: from section 5. " if cascade["default_from_section_5"] else "")
                      + (f"[bold]{main.name} with overrides {escape(str(cascade['overrides']))}[/]. "
                         if cascade.get("overrides") else "")
                      + "CTCs = CTCs shed (intravasation events); mets = metastases founded (a run's "
                        "path: one that founds none does no organ work, and is faster; section 7d gives "
                        "the run over seeds). 'new process s': the same run, each "
                        "repetition in a new Python process, start-up included (imports, numba loading its "
                        "cached kernels); the stretch target counts it.",
              caption_justify="left")
    for col in ("scenario", "simulated", "steps", "wall s", "new process s", "steps/s",
                "simulated days / wall min", "final cells", "CTCs", "mets",
                f"< {TARGET_CASCADE_S / 60:g} min", f"stretch < {STRETCH_CASCADE_S:g} s"):
        t.add_column(col, justify="left" if col == "scenario" else "right")
    for r, judged in ((main, True), (default, False)):
        marks = _cascade_marks(cascade) if judged else ("-", "-")
        steps = f"{r.n_steps:,}" + (f" of {r.full_n_steps:,}" if r.shortened else "")
        whole = stat_text(r.process, fixed) if r.process is not None else "-"
        t.add_row(r.name, f"{r.duration_h:.4g} h", steps, stat_text(r.wall, fixed), whole,
                  stat_text(r.steps_per_s, fixed), stat_text(r.days_per_minute, fixed),
                  f"{r.cells_final:,}", str(r.ctcs), str(r.events.get("metastasis_founded", 0)), *marks)
    console.print(t)


def _breakdown_note(cascade: dict) -> str:
    b, main = cascade["breakdown"], cascade["main"]
    same = ("its outcome (final cells, event counts, time series) is identical to the uninstrumented runs'"
            if cascade["instrumented_matches"] else
            "[bold red]its outcome DIFFERS from the uninstrumented runs' (digest "
            f"{b.digest} vs {main.digest}): the shares below are not to be trusted[/]")
    return (f"One instrumented run of {b.name} ({b.n_steps:,} steps"
            + (f" of {b.full_n_steps:,}" if b.n_steps < b.full_n_steps else "")
            + f", {b.threads} threads): {fixed(b.total_s)} s, against a median of "
            f"{fixed(main.wall.median)} s uninstrumented (the timers cost a little; the rest is "
            f"run-to-run noise); {same}. "
            "Shares are of this run's simulate() wall time.")


def compartment_table(console: Console, cascade: dict) -> None:
    """Table 7b: share of the instrumented run's wall time by compartment (sites split by lattice)."""
    b = cascade["breakdown"]
    comp = b.by_compartment()
    names = {c: [n for n, ph in b.slot_phase.items() if bc.compartment_of(bc.Phase[ph]) == c]
             for c in bc.COMPARTMENTS}
    per_site = sorted(bc.PER_SITE_SLOTS & set(b.site_s))
    t = Table(title=f"7b. Where the {b.name} run goes, by compartment",
              caption=_breakdown_note(cascade) + " Attribution: sites = every slot of the FIELDS, "
                      "CELL_RULES, RESOLVE and INTRAVASATION phases, in every lattice site (the "
                      "organs' lattices included: their field solve, cell rules and intravasation "
                      "count here, not under organs); split by lattice site for the slots "
                      f"{', '.join(per_site)}, each run once per site with sim.sites set to that site (a "
                      "slot that is not a plain loop over the sites, e.g. death, would be shown as '(not "
                      "split)'). circulation = CIRCULATION and ARREST slots. organs = ORGANS slots (organ-"
                      "level rules: dormancy, extravasation, metastasis registry, angiogenic switch). "
                      "recording & other = SYSTEMIC and RECORD slots, recorder.after_step (time series, "
                      "snapshots), check_accounting, the step loop outside the slots, building the "
                      "Simulation and simulate()'s result tables.",
              caption_justify="left")
    for col in ("compartment", "what is attributed", "s", "ms/step", "share of wall"):
        t.add_column(col, justify="left" if col in ("compartment", "what is attributed") else "right")

    def row(label: str, what: str, sec: float, bold: bool = False) -> None:
        fmt = (lambda x: f"[bold]{x}[/]") if bold else str
        t.add_row(fmt(label), what, fmt(f"{sec:.3f}"), fmt(f"{1e3 * sec / b.n_steps:.3f}"),
                  fmt(f"{100 * b.share(sec):.1f} %"))

    for c in bc.COMPARTMENTS:
        what = ", ".join(names[c])
        if c == "recording & other":
            what = ", ".join([*names[c], "after_step, check_accounting, step loop, build, result tables"])
        row(c, what, comp[c], bold=True)
        if c == "sites":
            for site, sec in b.by_site().items():
                row(f"  ↳ {site}", "the per-site slots run on this site" if site != "(not split)"
                    else "site slots not split by site", sec)
    row("total", "simulate() wall time of the instrumented run", b.total_s, bold=True)
    console.print(t)


def slot_share_table(console: Console, cascade: dict) -> None:
    """Table 7c: share of the instrumented run's wall time by phase and slot (and lattice site)."""
    b = cascade["breakdown"]
    t = Table(title=f"7c. Where the {b.name} run goes, by phase and slot (same run as 7b)",
              caption="Each slot of sim.plan timed inside Simulation.step (the plan list of this Simulation "
                      "is replaced by timed copies; src/ is not changed). Phase rows are the sum of their "
                      "slots. Site columns: share of the wall time spent in the slot on that lattice site "
                      "(only for the slots run once per site; see 7b). Rows in parentheses are outside the "
                      "plan.",
              caption_justify="left")
    cols = ["phase / slot", "compartment", "s", "ms/step", "share of wall", *[f"{s} share" for s in b.sites]]
    for col in cols:
        t.add_column(col, justify="left" if col in ("phase / slot", "compartment") else "right")
    phases = b.by_phase()
    blank = [""] * len(b.sites)
    for ph, sec in phases.items():
        t.add_row(f"[bold]{ph}[/]", bc.compartment_of(bc.Phase[ph]), f"[bold]{sec:.3f}[/]",
                  f"[bold]{1e3 * sec / b.n_steps:.3f}[/]", f"[bold]{100 * b.share(sec):.1f} %[/]", *blank)
        for name in (n for n, p in b.slot_phase.items() if p == ph):
            sec = b.slot_s[name]
            sites = ([f"{100 * b.share(b.site_s[name][s]):.1f} %" for s in b.sites]
                     if name in b.site_s else blank)
            t.add_row(f"  {name}", "", f"{sec:.3f}", f"{1e3 * sec / b.n_steps:.3f}",
                      f"{100 * b.share(sec):.1f} %", *sites)
    for comp, ph, name, sec in b.parts():
        if ph == "-":
            t.add_row(name, comp, f"{sec:.3f}", f"{1e3 * sec / b.n_steps:.3f}", f"{100 * b.share(sec):.1f} %",
                      *blank)
    t.add_row("[bold]total[/]", "", f"[bold]{b.total_s:.3f}[/]",
              f"[bold]{1e3 * b.total_s / b.n_steps:.3f}[/]", "[bold]100 %[/]", *blank)
    console.print(t)


def breakdown_table(console: Console, results: dict[tuple[int, int], bc.CellResult], plan: Plan) -> None:
    """Section 1b: per-slot time at the largest size, 2-D and 3-D."""
    big = max(plan.cell_sizes)
    for ndim in plan.dims:
        r = results.get((ndim, big))
        if r is None:
            continue
        total = r.step_per_step.median
        t = Table(title=f"1b. Where a step goes: {ndim}-D, {cells_text(big)} cells, {r.threads} threads "
                        f"(ms per step by schedule slot, from section 1)",
                  caption="other phases = the slots after INTRAVASATION (circulation, arrest, organs, "
                          "systemic), summed; they have nothing to do here (no organs, few CTCs).",
                  caption_justify="left")
        for col in ("slot", "part", "ms/step", "share of whole step"):
            t.add_column(col, justify="left" if col in ("slot", "part") else "right")
        others = []
        for name in r.slot_s:
            if name not in r.cell_slots and name not in r.field_slots:
                others.append(name)
                continue
            part = "cell rules" if name in r.cell_slots else "fields"
            s = r.slot_per_step(name)
            t.add_row(name, part, stat_text(s, fixed, 1e3), f"{100 * s.median / total:.1f} %")
        if others:
            o = r.other_per_step
            t.add_row(f"({len(others)} other slots)", "other phases", stat_text(o, fixed, 1e3),
                      f"{100 * o.median / total:.1f} %")
        b = r.bookkeeping_per_step
        t.add_row("(step loop, outside slots)", "-", stat_text(b, fixed, 1e3),
                  f"{100 * b.median / total:.1f} %")
        t.add_row("[bold]whole step[/]", "", stat_text(r.step_per_step, fixed, 1e3), "100 %")
        console.print(t)


def summary_table(console: Console, plan: Plan, cells: dict[tuple[int, int], bc.CellResult],
                  ratios: list[dict], scenario: bc.ScenarioResult | None,
                  threads: dict[int, bc.CellResult], cascade: dict | None = None,
                  site_fields: list[bc.SiteFieldResult] = (),
                  precision: list[bc.PrecisionResult] | None = None) -> None:
    """The targets at a glance (medians)."""
    t = Table(title="Summary against targets (medians)")
    for col in ("figure", "measured", "target", ""):
        t.add_column(col, justify="left" if col == "figure" else "right")
    for (ndim, n), r in cells.items():
        t.add_row(f"cell rules, {ndim}-D {cells_text(n)}: cell-updates/s", sci(r.cell_rate.median),
                  f"≥ {sci(TARGET_CELL_RATE)}", mark(r.cell_rate.median >= TARGET_CELL_RATE))
    for row in ratios:
        norm = (row["big"] / row["small"]) / row["cells_ratio"]
        m = row["cell_rules"]["median"]
        t.add_row(f"cell rules, {row['ndim']}-D {cells_text(row['big'])}/{cells_text(row['small'])}: "
                  "time per step ratio", f"{m:.2f}x", f"≤ {TARGET_RATIO:g}x", mark(m * norm <= TARGET_RATIO))
    if site_fields:
        r = max(site_fields, key=lambda r: r.points)
        t.add_row(f"all {len(r.fields)} fields of a site together, {'x'.join(map(str, r.shape))}: "
                  "voxel-updates/s", sci(r.rate.median), f"≥ {sci(TARGET_FIELD_RATE)}",
                  mark(r.rate.median >= TARGET_FIELD_RATE))
    key = (2, max(plan.cell_sizes))
    if key in cells:
        m = cells[key].memory_end
        t.add_row("bytes/cell declared (CellArrays.bytes_per_cell)", f"{m['declared_per_cell']:.0f}",
                  f"≤ {TARGET_BYTES}", mark(m["declared_per_cell"] <= TARGET_BYTES))
        t.add_row(f"bytes/cell allocated at {cells_text(key[1])} (after steps)",
                  f"{m['allocated_per_cell']:.1f}", f"≤ {TARGET_BYTES}",
                  mark(m["allocated_per_cell"] <= TARGET_BYTES))
    if scenario is not None:
        t.add_row("default scenario: simulated days / wall minute",
                  fixed(scenario.days_per_minute.median), "-", "")
        if scenario.startup is not None:
            t.add_row("new process to its first franssen2019 step, s", fixed(scenario.startup.median),
                      f"≤ {TARGET_STARTUP_S:g}", mark(scenario.startup.median <= TARGET_STARTUP_S))
    if len(threads) > 1:
        base = threads[min(threads)]
        top = threads[max(threads)]
        sp = base.cell_per_step.median / top.cell_per_step.median
        t.add_row(f"cell rules speedup {max(threads)} threads vs {min(threads)}", f"{sp:.2f}x",
                  f"≥ {TARGET_THREAD_SPEEDUP:g}x", mark(sp >= TARGET_THREAD_SPEEDUP))
    if cascade is not None:
        summary_cascade_rows(t, cascade, scenario is None)
    for r in precision or []:
        comparisons = r.comparisons()
        low = min((c.p for c in comparisons if math.isfinite(c.p)), default=math.nan)
        t.add_row(f"{r.name}: float64 / float32 fields, wall time (same seed back to back)",
                  f"{r.speedup.median:.2f}x", "-", "")
        t.add_row(f"{r.name} with float32 fields, wall s over {len(r.seeds)} seeds "
                  "(one process)", stat_text(r.wall("float32"), fixed), "-", "")
        t.add_row(f"{r.name}: float32 against float64 outcomes, lowest Welch p of "
                  f"{len(comparisons)} over {len(r.seeds)} seeds", f"{low:.2f}", "-", "")
    console.print(t)


def summary_cascade_rows(t: Table, cascade: dict, with_default: bool) -> None:
    """Section 7's lines of the summary table."""
    r, b = cascade["main"], cascade["breakdown"]
    run = (f"{r.name} full run ({r.n_steps:,} steps)" if not r.shortened
           else f"{r.name} SHORTENED to {r.n_steps:,} of {r.full_n_steps:,} steps (--quick)")
    target, stretch = _cascade_marks(cascade)
    t.add_row(f"{run}: wall s", fixed(r.wall.median), f"< {TARGET_CASCADE_S:g} s on 2 cores", target)
    if not r.shortened:
        whole = r.process if r.process is not None else r.wall
        t.add_row(f"{run}: wall s in a new process (start-up included), stretch target", fixed(whole.median),
                  f"< {STRETCH_CASCADE_S:g} s", stretch)
        if r.process_adds is not None:
            t.add_row(f"{r.name}: what a new process adds (paired runs), s", fixed(r.process_adds.median),
                      "-", "")
    t.add_row(f"{r.name}: steps/s", fixed(r.steps_per_s.median), "-", "")
    t.add_row(f"{r.name}: simulated days / wall minute", fixed(r.days_per_minute.median), "-", "")
    comp = b.by_compartment()
    t.add_row(f"{r.name}: share of wall, sites / circulation / organs / recording & other",
              " / ".join(f"{100 * b.share(comp[c]):.0f}" for c in bc.COMPARTMENTS) + " %", "-", "")
    sites = b.by_site()
    t.add_row(f"{r.name}: share of wall by lattice site, {' / '.join(sites)}",
              " / ".join(f"{100 * b.share(v):.0f}" for v in sites.values()) + " %", "-", "")
    if with_default:
        d = cascade["default"]
        t.add_row("default scenario: wall s", fixed(d.wall.median), "-", "")
        t.add_row("default scenario: simulated days / wall minute", fixed(d.days_per_minute.median), "-", "")


def profile_case(console: Console, n: int = 1_000_000, ndim: int = 2, steps: int = 20, top: int = 25) -> str:
    """Profile ``steps`` steps at ``n`` cells (after warm-up); prints and returns the top entries."""
    sim = bc.build_cell_sim(n, ndim)
    for _ in range(3):
        sim.step()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(steps):
        sim.step()
    pr.disable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).strip_dirs().sort_stats("tottime").print_stats(top)
    text = buf.getvalue()
    console.rule(f"cProfile: {ndim}-D, {cells_text(n)} cells, {steps} steps, sorted by own time")
    console.print(text, markup=False, highlight=False)
    return text


# -- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the suite; return the exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and steps (about a minute)")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    ap.add_argument("--json", type=Path, help="also write every raw figure to this JSON file")
    ap.add_argument("--profile", action="store_true", help="add a cProfile of the 1e6 2-D case")
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else FULL
    sections = set(args.only or SECTIONS)
    console = Console(width=None if sys.stdout.isatty() else 200)
    start = time.perf_counter()
    out: dict = {"mode": "quick" if args.quick else "full", "plan": plan.__dict__}

    with console.status("warming up (loading compiled kernels)"):
        for ndim in plan.dims:  # tiny untimed runs: kernels loaded, threading layer chosen
            bc.cell_benchmark(400, ndim, steps=2, reps=1, warmup=1)
    out["environment"] = environment_table(console, plan, args.quick)

    load: dict[str, float] = {}
    whole = bc.CpuSnapshot.now()
    cells: dict[tuple[int, int], bc.CellResult] = {}
    if "cells" in sections:
        with Section(console, "1. cell rules", load):
            cells = run_cells(console, plan)
        breakdown_table(console, cells, plan)
        out["ratios"] = ratios_table(console, plan, cells)
    elif "memory" in sections:  # memory alone: only the case it needs
        n = max(plan.cell_sizes)
        with Section(console, "4. memory (cell run)", load):
            cells = {(2, n): bc.cell_benchmark(n, 2, steps_for(plan, n), plan.reps, plan.warmup)}
    out["cells"] = [r.to_dict() for r in cells.values()]
    fields = []
    if "fields" in sections:
        with Section(console, "3. fields", load):
            fields = run_fields(console, plan)
            site_fields = run_site_fields(console, plan)
        out["fields"] = [r.to_dict() for r in fields]
        out["site_fields"] = [r.to_dict() for r in site_fields]
    if "memory" in sections:
        out["memory"] = memory_table(console, cells, plan)
    scenario = None
    if "scenario" in sections:
        with Section(console, "5. scenario", load):
            scenario = run_scenario(console, plan)
        out["scenario"] = scenario.to_dict()
    threads: dict[int, bc.CellResult] = {}
    if "threads" in sections:
        with Section(console, "6. threads", load):
            threads = run_threads(console, plan)
        out["threads"] = {str(k): r.to_dict() for k, r in threads.items()}
    cascade = None
    if "cascade" in sections:
        with Section(console, "7. cascade", load):
            cascade = run_cascade(console, plan, scenario)
        out["cascade"] = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in cascade.items()}
    precision = None
    if "precision" in sections:
        with Section(console, "7d. precision", load):
            precision = run_precision(console, plan)
        out["precision"] = {r.name: r.to_dict() for r in precision}
    if "experiments" in sections:
        with Section(console, "8. experiments", load):
            out["experiments"] = run_experiments(console, plan).to_dict()
    if "peers" in sections:
        with Section(console, "9. peers", load):
            out["peers"] = run_peers(console, plan, cascade)
    if "builds" in sections:
        with Section(console, "10. builds", load):
            out["builds"] = [r.to_dict() for r in run_builds(console, plan)]
    summary_table(console, plan, cells, out.get("ratios", []), scenario, threads, cascade,
                  site_fields if "fields" in sections else [], precision)
    if args.profile:
        out["profile"] = profile_case(console)
    share = whole.others_share(bc.CpuSnapshot.now())
    load["whole run"] = share
    out["other_processes_cpu_share"] = load
    if math.isfinite(share):
        note = " [yellow](figures disturbed; rerun on a quiet machine)[/]" if share > NOISY_SHARE else ""
        console.print(f"other processes used {100 * share:.0f} % of the CPUs over the whole run{note}")
    probe = bc.MachineProbe.now().text()
    out["machine probe (end)"] = probe
    console.print(f"machine probe at the end: {probe} "
                  f"(at the start: {out['environment']['machine probe (start)']})")
    elapsed = time.perf_counter() - start
    out["wall_s"] = elapsed
    console.print(f"benchmark wall time: {elapsed:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")
        console.print(f"raw figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
