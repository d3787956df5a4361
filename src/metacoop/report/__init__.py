"""Reports: a self-contained HTML page per run or experiment, and its figures as PNG and SVG.

:func:`write_report` takes a run directory (it holds ``manifest.json``) or an
experiment directory (``experiment.json``) and writes one HTML file that
opens offline: images are embedded, styles inline, and there is no script.
Figures share one matplotlib style (:mod:`metacoop.report.style`); with
``figures_dir`` they are also written as PNG (300 dpi) and SVG.
"""

from __future__ import annotations

from pathlib import Path

from metacoop.errors import InputError, OutputError, Problem, path_argument
from metacoop.io.atomic import atomic_write
from metacoop.io.rundir import EXPERIMENT, MANIFEST, REPORT_PAGE


def write_report(
    path: str | Path,
    out: str | Path | None = None,
    figures_dir: str | Path | None = None,
    animation: bool = True,
) -> Path:
    """Write the report of a run or experiment directory; return the HTML file's path.

    Args:
        path: a run directory or an experiment directory.
        out: the HTML file (default: ``report.html`` inside ``path``).
        figures_dir: also write every figure there as PNG and SVG.
        animation: embed the animation of the primary site (runs only).
    """
    root = path_argument(path, "report")
    figures = path_argument(figures_dir, "figures_dir") if figures_dir is not None else None
    target = path_argument(out, "out") if out is not None else root / REPORT_PAGE
    run = (root / MANIFEST).exists()
    if not run and not (root / EXPERIMENT).exists():
        reason = ("does not exist" if not root.exists() else f"is neither a run directory ({MANIFEST}) "
                  f"nor an experiment directory ({EXPERIMENT})")
        raise InputError([Problem("report", str(root), reason)])
    _make_room(target, figures)
    if run:
        from metacoop.io.results import open_run
        from metacoop.report.run_report import run_report

        text = run_report(open_run(root), figures, animation)
    else:
        from metacoop.experiments.runner import open_experiment
        from metacoop.report.experiment_report import experiment_report

        text = experiment_report(open_experiment(root), figures)
    try:
        atomic_write(target, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    except OSError as exc:
        raise OutputError(f"{target}: {exc.strerror or exc}") from None
    return target


def _make_room(target: Path, figures: Path | None) -> None:
    """Create the report's folder and the figures' directory, or refuse them, before any figure is drawn."""
    if target.is_dir():
        raise InputError([Problem("--out", str(target), "is a directory; give the HTML file's path, "
                                  f"such as {target / REPORT_PAGE}")])
    for where, folder in (("--out", target.parent), ("--figures", figures)):
        if folder is None:
            continue
        if folder.exists() and not folder.is_dir():
            raise InputError([Problem(where, str(folder), "is a file, not a directory")])
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{folder}: cannot be created: {exc.strerror or exc}") from None
