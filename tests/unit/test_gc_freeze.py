"""The loaded libraries' objects are frozen out of garbage collection (metacoop._gc); the user's are not."""

import json
import os
import subprocess
import sys

from metacoop._gc import OPT_OUT

PROBE = """
import gc, json, weakref
import metacoop, numba

class Node:
    pass

loaded = {id(o) for o in gc.get_objects()}  # what later collections walk
a, b = Node(), Node()
a.other, b.other = b, a  # a reference cycle made after the import
gone = weakref.ref(a)
del a, b
gc.collect()
print(json.dumps({"frozen": metacoop.GC_FROZEN, "count": gc.get_freeze_count(),
                  "numba_walked": id(numba.njit) in loaded, "cycle_collected": gone() is None}))
"""


def _probe(**env_extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != OPT_OUT} | env_extra
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout)


def test_import_freezes_the_libraries_and_leaves_later_objects_collectable():
    seen = _probe()
    assert seen["frozen"] is True
    assert seen["count"] > 10_000  # numba, NumPy, pandas, ... (about 115,000 objects)
    assert not seen["numba_walked"]  # a collection no longer walks numba's functions
    assert seen["cycle_collected"]  # a cycle made after the import is still reclaimed


def test_the_opt_out_leaves_collection_alone():
    seen = _probe(**{OPT_OUT: "1"})
    assert seen["frozen"] is False
    assert seen["count"] == 0
    assert seen["numba_walked"]
    assert seen["cycle_collected"]
