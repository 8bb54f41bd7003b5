"""The package's import graph: no cycles (lazy imports count), no private names imported across packages, and the
space model (``fbnas.space``) stays free of torch. Each check runs once on a synthetic case that must fail."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks (annotation-only imports)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(source: str, modules: set[str]) -> list[tuple[str, str]]:
    """(imported module, imported name or '') of every fbnas import in ``source``, at any depth."""
    tree = ast.parse(source)
    skip = _type_checking_lines(tree)
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names if a.name.split(".")[0] == "fbnas"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fbnas":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((sub, "") if sub in modules else (node.module, a.name))
    return out


def import_graph(root: Path = SRC) -> dict[str, list[tuple[str, str]]]:
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    return {m: imports_of(p.read_text(encoding="utf-8"), set(files)) for m, p in files.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def package_of(module: str) -> str:
    """``fbnas.search.dnas`` -> ``fbnas.search``; top-level modules (``fbnas.io``) are their own package."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(graph: dict[str, list[tuple[str, str]]]) -> list[str]:
    bad = []
    for mod, imports in graph.items():
        for target, name in imports:
            private = _is_private(name) or any(_is_private(p) for p in target.split("."))
            if private and package_of(target) != package_of(mod):
                bad.append(f"{mod} imports {target}{'.' + name if name else ''}")
    return bad


def _edges(graph: dict[str, list[tuple[str, str]]]) -> dict[str, set[str]]:
    return {m: {t for t, _ in imps if t in graph and t != m} for m, imps in graph.items()}


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 40  # the walk found the package
    assert find_cycles(_edges(graph)) == []


def test_no_private_imports_across_packages():
    assert private_imports(import_graph()) == []


def test_space_model_does_not_import_torch():
    for path in (SRC / "fbnas" / "space").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "torch" for n in names), path


def test_negative_controls(tmp_path):
    pkg = tmp_path / "fbnas"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    for f in ("__init__.py", "a/__init__.py", "b/__init__.py"):
        (pkg / f).write_text("")
    (pkg / "a" / "x.py").write_text("def f():\n    from fbnas.b.y import _helper\n")
    (pkg / "b" / "y.py").write_text("from fbnas.a import x\n\ndef _helper():\n    pass\n")
    graph = import_graph(tmp_path)
    assert find_cycles(_edges(graph)) == [["fbnas.a.x", "fbnas.b.y"]]  # a lazy import closes the cycle
    assert private_imports(graph) == ["fbnas.a.x imports fbnas.b.y._helper"]
