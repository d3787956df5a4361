"""Checks across keys, run on a schema-valid configuration before any run.

The schema checks each value on its own; here we check what needs several:
clone names, initial fractions, numerical stability of every field and of
cell movement (each mechanism's own ``check``), geometry, and whether the run
fits in memory. Every problem names the key path, the value and the bound.
"""

from __future__ import annotations

import math
import os

import numpy as np

from metacoop.config.schema import SimulationConfig
from metacoop.core.field import required_substeps, stability_limit
from metacoop.core.lattice import Lattice
from metacoop.core.state import CellArrays
from metacoop.errors import ConfigError, Problem
from metacoop.mechanisms import REGISTRY


def available_memory_bytes() -> int:
    """Memory available to a new run, bytes (MemAvailable, else physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


#: Most base steps a run may have, and most snapshots it may keep.
MAX_STEPS = 2_000_000_000
MAX_SNAPSHOTS = 100_000


def estimate_memory_bytes(config: SimulationConfig) -> int:
    """Peak memory of a run, bytes: fields (values, deltas, scratch), lattice maps, cells.

    Cells are counted at full capacity of every site, times two for growth by
    doubling, plus snapshots of every field over the run.
    """
    itemsize = np.dtype(config.field_precision).itemsize
    total = 0
    n_snap = 1 + math.ceil(config.duration_h / config.output.snapshot_every_h)
    for site in config.sites().values():
        points = math.prod(site.lattice.shape)
        nfields = len(site.fields)
        total += points * itemsize * 3 * nfields  # values, deltas, scratch
        total += points * 8 * 2  # occupancy, vessels, degradation rates (rounded up)
        total += points * (itemsize * nfields + 4) * n_snap  # + cells by phenotype, vessels, stroma
        max_cells = points * site.lattice.capacity_cells_per_point
        total += 2 * max_cells * (CellArrays.bytes_per_cell() + 9)  # state + scratch
    return int(total)


def check_config(config: SimulationConfig, memory_limit_bytes: int | None = None) -> None:
    """Raise :class:`ConfigError` listing every problem in ``config``; return if none.

    Run length and memory are checked first: the geometry checks allocate
    arrays over the lattice and are skipped for a run that cannot fit.
    """
    problems = _check_size(config, memory_limit_bytes)
    fits = not problems
    problems += _check_clones(config)
    problems += _check_cascade(config)
    for name, site in config.sites().items():
        problems += _check_site(config, name, site, geometry=fits)
    for name, mech in REGISTRY.items():
        params = getattr(config.mechanisms, name)
        if params.enabled:
            problems += mech.check(params, config)
    if config.output.record_every_h < config.dt_h:
        problems.append(Problem("output.record_every_h", config.output.record_every_h,
                                f"must be at least dt_h = {config.dt_h}"))
    if config.output.snapshot_every_h < config.dt_h:
        problems.append(Problem("output.snapshot_every_h", config.output.snapshot_every_h,
                                f"must be at least dt_h = {config.dt_h}"))
    if problems:
        raise ConfigError(problems)


def _check_size(config: SimulationConfig, memory_limit_bytes: int | None) -> list[Problem]:
    steps = config.duration_h / config.dt_h
    if not steps <= MAX_STEPS:
        return [Problem("duration_h", config.duration_h,
                        f"the run would take {steps:.3g} steps of dt_h = {config.dt_h} h; "
                        f"at most {MAX_STEPS:.0e} are allowed")]
    snaps = config.duration_h / config.output.snapshot_every_h
    if not snaps <= MAX_SNAPSHOTS:
        return [Problem("output.snapshot_every_h", config.output.snapshot_every_h,
                        f"gives {snaps:.3g} snapshots over duration_h = {config.duration_h}; "
                        f"at most {MAX_SNAPSHOTS} are allowed")]
    limit = memory_limit_bytes if memory_limit_bytes is not None else available_memory_bytes()
    need = estimate_memory_bytes(config)
    if need > limit:
        name, site = max(config.sites().items(), key=lambda kv: math.prod(kv[1].lattice.shape),
                         default=("primary", None))
        return [Problem(
            f"{_site_path(config, name)}.lattice.shape", site.lattice.shape if site else None,
            f"the run would need about {need / 2**30:.3g} GiB of memory but "
            f"{limit / 2**30:.3g} GiB is available; use a smaller lattice or fewer snapshots",
        )]
    return []


def _check_clones(config: SimulationConfig) -> list[Problem]:
    problems = []
    seen: set[str] = set()
    for i, c in enumerate(config.clones):
        if c.name in seen:
            problems.append(Problem(f"clones.{i}.name", c.name, "clone names must be unique"))
        seen.add(c.name)
    return problems


def _site_path(config: SimulationConfig, name: str) -> str:
    return "primary" if name == "primary" and config.primary is not None else f"organs.{name}"


def _check_fractions(path: str, fractions: dict[str, float], clone_names: list[str]) -> list[Problem]:
    problems = []
    for cname, value in fractions.items():
        if cname not in clone_names:
            problems.append(Problem(f"{path}.{cname}", value,
                                    f"no clone is called {cname!r}; clones are: {', '.join(clone_names)}"))
    if fractions and abs(sum(fractions.values()) - 1.0) > 1e-9:
        problems.append(Problem(path, fractions, "fractions must sum to 1"))
    return problems


def _check_site(config: SimulationConfig, name: str, site, geometry: bool = True) -> list[Problem]:
    problems = []
    where = _site_path(config, name)
    ndim = len(site.lattice.shape)
    dx = site.lattice.spacing_um
    for fname, f in site.fields.items():
        if f.substeps is not None and f.diffusion_um2_per_h > 0:
            r = f.diffusion_um2_per_h * (config.dt_h / f.substeps) / dx**2
            if r > stability_limit(ndim):
                need = required_substeps(f.diffusion_um2_per_h, config.dt_h, dx, ndim)
                problems.append(Problem(
                    f"{where}.fields.{fname}.substeps", f.substeps,
                    f"explicit diffusion is unstable: D*dt/dx^2 = {r:.3g} per sub-step exceeds "
                    f"1/(2*ndim) = {stability_limit(ndim):.3g}; use substeps >= {need} "
                    f"or leave substeps unset",
                ))
    clone_names = [c.name for c in config.clones]
    q = site.lattice.capacity_cells_per_point
    points = math.prod(site.lattice.shape)
    init = getattr(site, "initial_tumour", None)
    cells = init.cells if init is not None else 0
    if init is not None:
        problems += _check_fractions(f"{where}.initial_tumour.clone_fractions", init.clone_fractions,
                                     clone_names)
        if init.cells > points * q:
            problems.append(Problem(f"{where}.initial_tumour.cells", init.cells,
                                    f"at most {points * q} cells fit on the lattice "
                                    f"({points} points x capacity {q})"))
        elif geometry and init.radius_um is not None and (dist := _distances(site)) is not None:
            ball = int((dist <= init.radius_um).sum())
            if init.cells > ball * q:
                problems.append(Problem(f"{where}.initial_tumour.radius_um", init.radius_um,
                                        f"{init.cells} cells need at least {math.ceil(init.cells / q)} "
                                        f"points but the region holds {ball}; use a larger radius"))
    v = site.vessels
    vessels = v.normal + v.ruptured + v.lymphatic
    if vessels and geometry and (dist := _distances(site)) is not None:
        free = int((dist >= v.min_distance_um).sum()) - math.ceil(cells / q)
        if vessels > free:
            problems.append(Problem(f"{where}.vessels", vessels,
                                    f"only {max(free, 0)} free lattice points lie at least "
                                    f"{v.min_distance_um} µm from the centre"))
    if getattr(site, "drains_to", None) is not None and v.normal + v.ruptured == 0:
        problems.append(Problem(f"{where}.vessels", {"normal": v.normal, "ruptured": v.ruptured},
                                "an organ needs at least one blood-vessel point (normal or ruptured) "
                                "where arriving cells arrest"))
    return problems


#: Names that cannot be organ names (they name other compartments).
RESERVED_COMPARTMENTS = ("primary", "circulation")


def _check_cascade(config: SimulationConfig) -> list[Problem]:
    """Routes, organs and injections refer to things that exist."""
    problems = []
    organs = list(config.organs)
    routes = config.circulation.routes
    for name in organs:
        if name in RESERVED_COMPARTMENTS:
            problems.append(Problem(f"organs.{name}", name,
                                    f"{', '.join(RESERVED_COMPARTMENTS)} are not allowed as organ names"))
    for rname, flows in routes.items():
        for organ, fraction in flows.items():
            if organ not in organs:
                problems.append(Problem(f"circulation.routes.{rname}.{organ}", fraction,
                                        f"no organ is called {organ!r}; organs are: "
                                        f"{', '.join(organs) or 'none defined'}"))
        if flows and abs(sum(flows.values()) - 1.0) > 1e-9:
            total = sum(flows.values())
            problems.append(Problem(f"circulation.routes.{rname}", flows,
                                    f"blood-flow fractions must sum to 1 (they sum to {total:.6g})"))
    known = ", ".join(routes) or "none defined"
    if organs:
        for name, organ in config.organs.items():
            if organ.drains_to not in routes:
                problems.append(Problem(f"organs.{name}.drains_to", organ.drains_to,
                                        f"must be a route of circulation.routes: {known}"))
        p = config.primary
        if p is not None and config.mechanisms.intravasation.enabled:
            if p.vessels.normal + p.vessels.ruptured and p.blood_route not in routes:
                problems.append(Problem("primary.blood_route", p.blood_route,
                                        f"must be a route of circulation.routes: {known}"))
            if p.vessels.lymphatic and p.lymph_route not in routes:
                problems.append(Problem("primary.lymph_route", p.lymph_route,
                                        f"must be a route of circulation.routes: {known}"))
    circ = config.circulation
    passing = [n for n, o in config.organs.items()
               if (o.arrest_probability < 1 or o.size_restriction_cells > 1) and routes.get(o.drains_to)]
    if passing and circ.transit_distribution == "fixed" and circ.transit_h < config.dt_h:
        problems.append(Problem("circulation.transit_h", circ.transit_h,
                                f"must be at least dt_h = {config.dt_h}: CTCs pass on from "
                                f"{', '.join(passing)} and a CTC passes at most one capillary bed per step"))
    clone_names = [c.name for c in config.clones]
    for i, inj in enumerate(config.injections):
        where = f"injections.{i}"
        if inj.vessel not in routes:
            problems.append(Problem(f"{where}.vessel", inj.vessel,
                                    f"unknown vessel; vessels (routes of circulation.routes): {known}"))
        problems += _check_fractions(f"{where}.clone_fractions", inj.clone_fractions, clone_names)
        if abs(sum(inj.cluster_sizes.values()) - 1.0) > 1e-9:
            problems.append(Problem(f"{where}.cluster_sizes", inj.cluster_sizes,
                                    "fractions of cells by CTC size must sum to 1"))
        if inj.time_h > config.duration_h:
            problems.append(Problem(f"{where}.time_h", inj.time_h,
                                    f"must be within the run (duration_h = {config.duration_h})"))
    return problems


def _distances(site) -> np.ndarray | None:
    """Distance of every point from the centre, µm; None for lattices too large to check here."""
    lat = Lattice(tuple(site.lattice.shape), site.lattice.spacing_um)
    if lat.n_points > 4_000_000:  # keep the check cheap; placement reports any shortage
        return None
    return lat.distance_from_centre_um()
