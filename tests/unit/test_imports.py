"""The import graph of masd has no cycle: no module reaches itself through its imports.

Every import counts — at module level, inside functions and under ``TYPE_CHECKING`` — because each is a
dependency a reader has to hold in mind. The layers and the other contracts are in ``.importlinter``
(checked by ``lint-imports`` in ./scripts/test); this test is the module-by-module half of its
no-cycles rule, for the packages that hold two floors (masd.core: services over the store, and pure
functions under it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp

ROOTS = ("masd", "masd_adapters")


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative), and self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.find_modules_directly_imported_by(node):
                    found.append(sorted(component))
    return found


def test_no_module_of_masd_reaches_itself_through_its_imports() -> None:
    graph = grimp.build_graph(*ROOTS, include_external_packages=False)
    assert _cycles(graph) == []


def test_the_cycle_finder_sees_a_cycle_through_a_function_local_import(tmp_path: Path) -> None:
    # The check above is only worth something if it would see one: a two-module package whose second
    # module imports the first inside a function.
    pkg = tmp_path / "cyclic_probe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyclic_probe import b\n")
    (pkg / "b.py").write_text("def f():\n    from cyclic_probe import a\n    return a\n")
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("cyclic_probe", include_external_packages=False, cache_dir=None)
    finally:
        sys.path.remove(str(tmp_path))
    assert _cycles(graph) == [["cyclic_probe.a", "cyclic_probe.b"]]
