"""Issue 12: the clinical core imports nothing of the shell, and reads no clock, environment or file."""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import tracker.core

CORE = pathlib.Path(tracker.core.__file__).parent
FORBIDDEN_MODULES = ("sqlalchemy", "sqlmodel", "click", "pendulum", "yaml", "rich", "alembic", "apscheduler",
                     "tracker.db", "tracker.services", "tracker.cli", "tracker.store", "tracker.config",
                     "tracker.dates", "tracker.protocol_files", "tracker.channels", "tracker.exporters")


def test_core_imports_no_shell_module_in_a_fresh_interpreter():
    modules = sorted(p.stem for p in CORE.glob("*.py") if p.stem != "__init__")
    code = ("import json, sys\n" + "".join(f"import tracker.core.{m}\n" for m in modules)
            + "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                       text=True).stdout)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_MODULES)]
    assert bad == []


def test_core_reads_no_clock_environment_or_file():
    """Calls that would make a core function impure, found in the source."""
    forbidden = {("os", "environ"), ("os", "getenv"), ("date", "today"), ("datetime", "now"),
                 ("datetime", "utcnow"), ("time", "time"), ("pathlib", "Path")}
    found = []
    for path in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if (node.value.id, node.attr) in forbidden:
                    found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
                found.append(f"{path.name}:{node.lineno}: open()")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found += [f"{path.name}:{node.lineno}: import {n}" for n in names if n in ("os", "pathlib", "time")]
    assert found == []
