"""Imports point down: every module of ``lookalike`` imports only lower layers.

``LAYERS`` is the one table of the architecture (docs/architecture.md draws it). Each module
belongs to a *unit*: its subpackage (``lookalike/grouping/keep.py`` -> ``grouping``) or, for a
top-level module, its own name (``lookalike/pipeline.py`` -> ``pipeline``; the package's
``__init__`` -> ``lookalike``). A module may import

* a module of its own unit, or
* a module of a unit of a strictly lower rank;

never a higher rank, nor another unit of its own rank, and no two modules may import each
other, directly or through others (a cycle). Every import counts, also the ones inside
functions (they load just as surely, only later); only ``if TYPE_CHECKING:`` blocks are left
out, since they never run. ``from lookalike import __version__`` imports the package itself
(rank 10), so it counts as an upward import too.

Order, low to high, and why:

0. ``errors``, ``version``: the exception types and ``Problem``; the version string. Neither
   imports anything of ours.
1. ``model``, ``config``, ``events``, ``paths``, ``outputs``: plain values, settings,
   progress protocol, lexical path helpers (no I/O); writing an output file whole.
2. ``executors``, ``inputs``, ``imaging``, ``search``: the independent engines (how work runs,
   where bytes come from, bytes to hashes, hashes to pairs).
3. ``grouping``, ``worker``: pairs to groups (and the edges between hash values a re-scan
   starts from) and keep decisions; the per-batch work an executor runs (``worker`` reads
   with ``inputs`` and hashes with ``imaging``, so it sits above both).
4. ``store``: the hash cache and the Parquet output; the cache also keeps the last scans'
   edges (``grouping.Edges``), so it sits above grouping. ``verify``: the scan's embedding
   stage, which verifies pairs with ``grouping``'s plan by reading (``inputs``) and aligning
   (``imaging``) pictures.
5. ``pipeline``: the scan, one flat sequence of phases over the layers below.
6. ``analysis``: what is computed from a finished scan (leakage, calibration, queries).
7. ``report``: the report file, its text/CSV views and the HTML page.
8. ``actions``: plan, apply and undo file operations from a report.
9. ``jobs``: what each command does, as one library function (scan then write the outputs,
   plan then apply, ...): it uses every layer below, and the entry points use it.
10. ``cli`` and the package ``__init__``: the entry points. ``cli`` may not import the
    package (``from lookalike import __version__``): both are entry points, neither builds
    on the other; the version lives in ``version``.
11. ``__main__``: ``python -m lookalike``, which runs ``cli``.

The test fails with one ``file:line`` per offending import, so the fix is found at once. A
module that is in no unit of the table fails too: give it a layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "lookalike"
SRC = Path(__file__).resolve().parent.parent / "src" / PACKAGE

#: unit -> rank. The one table of the layering.
LAYERS: dict[str, int] = {
    "errors": 0, "version": 0,
    "model": 1, "config": 1, "events": 1, "paths": 1, "outputs": 1,
    "executors": 2, "inputs": 2, "imaging": 2, "search": 2,
    "grouping": 3, "worker": 3,
    "store": 4, "verify": 4,
    "pipeline": 5,
    "analysis": 6,
    "report": 7,
    "actions": 8,
    "jobs": 9,
    "cli": 10, PACKAGE: 10,
    "__main__": 11,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path, known: set[str]) -> list[tuple[int, str]]:
    """``(line, imported lookalike module)`` for every import that can run."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:  # the else branch does run
                    visit_stmt(sub)
                continue
            visit_stmt(child)

    def visit_stmt(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names
                         if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] == PACKAGE:
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    # ``from pkg import submodule`` imports the submodule; anything else
                    # (a name, or ``*``) is an import of ``base`` itself.
                    found.append((node.lineno, sub if sub in known else base))
        visit(node)

    visit(tree)
    return found


def _graph() -> tuple[dict[str, Path], dict[str, list[tuple[int, str]]]]:
    modules = _modules()
    known = set(modules)
    return modules, {m: _imports(m, p, known) for m, p in modules.items()}


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(SRC.parent.parent)}:{line}"


def test_every_module_has_a_layer():
    missing = sorted(m for m in _modules() if _unit(m) not in LAYERS)
    assert missing == [], f"modules in no layer of tests/test_layers.py LAYERS: {missing}"


def test_imports_point_down():
    modules, graph = _graph()
    bad: list[str] = []
    for module, imports in graph.items():
        unit = _unit(module)
        if unit not in LAYERS:
            continue  # reported by test_every_module_has_a_layer
        for line, target in imports:
            other = _unit(target)
            if other == unit:
                continue
            rank, other_rank = LAYERS[unit], LAYERS.get(other, -1)
            if other_rank >= rank:
                how = "a higher layer" if other_rank > rank else "another unit of its layer"
                bad.append(f"{_where(modules[module], line)}: {module} ({unit}, layer {rank}) "
                           f"imports {target} ({other}, layer {other_rank}): {how}")
    assert bad == [], "imports that do not point down:\n" + "\n".join(bad)


def _cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan): each is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
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
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return sorted(cycles)


def test_no_import_cycles():
    modules, graph = _graph()
    # A module importing itself is harmless and left out.
    edges = {m: sorted({t for _, t in imps if t in modules and t != m})
             for m, imps in graph.items()}
    line_of = {(m, t): line for m, imps in graph.items() for line, t in reversed(imps)}
    cycles = _cycles(edges)
    report = []
    for component in cycles:
        inside = set(component)
        links = [f"  {_where(modules[m], line_of[(m, t)])}: {m} -> {t}"
                 for m in component for t in edges[m] if t in inside]
        report.append(f"cycle among {', '.join(component)}:\n" + "\n".join(links))
    assert cycles == [], "import cycles:\n" + "\n".join(report)


def test_the_cycle_finder_finds_cycles_and_only_them():
    edges = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a", "e"], "e": ["f"], "f": ["e"],
             "g": []}
    assert _cycles(edges) == [["a", "b", "c"], ["e", "f"]]
    assert _cycles({"a": ["b"], "b": [], "c": ["a", "b"]}) == []


def test_the_checker_sees_function_level_imports_and_skips_type_checking(tmp_path):
    # The rules above are only as good as the parser: check it on a known module.
    source = ("from typing import TYPE_CHECKING\n"
              "from lookalike.errors import ConfigError\n"
              "if TYPE_CHECKING:\n"
              "    from lookalike.pipeline import ScanResult\n"
              "def f():\n"
              "    from lookalike.actions import plan\n"
              "    import lookalike.report.schema\n"
              "    from . import keep\n")
    path = tmp_path / "x.py"
    path.write_text(source)
    known = {"lookalike.actions.plan", "lookalike.grouping.keep"}
    found = _imports("lookalike.grouping.x", path, known)
    assert found == [(2, "lookalike.errors"), (6, "lookalike.actions.plan"),
                     (7, "lookalike.report.schema"), (8, "lookalike.grouping.keep")]
