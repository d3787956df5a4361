"""Engine behaviour: state storage, schedule, switches, extra fields, intravasation."""

import re

import numpy as np
import pytest

import metacoop
from metacoop.core.field import Field, make_solver
from metacoop.core.state import CellArrays
from metacoop.core.vessels import NORMAL_VESSEL, RUPTURED_VESSEL

SMALL = {
    "duration_h": 6.0,
    "primary.lattice.shape": [41, 41],
    "primary.initial_tumour.cells": 120,
    "primary.vessels.min_distance_um": 60.0,
    "output.snapshot_every_h": 3.0,
}


def small(**extra):
    return metacoop.load_scenario("invasion2d", overrides={**SMALL, **extra})


def test_cell_arrays_remove_fills_holes_from_the_end_and_reserve_keeps_data():
    c = CellArrays(0)
    c.append({"uid": np.arange(10), "pos": np.arange(10) * 3})
    c.reserve(1000)
    assert c.capacity >= 1010
    assert c.live("pos").tolist() == [3 * i for i in range(10)]
    c.remove(np.isin(np.arange(10), [0, 4, 9]))
    # 7 cells left: the holes 0 and 4 take the survivors 7 and 8; slot 9 was removed itself
    assert c.live("uid").tolist() == [7, 1, 2, 3, 8, 5, 6]
    assert c.live("pos").tolist() == [21, 3, 6, 9, 24, 15, 18]


def test_state_is_at_most_64_bytes_per_cell():
    assert CellArrays.bytes_per_cell() <= 64


def test_cell_arrays_take_copies_the_given_slots_in_order_and_capacity_follows_growth():
    c = CellArrays(4)
    assert c.capacity == 4
    c.append({"uid": np.arange(10, 16), "pos": np.arange(6, dtype=np.int32)})
    assert c.capacity >= 6 and c.capacity == c.uid.shape[0] == c.flags.shape[0]
    out = c.take(np.array([4, 1]))
    np.testing.assert_array_equal(out["uid"], [14, 11])
    np.testing.assert_array_equal(out["pos"], [4, 1])
    out["uid"][:] = -1  # a copy: the cells keep their ids
    np.testing.assert_array_equal(c.live("uid"), np.arange(10, 16))
    assert all(len(v) == 0 for v in c.take([]).values())  # (an empty list of slots)


def test_schedule_lists_enabled_mechanisms_in_phase_order():
    sim = metacoop.Simulation(small(**{"mechanisms.death.enabled": False}))
    names = [s.name for s in sim.plan]
    assert "death" not in names
    assert names.index("fields") < names.index("movement") < names.index("resolve")
    assert names.index("resolve") < names.index("intravasation")
    text = sim.describe_schedule()
    assert re.search(r"\bmovement\b", text) and not re.search(r"\bdeath\b", text)


def _run(cfg):
    sim = metacoop.Simulation(cfg)
    sim.run()
    return sim.recorder.timeseries(), sim.events


def test_zero_rate_mechanism_is_bit_identical_to_switched_off():
    """Common random numbers: a mechanism that never fires leaves every other draw unchanged."""
    zero = {"clones.tumour.death_rate_per_h.epithelial": 0.0,
            "clones.tumour.death_rate_per_h.mesenchymal": 0.0}
    ts_on, ev_on = _run(small(**zero))
    ts_off, ev_off = _run(small(**zero, **{"mechanisms.death.enabled": False}))
    assert ts_on.equals(ts_off)
    assert ev_on == ev_off


def test_switching_a_mechanism_off_changes_the_run():
    ts_on, _ = _run(small())
    ts_off, _ = _run(small(**{"mechanisms.movement.enabled": False}))
    assert not ts_on.equals(ts_off)


def test_a_new_field_is_configuration_plus_a_producer():
    cfg = small(**{
        "primary.fields.tgf": {"initial": 0.0, "diffusion_um2_per_h": 100.0, "decay_per_h": 0.0},
        "mechanisms.mmp2_secretion.field": "tgf",
        "mechanisms.intravasation.enabled": False,
    })
    sim = metacoop.Simulation(cfg)
    sim.run()
    tgf = sim.primary.fields["tgf"].values
    assert tgf.sum() > 0
    assert np.count_nonzero(tgf) > np.count_nonzero(sim.primary.occ)  # it diffused beyond the cells
    assert sim.primary.fields["mmp2"].values.sum() == 0


def _cluster_sim(phen: int, vessel: int):
    cfg = small(**{
        "primary.initial_tumour.cells": 40,
        "primary.vessels.normal": 0,
        "primary.vessels.ruptured": 0,
        "mechanisms.movement.enabled": False,
        "mechanisms.proliferation.enabled": False,
        "mechanisms.phenotype_switch.enabled": False,
        "mechanisms.death.enabled": False,
        "mechanisms.circulation_death.enabled": False,
    })
    sim = metacoop.Simulation(cfg)
    site = sim.primary
    site.set_phenotype(np.arange(site.cells.n), phen)
    full = np.flatnonzero(site.occ == site.capacity)
    point = int(full[0])
    site.vessel[point] = vessel
    site.refresh_vessels()
    return sim, point


@pytest.mark.parametrize("phen", [0, 1])
def test_cells_entering_from_one_point_form_one_ctc(phen):
    sim, point = _cluster_sim(phen, RUPTURED_VESSEL)
    members = sorted(sim.primary.cells.live("uid")[sim.primary.cells.live("pos") == point].tolist())
    sim.step()
    assert len(sim.events) == 1
    ev = sim.events[0]
    assert ev["size"] == sim.primary.capacity == len(members)
    assert sorted(ev["cell_uids"]) == members
    assert (ev["n_epithelial"], ev["n_mesenchymal"]) == ((4, 0) if phen == 0 else (0, 4))
    assert ev["vessel"] == "ruptured"
    assert sim.circulation.cells.n == 4
    assert sim.primary.occ[point] == 0
    sim.check_accounting()


def test_epithelial_cells_do_not_enter_normal_vessels_but_mesenchymal_do():
    sim, _ = _cluster_sim(0, NORMAL_VESSEL)
    sim.step()
    assert sim.events == []
    sim, _ = _cluster_sim(1, NORMAL_VESSEL)
    sim.step()
    assert len(sim.events) == 1 and sim.events[0]["vessel"] == "normal"


def test_the_same_engine_runs_in_3d():
    cfg = metacoop.load_scenario("invasion3d", overrides={
        "duration_h": 2.0, "primary.lattice.shape": [21, 21, 21], "primary.vessels.normal": 10,
        "primary.vessels.ruptured": 5, "primary.vessels.min_distance_um": 50.0})
    sim = metacoop.Simulation(cfg, check=True)
    sim.run()
    assert sim.primary.lattice.ndim == 3
    z = sim.primary.lattice.coords(sim.primary.cells.live("pos"))[2]
    assert len(np.unique(z)) > 1


def test_the_mesenchymal_counts_follow_a_switch_and_a_broken_count_stops_the_run():
    sim = metacoop.Simulation(small(), check=True)
    for _ in range(3):
        sim.step()
    site = sim.primary
    c = site.cells
    epithelial = np.flatnonzero(c.live("phen") == 0)[:5]
    point = int(c.pos[epithelial[0]])
    before = int(site.mes_occ[point])
    site.set_phenotype(epithelial, 1)
    assert site.mes_occ[point] > before
    sim.check_accounting()  # (the counts followed the switch)
    site.mes_occ[point] += 1
    broken = rf"mesenchymal occupancy broken in primary at t = 0.3 h: point {point} records"
    with pytest.raises(metacoop.SimulationError, match=broken):
        sim.check_accounting()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1e-3])
def test_a_bad_field_value_stops_the_run_naming_field_site_point_and_time(bad):
    sim = metacoop.Simulation(small(), check=True)
    sim.step()
    x, y = 7, 11
    sim.primary.fields["mmp2"].values[0, y, x] = bad
    sim.primary.fields["mmp2"].zero = False
    with pytest.raises(metacoop.SimulationError) as err:
        sim.check_fields()
    text = str(err.value)
    assert "mmp2" in text and "primary" in text and f"x={x}, y={y}" in text and "t = 0.1 h" in text


def test_dry_run_prints_the_size_and_memory_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "metacoop", "run", "franssen2019", "--dry-run", "--out",
                           str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "27600 steps" in proc.stdout and "peak memory estimate" in proc.stdout
    assert not out.exists()


def test_cell_compaction_fills_holes_from_the_end_in_every_column():
    # CellArrays.remove runs one in-place kernel over the columns: with m cells left, the survivors
    # at slots m and above move, in order, into the holes below m, lowest first; every other cell
    # keeps its slot. Checked against that rule written with NumPy, for masks that remove many,
    # none, only the last, only the first, and everything.
    from metacoop.core.state import CELL_COLUMNS, CellArrays

    rng = np.random.default_rng(4)
    n = 1000
    c = CellArrays(0)
    c.append({name: rng.integers(0, 100, n).astype(dtype) for name, (dtype, _) in CELL_COLUMNS.items()})
    c.uid[:n] = np.arange(n)  # distinct ids, so the test follows each cell
    masks = (rng.random(n) < 0.1, rng.random(n) < 0.6, np.zeros(n, bool), np.r_[np.zeros(n - 1, bool), True],
             np.r_[True, np.zeros(n - 1, bool)])
    for mask in (*masks, np.ones(n, bool)):
        m = np.resize(mask, c.n)
        left = c.n - int(m.sum())
        order = np.arange(c.n)
        holes = np.flatnonzero(m[:left])
        order[holes] = np.flatnonzero(~m[left:]) + left
        expected = {name: getattr(c, name)[order[:left]].copy() for name in CELL_COLUMNS}
        c.remove(m)
        assert c.n == left
        for name in CELL_COLUMNS:
            assert np.array_equal(getattr(c, name)[: c.n], expected[name]), name
    assert c.n == 0


@pytest.mark.parametrize("diffusion", [0.0, 100.0])
def test_the_solver_applies_deltas_written_through_either_accessor(diffusion):
    # The solver skips the deltas while it knows they are 0 (Field.pending); any write goes
    # through Field.deltas or Field.flat_deltas, which marks them pending again.
    dims = (1, 5, 6)
    f = Field("u", np.ones(dims), np.zeros(dims))
    solver = make_solver(f.values, diffusion, 0.0, 1.0, 10.0, 2, substeps=1)
    solver.step(f)
    assert not f.pending and f.values.sum() == pytest.approx(30.0)
    f.flat_deltas[7] += 0.5
    assert f.pending
    solver.step(f)
    assert f.values.sum() == pytest.approx(30.5) and not f.deltas.any()
    f.deltas[0, 4, 5] = 0.25
    solver.step(f)
    assert f.values.sum() == pytest.approx(30.75) and not f.pending
    if diffusion == 0.0:
        assert f.flat[7] == 1.5 and f.values[0, 4, 5] == 1.25


def test_the_flat_view_is_kept_while_the_values_are_the_same_array_and_follows_a_swap():
    # Field.flat keeps its view while Field.values is the same array; a sub-step writes into the
    # scratch buffer, which then becomes the values: the flat view must follow, or writes through it
    # (the ECM's degradation, the movement's reads) would go to the old buffer.
    dims = (1, 5, 6)
    f = Field("u", np.zeros(dims), np.zeros(dims))
    solver = make_solver(f.values, 100.0, 0.0, 1.0, 10.0, 2, substeps=1)
    flat = f.flat
    assert f.flat is flat
    flat[7] = 1.0
    assert f.values[0, 1, 1] == 1.0
    before = f.values
    solver.step(f)
    assert f.values is not before  # (one sub-step: the buffers traded places)
    assert f.flat is not flat and np.shares_memory(f.flat, f.values)
    f.flat[3] = 2.0
    assert f.values[0, 0, 3] == 2.0 and f.flat.sum() == pytest.approx(f.values.sum())


def test_sources_written_at_listed_points_are_applied_as_a_whole_lattice_pass_would():
    # Sources written through sources_at_points are added at those points only (repeats included);
    # the values must be those of the pass over every point, and the deltas all 0 after. A write
    # through flat_deltas in the same step (anywhere) must make the solver take the whole pass.
    from metacoop.kernels.fields import add_inplace

    dims = (1, 40, 50)
    rng = np.random.default_rng(4)
    start = rng.random(dims)
    points = rng.integers(0, 2000, 60)  # (repeats: several cells at one point)
    amounts = rng.random(60) * 1e-3
    for also_anywhere in (False, True):
        f = Field("m", start.copy(), np.zeros(dims))
        solver = make_solver(f.values, 0.0, 0.0, 1.0, 10.0, 2, substeps=1)
        solver.step(f)  # (applies the constructor's pending zeros)
        deltas = f.sources_at_points(points.copy())
        np.add.at(deltas, points, amounts)
        assert f.pending and f.sources_at is not None
        want_values, want_deltas = start.copy(), np.zeros(dims)
        np.add.at(want_deltas.reshape(-1), points, amounts)
        if also_anywhere:
            other = min(set(range(2000)) - set(points.tolist()))  # (not a listed point)
            f.flat_deltas[other] += 0.5
            want_deltas.reshape(-1)[other] += 0.5
            assert f.sources_at is None
        add_inplace(want_values, want_deltas)
        solver.step(f)
        assert f.values.tobytes() == want_values.tobytes()
        assert not f.pending and f.sources_at is None and not f._deltas.any()


@pytest.mark.parametrize("cells", [40, 400])
def test_ecm_degradation_leaves_its_rate_arrays_zero(cells):
    # The cells' rates are scattered into a per-site array that must be all 0 again after the
    # step: cleared at the cells' points (few cells) or over the lattice (many).
    sim = metacoop.Simulation(small(**{"primary.initial_tumour.cells": cells}))
    mech = next(m for m in sim.mechanisms if m.name == "ecm_degradation")
    assert mech.cells_active
    for _ in range(3):
        sim.step()
        assert all(not r.any() for r in mech.rates.values())
    assert (sim.primary.fields["ecm"].flat < 1.0).any()


def test_large_sites_are_sorted_by_lattice_point_every_so_many_steps(monkeypatch):
    # The engine puts a site's cells in lattice order every SORT_EVERY_STEPS steps once it holds
    # SORT_MIN_CELLS cells (here lowered to 100 and 8, so the small scenario qualifies), and the
    # run goes on with its accounting intact.
    from metacoop.core import simulation
    from metacoop.core.state import CELL_COLUMNS

    monkeypatch.setattr(simulation, "SORT_MIN_CELLS", 100)
    monkeypatch.setattr(simulation, "SORT_EVERY_STEPS", 8)
    sim = metacoop.Simulation(small())
    site = sim.sites[0]
    c = site.cells
    for _ in range(40):  # until moves and divisions have put cells out of point order since a sort
        sim.step()
        if sim.step_index % 8 == 1 and np.any(np.diff(c.live("pos")) < 0):
            break
    assert np.any(np.diff(c.live("pos")) < 0)
    while sim.step_index % 8:
        sim.step()
    sim.step()  # the step whose RESOLVE phase sorts
    assert c.n >= 100
    assert np.all(np.diff(c.live("pos")) >= 0)
    sim.check_accounting()
    sim.step()

    # Sorting moves whole cells, every column with its cell, ties in their order.
    c.permute(np.random.default_rng(3).permutation(c.n))
    rows = {name: c.live(name).copy() for name in CELL_COLUMNS}
    site.sort_cells()
    back = np.argsort(rows["pos"], kind="stable")
    for name in CELL_COLUMNS:
        np.testing.assert_array_equal(c.live(name), rows[name][back], name)
    uid = c.live("uid").copy()
    site.sort_cells()  # sorted cells stay as they are
    np.testing.assert_array_equal(c.live("uid"), uid)


def test_simulate_loads_a_scenario_given_by_file_or_table_as_load_scenario_does(tmp_path):
    """BUG: ``metacoop.simulate("invasion2d")`` raised AttributeError ('str' has no attribute 'name')."""
    loaded = small(duration_h=1.0)
    path = tmp_path / "small.toml"
    path.write_text(metacoop.to_toml(loaded))
    by_config = metacoop.simulate(loaded)
    for given in (loaded.model_dump(), path, str(path)):
        again = metacoop.simulate(given)
        assert again.manifest["cells_final"] == by_config.manifest["cells_final"]
        assert again.timeseries.equals(by_config.timeseries)


@pytest.mark.parametrize("bad", [None, 3, ["invasion2d"]])
def test_a_config_that_is_not_one_is_an_input_error(bad):
    with pytest.raises(metacoop.InputError) as ei:
        metacoop.simulate(bad)
    (problem,) = ei.value.problems
    assert problem.path == "config" and problem.value == bad and "load_scenario" in problem.allowed
    with pytest.raises(metacoop.InputError, match="SimulationConfig"):
        metacoop.Simulation(bad)


def test_arguments_of_the_wrong_kind_are_input_errors_naming_the_argument(tmp_path):
    """BUG: each raised TypeError or AttributeError, or (cells) gave an empty table for a misspelt name."""
    cfg = small(duration_h=1.0)
    res = metacoop.simulate(cfg)
    cases = [
        (lambda: metacoop.simulate(cfg, out_dir=3), "run directory", 3),
        (lambda: metacoop.open_run(3), "run directory", 3),
        (lambda: metacoop.simulate(cfg, progress=5), "progress", 5),
        (lambda: metacoop.to_toml("invasion2d"), "config", "invasion2d"),
        (lambda: res.cells("primry"), "compartment", "primry"),
    ]
    for call, path, value in cases:
        with pytest.raises(metacoop.InputError) as ei:
            call()
        (problem,) = ei.value.problems
        assert (problem.path, problem.value) == (path, value)
    with pytest.raises(metacoop.InputError, match="primary, circulation"):
        res.total_cells("lung")
    assert res.total_cells("circulation").index.equals(res.total_cells().index)
