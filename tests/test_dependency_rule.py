"""The dependency rules of ARCHITECTURE.md, and the rooms of agent/ the README draws.

Every import statement counts, wherever it stands: in a function, under `TYPE_CHECKING`.
- `drivers/` and `sync/` never import `agent/`, nor each other;
- no import circle anywhere in `agent/`, `drivers/`, `sync/`;
- the rooms of `agent/` (its top-level modules and packages) import each other exactly as
  `ROOMS` says: the table the README's "How it is built" shows, which is checked here too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "drivers", "sync")
FORBIDDEN = {"drivers": {"agent", "sync"}, "sync": {"agent", "drivers"}}

ROOMS: dict[str, set[str]] = {
    "cli": {
        "runtime",
        "plant",
        "printing",
        "history",
        "scanning",
        "config",
        "events",
        "alarms",
        "text",
    },
    "runtime": {
        "web",
        "packing",
        "printing",
        "history",
        "batches",
        "scanning",
        "config",
        "events",
        "alarms",
        "text",
    },
    "history": {"scanning", "config", "events", "alarms", "text"},
    "scanning": {"config", "events", "alarms", "text"},
    "batches": {"scanning", "config", "events", "alarms", "text"},
    "web": {"alarms", "text"},
    "printing": {"labels", "config", "events", "alarms"},
    "packing": {"scanning", "config", "events", "alarms"},
    "labels": set(),
    "plant": {"web", "history", "config", "events", "text"},
    "config": set(),
    "events": set(),
    "alarms": set(),
    "text": set(),
}
"""Each room of agent/ and the rooms it imports (`agent/__init__.py`, the version, is no room)."""

DOMAIN = (
    "config",
    "events",
    "alarms",
    "text",
    "scanning",
    "batches",
    "history",
    "labels",
    "printing",
    "packing",
)
NEVER = {
    **{name: {"web", "cli", "runtime"} for name in DOMAIN},  # the domain knows no page, no tool
    "web": {"runtime", "cli"},  # the page sees the agent through agent.web.view only
    "runtime": {"cli"},
}
"""Arrows no version of the table may draw."""


def modules() -> dict[str, Path]:
    """Every module of the three packages by its dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that the module `name` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            targets.update(f"{base}.{alias.name}" for alias in node.names)
            targets.add(base)
    return {module for target in targets if (module := owner(target, known)) not in {"", name}}


def owner(target: str, known: dict[str, Path]) -> str:
    """The module `target` names or lies in (`a.b.name` → `a.b`); "" when none of `known`."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = [stack.pop()]
            while component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def room(name: str) -> str | None:
    """The room of agent/ a module belongs to (None: not in agent/, or the version)."""
    parts = name.split(".")
    return parts[1] if parts[0] == "agent" and len(parts) > 1 else None


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_upwards(package: str) -> None:
    violations = [
        f"{name} imports {target}"
        for name, targets in graph().items()
        if name.split(".")[0] == package
        for target in targets
        if target.split(".")[0] in FORBIDDEN[package]
    ]
    assert not violations, violations


def test_no_import_circle() -> None:
    assert not circles(graph())


def test_circles_are_found() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_rooms_of_agent_are_the_table() -> None:
    assert {room(name) for name in modules()} - {None} == set(ROOMS)


def test_the_arrows_between_rooms_are_the_table() -> None:
    found: dict[str, set[str]] = {name: set() for name in ROOMS}
    for name, targets in graph().items():
        source = room(name)
        for target in targets:
            if source is not None and room(target) not in {None, source}:
                found[source].add(str(room(target)))
    assert found == ROOMS


def test_the_table_keeps_the_rules() -> None:
    broken = {name: ROOMS[name] & never for name, never in NEVER.items() if ROOMS[name] & never}
    assert not broken


def test_the_readme_draws_the_table() -> None:
    """The README's rooms of agent/: one `room/ ... → rooms` line each, as `ROOMS` has them."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## How it is built")[1]
    drawn = {
        match["room"]: set(match["imports"].split()) - {"—"}
        for match in re.finditer(
            r"^ {2}(?P<room>[a-z]+)(?:/|\.py) .*→ (?P<imports>.+)$", section, re.MULTILINE
        )
    }
    assert drawn == ROOMS


def test_every_module_has_a_docstring() -> None:
    missing = [
        str(path.relative_to(ROOT))
        for path in modules().values()
        if ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) is None
    ]
    assert not missing, f"modules without a docstring saying what they own: {missing}"
