"""Temporal workflows. They only orchestrate: every I/O happens in `activities`."""
