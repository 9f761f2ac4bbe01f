"""The code blocks of the front page (README.md) and the documentation (docs/*.md), for the tests that run them.

Each kind of block is claimed by a test (tests/test_docs.py fails on one that none claims):
- ```python: run in order, one namespace per page (tests/test_project.py); a block loading a Hub id is compiled.
- ```py: compiled, not run; its first line is a comment saying what it needs.
- ```bash: each line by its command (see ``BASH_LINES`` in tests/test_docs.py).
- ```text: not code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", flags=re.S | re.M)
HUB = re.compile(r'from_pretrained\(\s*"[\w.-]+/[\w.-]+"')  # a Hub id: needs the network and real weights


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, from 1
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def loads_hub_weights(self) -> bool:
        return bool(HUB.search(self.text))


def blocks(language: str | None = None) -> list[Block]:
    """Every fenced block of every page (README.md first, then docs/ by name), in page order."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(page, line, match.group(1), match.group(2)))
    return [block for block in found if language is None or block.language == language]


def bash_lines() -> list[tuple[Block, str]]:
    """Each command line of the bash blocks (continued lines joined), comments and blank lines left out."""
    return [
        (block, line)
        for block in blocks("bash")
        for line in block.text.replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def commands(prefix: str) -> list[str]:
    """The distinct bash lines that start with ``prefix``, in page order (a line on two pages runs once)."""
    return list(dict.fromkeys(line for _, line in bash_lines() if line.startswith(prefix)))
