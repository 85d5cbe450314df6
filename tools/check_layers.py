#!/usr/bin/env python3
"""Check romanflow's import graph: no cycle, and no level importing a higher one.

Every ``import`` and ``from ... import`` in ``src/romanflow`` is read with :mod:`ast`, those inside
functions included. ``from romanflow.pkg import name`` counts as importing the module
``romanflow.pkg.name`` when that is a module, else ``romanflow.pkg``. The levels, lowest first, are
:data:`LEVELS`; a module may import modules of its own level or of lower ones. Cycles are looked for
between modules (strongly connected components of the graph), so two modules of one level may not
import each other either.

Usage::

    python tools/check_layers.py [SRC_DIR]     # exit 0 when clean, 1 with one line per problem
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

#: The levels, lowest first: each entry names the top-level modules or packages under ``romanflow``.
LEVELS = (
    ("base", ("errors", "version", "bitmask", "detector", "dq", "source_flags")),
    ("kernels", ("kernels",)),
    ("core", ("exposure", "formats", "geometry", "detector_model", "provenance", "refdata")),
    ("psf", ("psf",)),
    ("simulate", ("simulate",)),
    ("calibrate", ("calibrate",)),
    ("astrometry", ("astrometry",)),
    ("mosaic", ("mosaic",)),
    ("catalog", ("catalog",)),
    ("hips", ("hips",)),
    ("inject", ("inject",)),
    ("run", ("run",)),
    ("archive", ("archive",)),
    ("services", ("services",)),
    ("top", ("validation", "demo", "cli", "")),  # "" is the root package, romanflow/__init__.py
)

PACKAGE = "romanflow"


def level_of(module: str) -> int:
    """Index in :data:`LEVELS` of a dotted module name (``romanflow.catalog.parquet`` -> catalog's)."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else ""
    for index, (_, members) in enumerate(LEVELS):
        if head in members:
            return index
    raise LookupError(f"{module}: not assigned to a level in tools/check_layers.py LEVELS")


def module_names(src: Path) -> dict[str, Path]:
    """Dotted name -> file for every module of the package under ``src``."""
    names = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """Modules of the package that ``name`` imports, with the line of each import."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = []
            for alias in node.names:
                child = f"{origin}.{alias.name}"
                targets.append(child if child in known else origin)
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                # "import romanflow.a.b" depends on the deepest known module it names
                while target not in known and "." in target:
                    target = target.rpartition(".")[0]
                if target in known and target != name and (target, node.lineno) not in found:
                    found.append((target, node.lineno))
    return found


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
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
                    work.append((child, iter(sorted(graph[child]))))
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
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def check(src: Path) -> list[str]:
    """Every problem found, one line each: upward imports, unassigned modules, then cycles."""
    known = module_names(src)
    problems = []
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        try:
            own = level_of(name)
        except LookupError as exc:
            problems.append(str(exc))
            continue
        for target, line in imports_of(name, path, known):
            graph[name].add(target)
            try:
                other = level_of(target)
            except LookupError:
                continue  # reported for the target itself
            if other > own:
                rel = path.relative_to(src)
                problems.append(f"{rel}:{line}: {name} ({LEVELS[own][0]}) imports {target} "
                                f"({LEVELS[other][0]}), a higher level")
    for component in find_cycles(graph):
        problems.append("import cycle: " + " <-> ".join(component))
    return problems


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    src = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "src"
    problems = check(src)
    for line in problems:
        print(line)
    n_modules = len(module_names(src))
    print(f"{n_modules} modules, {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
