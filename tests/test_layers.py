"""The package's layering: the record store sits below the runner and the tables, and no two analysis modules
import each other. Imports inside functions count: they still make a circle, only a later one."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in out if name.startswith("bench")}


def _module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        todo.extend(_imports(path))
    return seen


@pytest.mark.parametrize("low,high", [("bench.store", "bench.runner"), ("bench.store", "bench.tables.reproduce"),
                                      ("bench.variants", "bench.runner"), ("bench.config", "bench.runner")])
def test_low_layers_do_not_import_high_ones(low, high):
    assert high not in reachable(low)


def test_analysis_modules_do_not_import_each_other_in_a_circle():
    modules = [f"bench.analysis.{p.stem}" for p in (ROOT / "bench" / "analysis").glob("*.py") if p.stem != "__init__"]
    for a in modules:
        for b in modules:
            if a < b:
                assert not (b in reachable(a) and a in reachable(b)), f"{a} and {b} import each other"
