"""The validation table as a self-contained HTML page (no scripts, no network, inline CSS)."""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from metacoop._version import __version__
from metacoop.io.atomic import atomic_write

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; vertical-align: top; text-align: left; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.pass td.status { background: #d9f2d9; }
tr.fail td.status { background: #f6d0d0; font-weight: bold; }
tr.guidance td.status { background: #fff3c4; }
tr.not-modelled td.status { background: #e8e8e8; }
details { font-size: 0.85em; color: #444; }
"""


def _fmt(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def render(table: pd.DataFrame, replicates: int) -> str:
    """The HTML page of a validation table."""
    counts = table["status"].value_counts()
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("pass", "fail", "guidance", "not modelled"))
    head = ["target", "status", "quantity", "source", "published", "unit", "simulated", "95% CI", "n", "rule",
            "scenario (condition)", "fitted"]
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           "<title>metacoop validation</title>", f"<style>{_STYLE}</style></head><body>",
           "<h1>metacoop validation</h1>",
           f"<p>metacoop {html.escape(__version__)}, {replicates} replicates per condition, "
           f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Targets: {html.escape(summary)}.</p>",
           "<p>The simulated value is the mean over replicates (for yes/no observables, the fraction of "
           "replicates where it holds) with a bootstrap 95% confidence interval; the mean decides. "
           "<em>fitted</em> says whether the scenario's parameters were chosen to reproduce the row "
           "(a consistency check) or not (an independent check).</p>",
           "<table id=\"targets\"><thead><tr>" + "".join(f"<th>{h}</th>" for h in head)
           + "</tr></thead><tbody>"]
    for r in table.itertuples(index=False):
        ci = f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if not math.isnan(r.ci_low) else ""
        where = r.scenario + (f" ({r.condition})" if r.condition and r.condition != "reference" else "")
        detail = r.detail if r.status != "not modelled" else ""
        cells = [f"<td>{html.escape(r.id)}</td>", f"<td class=\"status\">{html.escape(r.status)}</td>",
                 f"<td>{html.escape(r.quantity)}<details><summary>translation</summary>"
                 f"{html.escape(r.translation)}</details></td>",
                 f"<td>{html.escape(r.source)}</td>", f"<td>{html.escape(r.published)}</td>",
                 f"<td>{html.escape(r.unit)}</td>", f"<td class=\"num\">{_fmt(r.simulated)}</td>",
                 f"<td class=\"num\">{ci}</td>", f"<td class=\"num\">{r.n}</td>",
                 f"<td>{html.escape(r.rule)}<br><small>{html.escape(detail)}</small></td>",
                 f"<td>{html.escape(where)}</td>", f"<td>{html.escape(r.fitted)}</td>"]
        css = r.status.replace(" ", "-")
        out.append(f"<tr class=\"{css}\" data-id=\"{html.escape(r.id)}\">" + "".join(cells) + "</tr>")
    out += ["</tbody></table>", "</body></html>"]
    return "\n".join(out)


def write_report(table: pd.DataFrame, path: Path, replicates: int) -> None:
    """Write the HTML page atomically."""
    text = render(table, replicates)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
