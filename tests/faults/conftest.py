"""Fixtures of the fault tests: the real-engine ones of `engine.lab` (a Docker engine, a Lab stack)."""

from engine.lab import engine, lab  # noqa: F401 - pytest finds fixtures by name here
