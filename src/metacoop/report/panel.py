"""A figure of a report together with the numbers it shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure


@dataclass
class Panel:
    """One figure of a report.

    Attributes:
        name: identifier, used as the HTML element id (``fig-<name>``) and the file stem of the
            exported PNG and SVG.
        title: heading shown above the figure.
        caption: what the figure shows, in words.
        fig: the matplotlib figure.
        data: the numbers drawn, read back from the figure's artists after drawing (bar heights,
            line values), embedded in the page as JSON so that a test can compare what is drawn
            with the run's results.
    """

    name: str
    title: str
    caption: str
    fig: Figure
    data: dict[str, Any] = field(default_factory=dict)
