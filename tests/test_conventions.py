"""Conventions a tool can check (CONTRIBUTING.md): short module docstrings, one name per concept."""

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mfjko"


def _modules():
    return sorted(SRC.rglob("*.py"))


def test_module_docstrings_are_at_most_15_lines():
    long = {}
    for path in _modules():
        doc = ast.get_docstring(ast.parse(path.read_text()), clean=False)
        if doc and len(doc.splitlines()) > 15:
            long[str(path.relative_to(SRC))] = len(doc.splitlines())
    assert not long, f"module docstrings over 15 lines (maths goes to docs/): {long}"


def test_iterative_solvers_take_tol_and_max_iter():
    """No public function takes ``threshold``/``max_iterations``/``maxiter`` keywords."""
    bad = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                names = [a.arg for a in node.args.args + node.args.kwonlyargs]
                bad += [f"{path.relative_to(SRC)}:{node.name}({n})" for n in names
                        if n in ("threshold", "max_iterations", "maxiter", "tolerance")]
    assert not bad, bad


def test_no_benchmark_numbers_in_docstrings():
    """Speed claims live in benchmarks/README.md, not in docstrings."""
    pattern = re.compile(r"\b\d+(\.\d+)?\s*(ms|µs|us)\b|\b\d+(\.\d+)?\s*s (per|on this)")
    hits = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node) or ""
                if pattern.search(doc):
                    hits.append(f"{path.relative_to(SRC)}:{getattr(node, 'name', 'module')}")
    assert not hits, hits


def test_at_most_three_functions_over_sixty_lines_and_each_says_why():
    """CONTRIBUTING: long functions are split by concept; the few that stay long (one jitted
    solver whose inner functions share traced state) carry a comment saying why."""
    import ast
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "mfjko"
    long = []
    for f in sorted(src.rglob("*.py")):
        text = f.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > 60:
                    body = "\n".join(text.splitlines()[max(0, node.lineno - 6):node.end_lineno])
                    long.append((f.name, node.name, "long" in body.lower()))
    assert len(long) <= 3, long
    assert all(why for *_, why in long), long
