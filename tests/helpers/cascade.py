"""Small injection-only cascade scenarios for tests.

Cell rules that play no part in the cascade are switched off unless a test
names them, and every fate in the circulation is zero unless a test sets it,
so only the step under test acts.
"""

from __future__ import annotations

import json
import math

import metacoop

INF = math.inf
#: Cell rules that take no part in the cascade; switched off unless a test needs them.
QUIET = ("phenotype_switch", "movement", "proliferation", "mmp2_secretion", "ecm_degradation")
#: The circulation with every fate rate set to zero.
NO_FATES = {
    "shear_death_rate_per_h": 0.0,
    "immune_death_rate_per_h": 0.0,
    "anoikis_death_rate_per_h": 0.0,
    "disaggregation_rate_per_h": 0.0,
}


def clone(name: str, **traits) -> dict:
    """A clone that never divides unless ``doubling_time_h`` is given."""
    return {"name": name, "doubling_time_h": {"epithelial": INF, "mesenchymal": INF}, **traits}


def organ(shape: int = 41, vessels: int = 50, drains_to: str = "out", **settings) -> dict:
    """A small organ whose capillary bed has ``vessels`` normal vessel points."""
    return {"lattice": {"shape": [shape, shape]}, "vessels": {"normal": vessels, "ruptured": 0},
            "drains_to": drains_to, **settings}


def inject(vessel: str, cells: int, clone_name: str | None = None, sizes=None, **extra) -> dict:
    """An injection of ``cells`` cells (all of ``clone_name``) in CTCs of ``sizes``, transit 0."""
    out = {"vessel": vessel, "cells": cells, "transit_h": 0.0, **extra}
    if clone_name is not None:
        out["clone_fractions"] = {clone_name: 1.0}
    if sizes is not None:
        out["cluster_sizes"] = sizes
    return out


def table(*, duration_h, clones, routes, organs=None, injections=(), circulation=None, primary=None,
          dt_h=0.1, seed=5, on=(), output=None, record_every_h=None) -> dict:
    """A raw scenario table; the ``QUIET`` mechanisms are off unless named in ``on``.

    Every table has a route ``out`` that leads nowhere (CTCs on it circulate until they die).
    """
    out = {
        "name": "cascade",
        "seed": seed,
        "duration_h": duration_h,
        "dt_h": dt_h,
        "output": {"record_every_h": record_every_h or duration_h, "snapshot_every_h": duration_h,
                   **(output or {})},
        "clones": clones,
        "organs": organs or {},
        "circulation": {**NO_FATES, **(circulation or {}), "routes": {"out": {}, **routes}},
        "injections": list(injections),
        "mechanisms": {name: {"enabled": name in on} for name in QUIET},
    }
    if primary is not None:
        out["primary"] = primary
    return out


def build(**kw) -> metacoop.SimulationConfig:
    """A checked configuration from :func:`table`."""
    return metacoop.load_scenario(table(**kw))


def run(cfg) -> metacoop.Simulation:
    """Run ``cfg`` to the end, checking cell accounting after every step."""
    sim = metacoop.Simulation(cfg, check=True)
    sim.run()
    return sim


def composition(row: dict) -> dict[str, int]:
    """Clone counts of an event or metastasis row."""
    return json.loads(row["composition"])
