"""The documentation: it builds without a warning, the front page stays a front page whose links resolve, every code
block is run or checked by a test, and the architecture page matches the code's modules and imports."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from markdown.extensions.toc import slugify

from tests.doc_pages import PAGES, ROOT, bash_lines, blocks

ARCHITECTURE = ROOT / "docs" / "architecture.md"
# How each command line of the bash blocks is run or checked, by how it starts (the first prefix that fits).
BASH_LINES = {
    "pip install torch==2.13.0 -e . && genface identity --demo": "test_project.py::test_readme_run_command_works",
    "bash tests/install.sh && python -m pytest -n 2": "test_project.py::test_ci_runs_the_readme_test_command",
    "genface serve ": "test_web.py, in Chromium",
    "genface ": "test_project.py::test_doc_genface_commands_run",
    "python -m benchmarks.run ": "benchmarks/test_run.py",
    "accelerate launch examples/train_": "training/test_readme_commands.py parses them (they need GPUs)",
    "torchrun --nproc-per-node 2 examples/batch_generate.py ": "test_batch_generate.py runs it",
    # Not run: what they need is not on a test machine.
    "accelerate launch --multi_gpu --num_processes 8 examples/batch_generate.py ": "not run: 8 GPUs",
    "accelerate launch examples/batch_generate.py ": "not run: ConsisID's weights and test set",
}


def test_the_docs_build_without_a_warning(tmp_path: Path) -> None:
    """`mkdocs build --strict` (offline: the built-in theme, docstrings read from the source): broken links and
    anchors, pages missing from the navigation and docstrings that do not render all fail it."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", ROOT / "mkdocs.yml", "--site-dir",
         tmp_path / "site"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0 and "WARNING" not in done.stderr, done.stderr
    assert (tmp_path / "site" / "api" / "index.html").read_text().count("IdentityVideoPipeline") > 1


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```$", "", page.read_text(), flags=re.S | re.M)
    return {slugify(re.sub(r"[`*]", "", title), "-") for title in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def test_the_front_page_is_short_and_its_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 250, "the README is the front page: move details to docs/"
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert {f"docs/{page.name}" for page in PAGES[1:]} <= {link.split("#")[0] for link in local}
    for link in local:
        path, _, anchor = link.partition("#")
        assert (ROOT / path).exists(), link
        assert not anchor or anchor in _anchors(ROOT / path), link


def test_every_block_is_run_or_checked_by_a_test() -> None:
    """No block is skipped silently: Python blocks run (those loading Hub weights are compiled), `py` blocks are
    compiled and say why they do not run, and every bash line is claimed in BASH_LINES."""
    kinds = {block.language for block in blocks()}
    assert kinds <= {"python", "py", "bash", "text"}, kinds
    for block in blocks("py") + blocks("python"):
        compile(block.text, block.where, "exec")
    for block in blocks("py"):
        assert block.text.startswith("# needs "), f"{block.where}: say what it needs in its first line"
    claimed = set()
    for block, line in bash_lines():
        prefix = next((prefix for prefix in BASH_LINES if line.startswith(prefix)), None)
        assert prefix, f"{block.where}: no test runs {line!r}; claim it in BASH_LINES"
        claimed.add(prefix)
    assert claimed == set(BASH_LINES), f"no longer in the docs: {set(BASH_LINES) - claimed}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    parts = ("genface", *parts) if parts[0] == "pipelines" else parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The genface modules ``path`` imports (at any depth: lazy imports inside functions count)."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            found.add(".".join(filter(None, (base, node.module))))
    return {name for name in found if name == "genface" or name.startswith("genface.")}


def _within(name: str, package: str) -> bool:
    """``name`` is ``package`` or inside it; the top-level ``genface`` covers only itself (its version, its exports)."""
    return name == package or (package != "genface" and name.startswith(package + "."))


def test_the_architecture_page_matches_the_code() -> None:
    """Every module of genface/ and pipelines/ is on the page (packages are its sections), and the page names no
    module that is not in the code;
    each imports only what its row of the import table allows; each package's docstring states that row."""
    page = ARCHITECTURE.read_text()
    rules = {
        name: cell
        for name, cell in re.findall(r"^\| `(genface[\w.]*)` \| (.*) \|$", page, flags=re.M)
    }  # fmt: skip
    allowed = {name: set(re.findall(r"`(genface[\w.]*)`", cell)) for name, cell in rules.items()}
    files = sorted(p for folder in ("genface", "pipelines") for p in (ROOT / folder).rglob("*.py"))
    paths = re.findall(r"`((?:genface|pipelines)/[\w/]+\.py)`", page)
    on_page = {path for path in paths if not path.endswith("__init__.py")}  # packages are the page's sections
    in_code = {str(p.relative_to(ROOT)) for p in files if p.name != "__init__.py"}
    assert in_code <= on_page, f"modules missing from {ARCHITECTURE.name}: {in_code - on_page}"
    assert on_page <= in_code, f"modules on {ARCHITECTURE.name} that the code lacks: {on_page - in_code}"
    for path in files:
        module = _module_name(path)
        row = max((name for name in rules if _within(module, name)), key=len, default=None)
        assert row, f"{module} has no row in the import table of {ARCHITECTURE.name}"
        for target in _imports(path):
            ok = rules[row] == "all of genface" or any(_within(target, name) for name in {row, *allowed[row]})
            assert ok, f"{module} imports {target}, which {ARCHITECTURE.name} does not allow for {row}"
        if path.name == "__init__.py" and module == row:
            docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
            stated = re.search(r"^May import: (.*?)\.?(?:\n\n|\Z)", docstring, flags=re.M | re.S)
            said = stated and (set(re.findall(r"genface[\w.]*", stated.group(1))) if allowed[row] else stated.group(1))
            assert said == (allowed[row] or rules[row]), f"{path.relative_to(ROOT)}: 'May import: {rules[row]}'"
