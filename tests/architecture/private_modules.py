"""An import-linter contract type: a ``_private`` module is imported only from inside its own package.

import-linter has no built-in contract for this, so ``pyproject.toml`` registers this one
(``contract_types``) and ``lint-imports`` checks it beside the layers. A module is private when a part of
its dotted name starts with one underscore (``rig.cluster._local``, ``reports._json``); it may be
imported by the modules of the package that holds it (``rig.cluster.*`` for ``rig.cluster._local``,
every ``reports.*`` for ``reports._json``) and by no other. Dunder modules (``__init__``, ``__main__``)
are not private.
"""

from __future__ import annotations

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def private_owner(module: str) -> str | None:
    """The package whose modules alone may import ``module`` (None: ``module`` is not private)."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def inside(module: str, package: str) -> bool:
    """``module`` is ``package`` or one of its descendants."""
    return module == package or module.startswith(package + ".")


def private_imports(graph: ImportGraph, roots: set[str]) -> list[tuple[str, str, list[int]]]:
    """(importer, private module, line numbers) for every import of a private module of ``roots``
    from outside the package that holds it."""
    out = []
    for imported in sorted(graph.modules):
        owner = private_owner(imported)
        if owner is None or imported.split(".")[0] not in roots:
            continue
        for importer in sorted(graph.find_modules_that_directly_import(imported)):
            if inside(importer, owner):
                continue
            details = graph.get_import_details(importer=importer, imported=imported)
            out.append((importer, imported, sorted(d["line_number"] for d in details)))
    return out


class PrivateModulesContract(Contract):
    """No module outside a package imports that package's ``_private`` modules.

    Configuration options:
        - packages: the root packages whose private modules are checked.
    """

    type_name = "private_modules"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        roots = {str(p) for p in self.packages}  # type: ignore[attr-defined]
        found = private_imports(graph, roots)
        return ContractCheck(kept=not found, metadata={"imports": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for importer, imported, lines in check.metadata["imports"]:
            where = ", ".join(f"l.{n}" for n in lines)
            output.print_error(f"{importer} -> {imported} ({where}): {imported} is private to its package")
            output.new_line()
