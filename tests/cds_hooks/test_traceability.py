"""Every service-side SHALL/SHOULD of CDS Hooks 2.0 is traced to an existing test, or to a stated reason."""

from __future__ import annotations

import ast
from pathlib import Path

from .traceability import TRACE, requirements

HERE = Path(__file__).parent


def test_every_requirement_is_traced() -> None:
    keys = {f"{r['Req Set']}:{r['ID']}" for r in requirements()}
    assert len(keys) == 96
    assert keys - TRACE.keys() == set(), "untraced requirements"
    assert TRACE.keys() - keys == set(), "traced ids that are not requirements"


def test_every_named_test_exists() -> None:
    for key, cover in TRACE.items():
        if cover.startswith("reason: "):
            assert len(cover) > 20, key
            continue
        file, name = cover.split("::")
        tree = ast.parse((HERE / file).read_text())
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef | ast.FunctionDef)}
        assert name in names, f"{key}: {cover} does not exist"


def test_the_docs_table_is_current() -> None:
    doc = (HERE.parents[1] / "docs" / "cds-hooks-traceability.md").read_text()
    for key in TRACE:
        assert f"[{key}]" in doc, f"docs table lacks {key}: run python -m tests.cds_hooks.traceability"
