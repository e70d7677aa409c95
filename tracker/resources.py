"""Where the shipped protocol files and migrations are.

In a wheel they are inside the package (`tracker/schedules`, `tracker/migrations`, see pyproject's
force-include); in a source checkout or editable install they are at the repository's top level.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _locate(name: str) -> Path:
    inside = _PACKAGE / name
    if inside.is_dir():
        return inside
    return _PACKAGE.parent / name


def schedules_dir() -> Path:
    return _locate("schedules")


def migrations_dir() -> Path:
    return _locate("migrations")
