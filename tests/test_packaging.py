"""Issue 2: a non-editable install works: schedules/ and migrations/ ship inside the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_protocols_vocabulary_and_migrations(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("tracker-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "tracker/schedules/vocabulary.yaml" in names
    assert "tracker/schedules/methotrexate.yaml" in names
    assert "tracker/migrations/env.py" in names
    assert any(n.startswith("tracker/migrations/versions/0001_") for n in names)
    assert {"tracker/web/templates/today.html", "tracker/web/static/style.css"} <= names  # the web view (issue 17)
    assert any(n.endswith("entry_points.txt") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "tracker = tracker.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
