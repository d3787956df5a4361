"""Shared fixtures: scenarios with only the mechanisms a test is about switched on."""

from __future__ import annotations

import pytest

import metacoop
from metacoop.mechanisms import REGISTRY


@pytest.fixture
def scenario():
    """Return ``build(on, overrides, source="invasion2d")``: a checked config with only ``on`` enabled.

    ``overrides`` is a mapping of dotted keys, as accepted by :func:`metacoop.load_scenario`.
    """

    def build(on=(), overrides=None, source="invasion2d"):
        unknown = set(on) - set(REGISTRY)
        assert not unknown, f"unknown mechanisms {unknown}"
        ov = {f"mechanisms.{name}.enabled": name in on for name in REGISTRY}
        ov.update(overrides or {})
        return metacoop.load_scenario(source, overrides=ov)

    return build


def pytest_collection_modifyitems(config, items):
    """Put the files that hold a test marked ``slow`` first, each file's tests in their own order.

    The suite runs a file per xdist worker (``--dist loadfile``), handed out in this order: the long
    files start early and the many short ones fill in around them, instead of one long file running
    alone at the end while the other workers wait.
    """
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # (a stable sort)
