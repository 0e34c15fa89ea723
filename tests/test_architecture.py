"""The shape of the code: imports run one way (no cycle, lazy imports included) and files stay small.

The import graph is read from the source with ``ast`` (every ``import`` statement, at module level,
inside functions or under ``TYPE_CHECKING``), not from what happens to be imported at run time, so
a cycle hidden behind a lazy import is found too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cnn_widgets"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Package modules that ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import sub` imports the submodule when there is one
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]], inside: str) -> list[str] | None:
    """One import cycle among the modules under ``inside`` (package ``__init__`` files excluded)."""
    nodes = {n for n in graph if n.startswith(inside) and not (PACKAGE.parent / n.replace(".", "/") / "__init__.py").exists()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n] & nodes):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(nodes):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_graph_reader_finds_a_lazy_cycle():
    # the reader must be able to fail: a function-level import back is a cycle
    graph = {"p.a": {"p.b"}, "p.b": {"p.a"}, "p.c": set()}
    assert _cycle(graph, "p.") == ["p.a", "p.b", "p.a"]
    assert _cycle({"p.a": {"p.b"}, "p.b": set()}, "p.") is None


@pytest.mark.parametrize("inside", ["cnn_widgets.engine", "cnn_widgets"])
def test_imports_run_one_way(inside):
    cycle = _cycle(_graph(), inside)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_engine_knows_nothing_of_widgets():
    graph = _graph()
    for name, imported in graph.items():
        if name.startswith("cnn_widgets.engine"):
            assert not any(m.startswith("cnn_widgets.widgets") or m == "cnn_widgets.plotting" for m in imported), name


def test_method_modules_do_not_import_the_facade():
    graph = _graph()
    for name, imported in graph.items():
        if name.startswith("cnn_widgets.engine") and name not in ("cnn_widgets.engine",):
            if name in ("cnn_widgets.engine.network", "cnn_widgets.engine.zoo", "cnn_widgets.engine.default_model",
                        "cnn_widgets.engine.digits_model", "cnn_widgets.engine.digits_vit"):
                continue  # these build or are the facade
            assert "cnn_widgets.engine.network" not in imported, f"{name} imports the Network facade; use core.NetworkBase"


def test_files_are_small():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_one_place_starts_the_widgets_threads():
    """Every long computation of the Explorer runs on its one runner (issue 22): no other thread starter."""
    starters = {str(p.relative_to(PACKAGE.parent)): text.count("threading.Thread(")
                for p in (PACKAGE / "widgets").rglob("*.py") if "threading.Thread(" in (text := p.read_text())}
    assert starters == {"cnn_widgets/widgets/runner.py": 1}, starters
