"""Observers: recorders that run in the RECORD phase and build the result tables."""
