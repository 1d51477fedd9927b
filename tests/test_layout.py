"""The module layout a reader relies on: imports only point down (no circle, counting imports made inside
functions), compute modules never import the facade, and only main.py imports the time-budget planner."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

COMPUTE = ("saliency", "lime_explain", "shap_explain", "occlusion", "filter_vis", "deep_dream", "metrics",
           "imageops", "attribution", "model", "dataset")


def project_modules() -> dict[str, Path]:
    """Every module of the project by its import name (top level and the report package)."""
    mods = {p.stem: p for p in REPO.glob("*.py")}
    mods |= {f"report.{p.stem}": p for p in (REPO / "report").glob("*.py") if p.stem != "__init__"}
    return mods


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports anywhere in it (module level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out |= {n for n in names if n in known}
    return out


def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    mods = project_modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_circle():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_circle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_compute_modules_never_import_the_facade_or_the_run():
    g = graph()
    for mod in COMPUTE:
        assert not g[mod] & {"explain", "methods", "context", "main", "budget", "trust"}, (mod, g[mod])


def test_only_main_imports_the_planner():
    assert sorted(m for m, deps in graph().items() if "budget" in deps) == ["main"]
