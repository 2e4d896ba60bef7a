"""The domain package's own rules: docstring examples run, and it imports nothing from outside system/."""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import system.domain

MODULES = sorted(m.name for m in pkgutil.walk_packages(system.domain.__path__, "system.domain."))
FORBIDDEN = ("simulator", "chaos", "reports", "harness", "loadtests", "rig", "rundir")
# Pure: no network, process, database or broker libraries in the domain.
NO_IO = ("socket", "sqlite3", "aiosqlite", "aio_pika", "aiohttp", "httpx", "subprocess", "asyncio")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_imports_stay_inside_the_boundary() -> None:
    root = Path(system.domain.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                top = n.split(".")[0]
                assert top not in FORBIDDEN and top not in NO_IO, f"{path.name} imports {n}"
                assert not n.startswith("system.messaging"), f"{path.name} imports {n}"


def test_every_module_has_a_docstring() -> None:
    for name in MODULES:
        assert (importlib.import_module(name).__doc__ or "").strip(), name
