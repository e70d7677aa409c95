"""The clinical core: every clinical notion defined once, as pure functions of plain data.

Nothing in this package imports the database (sqlalchemy, sqlmodel), click, the clock, environment
variables or files; tests/test_core_purity.py checks it in a fresh interpreter. The shell
(tracker.store, tracker.services, tracker.cli, ...) loads data, applies what the core decides and renders.
"""
