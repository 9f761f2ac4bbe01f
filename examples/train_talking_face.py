"""Fine-tune the talking-face UNet on one person's videos (the GeneFace++ use case), with accelerate.

    accelerate launch examples/train_talking_face.py --videos clip1.mp4 clip2.mp4 --output-dir me-talking/
        [--model TMElyralab/MuseTalk | tiny] [--steps 2000] [--batch-size 8] [--lr 1e-5] [--temporal-weight 0.5]
        [--mouth-weight 2] [--sync-weight 0.05 --syncnet latentsync_syncnet.pt --batch-size 16]
        [--checkpoint-every 500] [--resume latest] [--ema-decay 0.999] [--mixed-precision bf16]
        [--gradient-checkpointing]

Each video's face crops, per-frame Whisper windows and SyncNet mel spectrogram are computed once (the
pipeline's own tracking, cropping and audio front) and cached beside the output. A step takes
``--batch-size`` consecutive frames; the UNet sees, as at inference, the masked crop's latents beside the
latents of another frame of the same video (the reference, at least 5 frames away), and the frames' audio
windows. The loss is the L1 between predicted and true latents, weighted ``--mouth-weight`` times on the lower
half (where the mouth is), plus ``--temporal-weight`` times the L1 between their frame-to-frame changes
(GeneFace++'s temporal term), plus, optionally, ``--sync-weight`` times MuseTalk's SyncNet loss: the 16
predicted frames are decoded by the VAE and LatentSync's SyncNet (``--syncnet``, frozen) scores their lower
halves against the speech's mel window (:func:`genface.training.sync_loss`). MuseTalk's own training also has
perceptual and GAN losses; they are not here.

At each checkpoint the first ``--validation-frames`` frames of the first video are lip-synced to their own
speech and FaceSim and the lip-sync proxy are appended to ``validation.jsonl``.

Checkpoints (``checkpoint-<step>/``: UNet, optimiser, EMA, step) are written with accelerate; ``--resume``
continues from one with the same batches and reference frames as an uninterrupted run. The result,
``<output-dir>/pipeline``, loads with ``TalkingFacePipeline.from_pretrained``. One process per GPU
(``accelerate launch --multi_gpu``), each with its own batches (data parallel; FSDP and DeepSpeed are refused).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from genface.media._files import atomic_path
from genface.models.talking.audio import SpeechWindows, WhisperFrameFeatures, add_positional_encoding
from genface.models.talking.syncnet import SYNC_FRAMES, SyncNet, mel_spectrogram, mel_window
from genface.pipelines import load_pipeline
from genface.training import loop, sync_loss, temporal_difference_loss, weighted_l1

MIN_REFERENCE_GAP = 5


def _cached_keys(path: Path) -> set[str]:
    """The tensor names in a cache file, read from its header alone."""
    with safe_open(path, "pt") as cached:
        return set(cached.keys())


@torch.no_grad()
def prepare(pipe: Any, videos: list[Path], cache: Path) -> list[dict[str, torch.Tensor]]:
    """Per video: latents of the masked crops and of the whole crops, the Whisper windows, the SyncNet mel
    spectrogram and the frame rate (cached)."""
    from genface.media.audio import load_audio

    data = []
    for video in videos:
        path = cache / f"{video.stem}.safetensors"
        if not path.is_file() or "mel" not in _cached_keys(path):  # caches from before the SyncNet loss lack it
            crops, fps = pipe.face_crops(video)
            speech = load_audio(video, 16000)
            windows = SpeechWindows(WhisperFrameFeatures(pipe.audio_encoder, pipe.feature_extractor), speech, fps)
            count = min(len(crops), windows.num_frames)
            latents = torch.cat([pipe.encode_crops(crops[i : i + 16]).cpu() for i in range(0, count, 16)])
            tensors = {
                "latents": latents.contiguous(), "windows": windows(0, count).contiguous(),
                "mel": torch.from_numpy(mel_spectrogram(speech)), "fps": torch.tensor(fps),
            }  # fmt: skip
            with atomic_path(path) as partial:
                save_file(tensors, partial)
        data.append(load_file(path))
    return data


def batch_at(data: list[dict[str, torch.Tensor]], step: int, size: int, seed: int) -> dict[str, torch.Tensor]:
    """Step ``step``'s batch, a function of the step alone (so a resumed run sees the same batches): ``size``
    consecutive frames of one video (masked and whole latents, Whisper windows), one reference frame per frame
    at least ``MIN_REFERENCE_GAP`` away, and the SyncNet mel window from the first frame."""
    generator = loop.step_generator(seed, step)
    video = data[int(torch.randint(len(data), (1,), generator=generator))]
    count = len(video["latents"])
    start = int(torch.randint(max(1, count - size + 1), (1,), generator=generator))
    references = []
    for frame in range(start, min(start + size, count)):
        far = [k for k in range(count) if abs(k - frame) >= MIN_REFERENCE_GAP] or [frame]
        references.append(far[int(torch.randint(len(far), (1,), generator=generator))])
    frames = slice(start, start + len(references))
    masked, full = video["latents"][:, :4], video["latents"][:, 4:]
    return {
        "masked": masked[frames], "target": full[frames], "reference": full[references],
        "windows": video["windows"][frames], "mel": mel_window(video["mel"], start, float(video["fps"]))[None],
    }  # fmt: skip


def training_loss(
    unet: Any, batch: dict[str, torch.Tensor], mouth_weight: float, temporal_weight: float, sync: Any = None
) -> torch.Tensor:
    """The fine-tuning loss of one batch of consecutive frames (see the module's notes); ``sync``: (SyncNet,
    VAE, weight) for the SyncNet term, which needs the batch's ``mel`` window."""
    target = batch["target"]
    inputs = torch.cat([batch["masked"], batch["reference"]], dim=1)
    timestep = torch.zeros(1, device=inputs.device, dtype=torch.long)
    predicted = unet(inputs, timestep, encoder_hidden_states=add_positional_encoding(batch["windows"])).sample
    weight = torch.ones_like(target[:1, :1])
    weight[..., target.shape[-2] // 2 :, :] = mouth_weight
    loss = weighted_l1(predicted, target, weight) + temporal_weight * temporal_difference_loss(predicted, target)
    if sync is not None:
        syncnet, vae, sync_weight = sync
        frames = vae.decode(predicted.to(vae.dtype) / vae.config.scaling_factor).sample  # 16 x 3 x 256 x 256
        loss = loss + sync_weight * sync_loss(syncnet.embed_audio(batch["mel"]), syncnet.embed_frames(frames[None]))
    return loss


def validation_clip(video: Path, frames: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The first ``frames`` frames of ``video``, their speech (16 kHz) and the frame rate: read once per run."""
    from genface.media.audio import load_audio
    from genface.media.video import VideoReader

    reader = VideoReader(video)
    clip = np.stack(reader.read(0, frames))
    return clip, load_audio(video, 16000)[: int(len(clip) / reader.fps * 16000)], reader.fps


@torch.no_grad()
def validate(pipe: Any, unet: Any, clip: tuple[np.ndarray, np.ndarray, float]) -> dict[str, Any]:
    """Lip-sync a :func:`validation_clip` to its own speech with the UNet as trained so far; FaceSim (output vs
    source face) and the lip-sync proxy."""
    from genface.errors import GenfaceError

    frames, speech, fps = clip
    pipe.unet = unet.eval()
    try:
        output = pipe(frames, speech, audio_rate=16000, fps=fps)
    except GenfaceError as exc:  # e.g. silent speech at the start of the video: say so, keep training
        return {"error": str(exc)}
    finally:
        unet.train()
    facesim = output.facesim.mean if output.facesim is not None else math.nan
    return {
        "facesim": None if math.isnan(facesim) else round(facesim, 4),
        "lip_sync": None if output.lip_sync is None or math.isnan(output.lip_sync) else round(output.lip_sync, 4),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line (the commands in docs/training.md are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, nargs="+", required=True, help="videos of the person, with speech")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--model", default="TMElyralab/MuseTalk", help="Hub id, folder, or 'tiny'")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8, help="consecutive frames per step")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--mouth-weight", type=float, default=2.0)
    parser.add_argument("--temporal-weight", type=float, default=0.5)
    parser.add_argument("--sync-weight", type=float, default=0.0, help="weight of the SyncNet loss; 0: none")
    parser.add_argument("--syncnet", default=None, help="LatentSync's latentsync_syncnet.pt, for --sync-weight")
    parser.add_argument("--ema-decay", type=float, default=0.0, help="0: no EMA")
    parser.add_argument("--validation-frames", type=int, default=16, help="frames rendered at each checkpoint; 0: none")
    loop.add_loop_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)

    if args.sync_weight and (not args.syncnet or args.batch_size != SYNC_FRAMES):
        parser.error(f"--sync-weight needs --syncnet (a LatentSync SyncNet checkpoint) and --batch-size {SYNC_FRAMES}")
    accelerator = loop.make_accelerator(args)
    pipe = load_pipeline("talk", args.model, dtype=torch.float32).to(accelerator.device)  # the UNet trains in fp32
    pipe.set_progress_bar_config(disable=True)
    with accelerator.main_process_first():
        data = prepare(pipe, args.videos, args.output_dir / "cache")
    sync = None
    if args.sync_weight:
        syncnet = SyncNet.from_checkpoint(args.syncnet).to(accelerator.device).requires_grad_(False)
        sync = (syncnet, pipe.vae.requires_grad_(False), args.sync_weight)
    unet = pipe.unet
    unet.requires_grad_(True).train()
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.lr)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    ema = loop.make_ema(list(unet.parameters()), args.ema_decay)
    checkpoints = loop.Checkpoints(accelerator, args.output_dir)
    checkpoints.track("ema", ema)

    first = checkpoints.resume(args.resume)
    checking = None
    if accelerator.is_main_process and args.validation_frames:
        checking = validation_clip(args.videos[0], args.validation_frames)
    losses: dict[int, float] = {}
    for step in (bar := loop.progress(accelerator, first, args.steps)):
        batch = batch_at(data, loop.process_step(accelerator, step), args.batch_size, args.seed)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        loss = training_loss(unet, batch, args.mouth_weight, args.temporal_weight, sync)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        if ema is not None:
            ema.step(accelerator.unwrap_model(unet).parameters())
        loop.record_loss(accelerator, losses, step + 1, loss, bar)
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.steps:
            checkpoints.save(step + 1)
            if checking is not None:
                scores = validate(pipe, accelerator.unwrap_model(unet), checking)
                loop.write_validation(args.output_dir, step + 1, scores)
    if accelerator.is_main_process:
        loop.write_losses(args.output_dir, losses)
        trained = accelerator.unwrap_model(unet)
        if ema is not None:
            ema.copy_to(trained.parameters())
        pipe.unet = trained.eval()
        pipe.save_pretrained(args.output_dir / "pipeline")
        print(f"trained {args.steps - first} steps; last loss {losses[args.steps]:.4f}; {args.output_dir / 'pipeline'}")


if __name__ == "__main__":
    main()
