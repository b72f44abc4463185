"""No two modules of `revoctl` import each other: a cycle means neither can be read,
tested or changed alone. Imports under ``TYPE_CHECKING`` count (mypy follows them)."""

from __future__ import annotations

import grimp


def mutual_imports(graph: grimp.ImportGraph) -> set[tuple[str, str]]:
    """Each pair of modules that import each other, the pair in name order."""
    pairs = set()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            if importer in graph.find_modules_directly_imported_by(imported):
                first, second = sorted((importer, imported))
                pairs.add((first, second))
    return pairs


def test_no_two_modules_import_each_other() -> None:
    assert mutual_imports(grimp.build_graph("revoctl", cache_dir=None)) == set()


def test_a_cycle_is_found() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert mutual_imports(graph) == {("pkg.a", "pkg.b")}
