"""metacoop: the metastatic cascade as a class action of cooperating cancer clones.

Typical use::

    import metacoop
    config = metacoop.load_scenario("default", overrides=["duration_h=48"])
    result = metacoop.simulate(config, out_dir="runs/demo")
    result.total_cells("primary")
"""

import os

# numba's OpenMP threads busy-wait between parallel regions by default; on a machine whose
# cores are shared (CI, laptops) that turns a 20 µs kernel call into milliseconds. Sleeping
# threads cost a few µs per call instead. Set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from metacoop._version import __version__  # noqa: E402
from metacoop.api import simulate
from metacoop.config.loader import builtin_scenarios, load_scenario, to_toml
from metacoop.config.schema import SimulationConfig
from metacoop.core.simulation import Simulation
from metacoop.errors import ConfigError, InputError, MetacoopError, OutputError, SimulationError
from metacoop.io.results import Result, open_run

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
