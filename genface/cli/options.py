"""The option groups several commands share, each declared once, and the parser every command uses. Numbers are
read and bounded by the rules of :mod:`genface.arguments`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from genface.arguments import (
    BATCH_SIZE,
    FACE_INDEX,
    FPS,
    GUIDANCE,
    LATENTSYNC_RESOLUTION,
    SEED,
    STEPS,
    Rule,
)


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit code 1, as every error a user can fix) that point to ``--help``;
    an unknown option is named by the command it was given to, with the nearest known one."""

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> tuple[Any, list[str]]:
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            commands = next((a for a in self._actions if isinstance(a, argparse._SubParsersAction)), None)
            chosen = commands.choices.get(getattr(parsed, commands.dest, None), self) if commands else self
            chosen.error(f"unrecognized arguments: {' '.join(extras)}{chosen._nearest(extras)[1]}")
        return parsed

    def _nearest(self, tokens: Sequence[str]) -> tuple[list[str], str]:
        """The unknown options among ``tokens``, and '; did you mean --x?' for those close to a known one."""
        import difflib

        known = list(self._option_string_actions)
        unknown = [t.split("=")[0] for t in tokens if t.startswith("--")]
        unknown = [t for t in unknown if not any(k.startswith(t) for k in known)]  # argparse takes abbreviations
        near = [m[0] for t in unknown if (m := difflib.get_close_matches(t, known, n=1, cutoff=0.8))]
        return unknown, f"; did you mean {' or '.join(dict.fromkeys(near))}?" if near else ""

    def error(self, message: str) -> NoReturn:
        if message.startswith("the following arguments are required"):
            unknown, hint = self._nearest(getattr(self, "_given", []))
            if hint:  # `--promt x`: the required --prompt is missing because of the typo
                message = f"unrecognized arguments: {' '.join(unknown)}{hint}"
        self.exit(1, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def command(
    commands: argparse._SubParsersAction, name: str, help: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand's parser; its ``epilog`` (examples) is printed as written."""
    formatter = argparse.RawDescriptionHelpFormatter if epilog else argparse.HelpFormatter
    return commands.add_parser(name, help=help, epilog=epilog, formatter_class=formatter)


def add_number(
    parser: argparse._ActionsContainer, flag: str, rule: Rule, default: float | None, what: str, note: str = ""
) -> None:
    """``flag``, read and bounded by ``rule``; its help says ``what`` it is, the range, and ``note`` (else the
    default)."""
    form = f", {rule.form}" if rule.form else ""
    note = note or ("" if default is None else f"default {default:g}")
    parser.add_argument(
        flag, type=rule.parse, default=default, help=f"{what}, {rule.span}{form}" + (f" ({note})" if note else "")
    )


def add_json(parser: argparse.ArgumentParser, help: str = "machine-readable result") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def add_out(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--out", required=True, help=help)


def add_model(parser: argparse.ArgumentParser, default: str, help: str = "Hub id, local folder, or 'tiny'") -> None:
    parser.add_argument("--model", default=default, help=help)


def add_steps(
    parser: argparse._ActionsContainer, default: int | None, what: str = "denoising steps", note: str = ""
) -> None:
    add_number(parser, "--steps", STEPS, default, what, note)


def add_guidance(
    parser: argparse._ActionsContainer, default: float | None, rule: Rule = GUIDANCE, note: str = ""
) -> None:
    add_number(parser, "--guidance", rule, default, "classifier-free guidance", note)


def add_seed(
    parser: argparse._ActionsContainer, what: str = "random seed", default: int | None = 42, note: str = ""
) -> None:
    add_number(parser, "--seed", SEED, default, what, note)


def add_face_index(parser: argparse.ArgumentParser, where: str) -> None:
    add_number(parser, "--face-index", FACE_INDEX, None, f"which face {where}", "0 = largest")


def add_fps(parser: argparse.ArgumentParser, default: float | None, note: str) -> None:
    add_number(parser, "--fps", FPS, default, "frame rate", note)


def add_batch_size(parser: argparse._ActionsContainer, what: str, default: int | None = 8, note: str = "") -> None:
    add_number(parser, "--batch-size", BATCH_SIZE, default, f"frames per {what} call", note)


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
    """Where a generating job runs: --device, --dtype and --low-memory (where offloading helps)."""
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
    engines = ["auto", "insightface", "dlib"]
    parser.add_argument("--backend", default="auto", choices=engines, help=f"{which}face engine")
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


def add_latentsync_unet(parser: argparse._ActionsContainer, which: str = "") -> None:
    """--unet-config or --resolution (one of them): how LatentSync's published UNet checkpoint is run."""
    either = parser.add_mutually_exclusive_group()
    either.add_argument(
        "--unet-config", metavar="YAML", default=None,
        help=f"{which}one of LatentSync's configs/unet/*.yaml for its latentsync_unet.pt; its data.resolution is the "
        "crop side (default: the published network, stage2_512.yaml)",
    )  # fmt: skip
    note = "default: the checkpoint's, 512 for 1.6, 256 for 1.5"
    add_number(either, "--resolution", LATENTSYNC_RESOLUTION, None, f"{which}the face crop's side in pixels", note)
