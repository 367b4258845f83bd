"""Fixtures of the real-engine tests; the helpers live in `engine.lab`."""

from engine.lab import engine, lab  # noqa: F401 - pytest finds fixtures by name here
