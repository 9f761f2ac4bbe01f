"""The README's training commands are what the scripts accept (they need GPUs and downloads to run; the
tests beside this one run each script on tiny models)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.training.scripts import EXAMPLES, load_script

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_training_commands() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line) for line in lines if line.startswith("accelerate launch examples/train_")]


def test_every_training_script_has_a_readme_command_it_accepts() -> None:
    commands = readme_training_commands()
    named = {Path(command[2]).stem for command in commands}
    assert named == {path.stem for path in EXAMPLES.glob("train_*.py")}
    for command in commands:
        args = load_script(Path(command[2]).stem).build_parser().parse_args(command[3:])
        assert args.output_dir is not None and args.mixed_precision == "bf16", command
