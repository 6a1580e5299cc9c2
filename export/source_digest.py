"""The export's cache key over code: a digest of every project module the exporter can import, derived, not hand-kept.

The modules are found by reading the ``import`` statements (module level and inside functions) and the module names
given to lazy imports as strings, starting from the exporter's entry modules and following those of ``model`` and ``export``, so a new module the graph depends on changes the
key without anyone remembering to list it. Pure Python: nothing is imported, so it runs without torch.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

from jarrn_deploy.layout import PACKAGES, module_file, package_folder

PROJECT_ROOT = package_folder("jarrn_deploy.export").parent
EXPORT_ENTRY_MODULES = ("jarrn_deploy.export.onnx_graph", "jarrn_deploy.export.precision", "jarrn_deploy.export.calibration")
"""What turns a checkpoint into a graph: the exporter, the FP16/INT8 conversions and the INT8 calibration data."""
_FOLLOWED_PACKAGES = ("jarrn_deploy.model", "jarrn_deploy.export")
_MODULE_NAME = re.compile(r"jarrn_deploy\.(model|export)(\.[a-z_][a-z0-9_]*)+")


def _imported_names(path: Path, module: str) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(filter(None, [*parent, base]))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # ``from pkg import submodule``
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_NAME.fullmatch(node.value):
            names.add(node.value)  # lazy imports by name: importlib.import_module("jarrn_deploy.model.metric_jarrn")
    return {n for n in names if any(n == p or n.startswith(f"{p}.") for p in _FOLLOWED_PACKAGES)}


def export_source_files(entries: tuple[str, ...] = EXPORT_ENTRY_MODULES) -> list[Path]:
    """Every project source file reachable from ``entries`` through import statements, sorted."""
    seen: dict[str, Path] = {}
    pending = list(entries)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        path = module_file(name)
        if path is None:
            continue
        seen[name] = path
        pending.extend(_imported_names(path, name))
        if path.name == "__init__.py" and name not in PACKAGES:  # a sub-package: all of its modules shape what it exports
            pending.extend(f"{name}.{p.stem}" for p in path.parent.glob("*.py") if p.stem != "__init__")
    return sorted(set(seen.values()))


def export_source_digest(entries: tuple[str, ...] = EXPORT_ENTRY_MODULES) -> str:
    """sha256 over the relative paths and contents of :func:`export_source_files`."""
    digest = hashlib.sha256()
    for path in export_source_files(entries):
        digest.update(path.relative_to(PROJECT_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
