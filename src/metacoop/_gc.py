"""Keep Python's garbage collector off the libraries metacoop has loaded.

Importing metacoop loads NumPy, pandas, PyArrow, xarray, pydantic and numba:
about 115,000 objects that the collector tracks and that live as long as the
process. Every full collection walks all of them (75 ms), and so do the
collections Python runs as the process exits: those took 0.28 s after any run
(the time from the end of ``metacoop.simulate`` to the end of the process,
0.37 against 0.09 s, franssen2019, new processes alternating).

:func:`freeze_loaded` runs once, at the end of ``import metacoop``. It moves
every object that exists then into the collector's permanent generation
(:func:`gc.freeze`), which later collections skip. Objects created afterwards,
the user's and the simulations', are collected as before; frozen ones are
still freed by reference counting, and only a reference cycle among them is
left to the end of the process (garbage that already exists when metacoop is
imported included: collecting it first would cost the full walk this avoids).
``gc.unfreeze()`` undoes it; with :data:`OPT_OUT` set in the environment it
is not done.
"""

from __future__ import annotations

import gc
import os

#: Environment variable that, set to anything but ``""`` or ``"0"``, keeps :func:`freeze_loaded` from
#: freezing.
OPT_OUT = "METACOOP_NO_GC_FREEZE"


def freeze_loaded() -> bool:
    """Move the objects that exist now out of the collector's reach (see the module); True if done."""
    if os.environ.get(OPT_OUT, "") not in ("", "0"):
        return False
    gc.freeze()
    return True
