#!/usr/bin/env python3
"""List the import cycles among fer_bench's modules, function-level imports included; exit 1 when there is one.

    python scripts/import_graph.py                    # cycles in fer_bench/
    python scripts/import_graph.py --edges            # also every import edge, one "a -> b" a line
    python scripts/import_graph.py --root path/to/pkg # another package folder

Reads the source with ``ast`` only (never imports the package, so neither torch nor numpy is needed). Every
``import`` and ``from ... import`` anywhere in a module counts: at the top, inside a function, under ``if
TYPE_CHECKING``. Relative imports are resolved against the importing module; ``from pkg.x import y`` is an edge to
``pkg.x.y`` when that is a module, else to ``pkg.x``. Importing a submodule is not counted as importing its parent
packages' ``__init__``, as import-linter counts it. A cycle is a strongly connected component of more than one
module, printed as its sorted members with the edges that join them.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path


def list_modules(root: Path) -> dict[str, Path]:
    """Module name -> file for every .py under the package folder ``root`` (its name is the package's)."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _resolve_base(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute module a ``from`` import names, ``level`` dots up from ``module``."""
    if level == 0:
        return name or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]  # a module's own package is one dot up
    if level > 1:
        parts = parts[:len(parts) - (level - 1)]
    return ".".join([*parts, name] if name else parts)


def collect_imports(module: str, path: Path, known: Iterable[str]) -> set[str]:
    """The modules of ``known`` (the package's) that ``module`` imports anywhere in its file."""
    known = set(known)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                # `import a.b.c` binds a and loads a.b.c; the edge is to the deepest module of ours it names.
                while name and name not in known:
                    name = name.rpartition(".")[0]
                if name:
                    found.add(name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_base(module, is_package, node.level, node.module)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in known:
                    found.add(target)
                elif base in known:
                    found.add(base)
    found.discard(module)
    return found


def build_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, for every module under ``root``."""
    modules = list_modules(root)
    return {name: collect_imports(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, each sorted, in order of their first member.

    Tarjan's algorithm, iterative so that a deep chain of imports cannot exhaust Python's recursion limit.
    """
    edges = {node: sorted(set(targets) & set(graph)) for node, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def format_cycle(component: list[str], graph: Mapping[str, Iterable[str]]) -> str:
    """A cycle as its members, then the edges among them, indented."""
    members = set(component)
    lines = [f"cycle of {len(component)} modules: {', '.join(component)}"]
    for node in component:
        for target in sorted(set(graph[node]) & members):
            lines.append(f"    {node} -> {target}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent / "fer_bench",
                        help="the package folder to scan. Default: %(default)s")
    parser.add_argument("--edges", action="store_true", help="also print every import edge")
    args = parser.parse_args(argv)
    if not (args.root / "__init__.py").is_file():
        parser.error(f"{args.root}: not a package folder (no __init__.py)")
    graph = build_graph(args.root)
    if args.edges:
        for node in sorted(graph):
            for target in sorted(graph[node]):
                print(f"{node} -> {target}")
    cycles = find_cycles(graph)
    for component in cycles:
        print(format_cycle(component, graph))
    edge_count = sum(len(targets) for targets in graph.values())
    print(f"{len(graph)} modules, {edge_count} import edges, {len(cycles)} cycle(s)")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
