"""The private-module rule that ``lint-imports`` enforces (tests/architecture/private_modules.py)."""

from __future__ import annotations

import grimp

from tests.architecture.private_modules import private_imports, private_owner

ROOTS = {"harness", "chaos", "loadtests", "rig", "reports", "simulator", "system", "rundir"}


def test_a_private_module_belongs_to_the_package_that_holds_it() -> None:
    assert private_owner("rig.cluster._local") == "rig.cluster"
    assert private_owner("reports._json") == "reports"
    assert private_owner("chaos.toxiproxy._logs") == "chaos.toxiproxy"
    assert private_owner("rig.cluster") is None
    assert private_owner("chaos.__main__") is None


def test_no_module_imports_another_package_s_private_module() -> None:
    graph = grimp.build_graph(*sorted(ROOTS))
    assert private_imports(graph, ROOTS) == []
