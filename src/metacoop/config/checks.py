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
        total += points * (itemsize * nfields + 2) * n_snap
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
        return [Problem(
            "primary.lattice.shape", config.primary.lattice.shape,
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


def _check_site(config: SimulationConfig, name: str, site, geometry: bool = True) -> list[Problem]:
    problems = []
    ndim = len(site.lattice.shape)
    dx = site.lattice.spacing_um
    for fname, f in site.fields.items():
        if f.substeps is not None and f.diffusion_um2_per_h > 0:
            r = f.diffusion_um2_per_h * (config.dt_h / f.substeps) / dx**2
            if r > stability_limit(ndim):
                need = required_substeps(f.diffusion_um2_per_h, config.dt_h, dx, ndim)
                problems.append(Problem(
                    f"{name}.fields.{fname}.substeps", f.substeps,
                    f"explicit diffusion is unstable: D*dt/dx^2 = {r:.3g} per sub-step exceeds "
                    f"1/(2*ndim) = {stability_limit(ndim):.3g}; use substeps >= {need} "
                    f"or leave substeps unset",
                ))
    init = site.initial_tumour
    clone_names = [c.name for c in config.clones]
    for cname in init.clone_fractions:
        if cname not in clone_names:
            problems.append(Problem(f"{name}.initial_tumour.clone_fractions.{cname}",
                                    init.clone_fractions[cname],
                                    f"no clone is called {cname!r}; clones are: {', '.join(clone_names)}"))
    if init.clone_fractions and abs(sum(init.clone_fractions.values()) - 1.0) > 1e-9:
        problems.append(Problem(f"{name}.initial_tumour.clone_fractions", init.clone_fractions,
                                "fractions must sum to 1"))
    q = site.lattice.capacity_cells_per_point
    points = math.prod(site.lattice.shape)
    if init.cells > points * q:
        problems.append(Problem(f"{name}.initial_tumour.cells", init.cells,
                                f"at most {points * q} cells fit on the lattice "
                                f"({points} points x capacity {q})"))
    elif geometry and init.radius_um is not None and (dist := _distances(site)) is not None:
        ball = int((dist <= init.radius_um).sum())
        if init.cells > ball * q:
            problems.append(Problem(f"{name}.initial_tumour.radius_um", init.radius_um,
                                    f"{init.cells} cells need at least {math.ceil(init.cells / q)} "
                                    f"points but the region holds {ball}; use a larger radius"))
    vessels = site.vessels.normal + site.vessels.ruptured
    if geometry and vessels and (dist := _distances(site)) is not None:
        free = int((dist >= site.vessels.min_distance_um).sum())
        if vessels > free:
            problems.append(Problem(f"{name}.vessels", vessels,
                                    f"only {free} lattice points lie at least "
                                    f"{site.vessels.min_distance_um} µm from the centre"))
    return problems


def _distances(site) -> np.ndarray | None:
    """Distance of every point from the centre, µm; None for lattices too large to check here."""
    lat = Lattice(tuple(site.lattice.shape), site.lattice.spacing_um)
    if lat.n_points > 4_000_000:  # keep the check cheap; placement reports any shortage
        return None
    return lat.distance_from_centre_um()
