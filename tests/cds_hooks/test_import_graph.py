"""``cds_hooks`` reads one way (issue 17 item 3): the import graph of its modules has no cycle, the definitions and
answering steps every service shares import no service, the order and session services are peers (neither imports
the other), and the router dispatches to both.

The graph is read from the source with ``ast``: every import counts, those under ``if TYPE_CHECKING:`` and inside
functions too, since a reader follows them all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cds_hooks
from cds_hooks.definitions import SERVICES

PACKAGE = Path(cds_hooks.__file__).parent
NAME = PACKAGE.name
INIT = "__init__"
SERVICE_MODULES = frozenset({"orders", "sessions"})
ROUTER = "router"


def _module(name: str, modules: frozenset[str]) -> str:
    """The module of ``cds_hooks`` a dotted name inside the package refers to (the package itself: ``__init__``)."""
    first = name.split(".", 1)[0]
    return first if first in modules else INIT


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package (by file stem) and the modules of the package it imports."""
    modules = frozenset(p.stem for p in package.glob("*.py"))
    graph: dict[str, set[str]] = {}
    for path in sorted(package.glob("*.py")):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                deps |= {_module(a.name[len(NAME) + 1:], modules) if a.name != NAME else INIT
                         for a in node.names if a.name == NAME or a.name.startswith(NAME + ".")}
            elif isinstance(node, ast.ImportFrom):
                if node.level > 1:
                    continue  # above the package: not one of its modules
                if node.level == 1:
                    inside: str | None = node.module or ""
                elif node.module == NAME or (node.module or "").startswith(NAME + "."):
                    inside = (node.module or "")[len(NAME) + 1:]
                else:
                    inside = None
                if inside is None:
                    continue
                if inside:
                    deps.add(_module(inside, modules))
                else:  # from . import x / from cds_hooks import x: a module, or a name of __init__
                    deps |= {a.name if a.name in modules else INIT for a in node.names}
        deps.discard(path.stem)
        graph[path.stem] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_and_the_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    pkg = tmp_path / NAME
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .a import A\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\nA = 1\n")
    (pkg / "b.py").write_text(f"def f():\n    import {NAME}.c\nfrom {NAME}.d import D\nB = 2\n")
    (pkg / "c.py").write_text(f"from . import d\nfrom {NAME} import A\n")
    (pkg / "d.py").write_text("from .. import elsewhere\nimport json\nD = 3\n")
    assert import_graph(pkg) == {"__init__": {"a"}, "a": {"b"}, "b": {"c", "d"}, "c": {"d", "__init__"},
                                 "d": set()}
    assert cycles(import_graph(pkg)) == [["__init__", "a", "b", "c"]]


def test_cds_hooks_has_no_import_cycle() -> None:
    graph = import_graph()
    assert {"definitions", "answering", "orders", "sessions", "router"} <= graph.keys()
    assert cycles(graph) == [], f"import cycles in {NAME}: {cycles(graph)}"


def test_the_shared_definitions_sit_below_the_services_and_the_router_only_dispatches() -> None:
    graph = import_graph()
    above = SERVICE_MODULES | {ROUTER, INIT}
    for module, deps in graph.items():
        if module not in above:
            assert not deps & above, f"{module} imports {sorted(deps & above)}, which are above it"
    assert "sessions" not in graph["orders"] and "orders" not in graph["sessions"], "the services are peers"
    assert ROUTER not in graph["orders"] | graph["sessions"]
    assert graph[ROUTER] >= SERVICE_MODULES


def test_the_router_dispatches_every_service_it_lists() -> None:
    from cds_hooks.router import _ANSWERS

    assert {s.hook for s in SERVICES.values()} == set(_ANSWERS)
