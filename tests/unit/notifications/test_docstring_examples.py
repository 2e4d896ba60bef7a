"""The examples in the notifications service's docstrings run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import system.notifications

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(system.notifications.__path__, "system.notifications.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    assert doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS).failed == 0
