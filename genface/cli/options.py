"""The option groups several commands share, each declared once, and the parser every command uses."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit code 1, as every error a user can fix) that point to ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def number(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], int | float]:
    """An argparse ``type`` that reads an int or a finite float from ``low`` to ``high`` (NaN is refused)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {kind(low)} to {kind(high)}, got {text}")
        return value

    return parse


STEPS = number(int, 1, 1000)  # the schedulers' training timesteps
GUIDANCE = number(float, 0, 50)
SEED = number(int, 0, 2**63 - 1)  # torch.Generator.manual_seed's range
FACE_INDEX = number(int, 0, 999)
FPS = number(float, 1, 120)
BATCH = number(int, 1, 256)
SIDE = number(int, 16, 2048)
FRAMES = number(int, 1, 257)


def command(
    commands: argparse._SubParsersAction, name: str, help: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand's parser; its ``epilog`` (examples) is printed as written."""
    formatter = argparse.RawDescriptionHelpFormatter if epilog else argparse.HelpFormatter
    return commands.add_parser(name, help=help, epilog=epilog, formatter_class=formatter)


def add_json(parser: argparse.ArgumentParser, help: str = "machine-readable result") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def add_out(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--out", required=True, help=help)


def add_model(parser: argparse.ArgumentParser, default: str, help: str = "Hub id, local folder, or 'tiny'") -> None:
    parser.add_argument("--model", default=default, help=help)


def add_steps(parser: argparse.ArgumentParser, default: int, what: str = "denoising steps") -> None:
    parser.add_argument("--steps", type=STEPS, default=default, help=f"{what}, 1-1000 (default {default})")


def add_guidance(parser: argparse.ArgumentParser, default: float) -> None:
    parser.add_argument(
        "--guidance", type=GUIDANCE, default=default, help=f"classifier-free guidance, 0-50 (default {default:g})"
    )


def add_seed(parser: argparse.ArgumentParser, what: str = "random seed") -> None:
    parser.add_argument("--seed", type=SEED, default=42, help=f"{what}, 0 to 2^63-1 (default 42)")


def add_face_index(parser: argparse.ArgumentParser, where: str) -> None:
    parser.add_argument(
        "--face-index", type=FACE_INDEX, default=None, help=f"which face {where} (0 = largest; up to 999)"
    )


def add_fps(parser: argparse.ArgumentParser, default: float | None, note: str) -> None:
    parser.add_argument("--fps", type=FPS, default=default, help=f"frame rate, 1-120 ({note})")


def add_batch_size(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--batch-size", type=BATCH, default=8, help=f"frames per {what} call, 1-256 (default 8)")


def add_device(parser: argparse.ArgumentParser, where: str = "") -> None:
    parser.add_argument("--device", default=None, help=f"{where}cuda, cpu, ... (default: cuda when available)")


def add_dtype(parser: argparse.ArgumentParser, usual: str) -> None:
    parser.add_argument(
        "--dtype", default=None, choices=["bf16", "fp16", "fp32"],
        help=f"weights' dtype (default: {usual}; fp32 for --model tiny)",
    )  # fmt: skip


def add_low_memory(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--low-memory", nargs="?", const="model", default=None, choices=["model", "group", "sequential"],
        help="offload to fit smaller GPUs (default mode: model)",
    )  # fmt: skip


def add_generation(parser: argparse.ArgumentParser, usual_dtype: str, *, low_memory: bool = True) -> None:
    """Where a generating job runs: --device, --dtype, --low-memory (where offloading helps) and --json."""
    add_device(parser)
    add_dtype(parser, usual_dtype)
    if low_memory:
        add_low_memory(parser)
    else:
        parser.set_defaults(low_memory=None)


def add_no_metrics(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--no-metrics", action="store_true", help=f"skip {what}")


def add_face_engine(parser: argparse.ArgumentParser, which: str = "") -> None:
    """--backend and --weights: the face engine (detection and recognition) and its weights folder."""
    parser.add_argument(
        "--backend", default="auto", choices=["auto", "insightface", "dlib"], help=f"{which}face engine"
    )
    parser.add_argument("--weights", metavar="DIR", default=None, help=f"{which}the face engine's weights folder")


def add_detector(parser: argparse.ArgumentParser, default: str) -> None:
    """--detector and --detector-weights: the FSFM forgery detector."""
    parser.add_argument(
        "--detector", default=default, choices=["deepfake", "diffusion", "none"],
        help=f"FSFM forgery detector: face swaps, diffusion-made faces, or none (default: {default})",
    )  # fmt: skip
    parser.add_argument(
        "--detector-weights", default=None, metavar="HUB_ID_OR_FOLDER",
        help="the detector's checkpoint: a folder, a .pth, or a Hub id (default: the --detector checkpoint of "
        "Wolowolo/fsfm-3c)",
    )  # fmt: skip


def add_speech_io(parser: argparse.ArgumentParser) -> None:
    """--audio and --out of the speech-driven jobs (talk, portrait)."""
    parser.add_argument("--audio", required=True, help="speech (wav, mp3, m4a, or a video's audio track)")
    add_out(parser, "output .mp4 with the speech, not an input (written whole or not at all)")
