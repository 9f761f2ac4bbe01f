"""The training commands of the docs (docs/training.md) are what the scripts accept (they need GPUs and downloads
to run; the tests beside this one run each script on tiny models)."""

from __future__ import annotations

import shlex
from pathlib import Path

from tests import doc_pages
from tests.training.scripts import EXAMPLES, load_script


def test_every_training_script_has_a_documented_command_it_accepts() -> None:
    commands = [shlex.split(line) for line in doc_pages.commands("accelerate launch examples/train_")]
    named = {Path(command[2]).stem for command in commands}
    assert named == {path.stem for path in EXAMPLES.glob("train_*.py")}
    for command in commands:
        args = load_script(Path(command[2]).stem).build_parser().parse_args(command[3:])
        assert args.output_dir is not None and args.mixed_precision == "bf16", command
