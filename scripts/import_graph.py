"""Import graph of src/mfjko: print the import circles, exit 1 if there is any.

Every module of the package is parsed with ``ast`` (nothing is imported, so this runs in
well under a second); every ``import`` / ``from ... import`` statement counts, at module
level AND inside functions, classes or ``if`` blocks (a function-local import is still an
import: it only delays the circle to call time).

Edges, as Python executes them:

- ``import mfjko.a.b`` → ``mfjko.a.b``;
- ``from mfjko.a import b`` → ``mfjko.a.b`` when ``b`` is a submodule, else ``mfjko.a``
  (the package's ``__init__``, through which the name is re-exported);
- relative imports are resolved against the importing module's package;
- importing ``mfjko.a.b`` also runs ``mfjko/a/__init__.py`` first: an edge to the package
  ``mfjko.a`` too, unless the importer is inside ``mfjko.a`` (then that ``__init__`` is
  already running or done). So ``mfjko.driver`` importing ``mfjko.methods.base`` depends on
  ``mfjko.methods``, whose ``__init__`` imports every method: a method importing the
  driver is a circle (``import mfjko.driver`` fails on it). ``--no-packages`` leaves these
  edges out (the grimp / import-linter convention).

A circle is a strongly connected component of more than one module, or a module that
imports itself. Usage::

    python scripts/import_graph.py            # the circles, exit 1 if any
    python scripts/import_graph.py --edges    # also every edge, with its line numbers
    python scripts/import_graph.py --no-packages  # without the package-__init__ edges
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "mfjko"


def modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` file of the package."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports_of(name: str, path: Path, known: dict[str, Path],
               packages: bool = True) -> dict[str, list[int]]:
    """The package modules that module ``name`` imports → the lines where it does.

    ``packages``: count the ``__init__`` of the packages an import runs (module docstring).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    # the package a relative import is resolved against
    here = name.split(".") if _is_package(path) else name.split(".")[:-1]
    found: dict[str, list[int]] = defaultdict(list)

    def add(target: str, line: int) -> None:
        # the deepest package module named by target (mfjko.a.b.func → mfjko.a.b)
        parts = target.split(".")
        while parts and ".".join(parts) not in known:
            parts.pop()
        if not parts:
            return
        targets = [".".join(parts)]
        if packages:  # the enclosing packages' __init__, unless name is inside them
            targets += [pkg for pkg in (".".join(parts[:i]) for i in range(1, len(parts)))
                        if name != pkg and not name.startswith(pkg + ".")]
        for target in targets:
            if line not in found[target]:
                found[target].append(line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else list(here)
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source != PACKAGE and not source.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                add(sub if sub in known else source, node.lineno)
    return dict(found)


def graph(root: Path = ROOT, package: str = PACKAGE,
          packages: bool = True) -> dict[str, dict[str, list[int]]]:
    """Module → {imported module → lines}, over the whole package."""
    known = modules(root, package)
    return {name: imports_of(name, path, known, packages) for name, path in known.items()}


def cycles(g: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """The import circles: strongly connected components of > 1 module, and self-imports.

    Tarjan's algorithm, iterative (no recursion limit), components sorted by name.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(g):
        if start in index:
            continue
        work = [(start, iter(sorted(g[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(g.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1 or node in g.get(node, {}):
                    out.append(sorted(comp))
    return sorted(out)


def describe(comp: list[str], g: dict[str, dict[str, list[int]]]) -> str:
    """One circle: its modules, then the edges inside it with their line numbers."""
    members = set(comp)
    lines = [" ↔ ".join(comp)]
    for a in comp:
        for b, at in sorted(g[a].items()):
            if b in members:
                lines.append(f"    {a} → {b}  (line {', '.join(map(str, at))})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="print every edge too")
    parser.add_argument("--no-packages", action="store_true",
                        help="leave out the edges to the packages whose __init__ an import runs")
    args = parser.parse_args(argv)
    g = graph(packages=not args.no_packages)
    if args.edges:
        for a in sorted(g):
            for b, at in sorted(g[a].items()):
                print(f"{a} → {b}  ({', '.join(map(str, at))})")
    found = cycles(g)
    n_edges = sum(len(v) for v in g.values())
    print(f"{len(g)} modules, {n_edges} import edges, {len(found)} circle(s)")
    for comp in found:
        print(describe(comp, g))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
