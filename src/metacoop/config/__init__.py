"""Scenarios: the pydantic schema (:mod:`~metacoop.config.schema`), the TOML loader and the presets."""
