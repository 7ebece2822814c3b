"""The import graph of the infr package keeps the house's layers, and has no circles.

Built from the source with ast, not by importing it: module-level AND function-level
imports count (a lazy import inside a function is still a dependency; it is how a circle
hides). `from infr.x import y` is an edge to infr.x.y when that is a module, else to infr.x.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import infr

PACKAGE = Path(infr.__file__).parent


@cache
def modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of infr (a package is its __init__)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported_names(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(dotted name, line) of everything the module imports, wherever in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield (f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules() else base), node.lineno


def _infr_module(name: str) -> str | None:
    """The infr module that `name` (a module or something in one) lives in; None outside infr."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def graph() -> dict[str, dict[str, int]]:
    """infr module -> {infr module it imports: first line}."""
    edges: dict[str, dict[str, int]] = {}
    for module, path in modules().items():
        out = edges.setdefault(module, {})
        for name, line in _imported_names(module, path):
            if (target := _infr_module(name)) and target != module:
                out.setdefault(target, line)
    return edges


def external_imports(top: str) -> dict[str, list[str]]:
    """infr module -> 'file:line' of each import of the outside package `top`."""
    found: dict[str, list[str]] = {}
    for module, path in modules().items():
        for name, line in _imported_names(module, path):
            if name == top or name.startswith(f"{top}."):
                found.setdefault(module, []).append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    return found


def find_cycle(edges: dict[str, dict[str, int]]) -> list[str] | None:
    """One import circle as a chain [a, b, ..., a], or None (depth-first, three colours)."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for target in sorted(edges.get(module, {})):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done and (cycle := visit(target)):
                return cycle
        path.pop()
        on_path.discard(module)
        done.add(module)
        return None

    for module in sorted(edges):
        if module not in done and (cycle := visit(module)):
            return cycle
    return None


def _chain(cycle: list[str]) -> str:
    edges = graph()
    return " -> ".join(f"{a} (line {edges[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)) + f" -> {cycle[-1]}"


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def test_the_graph_sees_function_level_and_from_imports() -> None:
    # hostops imports provision at module level; cmd_hosts imports hostops inside its commands.
    assert "infr.hosts.desired" in graph()["infr.hosts.adopt"]
    assert "infr.hosts.adopt" in graph()["infr.cli.cmd_hosts"]
    assert "infr.connector.ssh" in graph()["infr.connector"]  # from infr.connector.ssh import (...)


def test_find_cycle_names_the_circle() -> None:
    assert find_cycle({"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 2, "b": 3}}) is None


def test_no_import_circles_in_infr() -> None:
    edges = {module: dict(targets) for module, targets in graph().items()}
    circles = []
    while (cycle := find_cycle(edges)) and len(circles) < 20:  # each circle, once its edge is cut
        circles.append(_chain(cycle))
        del edges[cycle[0]][cycle[1]]
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_click_and_rich_only_under_cli() -> None:
    for top in ("click", "rich"):
        outside = {m: where for m, where in external_imports(top).items() if not _in(m, "infr.cli")}
        assert not outside, f"{top} imported outside infr/cli: {outside}"


def test_paramiko_only_under_connector() -> None:
    outside = {m: where for m, where in external_imports("paramiko").items() if not _in(m, "infr.connector")}
    assert not outside, f"paramiko imported outside infr/connector: {outside}"


FORBIDDEN = {
    "infr.state": ("infr.core", "infr.connector", "infr.cli", "infr.providers"),
    "infr.connector": ("infr.core", "infr.cli"),
    "infr.providers": ("infr.core", "infr.cli"),
}
# The one allowed exception: the settings registry takes each DNS provider's settings from
# the provider registry (infr/providers/__init__.py: names and settings, no API code; it
# imports only errors and oplog), so a provider's settings are declared once.
ALLOWED = {("infr.state.settings", "infr.providers")}


def test_lower_layers_import_nothing_from_the_layers_above() -> None:
    wrong = [
        f"{module} imports {target} (line {line})"
        for module, targets in graph().items()
        for layer, above in FORBIDDEN.items()
        if _in(module, layer)
        for target, line in targets.items()
        if any(_in(target, a) for a in above) and (module, target) not in ALLOWED
    ]
    assert not wrong, "\n".join(wrong)
