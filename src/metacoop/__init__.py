"""metacoop: the metastatic cascade as a class action of cooperating cancer clones.

Typical use::

    import metacoop
    config = metacoop.load_scenario("default", overrides=["duration_h=48"])
    result = metacoop.simulate(config, out_dir="runs/demo")
    result.total_cells("primary")
"""

# numba's OpenMP threads: with OMP_WAIT_POLICY unset (as here), GNU OpenMP lets them spin for a few
# milliseconds after a parallel region, then sleep. Kernels that follow within that time start on both
# threads in about a microsecond; waking sleeping threads costs tens of microseconds in a virtual
# machine, more than a field kernel on a 201 x 201 lattice takes. franssen2019 on 2 cores: 6.2 s; with
# OMP_WAIT_POLICY=PASSIVE 7.8 s (the trials of metacoop.kernels.dispatch then keep its small kernels
# serial). Threads spin only after parallel work, and numba runs none below 1e5 items on one thread
# (metacoop.kernels.dispatch.set_threads, as ensembles set per worker). Set OMP_WAIT_POLICY=PASSIVE
# yourself on a machine whose cores other work needs more. Two things make GNU OpenMP stop spinning
# (as with PASSIVE): more OpenMP threads in the process than CPUs, which happens when a second Python
# thread runs simulations (each thread that starts parallel work gets its own pool; 1.35x slower when a
# Dask worker's event-loop thread had run one before its task thread). Worse are spinning threads of
# several processes on the same cores (15x slower: metacoop.experiments.threads shares a host's CPUs
# among its workers' tasks).

from metacoop._gc import freeze_loaded
from metacoop._malloc import keep_freed_memory
from metacoop._version import __version__
from metacoop.api import simulate
from metacoop.config.loader import builtin_scenarios, load_scenario, to_toml
from metacoop.config.schema import SimulationConfig
from metacoop.core.simulation import Simulation
from metacoop.errors import ConfigError, InputError, MetacoopError, OutputError, SimulationError
from metacoop.io.results import Result, open_run

#: Whether glibc's allocator thresholds were raised on import (see :mod:`metacoop._malloc`).
MALLOC_TUNED = keep_freed_memory()
#: Whether the loaded libraries' objects were frozen out of garbage collection (see :mod:`metacoop._gc`).
GC_FROZEN = freeze_loaded()

__all__ = [
    "ConfigError",
    "InputError",
    "MetacoopError",
    "OutputError",
    "Result",
    "Simulation",
    "SimulationConfig",
    "SimulationError",
    "__version__",
    "builtin_scenarios",
    "load_scenario",
    "open_run",
    "simulate",
    "to_toml",
]
