"""A self-contained HTML page: inline CSS, images as ``data:`` URIs, data as JSON blocks, no scripts.

The page opens offline: it references no other file and no network address.
Every figure is an ``<img>`` inside ``<figure id="fig-NAME">`` followed by a
``<script type="application/json" id="data-NAME">`` block holding the numbers
drawn (inert data, not code), so a test or a reader can check a figure
against the run's tables.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from metacoop.report.panel import Panel
from metacoop.report.style import close, png_data_uri

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; max-width: 60em; }
nav a { margin-right: 1em; } .bar { display: flex; height: 0.9em; min-width: 8em; border: 1px solid #999; }
.bar span { display: block; height: 100%; }
"""


def escape(value: Any) -> str:
    """Text for HTML (None and NaN print as empty)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value))


def number(value: Any, digits: int = 4) -> str:
    """A number for a table cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return escape(value)


def _json(data: Any) -> str:
    text = json.dumps(data, default=_plain, allow_nan=False)
    return text.replace("</", "<\\/")  # nothing in the data can close the script element


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"cannot put {type(value).__name__} in the page's data")


def figure_html(panel: Panel) -> str:
    """A panel as a figure with its caption and its data block; closes the matplotlib figure."""
    uri = png_data_uri(panel.fig)
    close(panel.fig)
    return (
        f'<section id="section-{escape(panel.name)}"><h2>{escape(panel.title)}</h2>'
        f'<figure id="fig-{escape(panel.name)}"><img src="{uri}" alt="{escape(panel.title)}">'
        f"<figcaption>{escape(panel.caption)}</figcaption></figure>"
        f'<script type="application/json" id="data-{escape(panel.name)}">{_json(_clean(panel.data))}'
        "</script></section>"
    )


def _clean(obj: Any) -> Any:
    """NaN to None, recursively, so the data is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def gif_html(name: str, title: str, caption: str, gif: bytes) -> str:
    """An embedded animated GIF."""
    uri = "data:image/gif;base64," + base64.b64encode(gif).decode("ascii")
    return (
        f'<section id="section-{name}"><h2>{escape(title)}</h2><figure id="fig-{name}">'
        f'<img src="{uri}" alt="{escape(title)}"><figcaption>{escape(caption)}</figcaption>'
        "</figure></section>"
    )


def table_html(
    df: pd.DataFrame, table_id: str, row_id: str | None = None, columns: Sequence[str] | None = None
) -> str:
    """A DataFrame as an HTML table (``row_id``: a column whose value becomes each row's ``data-id``)."""
    cols = list(columns or df.columns)
    out = [
        f'<table id="{escape(table_id)}"><thead><tr>'
        + "".join(f"<th>{escape(c)}</th>" for c in cols)
        + "</tr></thead><tbody>"
    ]
    for _, row in df.iterrows():
        attr = f' data-id="{escape(row[row_id])}"' if row_id else ""
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, str) and v.startswith("<"):  # pre-rendered HTML (e.g. a bar), ours only
                cells.append(f"<td>{v}</td>")
            elif isinstance(v, int | float) and not isinstance(v, bool):
                cells.append(f'<td class="num">{number(v)}</td>')
            else:
                cells.append(f"<td>{escape(v)}</td>")
        out.append(f"<tr{attr}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def page(title: str, intro: str, sections: Sequence[str], nav: Sequence[tuple[str, str]] = (),
         css: str = "") -> str:
    """The whole page (``css``: rules added to the common style)."""
    links = "".join(f'<a href="#{escape(anchor)}">{escape(label)}</a>' for anchor, label in nav)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(title)}</title>",
            f"<style>{CSS}{css}</style></head><body>",
            f"<h1>{escape(title)}</h1>",
            intro,
            f"<nav>{links}</nav>" if links else "",
            *sections,
            "</body></html>",
        ]
    )
