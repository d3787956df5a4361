"""The figures of a run's report, each a :class:`Panel` built from a :class:`~metacoop.io.results.Result`.

Every function draws one figure and returns it with the numbers it drew,
read back from the artists (bar heights, line values), so tests check the
figure's content against the run's tables rather than comparing images.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.ticker import MaxNLocator

from metacoop.io.results import Result, composition
from metacoop.observers.funnel import STAGES
from metacoop.report.panel import Panel
from metacoop.report.style import STAGE_COLOURS, clone_colour, close, new_figure, styled

#: Metastases shown in the composition figure (the largest; the table lists them all).
MAX_METASTASES_SHOWN = 40
#: Fields drawn in a tissue snapshot, at most (the ECM and MMP-2 first).
MAX_FIELDS_SHOWN = 5


def growth(result: Result) -> Panel:
    """Live cells per clone over time, one axes per site."""
    sites = list(result.fields.children) or ["primary"]
    names = result.clone_names()
    fig, axes = new_figure(3.2 * len(sites), 3.0, ncols=len(sites), squeeze=False, sharex=True)
    data: dict = {}
    for ax, site in zip(axes[0], sites, strict=True):
        table = result.cells(site).T.groupby(level="clone").sum().T  # phenotypes summed
        data[site] = {}
        for ci, name in enumerate(names):
            if name in table and table[name].max() > 0:
                (line,) = ax.plot(table.index, table[name], color=clone_colour(ci), label=name)
                data[site][name] = {"time_h": line.get_xdata().tolist(), "cells": line.get_ydata().tolist()}
        ax.set_title(site)
        ax.set_xlabel("time (h)")
        if data[site] and max(max(v["cells"]) for v in data[site].values()) > 100:
            ax.set_yscale("log")
    axes[0][0].set_ylabel("live cells")
    drawn = [(len(data[site]), i) for i, site in enumerate(sites) if data[site]]
    if drawn:  # on the axes with the most clones (an organ no cell has reached has none to list)
        axes[0][max(drawn)[1]].legend(loc="best")
    return Panel(
        "growth",
        "Growth per site and clone",
        "Live cells of each clone in each compartment over time (log scale above 100 cells).",
        fig,
        data,
    )


def funnel(result: Result) -> Panel:
    """The cascade funnel at the end of the run: cells at each stage, per organ (all clones)."""
    f = result.funnel
    fig, ax = new_figure(6.4, 3.2)
    data: dict = {"stages": list(STAGES), "organs": {}, "time_h": None}
    if len(f):
        last = f[f["time_h"] == f["time_h"].max()]
        data["time_h"] = float(last["time_h"].iloc[0])
        organs = list(dict.fromkeys(last["organ"]))
        width = 0.8 / max(1, len(organs))
        x = np.arange(len(STAGES))
        for k, organ in enumerate(organs):
            counts = last[last["organ"] == organ][list(STAGES)].sum()
            # shed is the same for every organ: cells the primary site shed, summed over clones
            bars = ax.bar(
                x + (k - (len(organs) - 1) / 2) * width,
                counts.to_numpy(float),
                width,
                label=organ,
                color=[STAGE_COLOURS[s] for s in STAGES],
                edgecolor="black",
                linewidth=0.5,
                hatch=["", "//", "..", "xx"][k % 4],
            )
            data["organs"][organ] = [float(b.get_height()) for b in bars]
        ax.set_xticks(x, list(STAGES), rotation=30, ha="right")
        ax.set_yscale("symlog", linthresh=1)
        ax.legend(title="organ (hatch)")
    ax.set_ylabel("cells")
    ax.set_title("cascade funnel" + (f" at {data['time_h']:g} h" if data["time_h"] is not None else ""))
    return Panel(
        "funnel",
        "The cascade funnel",
        "Cells at each step of the cascade at the end of the run, per organ and summed over clones: "
        "shed by the primary site, arrived at the organ alive, arrested, extravasated (cumulative), "
        "and now dormant, solitary, in micro- and in macrometastases.",
        fig,
        data,
    )


def circulation(result: Result) -> Panel:
    """Cells and CTCs in the blood over time, CTCs shed as singles or clusters, and the CTCs' fates."""
    ts = result.timeseries
    ev = result.events
    fig, (left, right) = new_figure(8.0, 3.2, ncols=2)
    data: dict = {}
    circ = ts[ts["compartment"] == "circulation"]
    for quantity, style in (("cells", "-"), ("ctcs", "--")):
        s = circ[circ["quantity"] == quantity].groupby("time_h")["value"].sum()
        if len(s):
            (line,) = left.plot(s.index, s.to_numpy(), style, color="black", label=f"{quantity} in the blood")
            data[quantity] = {"time_h": line.get_xdata().tolist(), "value": line.get_ydata().tolist()}
    intra = ev[ev["event"] == "intravasation"].sort_values("time_h")
    for label, sel, colour in (
        ("singles shed", intra["size"] == 1, "#0072B2"),
        ("clusters shed", intra["size"] >= 2, "#D55E00"),
    ):
        t = intra.loc[sel, "time_h"].to_numpy(float)
        if t.size:
            (line,) = left.step(t, np.arange(1, t.size + 1), where="post", color=colour, label=label)
            data[label.replace(" ", "_")] = int(line.get_ydata()[-1])
    left.set_xlabel("time (h)")
    left.set_ylabel("count")
    left.legend(loc="best")
    fates = {}
    deaths = ev[ev["event"] == "ctc_death"]
    for cause, n in deaths["cause"].fillna("death").value_counts().sort_index().items():
        fates[f"died: {cause}"] = int(n)
    fates["arrested"] = int((ev["event"] == "arrest").sum())
    fates["disaggregated"] = int((ev["event"] == "disaggregation").sum())
    bars = right.barh(list(fates), list(fates.values()), color="#999999", edgecolor="black", linewidth=0.5)
    data["fates"] = {k: float(b.get_width()) for k, b in zip(fates, bars, strict=True)}
    right.set_xlabel("CTCs")
    right.set_title("fates of CTCs")
    return Panel(
        "circulation",
        "The circulation",
        "Left: cells and CTC entities in the blood, and CTCs shed by the primary site as single cells "
        "or clusters (cumulative). Right: what became of CTCs (deaths by cause, arrests, "
        "disaggregations).",
        fig,
        data,
    )


def compositions(result: Result) -> dict[int, dict[str, int]]:
    """Cells per clone of every metastasis at the end of the run (met_id -> clone -> cells)."""
    return dict(zip((int(m) for m in result.metastases["met_id"]), result.compositions(), strict=True))


def metastasis_composition(result: Result) -> Panel:
    """Clone composition of the largest metastases at the end, as stacked bars."""
    comps = compositions(result)
    names = result.clone_names()
    mets = result.metastases.set_index("met_id") if len(result.metastases) else result.metastases
    alive = sorted(
        (m for m, c in comps.items() if sum(c.values()) > 0), key=lambda m: -sum(comps[m].values())
    )
    shown = alive[:MAX_METASTASES_SHOWN]
    fig, ax = new_figure(6.4, max(2.0, 0.18 * len(shown) + 1.0))
    data: dict = {"met_ids": shown, "cells": {}}
    left = np.zeros(len(shown))
    labels = [f"{m} ({mets.loc[m, 'organ']})" for m in shown]
    for ci, name in enumerate(names):
        widths = np.array([comps[m].get(name, 0) for m in shown], float)
        if widths.any():
            bars = ax.barh(np.arange(len(shown)), widths, left=left, color=clone_colour(ci), label=name)
            data["cells"][name] = [float(b.get_width()) for b in bars]
            left += widths
    ax.set_yticks(np.arange(len(shown)), labels)
    ax.invert_yaxis()
    if left.size and left.max() > 100:
        ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("cells at the end")
    if shown:
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no live metastasis", transform=ax.transAxes, ha="center")
    return Panel(
        "metastasis_composition",
        "Metastasis composition",
        f"Cells of each clone in the {len(shown)} largest of the {len(alive)} live metastases at the end "
        "(metastasis id and organ).",
        fig,
        data,
    )


def timeline(result: Result) -> Panel:
    """When each metastasis was founded and joined, coloured by the clones involved."""
    ev = result.events
    names = result.clone_names()
    fig, ax = new_figure(6.4, 3.2)
    data: dict = {"founded": [], "joined": []}
    def colour_of(clone) -> str:
        return clone_colour(names.index(clone)) if clone in names else "black"

    # one scatter per kind of mark (thousands of metastases after an injection)
    founded = result.metastases[result.metastases["founded_h"].notna()]
    if len(founded):
        clones = [list(c) for c in founded["founder_clones"]]
        dots = ax.scatter(founded["founded_h"], founded["met_id"], marker="o", s=22, zorder=3, linewidth=0.8,
                          color=[colour_of(c[0] if c else None) for c in clones],
                          edgecolor=["black" if len(set(c)) > 1 else "none" for c in clones])
        data["founded"] = dots.get_offsets().tolist()
    joins = ev[ev["event"] == "metastasis_joined"]
    if len(joins):
        first = [next(iter(composition(c)), None) for c in joins["composition"]]
        crosses = ax.scatter(joins["time_h"], joins["met_id"], marker="x", s=16, zorder=2,
                             color=[colour_of(c) for c in first])
        data["joined"] = crosses.get_offsets().tolist()
    for ci, name in enumerate(names[:8]):
        ax.scatter([], [], marker="o", color=clone_colour(ci), label=f"{name} founded")
    ax.scatter([], [], marker="x", color="black", label="joined")
    ax.set_xlabel("time (h)")
    ax.set_ylabel("metastasis id")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="best", ncols=2)
    ax.set_xlim(0, result.config.duration_h)
    return Panel(
        "timeline",
        "Founding and joining",
        "Each metastasis's founding (circle, coloured by the first founder's clone; a black edge "
        "marks founders of more than one clone) and every later joining cell (cross).",
        fig,
        data,
    )


def _slice(ds, name: str, t: int) -> np.ndarray:
    a = ds[name].isel(time=t).values if "time" in ds[name].dims else ds[name].values
    return a[a.shape[0] // 2] if a.ndim == 3 else a  # the middle section of a 3-D site


def cells_rgba(ds, t: int, n_clones: int) -> np.ndarray:
    """An RGBA image of the cells at snapshot ``t``.

    Each point has the colour of its main clone, more opaque where more cells stand and
    darker where mesenchymal cells are the majority.
    """
    epi = _slice(ds, "epithelial_cells", t).astype(float)
    mes = _slice(ds, "mesenchymal_cells", t).astype(float)
    main = _slice(ds, "main_clone", t) if "main_clone" in ds else np.where(epi + mes > 0, 0, -1)
    total = epi + mes
    rgba = np.zeros(total.shape + (4,))
    palette = np.array([mcolors.to_rgba(clone_colour(i)) for i in range(max(1, n_clones))])
    occupied = main >= 0
    rgba[occupied] = palette[main[occupied] % len(palette)]
    cap = max(1.0, float(total.max()))
    rgba[..., 3] = np.where(occupied, 0.35 + 0.65 * total / cap, 0.0)
    mostly_mes = occupied & (mes > epi)
    rgba[mostly_mes, :3] *= 0.55
    return rgba


def fields_panel(result: Result, site: str, t: int = -1) -> Panel:
    """A site's fields at snapshot ``t`` (the ECM and MMP-2 first), three to a row."""
    ds = result.fields[site].to_dataset()
    skip = {"epithelial_cells", "mesenchymal_cells", "main_clone", "vessel", "vessel_state"}
    fields = [v for v in ("ecm", "mmp2") if v in ds] + sorted(
        v for v in ds.data_vars if v not in skip and v not in ("ecm", "mmp2") and ds[v].dtype.kind == "f"
    )
    fields = fields[:MAX_FIELDS_SHOWN]
    ncols = min(3, max(1, len(fields)))
    nrows = max(1, -(-len(fields) // ncols))
    fig, axes = new_figure(
        2.9 * ncols, 2.6 * nrows, ncols=ncols, nrows=nrows, squeeze=False, layout="constrained"
    )
    time_h = float(ds["time"].values[t])
    dx = float(ds.attrs.get("spacing_um", 1.0))
    data: dict = {"time_h": time_h, "fields": {}}
    for k, ax in enumerate(axes.flat):
        if k >= len(fields):
            ax.set_axis_off()
            continue
        name = fields[k]
        a = _slice(ds, name, t)
        im = ax.imshow(
            a,
            origin="lower",
            cmap="viridis" if name != "ecm" else "Greys",
            extent=(0, a.shape[1] * dx / 1000, 0, a.shape[0] * dx / 1000),
        )
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax.set_title(name)
        ax.set_xlabel("mm")
        ax.grid(False)
        data["fields"][name] = {"min": float(np.min(a)), "max": float(np.max(a))}
    return Panel(
        f"fields_{site}",
        f"Fields: {site} at {time_h:g} h",
        f"The fields of {site} at {time_h:g} h (normalised concentrations; ECM density in grey)."
        + (" The middle section of a 3-D site." if ds["epithelial_cells"].ndim == 4 else ""),
        fig,
        data,
    )


def tissue(result: Result, site: str, t: int = -1) -> Panel:
    """A site's cells at snapshot ``t``, coloured by clone over the ECM, with its vessel points."""
    ds = result.fields[site].to_dataset()
    fig, ax = new_figure(4.6, 4.2, layout="constrained")
    time_h = float(ds["time"].values[t])
    dx = float(ds.attrs.get("spacing_um", 1.0))
    extent = (0, ds.sizes["x"] * dx / 1000, 0, ds.sizes["y"] * dx / 1000)
    if "ecm" in ds:
        ax.imshow(_slice(ds, "ecm", t), origin="lower", cmap="Greys", alpha=0.35, extent=extent)
    names = result.clone_names()
    ax.imshow(cells_rgba(ds, t, len(names)), origin="lower", extent=extent, interpolation="nearest")
    vessels = _slice(ds, "vessel_state", t) if "vessel_state" in ds else _slice(ds, "vessel", t)
    for code, marker, colour, label in (
        (1, "s", "#0072B2", "normal vessel"),
        (2, "X", "#D55E00", "ruptured vessel"),
        (3, "^", "#009E73", "lymphatic"),
    ):
        yy, xx = np.nonzero(vessels == code)
        if yy.size:
            ax.scatter(
                (xx + 0.5) * dx / 1000,
                (yy + 0.5) * dx / 1000,
                s=14,
                marker=marker,
                facecolor="none",
                edgecolor=colour,
                linewidth=0.8,
                label=label,
            )
    epi, mes = _slice(ds, "epithelial_cells", t), _slice(ds, "mesenchymal_cells", t)
    data = {
        "time_h": time_h,
        "cells": {"epithelial": int(epi.sum()), "mesenchymal": int(mes.sum())},
        "vessels": {"normal": int((vessels == 1).sum()), "ruptured": int((vessels == 2).sum())},
    }
    for ci, name in enumerate(names[:8]):
        ax.scatter([], [], marker="s", color=clone_colour(ci), label=name)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    ax.set_xlabel("mm")
    ax.set_ylabel("mm")
    ax.grid(False)
    return Panel(
        f"tissue_{site}",
        f"Tissue: {site} at {time_h:g} h",
        f"Cells of {site} at {time_h:g} h coloured by the clone with most cells at each point (darker "
        "where mesenchymal cells are the majority; fainter where fewer cells stand) over the ECM (grey), "
        "with vessel points marked."
        + (" The middle section of a 3-D site." if ds["epithelial_cells"].ndim == 4 else ""),
        fig,
        data,
    )


def animation_gif(result: Result, site: str = "primary", fps: int = 3) -> bytes:
    """An animated GIF of a site over its snapshots: cells coloured by clone over the ECM."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    ds = result.fields[site].to_dataset()
    names = result.clone_names()
    dx = float(ds.attrs.get("spacing_um", 1.0))
    extent = (0, ds.sizes["x"] * dx / 1000, 0, ds.sizes["y"] * dx / 1000)
    with styled():
        fig, ax = new_figure(4.0, 4.0)
        ecm = (
            ax.imshow(
                _slice(ds, "ecm", 0),
                origin="lower",
                cmap="Greys",
                alpha=0.35,
                extent=extent,
                vmin=0,
                vmax=max(1e-12, float(ds["ecm"].max())),
            )
            if "ecm" in ds
            else None
        )
        cells = ax.imshow(
            cells_rgba(ds, 0, len(names)), origin="lower", extent=extent, interpolation="nearest"
        )
        title = ax.set_title("")
        ax.set_xlabel("mm")
        ax.grid(False)

        def frame(i):
            if ecm is not None:
                ecm.set_data(_slice(ds, "ecm", i))
            cells.set_data(cells_rgba(ds, i, len(names)))
            title.set_text(f"{site} at {float(ds['time'].values[i]):g} h")
            return (cells,)

        anim = FuncAnimation(fig, frame, frames=ds.sizes["time"], blit=False)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "a.gif"
            anim.save(path, writer=PillowWriter(fps=fps), dpi=80)
            gif = path.read_bytes()
    close(fig)
    return gif


def run_panels(result: Result) -> list[Panel]:
    """Every figure of a run's report, in page order."""
    panels = [growth(result)]
    if result.config.organs:
        panels += [funnel(result), circulation(result), metastasis_composition(result), timeline(result)]
    elif len(result.events) and (result.events["event"] == "intravasation").any():
        panels.append(circulation(result))
    for site in result.fields.children:
        panels += [tissue(result, site), fields_panel(result, site)]
    return panels
