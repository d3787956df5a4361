"""Shared builders for tests (importable as ``helpers``; see pytest's ``pythonpath``)."""
