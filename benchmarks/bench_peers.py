"""Side by side with the Python peers: MetaSpread (Franssen et al. 2019 on Mesa) and a Mesa growth model.

The peers run in their own virtual environment (``benchmarks/.peers-venv``,
made on first use with ``python3.11 -m venv`` and ``pip install
metaspread==2024.0.6``, which brings Mesa 2.1.2 and its pinned requirements),
as separate processes, one at a time, on the same machine as metacoop.

* **MetaSpread:** ``python -m metaspread run STEPS STEPS`` in an empty directory
  (its default configuration: 3 grids of 201², 388 cells, 40-s steps; data
  written once, at the end) against ``metacoop run franssen2019`` cut to the
  same number of 40-s steps, both as whole commands (start-up included). The
  cell counts are what each wrote at the end: MetaSpread's ``CellsData.csv``
  rows of the last step per grid, metacoop's live cells per site.
* **Growth:** one cell grows to N on a lattice (one cell per point; every step
  each cell dies with q = 0.01, else divides with p = 0.5 into a random empty
  von Neumann neighbour). Mesa: ``peers/mesa_growth.py``. metacoop: the same
  rule on its engine (capacity 1, exponential cycle times with a per-step
  division probability of 0.5, death hazard ``-ln(1 - q) / dt``, everything else
  off), stepped until N cells. Rates are agent-steps (cells alive at the start
  of a step, summed over steps) per second of stepping.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PEERS_VENV = HERE / ".peers-venv"
METASPREAD = "metaspread==2024.0.6"
#: MetaSpread's time step, h (40 s), the same as franssen2019's.
STEP_H = 40.0 / 3600.0
P_DIVIDE, Q_DIE = 0.5, 0.01


def peer_python() -> Path:
    """The peers' interpreter, installing MetaSpread (and Mesa) into their own venv on first use."""
    py = PEERS_VENV / "bin" / "python"
    # importing metaspread writes its configuration file into the working directory: a scratch one
    ready = py.exists() and subprocess.run([py, "-c", "import metaspread, mesa"], capture_output=True,
                                           cwd=tempfile.gettempdir())
    if ready and ready.returncode == 0:
        return py
    base = os.environ.get("PEERS_PYTHON", "python3.11")
    subprocess.run([base, "-m", "venv", "--clear", PEERS_VENV], check=True)
    subprocess.run([py, "-m", "pip", "install", "--quiet", METASPREAD], check=True)
    return py


@dataclass
class PeerRun:
    """One side of a side-by-side comparison."""

    tool: str
    steps: int
    wall_s: float
    cells: dict[str, int]

    def to_dict(self) -> dict:
        """Plain data for --json."""
        return asdict(self)


def run_metaspread(steps: int) -> PeerRun:
    """MetaSpread's default simulation for ``steps`` steps, as a whole command in an empty directory."""
    py = peer_python()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([py, "-m", "metaspread", "run", str(steps), str(steps)], cwd=tmp, check=True,
                       capture_output=True)
        wall = time.perf_counter() - t0
        import pandas as pd

        data = pd.read_csv(next(Path(tmp).glob("Simulations/*/CellsData.csv")))
        last = data[data["Step"] == data["Step"].max()]
        cells = {f"grid {g}": int(n) for g, n in last.groupby("Grid").size().items()}
    return PeerRun("MetaSpread", steps, wall, cells)


def run_metacoop_franssen(steps: int) -> PeerRun:
    """``metacoop run franssen2019`` cut to ``steps`` 40-s steps, as a whole command (start-up included)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "metacoop", "run", "franssen2019", "--set",
               f"duration_h={steps * STEP_H!r}", "--out", str(out), "-q"]
        subprocess.run(cmd[:6] + [f"duration_h={2 * STEP_H!r}", "--out", str(Path(tmp) / "warm"), "-q"],
                       check=True, capture_output=True)  # compiled kernels in the on-disk cache
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - t0
        from metacoop.io.results import open_run

        result = open_run(out)
        ts = result.timeseries
        last = ts[(ts["quantity"] == "cells") & (ts["time_h"] == ts["time_h"].max())]
        cells = {str(k): int(v) for k, v in last.groupby("compartment")["value"].sum().items()}
    return PeerRun("metacoop", steps, wall, cells)


@dataclass
class GrowthRun:
    """A colony grown from one cell to ``target`` cells."""

    tool: str
    target: int
    steps: int
    cells: int
    agent_steps: int
    wall_s: float

    @property
    def rate(self) -> float:
        """Agent-steps per second of stepping."""
        return self.agent_steps / self.wall_s

    def to_dict(self) -> dict:
        """Plain data for --json."""
        return {**asdict(self), "rate": self.rate}


def run_mesa_growth(target: int, seed: int = 1) -> GrowthRun:
    """The Mesa growth model (``peers/mesa_growth.py``) in the peers' environment."""
    script = HERE / "peers" / "mesa_growth.py"
    out = subprocess.run([peer_python(), script, str(target), str(seed)], check=True, capture_output=True,
                         text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return GrowthRun(f"Mesa {r['mesa']}", target, r["steps"], r["agents"], r["agent_steps"], r["wall_s"])


def growth_config(target: int, seed: int = 1):
    """The growth rule as a metacoop scenario (see the module docstring)."""
    import metacoop

    side = int(2 * math.sqrt(target / math.pi) * 1.6) + 11
    dt = 1.0
    off = ("phenotype_switch", "movement", "mmp2_secretion", "ecm_degradation", "intravasation")
    return metacoop.load_scenario({
        "name": "growth", "seed": seed, "duration_h": 10_000.0, "dt_h": dt,
        "output": {"record_every_h": 10_000.0, "snapshot_every_h": 10_000.0, "checkpoint_every_h": 0.0},
        "clones": [{"name": "cell", "cycle_cv": 1.0,
                    # exponential cycle times: P(divide in a step) = 1 - exp(-dt ln2 / T) = 0.5 for T = dt
                    "doubling_time_h": {"epithelial": dt * math.log(2) / -math.log(1 - P_DIVIDE),
                                        "mesenchymal": dt},
                    "death_rate_per_h": {"epithelial": -math.log(1 - Q_DIE) / dt, "mesenchymal": 0.0}}],
        "primary": {"lattice": {"shape": [side, side], "spacing_um": 10.0, "capacity_cells_per_point": 1},
                    "initial_tumour": {"cells": 1, "mesenchymal_fraction": 0.0},
                    "vessels": {"normal": 0, "ruptured": 0}},
        "mechanisms": {name: {"enabled": False} for name in off},
    })


def run_metacoop_growth(target: int, seed: int = 1) -> GrowthRun:
    """The growth rule on metacoop's engine, stepped until ``target`` cells (build and warm-up untimed)."""
    import metacoop

    cfg = growth_config(target, seed)
    warm = metacoop.Simulation(growth_config(100, seed))
    for _ in range(3):
        warm.step()
    sim = metacoop.Simulation(cfg)
    site = sim.site("primary")
    agent_steps = steps = 0
    t0 = time.perf_counter()
    while 0 < site.cells.n < target:
        agent_steps += site.cells.n
        sim.step()
        steps += 1
    wall = time.perf_counter() - t0
    return GrowthRun("metacoop", target, steps, int(site.cells.n), agent_steps, wall)


if __name__ == "__main__":
    t = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    for r in (run_metacoop_growth(t), run_mesa_growth(t)):
        print(r.to_dict())
    print(np.round([run_metaspread(20).wall_s, run_metacoop_franssen(20).wall_s], 2))
