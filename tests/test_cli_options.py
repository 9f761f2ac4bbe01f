"""The command line's options, pinned: splitting genface/cli.py into a package (one module per command) kept
every command's option names, and each command's --help lists its flags."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from genface.cli import build_parser

# What `genface [COMMAND] --help` listed before the split (positionals by name), in order, -h/--help aside; and
# what issue 27 added since: `eval --judges`, `genface samples`.
OPTIONS = {
    "genface": ["--version", "-v", "--verbose"],
    "info": ["--json"],
    "samples": ["folder"],
    "identity": ["reference", "target", "--save", "--face-index", "--backend", "--weights", "--demo", "--json"],
    "video": ["--face", "--identity", "--prompt", "--negative-prompt", "--out", "--model", "--steps", "--guidance",
              "--seed", "--frames", "--height", "--width", "--fps", "--face-index", "--device", "--dtype",
              "--low-memory", "--attention", "--dynamic-cfg", "--no-reference-cache", "--guidance-2",
              "--conditioning-scale", "--json"],
    "makeup": ["--face", "--reference", "--out", "--strength", "--regions", "--model", "--injector", "--steps",
               "--guidance", "--seed", "--size", "--face-index", "--device", "--dtype", "--low-memory", "--json"],
    "talk": ["--face", "--audio", "--out", "--model", "--vae", "--whisper", "--fps", "--face-index", "--silence",
             "--batch-size", "--prepared", "--blend", "--steps", "--guidance", "--seed", "--unet-config",
             "--resolution", "--device", "--dtype", "--low-memory", "--no-metrics", "--json"],
    "portrait": ["--photo", "--audio", "--out", "--model", "--hubert", "--emotion", "--head-motion", "--blink-rate",
                 "--pitch", "--yaw", "--roll", "--alpha-pitch", "--alpha-yaw", "--alpha-roll", "--vad-alpha",
                 "--fade-in", "--fade-out", "--fade-type", "--no-motion-clamp", "--max-size", "--source-smoothing",
                 "--steps", "--seed", "--batch-size", "--face-index", "--device", "--dtype", "--no-metrics", "--json"],
    "eval": ["kind", "input", "--out", "--videos", "--jobs", "--seed", "--protocol", "--face-encoder", "--face-pack",
             "--curricularface", "--inception", "--fid-inception", "--fid-real", "--clip", "--frames", "--syncnet",
             "--latentsync-syncnet", "--parser", "--size", "--judges", "--backend", "--weights", "--detector",
             "--detector-weights", "--device", "--json"],
    "verify": ["files", "--detector", "--detector-weights", "--device", "--json"],
    "convert": ["source", "out", "--attention-head-dim", "--vae", "--whisper", "--latentsync", "--unet-config",
                "--resolution", "--ditto", "--hubert", "--fsfm", "--subfolder"],
    "serve": ["--model", "--host", "--port", "--device", "--concurrency", "--max-queue"],
}  # fmt: skip


def _names(parser: argparse.ArgumentParser) -> list[str]:
    return [
        name
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
        for name in action.option_strings or [action.dest]
    ]


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_command_keeps_its_options() -> None:
    parser = build_parser()
    found = {"genface": _names(parser)} | {name: _names(sub) for name, sub in _commands(parser).items()}
    assert {name: found.get(name) for name in OPTIONS} == OPTIONS


@pytest.mark.parametrize("command", [name for name in OPTIONS if name != "genface"])
def test_each_help_lists_its_options(command: str) -> None:
    text = _commands(build_parser())[command].format_help()
    assert all(name in text for name in OPTIONS[command] if name.startswith("-"))


def test_genface_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "genface", "--help"], capture_output=True, text=True, check=True)
    assert all(name in out.stdout for name in OPTIONS)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["video", "--prompt", "p", "--out", "o.mp4", "--seeed", "3"],
         "genface video: error: unrecognized arguments: --seeed 3; did you mean --seed? (see `genface video --help`)"),
        (["video", "--promt", "p", "--out", "o.mp4"],  # the typo, not the --prompt it left missing
         "genface video: error: unrecognized arguments: --promt; did you mean --prompt?"),
        (["talk", "--face", "f.jpg", "--adio=s.wav", "--out", "o.mp4"],
         "unrecognized arguments: --adio; did you mean --audio?"),
        (["video", "--prompt", "p", "--out", "o.mp4", "--colour", "red"],
         "genface video: error: unrecognized arguments: --colour red (see `genface video --help`)"),
        (["video", "--out", "o.mp4"], "genface video: error: the following arguments are required: --prompt (see"),
    ],
)  # fmt: skip
def test_an_unknown_option_is_named_by_its_command_with_the_nearest_known_one(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 1 and expected in capsys.readouterr().err
