"""The project's modules import in one direction: no two modules need each other, not even through a lazy import
inside a function (read from the source, so a circle is caught whichever way the modules happen to be loaded)."""

from __future__ import annotations

import ast
from pathlib import Path

from jarrn_deploy.layout import source_modules


def _module_files() -> dict[str, Path]:
    return source_modules()


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``module`` imports anywhere in its source (``from a import b`` counts as ``a.b`` when that
    is a module, else as ``a``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(filter(None, [*parent, base]))
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names)
    return {name for name in found if name in known and name != module}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_the_import_graph_reads_the_known_edges() -> None:
    files = _module_files()
    graph = {module: _imports(module, path, set(files)) for module, path in files.items()}
    assert "jarrn_deploy.model.metric_jarrn" in graph["jarrn_deploy.model.network"]  # module level
    assert "jarrn_deploy.model.heldout_eval" in graph["jarrn_deploy.model.evaluate"]  # inside a function
    assert "jarrn_deploy.export.export_errors" in graph["jarrn_deploy.export.calibration"]


def test_no_two_project_modules_import_each_other() -> None:
    files = _module_files()
    graph = {module: _imports(module, path, set(files)) for module, path in files.items()}
    assert _circles(graph) == []


LAYERS = ("jarrn_deploy", "jarrn_deploy.model", "jarrn_deploy.export", "jarrn_deploy.runtime", "jarrn_deploy.benchmarks")
"""Lowest first: a module imports only from its own layer or those below (checkpoint -> model -> ONNX -> engine ->
runtime -> reports, with the shared facts underneath)."""


def _layer(module: str) -> int:
    return max(i for i, top in enumerate(LAYERS) if module == top or module.startswith(f"{top}."))


def test_no_module_imports_from_a_higher_layer() -> None:
    files = _module_files()
    upward = sorted(f"{module} -> {target}" for module, path in files.items()
                    for target in _imports(module, path, set(files)) if _layer(target) > _layer(module))
    assert upward == []
