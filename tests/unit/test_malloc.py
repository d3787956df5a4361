"""glibc keeps the memory a step frees (metacoop._malloc): no page faults for every step's temporaries."""

import json
import os
import subprocess
import sys

import pytest

import metacoop
from metacoop._malloc import USER_SETTINGS

glibc_tuned = pytest.mark.skipif(not metacoop.MALLOC_TUNED,
                                 reason="the allocator is not glibc's (or its thresholds are set)")

FAULTS_PER_STEP = """
import json, resource, metacoop
from metacoop.core.simulation import Simulation
sim = Simulation(metacoop.load_scenario("default", overrides={"duration_h": 10.0}))
for _ in range(20):
    sim.step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(80):
    sim.step()
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"tuned": metacoop.MALLOC_TUNED, "faults_per_step": (after - before) / 80}))
"""


def _run(env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP], env={**env, **env_extra}, check=True,
                         capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_tuned
def test_steps_of_the_default_scenario_take_no_fresh_pages():
    # Without the raised thresholds glibc returned the freed top of its heap after every step and
    # faulted it in again: 284 page faults per step on the default scenario's 201 x 201 lattices
    # (1,610 with MALLOC_TRIM_THRESHOLD_=131072 set, which also stops glibc adapting it), 1.2 with them.
    tuned = _run({})
    assert tuned["tuned"] is True
    assert tuned["faults_per_step"] < 50, tuned


@glibc_tuned
def test_a_threshold_set_by_the_user_is_left_alone():
    untouched = _run({"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert untouched["tuned"] is False
    assert untouched["faults_per_step"] > 50, untouched  # (what the tuning removes)
