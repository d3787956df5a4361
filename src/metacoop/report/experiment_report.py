"""The HTML report of an experiment: per-condition summaries with confidence intervals, and figures by kind.

* every kind: a table of the main observables per condition (mean and
  bootstrap 95% CI, effect against the reference and Holm-corrected p where
  there is one) and the cascade funnel per condition;
* ``ablation`` (and any kind with a reference): a forest plot of metastases per condition;
* ``mixing``: response curves against the fraction of the first clone;
* ``waves``: seeding efficiency per wave;
* ``sensitivity``: the sensitivity indices per parameter.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from metacoop.experiments.runner import ExperimentResult
from metacoop.report.page import escape, figure_html, page, table_html
from metacoop.report.panel import Panel
from metacoop.report.style import STAGE_COLOURS, clone_colour, new_figure, save

#: Observables of the summary table, when the experiment has them.
SUMMARY = ("metastases", "burden_cells", "first_metastasis_h", "shed_cells", "primary_cells")
FUNNEL = (
    "funnel.arrived_per_shed",
    "funnel.arrested_per_arrived",
    "funnel.extravasated_per_arrested",
    "funnel.growing_per_extravasated",
)


def _stat(stats: pd.DataFrame, observable: str) -> pd.DataFrame:
    return stats[stats["observable"] == observable].set_index("condition")


def summary_table(exp: ExperimentResult) -> pd.DataFrame:
    """Mean [95% CI] of the main observables, one row per condition (in design order)."""
    stats = exp.stats
    present = [o for o in SUMMARY if o in set(stats["observable"])]
    present += sorted(o for o in set(stats["observable"]) if o.startswith("clone_fraction_with."))
    rows = []
    for c in exp.design.conditions:
        row: dict = {"condition": c.name, "replicates": 0}
        for o in present:
            s = stats[(stats["condition"] == c.name) & (stats["observable"] == o)]
            if len(s):
                r = s.iloc[0]
                row["replicates"] = max(row["replicates"], int(r["n"]))
                text = f"{r['mean']:.4g} [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"
                if r["p_holm"] == r["p_holm"]:
                    text += f"; {r['effect']:+.3g}, p = {r['p_holm']:.2g}"
                row[o] = text
        rows.append(row)
    return pd.DataFrame(rows, columns=["condition", "replicates", *present])


def forest(exp: ExperimentResult, observable: str = "metastases") -> Panel:
    """Mean and 95% CI of ``observable`` per condition, with the reference's mean as a line."""
    s = _stat(exp.stats, observable)
    names = [c.name for c in exp.design.conditions if c.name in s.index]
    fig, ax = new_figure(6.4, max(2.0, 0.32 * len(names) + 1.0), layout="constrained")
    y = np.arange(len(names))
    mean = s.loc[names, "mean"].to_numpy(float)
    lo, hi = s.loc[names, "ci_low"].to_numpy(float), s.loc[names, "ci_high"].to_numpy(float)
    bars = ax.errorbar(
        mean, y, xerr=[np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)], fmt="o", color="black", capsize=3
    )
    ref = exp.design.reference
    if ref in s.index:
        ax.axvline(float(s.loc[ref, "mean"]), color="#0072B2", linestyle="--", label=f"{ref} (reference)")
        ax.legend(loc="best")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(f"{observable} (mean, 95% CI)")
    drawn = bars.lines[0].get_xdata()
    data = {
        "conditions": names,
        "mean": [float(v) for v in drawn],
        "ci_low": lo.tolist(),
        "ci_high": hi.tolist(),
    }
    return Panel(
        f"forest_{observable.replace('.', '_')}",
        f"{observable} per condition",
        f"Mean {observable} per condition with its bootstrap 95% confidence interval; the dashed line is "
        "the reference condition's mean.",
        fig,
        data,
    )


def response(exp: ExperimentResult) -> Panel:
    """Mixing: metastases and clone fractions against the fraction of the first clone."""
    conds = exp.design.conditions
    key = next(iter(conds[0].values)) if conds and conds[0].values else None
    x = np.array([float(c.values[key]) for c in conds]) if key else np.arange(len(conds), dtype=float)
    fig, (left, right) = new_figure(8.0, 3.2, ncols=2, layout="constrained")
    data: dict = {"x": x.tolist(), "x_name": key}
    for ax, observables in (
        (left, ["metastases"]),
        (right, sorted(o for o in set(exp.stats["observable"]) if o.startswith("clone_fraction_with."))),
    ):
        for k, o in enumerate(observables):
            s = _stat(exp.stats, o).reindex([c.name for c in conds])
            colour = "black" if o == "metastases" else clone_colour(k)
            (line,) = ax.plot(x, s["mean"], "o-", color=colour, label=o.split(".")[-1])
            ax.fill_between(x, s["ci_low"], s["ci_high"], color=colour, alpha=0.2)
            data[o] = [float(v) for v in line.get_ydata()]
        ax.set_xlabel(key or "condition")
    left.set_ylabel("live metastases")
    right.set_ylabel("fraction of metastases holding the clone")
    right.legend(loc="best")
    return Panel(
        "response",
        "Response to the clone mixture",
        "Mean (line) and bootstrap 95% CI (band) against the initial fraction of the first clone.",
        fig,
        data,
    )


def waves(exp: ExperimentResult) -> Panel:
    """Seeding efficiency (metastases founded per cell shed) of each shedding wave, per condition."""
    eff = sorted(o for o in set(exp.stats["observable"]) if o.endswith(".seeding_efficiency"))
    conds = [c.name for c in exp.design.conditions]
    fig, ax = new_figure(6.4, 3.2, layout="constrained")
    width = 0.8 / max(1, len(conds))
    data: dict = {"waves": eff, "conditions": {}}
    for k, c in enumerate(conds):
        s = exp.stats[(exp.stats["condition"] == c) & (exp.stats["observable"].isin(eff))].set_index(
            "observable"
        )
        vals = s.reindex(eff)["mean"].to_numpy(float)
        bars = ax.bar(
            np.arange(len(eff)) + k * width, np.nan_to_num(vals), width, label=c, color=clone_colour(k)
        )
        data["conditions"][c] = [float(b.get_height()) for b in bars]
    ax.set_xticks(np.arange(len(eff)) + width * (len(conds) - 1) / 2, [o.split(".")[1] for o in eff])
    ax.set_xlabel("wave")
    ax.set_ylabel("metastases founded per cell shed")
    ax.legend(loc="best")
    return Panel(
        "waves",
        "Seeding efficiency per wave",
        "Mean over replicates of the metastases founded by cells of each shedding wave per cell shed in it.",
        fig,
        data,
    )


def funnel_per_condition(exp: ExperimentResult) -> Panel:
    """The cascade's step efficiencies per condition (means over replicates)."""
    conds = [c.name for c in exp.design.conditions]
    present = [o for o in FUNNEL if o in set(exp.stats["observable"])]
    fig, ax = new_figure(6.4, 3.2, layout="constrained")
    width = 0.8 / max(1, len(present))
    data: dict = {"conditions": conds, "steps": {}}
    colours = list(STAGE_COLOURS.values())[1:]
    for k, o in enumerate(present):
        s = _stat(exp.stats, o).reindex(conds)
        bars = ax.bar(
            np.arange(len(conds)) + k * width,
            np.nan_to_num(s["mean"].to_numpy(float)),
            width,
            label=o.split(".")[1].replace("_per_", " / "),
            color=colours[k % len(colours)],
        )
        data["steps"][o] = [float(b.get_height()) for b in bars]
    ax.set_xticks(np.arange(len(conds)) + width * (len(present) - 1) / 2, conds, rotation=30, ha="right")
    ax.set_ylabel("fraction (mean over replicates)")
    ax.legend(loc="best", fontsize=7)
    return Panel(
        "funnel_conditions",
        "The funnel per condition",
        "Each step of the cascade as a fraction of the "
        "step before, per condition: arrived per cell shed, arrested per arrived, extravasated per "
        "arrested, growing (micro- and macrometastases) per extravasated.",
        fig,
        data,
    )


def sensitivity(exp: ExperimentResult) -> Panel:
    """The sensitivity indices (Morris mu* or Sobol ST) of each parameter for the main observables."""
    sens = exp.sensitivity
    index = "mu_star" if (sens["index"] == "mu_star").any() else "ST"
    observables = [o for o in ("metastases", "burden_cells", "shed_cells") if o in set(sens["observable"])]
    observables = observables or list(dict.fromkeys(sens["observable"]))[:3]
    fig, axes = new_figure(
        3.2 * len(observables), 3.0, ncols=len(observables), squeeze=False, layout="constrained"
    )
    data: dict = {"index": index, "observables": {}}
    for ax, o in zip(axes[0], observables, strict=True):
        s = sens[(sens["observable"] == o) & (sens["index"] == index)]
        bars = ax.barh(s["parameter"].str.split(".").str[-1], s["value"].to_numpy(float), color="#0072B2")
        data["observables"][o] = dict(zip(s["parameter"], [float(b.get_width()) for b in bars], strict=True))
        ax.set_title(o)
        ax.set_xlabel(index)
    return Panel(
        "sensitivity",
        "Sensitivity indices",
        f"{index} of each varied parameter for each observable "
        "(Morris mu*: mean absolute elementary effect; Sobol ST: total-order index).",
        fig,
        data,
    )


def experiment_panels(exp: ExperimentResult) -> list[Panel]:
    """Every figure of an experiment's report, in page order."""
    if not len(exp.replicates):
        return []
    kind = exp.design.kind
    observables = set(exp.stats["observable"])
    panels = []
    if kind == "sensitivity" and exp.sensitivity is not None and len(exp.sensitivity):
        panels.append(sensitivity(exp))
    elif kind == "mixing":
        panels.append(response(exp))
    elif "metastases" in observables:
        panels.append(forest(exp))
    if kind == "waves":
        panels.append(waves(exp))
    if any(o in observables for o in FUNNEL):
        panels.append(funnel_per_condition(exp))
    return panels


def experiment_report(exp: ExperimentResult, figures_dir=None) -> str:
    """The HTML page of an experiment (figures also written to ``figures_dir`` as PNG and SVG if given)."""
    d = exp.design
    panels = experiment_panels(exp)
    if figures_dir is not None:
        for p in panels:
            save(p.fig, figures_dir, p.name)
    conditions = pd.DataFrame(
        [
            {
                "condition": c.name,
                **{k: str(v) for k, v in c.values.items()},
                "overrides": "; ".join(f"{k}={v}" for k, v in c.overrides.items()),
            }
            for c in d.conditions
        ]
    )
    sections = [
        '<section id="section-design"><h2>Design</h2>'
        f"<p>Kind <b>{escape(d.kind)}</b> on scenario <b>{escape(d.scenario)}</b>: {len(d.conditions)} "
        f"conditions x {d.replicates} replicates, root seed {d.seed}"
        + (f", reference {escape(d.reference)}" if d.reference else "")
        + ". "
        f"{len(exp.replicates.groupby(['condition', 'replicate'])) if len(exp.replicates) else 0} "
        "replicates finished.</p>" + table_html(conditions, "conditions", row_id="condition") + "</section>",
        '<section id="section-summary"><h2>Summary</h2><p>Mean [bootstrap 95% CI] over replicates'
        + (
            "; then the difference from the reference and the Holm-corrected Mann-Whitney p"
            if d.reference
            else ""
        )
        + ".</p>"
        + table_html(summary_table(exp), "summary", row_id="condition")
        + "</section>",
    ]
    nav = [("section-design", "design"), ("section-summary", "summary")]
    for p in panels:
        sections.append(figure_html(p))
        nav.append((f"section-{p.name}", p.name.replace("_", " ")))
    intro = f"<p>Experiment directory {escape(str(exp.path))}.</p>"
    return page(f"metacoop experiment: {d.kind} of {d.scenario}", intro, sections, nav)
