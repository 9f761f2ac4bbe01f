"""genface's import graph, read from the source of every module of genface/ and pipelines/: no circle, and every
import goes the way DESIGN.md's map says. Imports inside functions count: importing lazily keeps ``import
genface`` light, but the dependency is the same."""

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


def _within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


#: DESIGN.md's direction: cli/web -> pipelines -> genface.models, genface.identity, genface.eval -> genface.media.
#: (importers, exempt importers, what they may not import, why)
RULES = [
    (
        ("genface",),
        ("genface.cli", "genface.web", "genface.__main__"),
        ("genface.cli", "genface.web"),
        "they are the top",
    ),
    (("genface",), ("genface.cli", "genface.web", "genface.pipelines"), ("genface.pipelines",), "pipelines are above"),
    (
        ("genface.identity",),
        (),
        ("genface.models", "genface.eval", "genface.training", "genface.pipelines"),
        "identity is below them",
    ),
    (("genface.eval",), (), ("genface.training",), "evaluation uses identity and models only"),
    (
        ("genface.media",),
        (),
        ("genface.identity", "genface.models", "genface.eval", "genface.training"),
        "media is below",
    ),
    (("genface.arguments", "genface.errors"), (), (), "the argument rules and errors import only genface.errors"),
]


def direction_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import against :data:`RULES` (no banned list: any genface module but genface.errors)."""
    found = []
    for importer, targets in sorted(graph.items()):
        for target in sorted(targets):
            for importers, exempt, banned, why in RULES:
                if not _within(importer, *importers) or _within(importer, *exempt):
                    continue
                if _within(target, *(banned or ("genface",))) and not (not banned and target == "genface.errors"):
                    found.append(f"{importer} imports {target}: {why}")
    return found


def test_no_import_circle() -> None:
    assert _cycles(import_graph()) == []


def test_imports_go_the_designed_way() -> None:
    assert direction_violations(import_graph()) == []


def test_the_checks_catch_what_they_look_for() -> None:
    """A circle, a pipeline imported by the identity stack, and the rules' module importing more than errors."""
    graph = {"genface.a": {"genface.b"}, "genface.b": {"genface.a"}, "genface.c": set()}
    assert _cycles(graph) == [["genface.a", "genface.b"]]
    graph = {"genface.identity.x": {"genface.pipelines.makeup"}, "genface.arguments": {"genface.media"}}
    assert len(direction_violations(graph)) == 3
