"""``metacoop describe``: the resolved schedule, mechanism descriptions, and the ODD protocol."""

import re

import pytest
from test_cli import cli

import metacoop
from metacoop.core.schedule import Phase
from metacoop.describe import describe_scenario, odd_protocol, schedule_rows
from metacoop.mechanisms import REGISTRY

ODD_SECTIONS = ("## 1. Purpose and patterns", "## 2. Entities, state variables and scales",
                "## 3. Process overview and scheduling", "## 4. Design concepts", "## 5. Initialisation",
                "## 6. Input data", "## 7. Submodels")


def _schedule_lines(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0] in Phase.__members__ and parts[-1] in ("on", "off"):
            rows.append(parts)
    return rows


def test_schedule_lists_every_mechanism_once_in_phase_order_with_its_switch():
    cfg = metacoop.load_scenario("classaction", ["mechanisms.niche.enabled=false",
                                                 "mechanisms.death.enabled=false"])
    rows = _schedule_lines(describe_scenario(cfg))
    names = [r[2] for r in rows]
    for name in REGISTRY:
        assert names.count(name) == 1, name
    phases = [Phase[r[0]] for r in rows]
    assert phases == sorted(phases)
    state = {r[2]: r[-1] for r in rows}
    assert state["niche"] == "off" and state["death"] == "off"
    assert state["adhesion_induction"] == "on" and state["movement"] == "on"
    # the table agrees with the plan the simulation will run (engine tasks included)
    sim = metacoop.Simulation(metacoop.load_scenario(
        "classaction", ["mechanisms.niche.enabled=false", "mechanisms.death.enabled=false",
                        "primary.lattice.shape=[41,41]", "organs.lung.lattice.shape=[21,21]",
                        "organs.liver.lattice.shape=[21,21]"]))
    planned = [s.name for s in sim.plan]
    assert planned == [r[2] for r in schedule_rows(cfg) if r[4]]


def test_describe_prints_parameters_with_units_and_sources_of_enabled_mechanisms_only():
    proc = cli("describe", "classaction", "--set", "mechanisms.niche.vegfr1_blockade=0.25",
               "--set", "mechanisms.paracrine.enabled=false")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"vegfr1_blockade = 0\.25 +\(fraction of VEGFR1\+ BMDC recruitment blocked", out)
    assert "source: Kaplan et al. 2005" in out
    assert "\nparacrine:" not in out  # switched off: not described
    assert "Switched off: paracrine" in out


@pytest.mark.parametrize("scenario", ["classaction", "franssen2019", "luzzi1998"])
def test_odd_protocol_has_every_section_and_a_submodel_per_enabled_mechanism(scenario, tmp_path):
    out = tmp_path / "odd.md"
    proc = cli("describe", scenario, "--odd", "--out", out)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    assert text == odd_protocol(metacoop.load_scenario(scenario))
    positions = [text.index(h) for h in ODD_SECTIONS]
    assert positions == sorted(positions)
    cfg = metacoop.load_scenario(scenario)
    submodels = re.findall(r"^### (\w+)$", text, flags=re.M)
    assert submodels == [n for n in REGISTRY if getattr(cfg.mechanisms, n).enabled]
    for clone in cfg.clones:
        assert f"| {clone.name} " in text or f" {clone.name} |" in text


def test_odd_escapes_table_separators_in_scenario_text():
    cfg = metacoop.load_scenario("classaction", {"primary.fields.ecm.description": "matrix | collagen"})
    text = odd_protocol(cfg)
    assert "matrix \\| collagen" in text
    assert "matrix | collagen" not in text
