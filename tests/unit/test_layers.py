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
    # adopt imports desired at module level; cmd_hosts imports adopt inside its commands.
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


# The house's floors, top to bottom: a module imports its own package and the floors below,
# never a floor above nor a neighbour on its own floor (features import features only downward).
# followups runs the imperative commands' consequences; reconcile runs the plan engine over
# every feature: both stand on the features, beside each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("infr.cli",),
    ("infr.followups", "infr.reconcile"),
    ("infr.restore",),
    ("infr.lxcs",),
    ("infr.hosts", "infr.routing", "infr.backups", "infr.vnet"),
    ("infr.dns",),
    ("infr.engine",),
    ("infr.state", "infr.connector", "infr.providers"),
    ("infr.errors", "infr.oplog"),
)
# Outside the floors: the package itself, the lab (a tool beside infr) and the user's settings.
UNLAYERED = ("infr", "infr.lab", "infr.userconfig")
TOP = ("infr.followups", "infr.reconcile")
FEATURES = ("infr.restore", "infr.lxcs", "infr.hosts", "infr.routing", "infr.backups", "infr.vnet", "infr.dns")
FORBIDDEN = {
    **{feature: ("infr.cli", *TOP) for feature in FEATURES},
    "infr.engine": ("infr.cli", *TOP, *FEATURES),
    "infr.state": ("infr.cli", *TOP, *FEATURES, "infr.engine", "infr.connector", "infr.providers"),
    "infr.connector": ("infr.cli", *TOP, *FEATURES, "infr.engine"),
    "infr.providers": ("infr.cli", *TOP, *FEATURES, "infr.engine"),
}
# The one allowed exception: the settings registry takes each DNS provider's settings from
# the provider registry (infr/providers/__init__.py: names and settings, no API code; it
# imports only errors and oplog), so a provider's settings are declared once.
ALLOWED = {("infr.state.settings", "infr.providers")}


def _room(module: str) -> tuple[int, str] | None:
    """(floor, package) of a module; None outside the floors."""
    for floor, packages in enumerate(LAYERS):
        for package in packages:
            if _in(module, package):
                return floor, package
    return None


def test_every_module_is_on_a_floor() -> None:
    lost = [m for m in modules() if _room(m) is None and m != "infr" and not any(_in(m, u) for u in UNLAYERED[1:])]
    assert not lost, f"modules on no floor of LAYERS: {lost}"


def test_each_floor_imports_only_the_floors_below() -> None:
    wrong = []
    for module, targets in graph().items():
        if (here := _room(module)) is None:
            continue
        for target, line in targets.items():
            there = _room(target)
            if there is None or there[1] == here[1] or (module, there[1]) in ALLOWED:
                continue
            if there[0] <= here[0]:
                wrong.append(f"{module} imports {target} (line {line}): {there[1]} is not below {here[1]}")
    assert not wrong, "\n".join(wrong)


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
