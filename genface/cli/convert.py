"""``genface convert``: published .pt/.pth weights -> safetensors folders, once."""

from __future__ import annotations

import argparse
from pathlib import Path

from genface.arguments import ATTENTION_HEAD_DIM
from genface.cli import common, options
from genface.errors import InvalidArgumentError


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("convert", help="convert published .pt/.pth weights to safetensors folders, once")
    parser.add_argument(
        "source", help="FLUX-Makeup's checkpoint.pt, MuseTalk (Hub id or folder with musetalkV15/), LatentSync (its "
        "latentsync_unet.pt, a folder holding it, or a Hub id), or Ditto (a folder with ditto_pytorch/, or a Hub id "
        "with --ditto)",
    )  # fmt: skip
    parser.add_argument(
        "out", help="new (or empty) output folder, usable as makeup --injector, talk --model or portrait --model; "
        "written whole or not",
    )  # fmt: skip
    options.add_number(parser, "--attention-head-dim", ATTENTION_HEAD_DIM, 128, "makeup: FLUX's head size")
    parser.add_argument("--vae", default="stabilityai/sd-vae-ft-mse", help="talking: VAE Hub id or folder")
    parser.add_argument(
        "--whisper", default=None,
        help="talking: Whisper Hub id or folder (default: openai/whisper-tiny; LatentSync: its whisper/tiny.pt where "
        "SOURCE's folder has one)",
    )  # fmt: skip
    parser.add_argument(
        "--latentsync", action="store_true",
        help="SOURCE is LatentSync (found by itself from a latentsync_unet.pt in it or a name with LatentSync)",
    )  # fmt: skip
    options.add_latentsync_unet(parser, "latentsync: ")
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
            "checkpoint.pt, LatentSync's latentsync_unet.pt, MuseTalk, LatentSync or Ditto as a folder or Hub id, or "
            "FSFM's checkpoint with --fsfm."
        )
    from genface.pipelines import model_name

    latentsync = not args.fsfm and (args.latentsync or model_name("talk", args.source) == "latentsync")
    if not latentsync and (args.unet_config is not None or args.resolution is not None):
        raise InvalidArgumentError(
            "--unet-config and --resolution are LatentSync's; SOURCE is not LatentSync (add --latentsync if it is)."
        )
    if args.fsfm:
        from genface.models.fsfm import load_fsfm

        model = load_fsfm(args.source, args.subfolder)
        with atomic_folder(args.out) as folder:
            model.save_pretrained(folder)
        print(f"converted {args.source} -> {args.out} (FSFM {model.config.head_type} head, safetensors), usable as "
              "`verify --detector-weights`")  # fmt: skip
        return 0
    if latentsync:
        return _latentsync(args, source)
    if args.ditto or (Path(args.source).expanduser() / "ditto_pytorch").is_dir():
        from genface.pipelines import TalkingPortraitPipeline

        portrait = TalkingPortraitPipeline.from_pretrained(args.source, audio_encoder=args.hubert)
        with atomic_folder(args.out) as folder:
            portrait.save_pretrained(folder)
        print(f"converted {args.source} -> {args.out} (safetensors), usable as `portrait --model`")
        return 0
    if source.suffix.lower() not in CHECKPOINTS:  # a MuseTalk folder or Hub id
        from genface.pipelines import TalkingFacePipeline

        whisper = {} if args.whisper is None else {"audio_encoder": args.whisper}
        pipe = TalkingFacePipeline.from_pretrained(args.source, vae=args.vae, **whisper)
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


def _latentsync(args: argparse.Namespace, source: Path) -> int:
    """LatentSync's published ``latentsync_unet.pt`` (read with ``weights_only``; the file, its folder or a Hub id,
    with ``whisper/tiny.pt`` beside it where there is one) -> a folder ``LatentSyncPipeline.from_pretrained`` loads."""
    from genface.media._files import atomic_folder
    from genface.models.latentsync.published import UNET_FILE
    from genface.pipelines import LatentSyncPipeline

    unet = common.latentsync_unet(args)
    if source.is_file() and source.name != UNET_FILE:
        raise InvalidArgumentError(
            f"{args.source}: LatentSync's checkpoint is read as {UNET_FILE} (with whisper/tiny.pt beside it); give it "
            "that name, or its folder."
        )
    folder = str(source.parent) if source.is_file() else args.source
    whisper = {} if args.whisper is None else {"audio_encoder": args.whisper}
    pipe = LatentSyncPipeline.from_pretrained(folder, vae=args.vae, **whisper, **unet)
    with atomic_folder(args.out) as out:
        pipe.save_pretrained(out)
    print(f"converted {args.source} -> {args.out} (LatentSync at {pipe.config.resolution} px, safetensors), usable as "
          "`talk --model`")  # fmt: skip
    return 0
