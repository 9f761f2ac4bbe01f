"""``genface convert``: published .pt/.pth weights -> safetensors folders, once."""

from __future__ import annotations

import argparse
from pathlib import Path

from genface.arguments import ATTENTION_HEAD_DIM
from genface.cli import options
from genface.errors import InvalidArgumentError


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("convert", help="convert published .pt/.pth weights to safetensors folders, once")
    parser.add_argument(
        "source", help="FLUX-Makeup's checkpoint.pt, MuseTalk (Hub id or folder with musetalkV15/), or Ditto (a folder "
        "with ditto_pytorch/, or a Hub id with --ditto)",
    )  # fmt: skip
    parser.add_argument(
        "out", help="new (or empty) output folder, usable as makeup --injector, talk --model or portrait --model; "
        "written whole or not",
    )  # fmt: skip
    options.add_number(parser, "--attention-head-dim", ATTENTION_HEAD_DIM, 128, "makeup: FLUX's head size")
    parser.add_argument("--vae", default="stabilityai/sd-vae-ft-mse", help="talking: VAE Hub id or folder")
    parser.add_argument("--whisper", default="openai/whisper-tiny", help="talking: Whisper Hub id or folder")
    parser.add_argument("--ditto", action="store_true", help="SOURCE is Ditto (digital-avatar/ditto-talkinghead)")
    parser.add_argument(
        "--hubert", default="facebook/hubert-large-ls960-ft", help="ditto: the HuBERT Hub id or folder to include"
    )
    parser.add_argument(
        "--fsfm", action="store_true", help="SOURCE is an FSFM checkpoint (.pth, a folder holding one, or a Hub id)"
    )
    parser.add_argument("--subfolder", default=None, help="fsfm: the checkpoint's folder inside a Hub repository")
    parser.set_defaults(func=run)


#: The files a published checkpoint comes as (anything else is a folder or a Hub id).
CHECKPOINTS = (".pt", ".pth", ".bin", ".safetensors")


def run(args: argparse.Namespace) -> int:
    from genface.media._files import atomic_folder, check_output_path

    check_output_path(args.out, (), [args.source], name="OUT")
    source = Path(args.source).expanduser()
    if source.is_file() and source.suffix.lower() not in CHECKPOINTS and not args.fsfm:
        raise InvalidArgumentError(
            f"{args.source} is a file but not a checkpoint ({', '.join(CHECKPOINTS)}): convert takes FLUX-Makeup's "
            "checkpoint.pt, MuseTalk or Ditto as a folder or Hub id, or FSFM's checkpoint with --fsfm."
        )
    if args.fsfm:
        from genface.models.fsfm import load_fsfm

        model = load_fsfm(args.source, args.subfolder)
        with atomic_folder(args.out) as folder:
            model.save_pretrained(folder)
        print(f"converted {args.source} -> {args.out} (FSFM {model.config.head_type} head, safetensors), usable as "
              "`verify --detector-weights`")  # fmt: skip
        return 0
    if args.ditto or (Path(args.source).expanduser() / "ditto_pytorch").is_dir():
        from genface.pipelines import TalkingPortraitPipeline

        portrait = TalkingPortraitPipeline.from_pretrained(args.source, audio_encoder=args.hubert)
        with atomic_folder(args.out) as folder:
            portrait.save_pretrained(folder)
        print(f"converted {args.source} -> {args.out} (safetensors), usable as `portrait --model`")
        return 0
    if source.suffix.lower() not in CHECKPOINTS:  # a MuseTalk folder or Hub id
        from genface.pipelines import TalkingFacePipeline

        pipe = TalkingFacePipeline.from_pretrained(args.source, vae=args.vae, audio_encoder=args.whisper)
        with atomic_folder(args.out) as folder:
            pipe.save_pretrained(folder)
        print(f"converted {args.source} -> {args.out} (diffusers layout, safetensors), usable as `talk --model`")
        return 0
    from genface.models.makeup import MakeupInjector

    injector = MakeupInjector.from_published_checkpoint(args.source, attention_head_dim=args.attention_head_dim)
    with atomic_folder(args.out) as folder:
        injector.save_pretrained(folder)
    count = sum(p.numel() for p in injector.parameters())
    print(f"converted {args.source} -> {args.out} (safetensors, {count / 1e6:.1f}M parameters)")
    return 0
