"""The README's benchmark commands run and print their comparison tables (one repeat, few frames: what is
checked is that the benchmarks work and compare the right things, not the figures)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_benchmark_commands_print_their_tables() -> None:
    readme = (ROOT / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith("python -m benchmarks.run")]
    assert {re.search(r"--pipeline (\w+)", line).group(1) for line in lines} == {"video", "makeup", "talk", "identity"}
    expected = {
        "video": ["| genface |", "| diffusers |", "time vs diffusers"],
        "makeup": ["| genface |", "| diffusers + processor swap |", "Transformer FLOPs"],
        "talk": ["| diffusers loop |", "| genface model path |", "| genface end to end |", "| 512x512 |"],
        "identity": ["| IdentityEncoder.encode (all of the above) |"],
    }
    for line in lines:
        pipeline = re.search(r"--pipeline (\w+)", line).group(1)
        quick = ["--repeats", "1"] + (["--frames", "4", "--batch-size", "4"] if pipeline == "talk" else [])
        command = [sys.executable, *shlex.split(line, comments=True)[1:], *quick]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)  # noqa: S603
        assert done.returncode == 0, done.stderr[-3000:]
        for text in expected[pipeline]:
            assert text in done.stdout, (pipeline, text, done.stdout)
