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
