"""Loading an example training script as a module, and reading the losses it logged."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def logged_losses(folder: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (folder / "losses.jsonl").read_text().splitlines())}


def run_on_two_processes(name: str, arguments: list[str]) -> None:
    """Run an example training script on 2 CPU processes with torchrun (data parallel, gloo)."""
    if shutil.which("torchrun") is None:
        raise AssertionError("torchrun (installed with torch) is not on PATH")
    command = ["torchrun", "--nproc-per-node", "2", str(EXAMPLES / f"{name}.py"), *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)  # noqa: S603
    assert done.returncode == 0, done.stderr[-3000:]
