"""One matplotlib style for every figure metacoop draws, and how figures are saved and embedded.

Figures are drawn with the non-interactive Agg backend (no display needed),
in the :data:`STYLE` rc settings, with clone colours from :data:`CLONE_COLOURS`
(the same clone has the same colour in every figure of a report) and stage
colours from :data:`STAGE_COLOURS`. :func:`save` writes a figure as PNG at
publication resolution (:data:`PNG_DPI`) and as SVG; :func:`png_data_uri`
gives the PNG a web page embeds.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)
from matplotlib.figure import Figure  # noqa: E402

from metacoop.io.atomic import atomic_write  # noqa: E402
from metacoop.observers.funnel import STAGES  # noqa: E402

#: Resolution of exported PNG files, dots per inch (journals ask for 300 or more).
PNG_DPI = 300
#: Resolution of the PNG embedded in the HTML page.
WEB_DPI = 110

STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": WEB_DPI,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "savefig.bbox": "tight",
    "svg.fonttype": "none",  # text stays text in SVG, editable in a vector editor
}

#: Colour-blind-safe colours (Okabe & Ito 2008) for clones, in clone order.
CLONE_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
#: Colours of the cascade stages (funnel), from shed to macrometastasis.
STAGE_COLOURS = dict(zip(STAGES, ("#999999", "#56B4E9", "#0072B2", "#009E73", "#F0E442", "#E69F00", "#D55E00",
                                   "#CC79A7"), strict=True))


def clone_colour(index: int) -> str:
    """The colour of clone ``index`` (cycling past eight clones)."""
    return CLONE_COLOURS[index % len(CLONE_COLOURS)]


@contextmanager
def styled() -> Iterator[None]:
    """Draw in metacoop's style."""
    with plt.rc_context(STYLE):
        yield


def new_figure(width: float = 6.4, height: float = 3.6, **kw) -> tuple[Figure, object]:
    """A figure and its axes in metacoop's style (``plt.subplots`` arguments in ``kw``)."""
    with styled():
        fig, ax = plt.subplots(figsize=(width, height), **kw)
    return fig, ax


def png_bytes(fig: Figure, dpi: int = WEB_DPI) -> bytes:
    """The figure as PNG."""
    buf = io.BytesIO()
    with styled():
        fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def png_data_uri(fig: Figure) -> str:
    """The figure as a ``data:`` URI for an ``<img>`` (the page needs no other file)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(fig)).decode("ascii")


def save(fig: Figure, directory: Path, name: str) -> list[Path]:
    """Write ``name.png`` (at :data:`PNG_DPI`) and ``name.svg`` into ``directory``, atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        path = directory / f"{name}.{ext}"
        with styled():
            atomic_write(path, lambda tmp, e=ext: fig.savefig(tmp, format=e, dpi=PNG_DPI))
        paths.append(path)
    return paths


def close(fig: Figure) -> None:
    """Release a figure's memory."""
    plt.close(fig)
