"""Every third-party module the code imports is declared in pyproject.toml.

The packages may import only the runtime dependencies and the runtime extras (a feature that needs a
library of its own, e.g. ``hunt`` → hypothesis, imports it lazily); the tests may import anything the
``dev`` extra installs, and ``dev`` holds every other extra's requirements so ``./drill`` and tox, which
install ``.[dev]``, get them all. An import is mapped to the distribution that provides it with
``importlib.metadata.packages_distributions`` (``PIL`` → pillow), so the check needs no list of its own.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterable, Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("system", "harness", "chaos", "simulator", "reports", "loadtests", "rig", "rundir")
FIRST_PARTY = {*PACKAGES, "tests"}


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(requirements: Iterable[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def _project() -> dict[str, object]:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    return project


def _runtime() -> set[str]:
    return _names(_project()["dependencies"])  # type: ignore[arg-type]


def _extras() -> dict[str, set[str]]:
    extras = _project()["optional-dependencies"]
    assert isinstance(extras, dict)
    return {name: _names(reqs) for name, reqs in extras.items()}


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Top-level names of the absolute imports in one file, with their line."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.partition(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.partition(".")[0], node.lineno


def _local(path: Path, top: str) -> bool:
    """A helper module beside a test (tests put their own folder on sys.path, e.g. fake_intake)."""
    return any((d / f"{top}.py").exists() or (d / top).is_dir() for d in path.parents if d != ROOT.parent)


def _undeclared(folders: Iterable[str], allowed: set[str]) -> list[str]:
    dists = packages_distributions()
    problems = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for top, line in _imports(path):
                if top in sys.stdlib_module_names or top in FIRST_PARTY or top == "__future__":
                    continue
                provided_by = {canonicalize_name(d) for d in dists.get(top, [])}
                if not provided_by:
                    if folder == "tests" and _local(path, top):
                        continue
                    problems.append(f"{path.relative_to(ROOT)}:{line}: {top} (no installed distribution)")
                elif not provided_by & allowed:
                    problems.append(
                        f"{path.relative_to(ROOT)}:{line}: {top} ({', '.join(sorted(provided_by))})"
                    )
    return problems


def test_the_packages_import_only_declared_dependencies() -> None:
    extras = _extras()
    allowed = _runtime().union(*(reqs for name, reqs in extras.items() if name != "dev"))
    assert _undeclared(PACKAGES, allowed) == []


def test_the_tests_import_only_what_dev_installs() -> None:
    allowed = _runtime() | _extras()["dev"]
    assert _undeclared(["tests"], allowed) == []


def test_dev_installs_every_runtime_extra() -> None:
    extras = _extras()
    for name, reqs in extras.items():
        assert reqs <= extras["dev"], f"extra {name!r}: {sorted(reqs - extras['dev'])} missing from dev"


def test_hunt_extra_holds_hypothesis() -> None:
    assert "hypothesis" in _extras()["hunt"]
    assert "hypothesis" not in _runtime()


@pytest.mark.parametrize("module", ["numpy", "gevent", "aiormq"])
def test_the_issue_s_undeclared_imports_are_declared(module: str) -> None:
    dists = {canonicalize_name(d) for d in packages_distributions()[module]}
    assert dists & _runtime()
