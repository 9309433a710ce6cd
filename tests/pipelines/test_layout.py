"""The folders of pipelines/ are floors: a module imports only from its own floor or the ones below,
and the library never imports Prefect or the entry points."""

from __future__ import annotations

import ast
from pathlib import Path

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
FLOORS = {"model": 0, "io": 1, "synth": 2, "rules": 2, "delivery": 3, "run": 4, "lookup": 5}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_module_imports_a_higher_floor() -> None:
    climbs = []
    for path in PIPELINES.rglob("*.py"):
        floor = path.relative_to(PIPELINES).parts[0]
        if floor not in FLOORS:
            continue
        for name in imported(path):
            parts = name.split(".")
            higher = parts[0] == "pipelines" and len(parts) > 1 and FLOORS.get(parts[1], -1) > FLOORS[floor]
            if higher:
                climbs.append(f"{path.relative_to(PIPELINES)} imports {name}")
    assert climbs == []


def test_the_library_imports_neither_prefect_nor_the_entry_points() -> None:
    found = [
        f"{path.relative_to(PIPELINES)} imports {name}"
        for path in PIPELINES.rglob("*.py")
        for name in imported(path)
        if name.split(".")[0] in ("prefect", "flows")
    ]
    assert found == []


def test_every_module_lives_in_a_floor() -> None:
    loose = [p.name for p in PIPELINES.glob("*.py") if p.name != "__init__.py"]
    assert loose == []
