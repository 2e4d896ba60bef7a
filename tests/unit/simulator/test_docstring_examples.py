"""The examples in the simulator's docstrings run and are right."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import simulator

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(simulator.__path__, "simulator.") if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
