"""The ``metacoop`` command line: scenarios, config, run.

Bad input of any kind (scenario file, ``--set`` override, output directory)
ends with exit status 2 and one line per problem naming the key, the value and
what is allowed; never a traceback.
"""

from __future__ import annotations

import atexit
import gc
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from metacoop.errors import InputError, OutputError, Problem, SimulationError

STATUS_COLUMNS = ("dormant", "solitary", "micro", "macro", "extinct")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="metacoop: simulate the metastatic cascade as a class action of cooperating clones.",
)
out_console = Console()
err_console = Console(stderr=True)

ScenarioArg = Annotated[
    str | None,
    typer.Argument(help="built-in scenario name or path to a TOML file (default: 'default')",
                   show_default=False),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a key: dotted.key=value (repeatable)", show_default=False),
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="root random seed (replaces the scenario's)")]


@contextmanager
def friendly_errors():
    """Turn input errors into a clean message and exit status 2."""
    try:
        yield
    except InputError as exc:
        problems = exc.problems or [str(exc)]
        for p in problems:
            err_console.print(f"[bold red]error:[/] {escape(str(p))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except SimulationError as exc:
        err_console.print(f"[bold red]simulation stopped:[/] {escape(str(exc))}", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(1) from None
    except OutputError as exc:
        err_console.print(f"[bold red]cannot write:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@app.command()
def scenarios() -> None:
    """List the built-in scenarios with a one-line description each."""
    from metacoop.config.loader import builtin_scenarios

    table = Table("scenario", "description", box=None, header_style="bold")
    for name, desc in builtin_scenarios().items():
        table.add_row(escape(name), escape(desc))
    out_console.print(table)


@app.command("config")
def config_cmd(scenario: ScenarioArg = None, set_: SetOpt = None, seed: SeedOpt = None) -> None:
    """Print the fully resolved configuration of a scenario as TOML."""
    from metacoop.config.loader import load_scenario, to_toml

    with friendly_errors():
        cfg = load_scenario(scenario, set_ or [], seed=seed)
        sys.stdout.write(to_toml(cfg))


@app.command()
def describe(
    scenario: ScenarioArg = None,
    set_: SetOpt = None,
    odd: Annotated[bool, typer.Option("--odd", help="write an ODD protocol (Markdown)")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="write to this file, not the terminal")] = None,
) -> None:
    """Print the resolved schedule and every enabled mechanism, or an ODD protocol with --odd."""
    from metacoop.config.loader import load_scenario
    from metacoop.describe import describe_scenario, odd_protocol
    from metacoop.io.atomic import atomic_write_bytes

    with friendly_errors():
        cfg = load_scenario(scenario, set_ or [])
        text = odd_protocol(cfg) if odd else describe_scenario(cfg) + "\n"
        if out is None:
            sys.stdout.write(text)
            return
        try:
            atomic_write_bytes(Path(out), text.encode("utf-8"))
        except OSError as exc:
            reason = f"cannot be written: {exc.strerror or exc}"
            raise InputError([Problem("--out", str(out), reason)]) from None
    out_console.print(f"Written to {out}", highlight=False, markup=False)


def _parse_vary(items: list[str]) -> dict[str, list]:
    """``key=v1,v2,...`` items as ``{key: [values]}``; each value is read as TOML, else as text."""
    from metacoop.config.loader import parse_override

    grid: dict[str, list] = {}
    for item in items:
        key, raw = item.split("=", 1) if "=" in item else (item, "")
        if not key.strip() or not raw.strip():
            raise InputError([Problem("--vary", item, "must look like key=v1,v2,...")])
        values = [parse_override(f"v={v.strip()}")[1] for v in _split_top(raw)]
        grid[key.strip()] = values
    return grid


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets and braces (so ``[1,2],[3,4]`` gives two values)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [v for v in out if v.strip()]


@app.command()
def experiment(
    kind: Annotated[str, typer.Argument(help="ablation, mixing, waves, injection, sweep, sensitivity "
                                              "or calibrate")],
    scenario: ScenarioArg = None,
    replicates: Annotated[int, typer.Option("--replicates", "-n", help="replicates per condition")] = 4,
    workers: Annotated[int | None, typer.Option("--workers", help="LocalCluster worker processes "
                                                                  "(default: one per CPU)")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="address of an existing Dask "
                                                                      "scheduler")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="experiment directory (new, or this same "
                                                           "experiment to resume it)")] = None,
    vary: Annotated[list[str] | None, typer.Option("--vary", help="key=v1,v2,... (sweep; repeatable)",
                                                   show_default=False)] = None,
    grid: Annotated[Path | None, typer.Option("--grid", help="sweep: a TOML file of key = [values] "
                                                             "(added to --vary)")] = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or table")] = False,
    targets: Annotated[Path | None, typer.Option(
        "--targets", help="calibrate: a targets CSV (columns of validation/targets.csv; default: the "
                          "shipped targets)")] = None,
    match: Annotated[list[str] | None, typer.Option(
        "--match", help="calibrate: ROW_ID[=observable] (repeatable; default observable: the row's)",
        show_default=False)] = None,
    population: Annotated[int, typer.Option("--population", help="calibrate: particles per "
                                                                 "generation")] = 20,
    generations: Annotated[int, typer.Option("--generations", help="calibrate: ABC-SMC generations")] = 3,
    method: Annotated[str, typer.Option("--method", help="sensitivity: morris or sobol")] = "morris",
    samples: Annotated[int, typer.Option("--samples", help="sensitivity: Morris trajectories or Sobol "
                                                           "base samples")] = 10,
) -> None:
    """Run an ensemble experiment on Dask and print per-condition statistics."""
    from metacoop.config.loader import DEFAULT_SCENARIO, load_scenario, parse_override
    from metacoop.experiments import build_design, run_experiment
    from metacoop.experiments.runner import check_cluster

    with friendly_errors():
        check_cluster(workers, scheduler)
        name = scenario or DEFAULT_SCENARIO
        cfg = load_scenario(name, set_ or [], seed=seed)
        base = dict(parse_override(item) for item in (set_ or []))
        if kind == "calibrate":
            _calibrate(name, cfg, base, vary or [], targets, match or [], population, generations, workers,
                       scheduler, out, quiet)
            return
        varied = _parse_vary(vary or [])
        if grid is not None:
            from metacoop.experiments.design import read_grid

            varied = {**read_grid(grid), **varied}
        design = build_design(kind, name, cfg, replicates, cfg.seed, varied, base, method=method,
                              samples=samples)
        out_dir = out if out is not None else Path("metacoop-experiments") / (
            f"{kind}-{cfg.name}-seed{cfg.seed}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
        total = len(design.conditions) * replicates
        if quiet:
            result = run_experiment(design, out_dir, workers=workers, scheduler=scheduler)
        else:
            bar = Progress(TextColumn("[bold]replicates"), BarColumn(),
                           TextColumn("{task.completed}/{task.total}"),
                           TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(), TextColumn("ETA"),
                           TimeRemainingColumn(), console=err_console)
            task = bar.add_task("exp", total=total, failed=0)

            def report(p):
                if not bar.live.is_started:  # (first called once the design's conditions are checked)
                    err_console.print(f"{kind} of [bold]{escape(cfg.name)}[/]: {len(design.conditions)} "
                                      f"conditions x {replicates} replicates -> {escape(str(out_dir))}",
                                      highlight=False)
                    bar.start()
                bar.update(task, completed=p.done + p.failed, failed=p.failed)
            try:
                result = run_experiment(design, out_dir, workers=workers, scheduler=scheduler,
                                        progress=report)
            finally:
                if bar.live.is_started:
                    bar.stop()
        if not quiet:
            if result.sensitivity is not None:
                _sensitivity_table(result)
            else:
                _stats_table(result)
        for cond, rep, text in result.failures:
            err_console.print(f"[bold red]failed:[/] {escape(cond)} replicate {rep}: {escape(text)}",
                              highlight=False, soft_wrap=True)
    out_console.print(f"Experiment written to {out_dir}", highlight=False, markup=False, soft_wrap=True)
    if result.failures:
        raise typer.Exit(1)


#: Observables shown in the experiment table, by kind (every observable is in stats.csv).
TABLE_OBSERVABLES = ("metastases", "burden_cells", "first_metastasis_h")


def _shown_observables(result) -> list[str]:
    present = set(result.stats["observable"])
    kind = result.design.kind
    if kind == "waves":
        return sorted(o for o in present if o.startswith("wave.")) + ["metastases"]
    shown = [o for o in TABLE_OBSERVABLES if o in present]
    if kind == "mixing":
        shown += sorted(o for o in present if o.startswith(("clone_share.", "clone_fraction_with.")))
    return shown


def _stats_table(result) -> None:
    stats = result.stats
    table = Table("condition", "observable", "n", "mean", "95% CI", "median", "effect", "p (Holm)",
                  box=None, header_style="bold",
                  title=f"{result.design.kind}: mean with bootstrap 95% CI; effect = difference from "
                        f"{result.design.reference or '-'} (Mann-Whitney U, Holm-corrected)",
                  title_justify="left", title_style="")
    for obs in _shown_observables(result):
        for _, r in stats[stats["observable"] == obs].iterrows():
            table.add_row(escape(str(r["condition"])), escape(obs), str(r["n"]), f"{r['mean']:.4g}",
                          f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]", f"{r['median']:.4g}",
                          "" if r["effect"] != r["effect"] else f"{r['effect']:+.4g}",
                          "" if r["p_holm"] != r["p_holm"] else f"{r['p_holm']:.3g}")
    err_console.print(table)
    err_console.print(f"all observables: {result.path / 'stats.csv'}", highlight=False)


def _calibrate(name, cfg, base, vary, targets, match, population, generations, workers, scheduler, out,
               quiet) -> None:
    """``metacoop experiment calibrate``: ABC-SMC on the named parameter ranges."""
    from metacoop.experiments.calibrate import calibrate, read_targets
    from metacoop.experiments.runner import dask_client

    pairs = {}
    for item in match:
        row, sep, obs = item.partition("=")
        if not row.strip() or (sep and not obs.strip()):
            raise InputError([Problem("--match", item, "must look like ROW_ID or ROW_ID=observable")])
        pairs[row.strip()] = obs.strip()
    chosen = read_targets(targets, pairs)
    out_dir = out if out is not None else Path("metacoop-experiments") / (
        f"calibrate-{cfg.name}-seed{cfg.seed}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    ranges = _parse_vary(vary)
    if not quiet:
        err_console.print(f"calibrating {', '.join(ranges)} of [bold]{escape(cfg.name)}[/] to "
                          f"{', '.join(t.id for t in chosen)} -> {escape(str(out_dir))}", highlight=False)
    with dask_client(workers, scheduler, in_process_if_one=True) as client:
        with err_console.status(f"ABC-SMC: {generations} generations of {population} particles"):
            res = calibrate(name, base, ranges, chosen, out_dir, population, generations, cfg.seed, client)
    table = Table("parameter", "prior", "posterior mean", "sd", "5-95 %", box=None, header_style="bold")
    for key, p in res.summary["posterior"].items():
        lo, hi = res.summary["priors"][key]["uniform"]
        table.add_row(escape(key), f"U({lo:g}, {hi:g})", f"{p['mean']:.4g}", f"{p['sd']:.3g}",
                      f"[{p['q05']:.4g}, {p['q95']:.4g}]")
    err_console.print(table)
    out_console.print(f"Calibration written to {out_dir} (calibrated.toml, posterior.csv)", highlight=False,
                      markup=False, soft_wrap=True)


def _sensitivity_table(result) -> None:
    s = result.sensitivity
    shown = [o for o in (*TABLE_OBSERVABLES, "shed_cells", "primary_cells") if o in set(s["observable"])]
    table = Table("observable", "parameter", "index", "value", "95% CI half-width", box=None,
                  header_style="bold", title=f"sensitivity ({result.design.extra['method']}, SALib)",
                  title_justify="left", title_style="")
    for _, r in s[s["observable"].isin(shown)].iterrows():
        table.add_row(escape(str(r["observable"])), escape(str(r["parameter"])), str(r["index"]),
                      f"{r['value']:.4g}", "" if r["conf"] != r["conf"] else f"{r['conf']:.3g}")
    err_console.print(table)
    err_console.print(f"all observables: {result.path / 'sensitivity.csv'}", highlight=False)


@app.command()
def report(
    path: Annotated[Path, typer.Argument(help="a run directory or an experiment directory")],
    out: Annotated[Path | None, typer.Option("--out", help="the HTML file (default: report.html in "
                                                           "PATH)")] = None,
    figures: Annotated[Path | None, typer.Option("--figures", help="also write every figure as PNG (300 dpi) "
                                                                   "and SVG into this directory")] = None,
    animation: Annotated[bool, typer.Option("--animation/--no-animation",
                                            help="embed an animation of the primary site (runs)")] = True,
) -> None:
    """Write a self-contained HTML report of a run or an experiment (opens offline)."""
    from metacoop.report import write_report

    with friendly_errors():
        with err_console.status("drawing the report"):
            target = write_report(path, out, figures, animation)
    out_console.print(f"Report written to {target}", highlight=False, markup=False, soft_wrap=True)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run directory")],
    vtk: Annotated[Path, typer.Option("--vtk", help="directory for the VTK files (one .vtu per site and "
                                                    "snapshot, one .pvd time series per site)")],
) -> None:
    """Export a run's fields and cells per lattice point as VTK files for ParaView."""
    from metacoop.io.results import open_run
    from metacoop.io.vtk import export_vtk

    with friendly_errors():
        result = open_run(run_dir)
        try:
            files = export_vtk(result, vtk)
        except OSError as exc:
            raise OutputError(f"{vtk}: {exc.strerror or exc}") from None
    out_console.print(f"{len(files)} VTK files written to {vtk}", highlight=False, markup=False,
                      soft_wrap=True)


@app.command()
def validate(
    targets: Annotated[Path | None, typer.Option(
        "--targets", help="a targets CSV with the columns of the shipped one (default: the shipped "
                          "targets)")] = None,
    replicates: Annotated[int, typer.Option(
        "--replicates", "-n", help="replicates per condition (at least 8 in a scenario with a comparison "
        "row)")] = 4,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="validate only these target ids (repeatable; ID or ID1,ID2)",
        show_default=False)] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="LocalCluster worker processes "
                                                                  "(default: one per CPU)")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="address of an existing Dask "
                                                                      "scheduler")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="output directory (rerun the same command "
                                                           "to resume)")] = None,
    list_: Annotated[bool, typer.Option("--list", help="list the targets and observables; "
                                                       "run nothing")] = False,
    doc: Annotated[Path | None, typer.Option("--doc", help="with --list: write the targets as a Markdown "
                                                           "document")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or table")] = False,
) -> None:
    """Compare the model with published experiments (exit 1 if a target fails).

    Runs the scenarios each target needs, as ensembles, and prints target, source,
    published value, simulated value with 95% CI and pass/fail; writes validation.csv
    and validation.html.
    """
    from metacoop.experiments.runner import check_cluster
    from metacoop.validation.runner import MIN_COMPARISON_REPLICATES, replicates_for
    from metacoop.validation.runner import validate as run_validation
    from metacoop.validation.targets import load_targets

    with friendly_errors():
        check_cluster(workers, scheduler)
        chosen = load_targets(targets)
        if only:
            ids = [i.strip() for item in only for i in item.split(",") if i.strip()]
            known = {t.id for t in chosen}
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise InputError([Problem("--only", unknown,
                                          f"no such target; ids: {', '.join(sorted(known))}")])
            chosen = [t for t in chosen if t.id in ids]
        if list_:
            _targets_listing(chosen)
            if doc is not None:
                from metacoop.io.atomic import atomic_write
                from metacoop.validation.report import targets_markdown

                text = targets_markdown(chosen)
                try:
                    atomic_write(doc, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
                except OSError as exc:
                    raise OutputError(f"{doc}: {exc.strerror or exc}") from None
            return
        out_dir = out if out is not None else Path("metacoop-validation") / (
            f"validation-n{replicates}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
        if quiet:
            result = run_validation(chosen, out_dir, replicates, workers=workers, scheduler=scheduler)
        else:
            more = (f" ({MIN_COMPARISON_REPLICATES} where a row compares conditions)"
                    if replicates_for(chosen, replicates) > replicates else "")
            err_console.print(f"validating {len(chosen)} targets with {replicates} replicates per condition"
                              f"{more} -> {escape(str(out_dir))}", highlight=False)
            bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                           TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                           console=err_console)
            with bar:
                tasks: dict[str, int] = {}

                def report(scenario, p):
                    if scenario not in tasks:
                        tasks[scenario] = bar.add_task(escape(Path(scenario).stem), total=p.total)
                    bar.update(tasks[scenario], completed=p.done + p.failed)
                result = run_validation(chosen, out_dir, replicates, workers=workers, scheduler=scheduler,
                                        progress=report)
            _validation_table(result.table)
        for scenario, cond, rep, text in result.failures:
            err_console.print(f"[bold red]failed:[/] {escape(scenario)} {escape(cond)} replicate {rep}: "
                              f"{escape(text)}", highlight=False, soft_wrap=True)
    out_console.print(f"Validation written to {out_dir} (validation.csv, validation.html)", highlight=False,
                      markup=False, soft_wrap=True)
    if not result.passed:
        raise typer.Exit(1)


def _validation_table(df) -> None:
    colour = {"pass": "green", "fail": "bold red", "guidance": "yellow", "not modelled": "dim"}
    table = Table("target", "source", "published", "simulated", "95% CI", "rule", "status", box=None,
                  header_style="bold", title="validation: simulated mean over replicates (yes/no "
                  "observables: fraction of replicates) with bootstrap 95% CI", title_justify="left",
                  title_style="")
    for r in df.itertuples(index=False):
        ci = "" if r.ci_low != r.ci_low else f"[{r.ci_low:.3g}, {r.ci_high:.3g}]"
        sim = "" if r.simulated != r.simulated else f"{r.simulated:.4g}"
        table.add_row(escape(r.id), escape(r.source.split("[")[0].strip()[:40]), escape(r.published[:30]),
                      sim, ci, escape(r.rule), f"[{colour[r.status]}]{escape(r.status)}[/]")
    err_console.print(table)
    counts = df["status"].value_counts()
    statuses = ("pass", "fail", "guidance", "not modelled")
    err_console.print(", ".join(f"{counts.get(s, 0)} {s}" for s in statuses), highlight=False)


def _targets_listing(chosen) -> None:
    from metacoop.validation.observables import OBSERVABLES

    table = Table("target", "scenario", "overrides", "observable", "rule", "fitted", box=None,
                  header_style="bold")
    for t in chosen:
        over = "; ".join(f"{k}={v}" for k, v in t.overrides.items())
        rule = t.rule.describe(t.value if isinstance(t.value, float) else float("nan"), t.low, t.high) \
            if t.rule else "not modelled"
        table.add_row(escape(t.id), escape(t.scenario), escape(over), escape(t.observable), escape(rule),
                      escape(t.fitted.split(":")[0]))
    out_console.print(table)
    obs = Table("observable", "unit", "definition", box=None, header_style="bold")
    for o in OBSERVABLES.values():
        obs.add_row(escape(o.name), escape(o.unit), escape(o.definition))
    out_console.print(obs)


@app.command()
def query(
    exp_dir: Annotated[Path, typer.Argument(help="an experiment directory")],
    sql: Annotated[str, typer.Argument(help="SQL over the views 'replicates' and 'stats'")],
    csv: Annotated[bool, typer.Option("--csv", help="print CSV instead of a table")] = False,
) -> None:
    """Run SQL (DuckDB) over an experiment's replicates and statistics."""
    from metacoop.experiments.query import query as run_query

    with friendly_errors():
        df = run_query(exp_dir, sql)
    if csv:
        sys.stdout.write(df.to_csv(index=False))
        return
    table = Table(*map(str, df.columns), box=None, header_style="bold")
    for row in df.itertuples(index=False):
        table.add_row(*(escape(f"{v:.6g}" if isinstance(v, float) else str(v)) for v in row))
    out_console.print(table)


def default_out_dir(name: str, seed: int) -> Path:
    """A new directory under ``./metacoop-runs`` named after the scenario, seed and time."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("metacoop-runs") / f"{name}-seed{seed}-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


@app.command()
def run(
    scenario: ScenarioArg = None,
    out: Annotated[Path | None, typer.Option("--out", help="output directory (new or empty)")] = None,
    seed: SeedOpt = None,
    set_: SetOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or summary")] = False,
    check: Annotated[bool, typer.Option("--check",
                                        help="check cell accounting and fields every step")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the run's size and peak memory "
                                                           "estimate, then stop")] = False,
    force: Annotated[bool, typer.Option("--force", help="replace a completed run in --out")] = False,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="continue the interrupted run in this directory from its last checkpoint")] = None,
) -> None:
    """Run a scenario and write its results to a directory."""
    from metacoop.api import simulate
    from metacoop.config.loader import load_scenario
    from metacoop.io.rundir import RunDirectory

    with friendly_errors():
        if resume is not None:
            if scenario or set_ or seed is not None or out is not None or dry_run or force:
                raise InputError([Problem("--resume", str(resume), "takes the run's own scenario, seed and "
                                                                   "directory: give no other argument")])
            _resume(resume, quiet, check)
            return
        cfg = load_scenario(scenario, set_ or [], seed=seed)
        if dry_run:
            _dry_run(cfg)
            return
        out_dir = out if out is not None else default_out_dir(cfg.name, cfg.seed)
        RunDirectory(out_dir).check_new(force)  # (before the heading: an unusable --out is the only output)
        if not quiet:
            err_console.print(f"Running [bold]{escape(cfg.name)}[/] (seed {cfg.seed}, "
                              f"{cfg.duration_h:g} h, {cfg.n_steps} steps) -> {escape(str(out_dir))}",
                              highlight=False)
        with _resumable_when_interrupted(out_dir):
            if quiet:
                result = simulate(cfg, out_dir, check=check, force=force)
            else:
                with _progress_bar(cfg.n_steps) as (bar, task), _showing_compiles(bar, task):
                    def report(p):
                        bar.update(task, completed=p.step, sim=f"{p.time_h:8.1f} / {cfg.duration_h:g} h",
                                   cells=f"{p.cells:,}")
                    result = simulate(cfg, out_dir, progress=report, check=check, force=force)
        if not quiet:
            _summary(result)
        out_console.print(f"Results written to {out_dir}", highlight=False, soft_wrap=True, markup=False)


#: Exit status of a run stopped by Ctrl-C (SIGINT), as a shell reports a process it interrupted.
INTERRUPTED_EXIT = 130


@contextmanager
def _resumable_when_interrupted(run_dir: Path):
    """On Ctrl-C, say how to continue the run in ``run_dir`` and exit with :data:`INTERRUPTED_EXIT`."""
    from metacoop.io.rundir import RunDirectory

    try:
        yield
    except KeyboardInterrupt:
        if RunDirectory(run_dir).manifest_path.exists():
            err_console.print(f"[bold]interrupted.[/] Continue the run with: metacoop run --resume "
                              f"{escape(str(run_dir))}", highlight=False, soft_wrap=True)
        else:
            err_console.print("[bold]interrupted[/] before the run started.", highlight=False)
        raise typer.Exit(INTERRUPTED_EXIT) from None


def _resume(run_dir: Path, quiet: bool, check: bool) -> None:
    """``metacoop run --resume DIR``."""
    from metacoop.api import simulate
    from metacoop.io.checkpoint import latest
    from metacoop.io.rundir import RunDirectory

    manifest = RunDirectory(run_dir).resumable()  # (before the heading: nothing to resume is the only output)
    last = latest(run_dir)
    if not quiet:
        where = "its last checkpoint" if last is not None else "the start (no checkpoint was written)"
        err_console.print(f"Resuming {escape(str(run_dir))} from {where}", highlight=False)
    with _resumable_when_interrupted(run_dir):
        if quiet:
            result = simulate(None, run_dir, check=check, resume=True)
        else:
            raw = manifest.get("config", {})
            total = max(1, round(raw.get("duration_h", 1) / raw.get("dt_h", 1)))
            with _progress_bar(total) as (bar, task), _showing_compiles(bar, task):
                def report(p):
                    bar.update(task, completed=p.step, sim=f"{p.time_h:8.1f} h", cells=f"{p.cells:,}")
                result = simulate(None, run_dir, progress=report, check=check, resume=True)
    if not quiet:
        _summary(result)
    out_console.print(f"Results written to {run_dir}", highlight=False, soft_wrap=True, markup=False)


def _dry_run(cfg) -> None:
    """Print what a run of ``cfg`` would do and need, without running it."""
    from metacoop.config.checks import available_memory_bytes, estimate_memory_bytes

    need, have = estimate_memory_bytes(cfg), available_memory_bytes()
    sites = ", ".join(f"{name} {'x'.join(map(str, s.lattice.shape))}" for name, s in cfg.sites().items())
    out_console.print(
        f"{cfg.name}: {cfg.duration_h:g} h in {cfg.n_steps} steps of {cfg.dt_h:g} h; sites: {sites}; "
        f"{len(cfg.injections)} injection(s)\n"
        f"peak memory estimate {need / 2**30:.3g} GiB of {have / 2**30:.3g} GiB available",
        highlight=False, markup=False, soft_wrap=True)


@app.command()
def verify(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """Check a run directory against its manifest (status, sizes, SHA-256 of every file)."""
    from metacoop.io.rundir import RunDirectory

    with friendly_errors():
        problems = RunDirectory(run_dir).verify()
    if problems:
        for p in problems:
            err_console.print(f"[bold red]damaged:[/] {escape(p)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    out_console.print(f"{run_dir}: complete and intact", highlight=False, markup=False)


#: What a run's progress bar says it is doing, except while numba compiles (see :func:`_showing_compiles`).
_SIMULATING = "simulating"


@contextmanager
def _progress_bar(total: int):
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[sim]}"),
        TextColumn("{task.fields[cells]} cells"),
        TextColumn("wall"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    with bar:
        task = bar.add_task(_SIMULATING, total=total, sim="", cells="0")
        yield bar, task


@contextmanager
def _showing_compiles(bar: Progress, task):
    """While numba compiles a kernel, name it in the progress bar; afterwards say how many and how long.

    Only a first run after installing or updating metacoop compiles (see
    :mod:`metacoop.kernels.compiling`); its bar would otherwise stand still
    for seconds at a time.
    """
    from metacoop.kernels.compiling import watch_compiles

    with watch_compiles(lambda name: bar.update(task, description=f"compiling {name}"),
                        lambda: bar.update(task, description=_SIMULATING)) as watch:
        yield watch
    if watch.kernels:
        err_console.print(watch.summary(), highlight=False, soft_wrap=True)


def _summary(result) -> None:
    ts = result.timeseries
    last = ts[ts["time_h"] == ts["time_h"].max()]
    table = Table("compartment", "clone", "epithelial", "mesenchymal", box=None, header_style="bold")
    cells = last[last["quantity"] == "cells"]
    configured = {c.name for c in result.config.clones}
    for (comp, clone), grp in cells.groupby(["compartment", "clone"], sort=False, observed=True):
        by = dict(zip(grp["phenotype"], grp["value"], strict=True))
        if not any(by.values()) and clone not in configured:
            continue  # a clone created during the run with no cells here
        table.add_row(escape(str(comp)), escape(str(clone)), f"{by.get('epithelial', 0):,.0f}",
                      f"{by.get('mesenchymal', 0):,.0f}")
    err_console.print(table)
    mets = result.metastases
    if len(mets):
        table = Table("organ", "metastases", *STATUS_COLUMNS, "founded by clusters", box=None,
                      header_style="bold")
        for organ, grp in mets.groupby("organ", sort=True):
            counts = grp["status"].value_counts()
            table.add_row(escape(str(organ)), str(len(grp)), *(str(counts.get(s, 0)) for s in STATUS_COLUMNS),
                          str(int(grp["founded_by_cluster"].sum())))
        err_console.print(table)
        _clone_shares(result)
    ev = result.events["event"].value_counts() if len(result.events) else {}
    err_console.print(f"{ev.get('intravasation', 0)} intravasations, {ev.get('arrest', 0)} arrests; "
                      f"wall time {result.manifest['wall_s']:.1f} s", highlight=False)


def _clone_shares(result) -> None:
    """Print which clones the metastases hold: the class action's outcome."""
    from metacoop.observables import clone_shares

    shares = clone_shares(result)
    table = Table("clone", "metastases", "fraction", "cells", "share", "founded", "joined", box=None,
                  header_style="bold",
                  title="clones in metastases: metastases holding the clone (fraction of all), its "
                  "cells in them (share of all), metastases it founded or joined",
                  title_justify="left", title_style="")
    configured = {c.name for c in result.config.clones}
    for name, s in shares.items():
        if name not in configured and not s["metastases_with"]:
            continue
        table.add_row(escape(name), f"{s['metastases_with']:.0f}", f"{s['fraction_with']:.2f}",
                      f"{s['cells']:,.0f}", f"{s['share_of_cells']:.3f}", f"{s['founded']:.0f}",
                      f"{s['joined']:.0f}")
    err_console.print(table)


def main() -> None:
    """Entry point of the ``metacoop`` command."""
    # At exit, Python's last garbage collections walk every object the collector tracks. The libraries
    # loaded by `import metacoop` are frozen already (metacoop._gc); this also skips what numba creates
    # as it loads compiled kernels (0.09 s after a run). Every file the command writes is complete and
    # closed before it returns, and objects are still released by reference counting; only cyclic
    # garbage is left to the end of the process.
    atexit.register(gc.freeze)
    app()


if __name__ == "__main__":
    main()
