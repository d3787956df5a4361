"""The HTML report of one run: provenance, growth, funnel, circulation, metastases, tissue, animation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metacoop.io.results import Result
from metacoop.report import run_figures
from metacoop.report.page import escape, figure_html, gif_html, page, table_html
from metacoop.report.panel import Panel
from metacoop.report.style import clone_colour, save

#: Rows of the metastasis table, at most (the largest metastases when there are more).
MAX_TABLE_ROWS = 2000


def provenance(result: Result) -> pd.DataFrame:
    """What ran, where and how long: one row per item."""
    m = result.manifest
    env = m.get("environment", {})
    items = [
        ("scenario", m.get("scenario", result.config.name)),
        ("description", result.config.description),
        ("seed", m.get("seed", result.config.seed)),
        ("status", m.get("status")),
        ("started", m.get("started")),
        ("ended", m.get("ended")),
        ("wall time (s)", m.get("wall_s")),
        ("steps", m.get("n_steps")),
        ("simulated time (h)", m.get("time_h")),
        ("time step (h)", result.config.dt_h),
        ("live cells at the end", m.get("cells_final")),
        ("run directory", str(result.path) if result.path else ""),
    ]
    items += [(f"version of {k}", v) for k, v in env.items()]
    return pd.DataFrame(
        {"item": [k for k, _ in items], "value": ["" if v is None else str(v) for _, v in items]}
    )


def composition_bar(comp: dict[str, int], names: list[str]) -> str:
    """An HTML bar of a metastasis's clone composition (widths proportional to cells)."""
    total = sum(comp.values())
    if not total:
        return '<div class="bar"></div>'
    spans = "".join(
        f'<span title="{escape(n)}: {comp[n]}" style="width:{100 * comp[n] / total:.2f}%;'
        f'background:{clone_colour(names.index(n)) if n in names else "#000"}"></span>'
        for n in comp
        if comp[n] > 0
    )
    return f'<div class="bar">{spans}</div>'


def metastasis_table(result: Result) -> pd.DataFrame:
    """One row per metastasis the run founded or opened, with its composition as text and as a bar."""
    mets = result.metastases
    names = result.clone_names()
    rows = []
    for row, comp in zip(mets.itertuples(index=False), result.compositions(), strict=True):
        rows.append(
            {
                "metastasis": int(row.met_id),
                "organ": row.organ,
                "founded (h)": row.founded_h,
                "by a cluster": "yes" if row.founded_by_cluster else "no",
                "founders": int(row.n_founders),
                "founder clones": ", ".join(dict.fromkeys(row.founder_clones)),
                "joiners": int(row.n_joiners),
                "status": row.status,
                "cells": int(row.size),
                "largest": int(row.max_size),
                "composition": ", ".join(f"{k} {v}" for k, v in comp.items() if v),
                "clones": composition_bar(comp, names),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "metastasis",
            "organ",
            "founded (h)",
            "by a cluster",
            "founders",
            "founder clones",
            "joiners",
            "status",
            "cells",
            "largest",
            "composition",
            "clones",
        ],
    )


def run_report(result: Result, figures_dir: Path | None = None, animation: bool = True) -> str:
    """The HTML page of a run (figures also written to ``figures_dir`` as PNG and SVG if given)."""
    panels: list[Panel] = run_figures.run_panels(result)
    if figures_dir is not None:
        for p in panels:
            save(p.fig, figures_dir, p.name)
    by_name = {p.name: p for p in panels}
    sections = [
        '<section id="section-provenance"><h2>Provenance</h2>'
        + table_html(provenance(result), "provenance")
        + "</section>"
    ]
    nav = [("section-provenance", "provenance")]
    order = ["growth", "funnel", "circulation"]
    for name in order:
        if name in by_name:
            sections.append(figure_html(by_name.pop(name)))
            nav.append((f"section-{name}", name))
    if result.config.organs:
        table = metastasis_table(result)
        shown = table
        note = ""
        if len(table) > MAX_TABLE_ROWS:  # e.g. an injection of 20,000 cells, each a metastasis of one
            shown = table.sort_values(["cells", "metastasis"], ascending=[False, True]).head(MAX_TABLE_ROWS)
            shown = shown.sort_values("metastasis")
            note = (f" The table lists the {MAX_TABLE_ROWS:,} largest; every one is in metastases.parquet "
                    "and metacoop.io.results.open_run(...).metastases.")
        alive = int((table["cells"] > 0).sum()) if len(table) else 0
        sections.append(
            '<section id="section-metastases"><h2>Metastases</h2>'
            f"<p>{len(table):,} metastases opened (founders arrested), {alive:,} holding live cells at the "
            f"end.{note}</p>"
            + table_html(shown, "metastases", row_id="metastasis")
            + "</section>"
        )
        nav.append(("section-metastases", "metastases"))
    for name in list(by_name):
        sections.append(figure_html(by_name.pop(name)))
        nav.append((f"section-{name}", name.replace("_", " ")))
    if (
        animation
        and "primary" in result.fields.children
        and result.fields["primary"].sizes.get("time", 0) > 1
    ):
        gif = run_figures.animation_gif(result)
        if figures_dir is not None:
            figures_dir.mkdir(parents=True, exist_ok=True)
            (figures_dir / "animation_primary.gif").write_bytes(gif)
        sections.append(
            gif_html(
                "animation",
                "The primary site over time",
                "The primary site at every snapshot: cells coloured by clone over the ECM.",
                gif,
            )
        )
        nav.append(("section-animation", "animation"))
    intro = (
        f"<p>{escape(result.config.description)}</p><p>Scenario <b>{escape(result.config.name)}</b>, seed "
        f"{escape(result.config.seed)}, {escape(result.config.duration_h)} h simulated.</p>"
    )
    return page(f"metacoop run: {result.config.name}", intro, sections, nav)
