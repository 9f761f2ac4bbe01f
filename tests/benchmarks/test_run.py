"""The README's benchmark commands run and print their comparison tables (one repeat, few frames: what is
checked is that the benchmarks work and compare the right things, not the figures)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_benchmark_commands_print_their_tables(capsys) -> None:
    """Run in this process (`python -m benchmarks.run` only calls `main`), so each skips a fresh torch import."""
    from benchmarks.run import main

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
        command = shlex.split(line, comments=True)
        assert command[:3] == ["python", "-m", "benchmarks.run"]
        capsys.readouterr()
        main([*command[3:], *quick])
        printed = capsys.readouterr().out
        for text in expected[pipeline]:
            assert text in printed, (pipeline, text, printed)
