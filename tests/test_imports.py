"""genface's import graph, read from the source of every module of genface/ and pipelines/, has no circle. Imports
inside functions count: importing lazily keeps ``import genface`` light, but the dependency is the same. (Which
way each import may go is docs/architecture.md's table, checked by tests/test_docs.py.)"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Where each top-level package's source lives (pipelines/ is installed as genface.pipelines).
SOURCES = {"genface": ROOT / "genface", "genface.pipelines": ROOT / "pipelines"}


def _modules() -> dict[str, Path]:
    modules = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            modules[".".join((package, *parts))] = path
    return modules


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, inside functions too (a lazy import is still a dependency), but not those under
    ``if TYPE_CHECKING:`` (annotations only)."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif not (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)):
            found.extend(_imports(node))
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the genface modules it imports (``from package import submodule`` counts as the submodule)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
                candidates = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
                ]
            targets |= {c for c in candidates if c in modules and c != name}
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_circle() -> None:
    assert _cycles(import_graph()) == []


def test_the_check_finds_a_circle() -> None:
    """A circle through a package's ``__init__`` (as identity's was: the insightface engine imported the ArcFace
    recognizer, whose loader imported the engine back) and a plain one."""
    graph = {"genface.a": {"genface.b"}, "genface.b": {"genface.c.d"}, "genface.c.d": {"genface.a"}, "genface.e": set()}
    assert _cycles(graph) == [["genface.a", "genface.b", "genface.c.d"]]
