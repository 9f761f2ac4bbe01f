"""TalkingFacePipeline against the plain diffusers UNet/VAE loop, same weights, alternating in one process.

    python -m benchmarks.talking_face --scale tiny|full --device cpu|cuda [--frames N] [--batch-size B]
                                      [--repeats N] [--record]

``tiny``: the random tiny model. ``full``: random weights at MuseTalk v1.5's sizes (its ``musetalk.json``
UNet, sd-vae-ft-mse, whisper-tiny); it runs on a CPU too, slowly. Contenders, on the same 256x256 face crops
and speech:

- ``diffusers loop``: the model path as MuseTalk's inference writes it with diffusers modules: VAE-encode the
  masked and the whole crop, one UNet call at t=0 on the Whisper windows plus position code, VAE-decode.
- ``genface model path``: the pipeline's ``encode_crops`` + ``render`` on the same crops and windows.
- ``genface end to end``: the whole pipeline on the frames (tracking, parsing, blending; no file written).

Also times the invisible watermark every written frame carries, invisible-watermark's own encoder against
genface's vectorised one (identical pixels), at 256x256 and 512x512.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.harness import device_line, markdown_table, report, time_alternating

#: MuseTalk v1.5's UNet (``musetalkV15/musetalk.json``): SD-1.5's UNet with 8 input channels (masked +
#: reference latents) and Whisper-tiny's 384-wide features as cross-attention context.
MUSETALK_UNET = dict(
    act_fn="silu", attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280), center_input_sample=False,
    cross_attention_dim=384, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",), downsample_padding=1,
    flip_sin_to_cos=True, freq_shift=0, in_channels=8, layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-5,
    norm_num_groups=32, out_channels=4, sample_size=64, up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)  # fmt: skip


def _vae_and_whisper(dtype: torch.dtype) -> dict[str, Any]:
    """sd-vae-ft-mse and whisper-tiny at their published sizes, random weights, on the current default device."""
    from diffusers import AutoencoderKL
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4, sample_size=256,
    )  # fmt: skip
    whisper = WhisperModel(
        WhisperConfig(
            d_model=384, encoder_layers=4, encoder_attention_heads=6, decoder_layers=4, decoder_attention_heads=6,
            encoder_ffn_dim=1536, decoder_ffn_dim=1536, num_mel_bins=80,
        )
    )  # fmt: skip
    return {
        "vae": vae.to(dtype).eval(),
        "audio_encoder": whisper.to(dtype).eval(),
        "feature_extractor": WhisperFeatureExtractor(),
    }


def full_components(device: str, dtype: torch.dtype) -> dict[str, Any]:
    """Random weights at MuseTalk v1.5's published sizes (the values do not change the cost)."""
    from diffusers import UNet2DConditionModel

    with torch.device(device):
        return {"unet": UNet2DConditionModel(**MUSETALK_UNET).to(dtype).eval(), **_vae_and_whisper(dtype)}


def latentsync_pipeline(scale: str, device: str, dtype: torch.dtype, face_analyzer: Any) -> Any:
    """LatentSync 1.6 at its published sizes (random weights built on ``device``, 512 px), or the tiny model."""
    from diffusers import DDIMScheduler

    from genface.models.latentsync.published import SCHEDULER_CONFIG, UNET_CONFIG
    from genface.models.latentsync.unet import LatentSyncUNet
    from genface.pipelines import LatentSyncPipeline
    from genface.pipelines.talking_face.tiny_latentsync import tiny_pipeline

    if scale == "tiny":
        pipe = tiny_pipeline(face_analyzer)
    else:
        with torch.device(device):
            unet = LatentSyncUNet.from_config(UNET_CONFIG).to(dtype).eval()
            components = _vae_and_whisper(dtype)
        pipe = LatentSyncPipeline(unet, **components, scheduler=DDIMScheduler(**SCHEDULER_CONFIG), resolution=512,
                                  face_analyzer=face_analyzer)  # fmt: skip
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sync_quality(frames: np.ndarray, speech: np.ndarray, fps: float, analyzer: Any, judges: dict[str, Any]) -> dict:
    """Sync-C / Sync-D (syncnet_python's SyncNet) and LatentSync's SyncNet confidence of dubbed ``frames`` and their
    16 kHz ``speech``, with the judges given (``judges``: "syncnet" and / or "latentsync" models); ``sync_skipped``
    says which were not (no weights given)."""
    from genface.errors import InvalidMediaError
    from genface.eval.sync import latentsync_crops, latentsync_scores, sync_scores, syncnet_crops

    quality: dict[str, Any] = {}
    flags = {"syncnet": "sync_c, sync_d: no --syncnet", "latentsync": "latentsync_conf: no --latentsync-syncnet"}
    skipped = [f"{says} weights given" for judge, says in flags.items() if judges.get(judge) is None]
    try:
        if judges.get("syncnet") is not None:
            result = sync_scores(syncnet_crops(frames, analyzer, fps), speech, judges["syncnet"])
            quality |= {"sync_c": round(result.confidence, 3), "sync_d": round(result.min_dist, 3)}
        if judges.get("latentsync") is not None:
            latent = latentsync_scores(latentsync_crops(frames, analyzer, fps), speech, judges["latentsync"])
            quality["latentsync_conf"] = round(latent.confidence, 3)
    except InvalidMediaError as exc:  # too short a dub for a judge
        skipped.append(str(exc))
    return quality | ({"sync_skipped": "; ".join(skipped)} if skipped else {})


def stream_timing(pipe: Any, face: Any, speech: np.ndarray, chunk_seconds: float = 0.2, **options: Any) -> dict:
    """A live dub: ``speech`` handed to ``pipe.stream`` ``chunk_seconds`` at a time as fast as it takes them;
    seconds in all, frames per second and seconds from the first chunk to the first frames."""
    size = int(chunk_seconds * 16000)
    started, first, frames = time.perf_counter(), None, 0
    for batch in pipe.stream(face, (speech[i : i + size] for i in range(0, len(speech), size)), **options):
        first = time.perf_counter() - started if first is None else first
        frames += len(batch)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "fps": frames / seconds, "first_frame_seconds": first, "frames": frames}


@torch.no_grad()
def diffusers_loop(unet: Any, vae: Any, crops: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """MuseTalk's per-batch model path in plain diffusers calls: crops in [-1, 1], N x 3 x 256 x 256."""
    from genface.models.talking.audio import add_positional_encoding

    masked = crops.clone()
    masked[:, :, crops.shape[2] // 2 :] = -1
    scale = vae.config.scaling_factor
    latents = torch.cat(
        [vae.encode(masked).latent_dist.mode() * scale, vae.encode(crops).latent_dist.mode() * scale], dim=1
    )
    timestep = torch.zeros(1, device=crops.device, dtype=torch.long)
    predicted = unet(latents, timestep, encoder_hidden_states=add_positional_encoding(windows)).sample
    return vae.decode(predicted / scale).sample


def model_flops_per_frame(pipe: Any, crops: np.ndarray, windows: torch.Tensor) -> float:
    """FLOPs of the model path for one frame (two VAE encodes, one UNet call, one decode), counted by
    PyTorch's FlopCounterMode on a real call."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        pipe.render(pipe.encode_crops(crops[:1]), windows[:1])
    return float(counter.get_total_flops())


@dataclass
class Contenders:
    """The timed runs, the frame count, the model FLOPs per frame and the dtype; the pipeline, the video
    frames and the speech they share (for :func:`dub_stages`)."""

    runs: dict[str, Callable[[], object]]
    frames: int
    flops: float
    dtype: torch.dtype
    pipe: Any
    clip: np.ndarray
    speech: np.ndarray


def contenders(
    scale: str, device: str, frames: int | None = None, batch_size: int = 8, face_analyzer: Any = None
) -> Contenders:
    """The timed runs (diffusers loop, genface's model path, genface end to end) on the same weights, crops and
    speech. ``face_analyzer`` defaults to ``FaceAnalyzer("auto")``."""
    from genface.identity import BiSeNet, FaceAnalyzer, FaceParser
    from genface.media import load_image
    from genface.models.talking.audio import SpeechWindows, WhisperFrameFeatures
    from genface.pipelines import TalkingFacePipeline
    from genface.pipelines.talking_face import tiny
    from genface.samples import sample_path, speech_like

    cuda = device.startswith("cuda")
    dtype = torch.float16 if cuda and scale == "full" else torch.float32
    frames = frames or (8 if scale == "full" and not cuda else 32)
    components = tiny.tiny_components() if scale == "tiny" else full_components(device, dtype)
    torch.manual_seed(0)
    analyzer = face_analyzer or FaceAnalyzer("auto")
    pipe = TalkingFacePipeline(**components, face_analyzer=analyzer, face_parser=FaceParser(BiSeNet()))
    pipe.to(device)
    pipe.face_parser.model.to(device)
    pipe.set_progress_bar_config(disable=True)

    photo = load_image(sample_path("astronaut"))
    clip = np.stack([np.roll(photo, i % 5, axis=1) for i in range(frames)])
    speech = speech_like(frames / 25)
    windows = SpeechWindows(WhisperFrameFeatures(pipe.audio_encoder, pipe.feature_extractor), speech, 25.0)
    features = windows(0, frames).to(device, dtype)
    crops = np.stack([photo[40:296, 100:356]] * frames)  # any 256x256 face crops: the cost is the same
    pixels = torch.from_numpy(crops).to(device).permute(0, 3, 1, 2).to(dtype) / 127.5 - 1
    batches = range(0, frames, batch_size)

    runs = {
        "diffusers loop": lambda: [
            diffusers_loop(pipe.unet, pipe.vae, pixels[i : i + batch_size], features[i : i + batch_size])
            for i in batches
        ],
        "genface model path": lambda: [
            pipe.render(pipe.encode_crops(crops[i : i + batch_size]), features[i : i + batch_size]) for i in batches
        ],
        "genface end to end": lambda: pipe(
            clip, speech, audio_rate=16000, fps=25, batch_size=batch_size, measure=False
        ),
    }
    return Contenders(runs, frames, model_flops_per_frame(pipe, crops, features), dtype, pipe, clip, speech)


#: Stages timed by :func:`stage_times`, in the order of the table.
STAGES = ("decode", "detect", "parse", "VAE encode", "audio features", "UNet", "VAE decode", "blend", "mark",
          "encode")  # fmt: skip


class StageClock:
    """Seconds spent inside each stage, summed over calls and threads; a stage called inside another is taken
    out of the outer one's time (each thread keeps its own stack), so the stages never count a second twice."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self._lock = threading.Lock()
        self._local = threading.local()

    def _enter(self) -> None:
        stack = self._local.__dict__.setdefault("stack", [])
        stack.append([time.perf_counter(), 0.0])

    def _exit(self, stage: str) -> None:
        stack = self._local.stack
        started, inner = stack.pop()
        spent = time.perf_counter() - started
        if stack:
            stack[-1][1] += spent
        with self._lock:
            self.seconds[stage] += spent - inner

    def wrap(self, stage: str, call: Callable[..., Any], sync: Callable[[], None] | None = None) -> Callable[..., Any]:
        """``call``, timed as ``stage``; a generator function's time is counted item by item (decoding).
        ``sync`` (a device synchronisation) runs before the clock stops, so a stage owns its device time."""

        @functools.wraps(call)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._enter()
            try:
                result = call(*args, **kwargs)
                if sync is not None:
                    sync()
            finally:
                self._exit(stage)
            return self._items(stage, result) if inspect.isgenerator(result) else result

        return timed

    def _items(self, stage: str, items: Iterator[Any]) -> Iterator[Any]:
        while True:
            self._enter()
            try:
                item = next(items, _END)
            finally:
                self._exit(stage)
            if item is _END:
                return
            yield item


_END = object()


@contextlib.contextmanager
def timed_stages(pipe: Any) -> Iterator[StageClock]:
    """Time the pipeline's stages while the block runs (the functions each stage calls are wrapped, then put
    back): decoding frames, face detection, parsing, the VAE's encoder and decoder, Whisper features and
    pitch, the UNet, blending, the watermark and the H.264 encoder (with the container's finish). On CUDA the
    model stages synchronise before their clock stops (their GPU time is theirs; overlap suffers a little)."""
    from genface import provenance
    from genface.media import video
    from genface.models.talking import audio
    from genface.pipelines.talking_face import pipeline as module

    clock = StageClock()
    patches = [
        (video.VideoReader, "_decoded", "decode"),
        (pipe.face_analyzer, "detect", "detect"),
        (pipe.vae, "encode", "VAE encode"),
        (audio.WhisperFrameFeatures, "segment", "audio features"),
        (module, "pitch_contour", "audio features"),
        (pipe.unet, "forward", "UNet"),
        (pipe.vae, "decode", "VAE decode"),
        (module, "blend", "blend"),
        (provenance, "watermark", "mark"),
        (video.VideoWriter, "write", "encode"),
        (video.VideoWriter, "_finish", "encode"),
    ]
    if pipe.face_parser is not None:
        patches.append((pipe.face_parser, "parse", "parse"))
    device = pipe._execution_device
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    models = {"parse", "VAE encode", "audio features", "UNet", "VAE decode"}
    saved = []
    for owner, name, stage in patches:
        saved.append((owner, name, vars(owner).get(name, _END)))
        setattr(owner, name, clock.wrap(stage, getattr(owner, name), sync if stage in models else None))
    try:
        yield clock
    finally:
        for owner, name, original in reversed(saved):
            if original is _END:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


def dub_stages(pipe: Any, clip: np.ndarray, speech: np.ndarray, batch_size: int = 8) -> dict[str, dict[str, float]]:
    """Milliseconds per frame of each stage (:func:`timed_stages`) and end-to-end frames per second of dubbing
    ``clip`` (written to an mp4 first, so decoding counts) with ``speech`` (16 kHz, as long as the clip) into a
    marked mp4, without FaceSim and lip-sync metrics: ``dub`` (the video as it comes), ``prepare``
    (``pipe.prepare`` into a cache folder, per source frame) and ``dub prepared`` (the same dub again, the
    prepared video read back from that folder: hashing the video and decoding its frames included). A short
    dub first warms up. Stages overlap in time (threads), so their sum may exceed the end-to-end time."""
    from genface.media import write_video

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        video = write_video(Path(folder) / "clip.mp4", clip, 25)
        out = Path(folder) / "dub.mp4"
        dub = dict(audio_rate=16000, batch_size=batch_size, output_path=out, measure=False)
        pipe(video, speech[: 16000 * batch_size // 25], **dub)
        cache = Path(folder) / "prepared"
        runs = {
            "dub": lambda: pipe(video, speech, **dub),
            "prepare": lambda: pipe.prepare(video, cache=cache),
            "dub prepared": lambda: pipe(pipe.prepare(video, cache=cache), speech, **dub),
        }
        for name, run in runs.items():
            with timed_stages(pipe) as clock:
                started = time.perf_counter()
                run()
                seconds = time.perf_counter() - started
            per_frame = {stage: round(spent * 1000 / len(clip), 2) for stage, spent in clock.seconds.items()}
            results[name] = per_frame | {"end-to-end fps": round(len(clip) / seconds, 2)}
    return results


def stage_table(stages: dict[str, dict[str, float]], before: dict[str, dict[str, float]] | None = None) -> str:
    """:func:`dub_stages` as Markdown, a stage a row; ``before``: an earlier record's ``dub`` column beside it."""
    columns = {f"{name} (ms/frame)": figures for name, figures in stages.items()}
    if before is not None:
        columns = {"before: dub (ms/frame)": before["dub"], **columns}
    rows = [[stage, *(f"{figures[stage]:g}" for figures in columns.values())] for stage in (*STAGES, "end-to-end fps")]
    return markdown_table(["stage", *columns], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", type=int, default=None, help="default: 32 (tiny, or full on GPU), 8 (full, CPU)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    parser.add_argument("--stages-json", type=Path, help="also write the per-stage figures to this JSON file")
    parser.add_argument("--before", type=Path, help="a --stages-json file of an earlier run, shown beside")
    args = parser.parse_args(argv)
    from genface.media import load_image
    from genface.samples import sample_path

    bench = contenders(args.scale, args.device, args.frames, args.batch_size)
    runs, frames, flops, dtype = bench.runs, bench.frames, bench.flops, bench.dtype
    timings = time_alternating(runs, args.repeats, args.device)
    base = timings.median("diffusers loop")
    rows = []
    for name in runs:
        median = timings.median(name)
        peak = f"{timings.peak_gib[name]:.2f}" if name in timings.peak_gib else "n/a"
        model_rate = f"{flops * frames / median / 1e12:.3f}" if name != "genface end to end" else "-"
        rows.append([name, f"{frames / median:.2f}", f"{median:.3f}", peak, model_rate, f"{median / base:.3f}"])
    header = ["contender", "frames/s", "seconds", "peak GPU GiB", "model TFLOP/s", "time vs diffusers loop"]
    title = (
        f"talking_face {args.scale} on {device_line(args.device)}; {frames} frames of 256x256 crops, "
        f"batch {args.batch_size}, {dtype}, median of {args.repeats}"
    )
    body = f"Model FLOPs per frame: {flops:.3e}\n\n" + markdown_table(header, rows)
    report(title, body, args.record)
    stages = dub_stages(bench.pipe, bench.clip, bench.speech, args.batch_size)
    if args.stages_json is not None:
        args.stages_json.write_text(json.dumps(stages, indent=2) + "\n")
    before = json.loads(args.before.read_text()) if args.before is not None else None
    title = f"talking_face stages, {args.scale}, {frames} frames of 512x512 video, batch {args.batch_size}, {dtype}"
    report(title, stage_table(stages, before), args.record)
    photo = load_image(sample_path("astronaut"))
    report("watermark per frame (invisible-watermark's encoder vs genface's)", watermark_table(photo), args.record)


def watermark_table(photo: np.ndarray, repeats: int = 5) -> str:
    """Milliseconds to watermark one frame: the library's block loop against genface's vectorised embedder."""
    import cv2
    from imwatermark import WatermarkEncoder

    from genface.provenance import SIGNATURE, watermark

    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", SIGNATURE)
    rows = []
    for size in (256, 512):
        frame = cv2.resize(photo, (size, size))
        runs = {
            "library": lambda f=frame: encoder.encode(np.ascontiguousarray(f[..., ::-1]), "dwtDctSvd"),
            "genface": lambda f=frame: watermark(f),
        }
        timings = time_alternating(runs, repeats, "cpu")
        library, ours = timings.median("library") * 1000, timings.median("genface") * 1000
        rows.append([f"{size}x{size}", f"{library:.1f}", f"{ours:.1f}", f"{library / ours:.1f}x"])
    return markdown_table(["frame", "invisible-watermark ms", "genface ms", "speed-up"], rows)


if __name__ == "__main__":
    main()
