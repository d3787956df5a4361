"""Reports and exports of a real run and a real experiment, checked by their data, not their pixels.

Every figure returns the numbers it drew, read back from the matplotlib
artists; these tests compare them with the run's own tables. The page itself
is checked in a real browser in ``tests/browser``.
"""

import json
import re
import subprocess
import sys
import warnings

import matplotlib.pyplot as plt
import meshio
import numpy as np
import pytest
from PIL import Image

import metacoop
from helpers.scenarios import SHORT_CLASSACTION
from metacoop.io.results import open_run
from metacoop.io.vtk import export_vtk
from metacoop.observers.recorder import main_clone
from metacoop.report import run_figures, write_report
from metacoop.report.experiment_report import experiment_panels
from metacoop.report.run_report import metastasis_table

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _close_figures():
    # Each figure function opens a pyplot figure; close them after every test (matplotlib warns from 20 open).
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    metacoop.simulate(metacoop.load_scenario("classaction", SHORT_CLASSACTION), out)
    return out


@pytest.fixture(scope="module")
def result(run_dir):
    return open_run(run_dir)


def test_main_clone_is_the_clone_with_most_cells_at_each_point():
    pos = np.array([0, 0, 0, 1, 1, 3, 3, 3, 3])
    clone = np.array([2, 1, 2, 0, 1, 1, 1, 0, 0])  # point 3: a tie 2-2, the lower index wins
    assert main_clone(pos, clone, 3, 5).tolist() == [2, 0, -1, 0, -1]
    assert main_clone(np.zeros(0, np.int64), np.zeros(0, np.int64), 3, 2).tolist() == [-1, -1]


def test_the_run_has_metastases_to_report(result):
    assert len(result.metastases) >= 1 and set(result.config.organs) == {"lung", "liver"}


def test_the_funnel_figure_draws_the_run_s_counts(result):
    panel = run_figures.funnel(result)
    f = result.funnel[result.funnel["time_h"] == result.funnel["time_h"].max()]
    for organ, heights in panel.data["organs"].items():
        expected = f[f["organ"] == organ][list(panel.data["stages"])].sum().to_numpy(float)
        assert heights == expected.tolist()
    assert set(panel.data["organs"]) == {"lung", "liver"}


def test_the_growth_figure_draws_the_cells_of_each_clone(result):
    panel = run_figures.growth(result)
    ts = result.timeseries
    for site, clones in panel.data.items():
        for clone, line in clones.items():
            sel = ts[(ts["compartment"] == site) & (ts["quantity"] == "cells") & (ts["clone"] == clone)]
            expected = sel.groupby("time_h")["value"].sum()
            assert line["time_h"] == expected.index.tolist() and line["cells"] == expected.tolist()
    assert set(panel.data["primary"]) == {"metastatic", "nonmetastatic"}


def test_the_growth_legend_goes_where_cells_were_drawn_when_an_organ_has_none():
    # franssen2019's organs hold no cell in its first hours: the legend goes on the primary's axes
    # (matplotlib warns about a legend with nothing to list, as it did on the last, empty, organ's).
    small = {"duration_h": 1.0, "organs.site1.lattice.shape": [31, 31],
             "organs.site2.lattice.shape": [31, 31]}
    res = metacoop.simulate(metacoop.load_scenario("franssen2019", small))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        panel = run_figures.growth(res)
    assert set(panel.data) == {"primary", "site1", "site2"}
    assert panel.data["site1"] == panel.data["site2"] == {}
    primary, *organs = panel.fig.axes
    assert primary.get_legend() is not None and all(ax.get_legend() is None for ax in organs)


def test_the_composition_figure_and_table_hold_every_metastasis(result):
    comps = run_figures.compositions(result)
    panel = run_figures.metastasis_composition(result)
    for k, met in enumerate(panel.data["met_ids"]):
        drawn = {c: v[k] for c, v in panel.data["cells"].items() if v[k] > 0}
        assert drawn == {c: float(n) for c, n in comps[met].items() if n > 0}
    table = metastasis_table(result)
    assert table["metastasis"].tolist() == result.metastases["met_id"].tolist()
    assert table["cells"].tolist() == result.metastases["size"].tolist()


def test_the_tissue_figure_counts_the_snapshot_s_cells_and_vessels(result):
    panel = run_figures.tissue(result, "primary")
    ds = result.fields["primary"]
    assert panel.data["cells"]["epithelial"] == int(ds["epithelial_cells"].isel(time=-1).sum())
    assert panel.data["vessels"]["normal"] == int((ds["vessel_state"].isel(time=-1) == 1).sum())
    # the main clone map marks exactly the occupied points
    occupied = (ds["epithelial_cells"] + ds["mesenchymal_cells"]).isel(time=-1).values > 0
    assert np.array_equal(ds["main_clone"].isel(time=-1).values >= 0, occupied)


def test_the_run_report_is_one_offline_file_with_figures_and_data(run_dir, result, tmp_path):
    html = write_report(run_dir, tmp_path / "r.html", tmp_path / "figs").read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(https?:)?//', html), "the page must not fetch anything"
    for name in ("growth", "funnel", "circulation", "metastasis_composition", "timeline", "tissue_primary",
                 "tissue_lung", "tissue_liver", "fields_primary", "animation"):
        assert f'id="fig-{name}"' in html, name
    block = re.search(r'<script type="application/json" id="data-funnel">(.*?)</script>', html)
    data = json.loads(block.group(1))
    assert data == json.loads(json.dumps(run_figures.funnel(result).data))
    assert html.count("<tr data-id=") >= len(result.metastases)
    # exported figures: PNG at 300 dpi and SVG, same names; the animation as GIF
    pngs = sorted(p.stem for p in (tmp_path / "figs").glob("*.png"))
    assert pngs == sorted(p.stem for p in (tmp_path / "figs").glob("*.svg")) and "funnel" in pngs
    with Image.open(tmp_path / "figs" / "funnel.png") as im:
        assert round(im.info["dpi"][0]) == 300
    with Image.open(tmp_path / "figs" / "animation_primary.gif") as gif:
        assert gif.n_frames == result.fields["primary"].sizes["time"]


def test_the_vtk_export_holds_every_snapshot_value(result, tmp_path):
    files = export_vtk(result, tmp_path / "vtk")
    ds = result.fields["lung"]
    assert len([f for f in files if f.name.startswith("lung_t")]) == ds.sizes["time"]
    mesh = meshio.read(tmp_path / "vtk" / "lung_t0002.vtu")
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    assert mesh.points.shape == (ny * nx, 3) and mesh.cells[0].type == "quad"
    for name in ("ecm", "epithelial_cells", "main_clone", "vessel_state"):
        assert np.array_equal(mesh.point_data[name].reshape(ny, nx), ds[name].isel(time=2).values), name
    # point (y, x) sits at (x dx, y dx)
    assert mesh.points[nx + 2].tolist() == [2 * 10.0, 10.0, 0.0]
    pvd = (tmp_path / "vtk" / "lung.pvd").read_text()
    assert re.findall(r'timestep="([0-9.]+)"', pvd) == [f"{t:g}" for t in ds["time"].values]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "metacoop", *map(str, args)], capture_output=True, text=True)


def test_report_and_export_refuse_bad_directories_with_a_message(run_dir, tmp_path):
    proc = cli("report", tmp_path / "missing")
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = cli("report", tmp_path / "empty")
    assert proc.returncode == 2 and "neither a run directory" in proc.stderr
    # a damaged result file: copy the run and truncate its metastasis table
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "metastases.parquet").write_bytes(b"PAR1 truncated")
    for args in (("report", broken), ("export", broken, "--vtk", tmp_path / "v")):
        proc = cli(*args)
        assert proc.returncode == 2 and "cannot be read" in proc.stderr, args
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("arg", ["path", "out", "figures_dir"])
def test_write_report_refuses_a_path_argument_that_is_not_a_path(run_dir, arg):
    """BUG: ``write_report(3)`` raised TypeError from pathlib."""
    from metacoop.report import write_report

    with pytest.raises(metacoop.InputError) as ei:
        write_report(**{"path": run_dir, arg: 3})
    (problem,) = ei.value.problems
    assert problem.value == 3 and "path" in problem.allowed


def test_report_outputs_that_cannot_be_written_are_refused_before_drawing(run_dir, tmp_path):
    """BUG: ``metacoop report RUN --figures FILE`` ended in a FileExistsError traceback, after drawing
    every figure; ``--out DIR`` failed only at the end ("Is a directory")."""
    (tmp_path / "a_file").write_text("x")
    for args, where in (([run_dir, "--figures", tmp_path / "a_file"], "--figures = "),
                        ([run_dir, "--out", tmp_path], "--out = "),
                        ([run_dir, "--out", tmp_path / "a_file" / "r.html"], "--out = ")):
        proc = cli("report", *args)
        assert proc.returncode == 2 and where in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = cli("report", tmp_path / "missing")
    assert proc.returncode == 2 and not (tmp_path / "missing").exists(), "nothing created for a missing run"


def test_an_experiment_report_draws_its_statistics(tmp_path):
    from metacoop.experiments import build_design, run_experiment

    small = {"duration_h": 6.0, "primary.lattice.shape": [41, 41], "primary.initial_tumour.cells": 120,
             "primary.vessels.normal": 40, "primary.vessels.min_distance_um": 40.0}
    cfg = metacoop.load_scenario("invasion2d", small)
    vary = {"clones.tumour.emt_rate_per_h": [0.0, 0.2]}
    design = build_design("sweep", "invasion2d", cfg, 3, 5, vary, small)
    exp = run_experiment(design, tmp_path / "exp", workers=1)
    panels = {p.name: p for p in experiment_panels(exp)}
    forest = panels["forest_metastases"]
    stats = exp.stats[exp.stats["observable"] == "metastases"].set_index("condition")
    assert forest.data["mean"] == stats.loc[forest.data["conditions"], "mean"].tolist()
    html = write_report(tmp_path / "exp").read_text(encoding="utf-8")
    for c in design.conditions:
        assert f'data-id="{c.name}"' in html
    assert 'id="fig-forest_metastases"' in html


def synthetic_experiment(kind, conditions, values):
    """An ExperimentResult of made-up replicate values, through the real statistics."""
    from pathlib import Path

    from metacoop.experiments.design import Design
    from metacoop.experiments.runner import ExperimentResult
    from metacoop.experiments.stats import summarize

    rng = np.random.default_rng(3)
    rows = []
    for c in conditions:
        for obs, mean in values[c.name].items():
            for i, v in enumerate(rng.normal(mean, 0.1 * abs(mean) + 0.01, size=4)):
                rows.append({"condition": c.name, "replicate": i, "seed": i, "observable": obs, "value": v})
    import pandas as pd

    reps = pd.DataFrame(rows)
    design = Design(kind=kind, scenario="classaction", conditions=tuple(conditions), replicates=4, seed=1)
    stats = summarize(reps, order=[c.name for c in conditions])
    return ExperimentResult(Path("."), design, reps, stats, [])


def test_mixing_waves_and_funnel_figures_draw_the_condition_means():
    from metacoop.experiments.design import Condition
    from metacoop.report import experiment_report as er

    conds = [Condition(f"metastatic_fraction-{f:g}", {}, {"metastatic_fraction": f}) for f in (0.0, 0.5, 1.0)]
    values = {c.name: {"metastases": 10 * f, "clone_fraction_with.metastatic": f,
                       "clone_fraction_with.nonmetastatic": 1 - f, "funnel.arrived_per_shed": 0.1 + f / 10,
                       "wave.0.seeding_efficiency": 0.01 * (1 + f), "wave.1.seeding_efficiency": 0.02}
              for c, f in zip(conds, (0.0, 0.5, 1.0), strict=True)}
    exp = synthetic_experiment("mixing", conds, values)
    mean = exp.stats.set_index(["condition", "observable"])["mean"]
    panels = {p.name: p for p in er.experiment_panels(exp)}
    response = panels["response"]
    assert response.data["x"] == [0.0, 0.5, 1.0]
    assert response.data["metastases"] == [mean[(c.name, "metastases")] for c in conds]
    funnel = panels["funnel_conditions"].data["steps"]["funnel.arrived_per_shed"]
    assert funnel == [mean[(c.name, "funnel.arrived_per_shed")] for c in conds]
    waves = er.waves(exp)
    assert waves.data["waves"] == ["wave.0.seeding_efficiency", "wave.1.seeding_efficiency"]
    for c in conds:
        assert waves.data["conditions"][c.name] == [mean[(c.name, w)] for w in waves.data["waves"]]


def test_a_long_metastasis_table_lists_the_largest(run_dir, result, tmp_path, monkeypatch):
    # The fixture's injection opens dozens of metastases: the page lists the largest
    # MAX_TABLE_ROWS (here 1) and says where the rest are.
    from metacoop.report import run_report

    assert len(result.metastases) >= 2  # the fixture run must have more metastases than the table lists
    monkeypatch.setattr(run_report, "MAX_TABLE_ROWS", 1)
    html = write_report(run_dir, tmp_path / "r.html", animation=False).read_text(encoding="utf-8")
    rows = re.findall(r'<tr data-id="(\d+)">', html.split('id="metastases"')[1].split("</table>")[0])
    largest = result.metastases.sort_values(["size", "met_id"], ascending=[False, True])["met_id"].iloc[0]
    assert rows == [str(largest)]
    assert "lists the 1 largest" in html


def test_the_sensitivity_figure_draws_the_indices():
    import pandas as pd

    from metacoop.experiments.design import Condition
    from metacoop.report import experiment_report as er

    conds = [Condition(f"sample-{i}", {}, {}) for i in range(3)]
    values = {c.name: {"metastases": 1.0 + i} for i, c in enumerate(conds)}
    exp = synthetic_experiment("sensitivity", conds, values)
    exp.sensitivity = pd.DataFrame({
        "observable": ["metastases"] * 4, "parameter": ["a.b", "a.b", "c.d", "c.d"],
        "index": ["mu_star", "sigma", "mu_star", "sigma"], "value": [2.0, 0.5, 0.25, 0.1],
        "conf": [0.1, 0.1, 0.1, 0.1]})
    (panel,) = er.experiment_panels(exp)
    assert panel.name == "sensitivity" and panel.data["index"] == "mu_star"
    assert panel.data["observables"]["metastases"] == {"a.b": 2.0, "c.d": 0.25}


def test_the_timeline_marks_every_founding_and_joining(result):
    panel = run_figures.timeline(result)
    founded = result.metastases[result.metastases["founded_h"].notna()]
    expected = zip(founded["founded_h"], founded["met_id"], strict=True)
    assert panel.data["founded"] == [[float(t), float(m)] for t, m in expected]
    joins = result.events[result.events["event"] == "metastasis_joined"]
    assert len(panel.data["joined"]) == len(joins)
