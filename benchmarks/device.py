"""The device run: the GPU figures genface records, in one command sized for one call on a lent H100/H200.

    python -m benchmarks.device [--scale full|tiny] [--device cuda|cpu] [--out DIR] [--budget-s S]
                                [--sections attention,video,makeup,talk,latentsync,portrait,memory,wan]
                                [--face-encoder DIR] [--clip DIR] [--syncnet FILE] [--latentsync-syncnet FILE]

With random weights at the published sizes (``--scale full``; the values do not change the cost) it measures,
section by section, each within what is left of ``--budget-s``:

- ``attention``: attention at ConsisID's and FLUX's shapes with each exact kernel (PyTorch's flash, efficient,
  cuDNN and math, FlashAttention-4 and xformers where installed): milliseconds and TFLOP/s, and ``chosen``, the
  one fast mode's measured pick takes on this GPU.
- ``video``: identity video, genface against diffusers' ConsisIDPipeline on the same modules: seconds per
  denoising step (median over the timed steps after warm-up steps), the preparation before the first step
  (prompt and identity conditions) and the decoding after the last, timed on their own, and the 50-step
  end-to-end figure extrapolated from them. A "genface exact" row runs with ``pipe.enable_fast_mode()`` (mode
  ``exact``), its first call's seconds (compilation) apart as ``compile_seconds``; on a CPU without compilation.
  Each approximate mode (the cache hooks; mode ``approximate:<name>``) is timed the same way, and its row adds its
  quality against genface's default (exact) output of the same seed and steps: ``psnr_db`` always ("inf" when
  equal), ``facesim`` / ``clipscore`` and their ``_delta`` when ``--face-encoder`` / ``--clip`` give the judges'
  weights (``quality_skipped`` says what was left out and why).
- ``makeup``: MakeupPipeline against FluxKontextPipeline with the injector's processors, the same way (25 steps,
  FLUX-Makeup's and genface's default), with its "genface exact" and approximate rows too.
- ``talk``: talking faces (MuseTalk), frames per second of genface end to end and of the model path against the
  plain diffusers loop (256x256 crops); live speech into a dub (``stream``, speech in 200 ms chunks) with its
  first-frame latency; a dub of a 512x512 video file into a marked mp4 (as it comes, preparing it, and from the
  prepared video) with milliseconds per frame of each stage, in its rows and a Markdown table.
- ``latentsync``: LatentSync 1.6 at 512 px (1.27 B-parameter UNet, 20 DDIM steps with guidance): frames per
  second and peak memory eagerly and in fast mode (compile time apart; the largest pixel difference from the eager
  frames), and live (first-frame latency). Both dubbing sections report Sync-C / Sync-D (``--syncnet``) and
  LatentSync's SyncNet confidence (``--latentsync-syncnet``) of their frames when given the judges' weights.
- ``portrait``: talking portraits (Ditto at its published sizes, fp16): frames per second of the offline call
  (50 DDIM steps) and of streaming (Ditto's online preset, speech arriving in 200 ms chunks), and streaming's
  first-frame latency, face detection left out as for ``talk``.
- ``memory``: identity video in each low-memory mode (CUDA only): seconds per step and peak memory.
- ``wan``: identity video on Wan (81 frames at 480x832, 50 steps): Stand-In on Wan2.1-T2V-14B (default, exact fast
  mode, and on CUDA the low-memory ``group`` mode), VACE 1.3B (genface and diffusers' WanVACEPipeline on the same
  modules) and VACE 14B, each with ``time_vs_reference`` against diffusers' WanPipeline on the same 14B modules
  without the adapter (the VACE rows also ``time_vs_diffusers_vace``: genface's VACE against diffusers' own call).

After every section it writes ``<out>/<date>-<device>.json`` (``{"device", "date", "versions", "rows": [...]}``,
each row ``{"pipeline", "contender", "mode", "seconds", "fps", "peak_gib", "time_vs_reference", ...}``, plus
``attention`` and ``skipped``) and the same tables as Markdown beside it, so a run cut short keeps what it
measured. ``--scale tiny --device cpu`` runs every section in seconds (the test suite does).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from benchmarks.harness import ApproximateMode, QualityJudge, device_line, markdown_table

SECTIONS = ("attention", "video", "makeup", "talk", "latentsync", "portrait", "memory", "wan")
RESULTS_DIR = Path(__file__).with_name("results")
#: (batch, heads, tokens, head size): ConsisID at 49x480x720 with CFG; FLUX.1 Kontext at 1024x1024.
ATTENTION_SHAPES = {
    "full": {"consisid": (2, 48, 17776, 64), "flux-kontext": (1, 24, 8704, 128)},
    "tiny": {"consisid": (2, 2, 256, 16), "flux-kontext": (1, 2, 128, 32)},
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class StepClock:
    """A ``callback_on_step_end`` that notes when each denoising step ends (after synchronising the device)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.start = self.end = 0.0
        self.ends: list[float] = []
        self.output: Any = None

    def __call__(self, pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        _sync(self.device)
        self.ends.append(time.perf_counter())
        return tensors

    def run(self, call: Callable[[Any], object]) -> StepClock:
        """Time ``call(self)`` (which passes this clock as the pipeline's ``callback_on_step_end``), keeping what it
        returns as ``output``."""
        self.ends.clear()
        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        _sync(self.device)
        self.start = time.perf_counter()
        self.output = call(self)
        _sync(self.device)
        self.end = time.perf_counter()
        return self

    def split(self, warmup: int) -> dict[str, float]:
        """Seconds per step (median of the steps after ``warmup``), before the first step and after the last."""
        steps = [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)][max(warmup - 1, 0) :]
        per_step = statistics.median(steps)
        return {
            "per_step": per_step,
            "before": max(self.ends[0] - self.start - per_step, 0.0),
            "after": self.end - self.ends[-1],
        }


def _peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def attention(scale: str, device: str, repeats: int = 10) -> list[dict[str, Any]]:
    """Milliseconds and TFLOP/s of each exact attention kernel (:data:`genface.models.attention.KERNELS`) at the
    pipelines' attention shapes, and which one fast mode's ``attention="auto"`` picks from these timings
    (``chosen``; by the rule of :func:`~genface.models.attention.choose_kernel`, math left out; on a CPU fast mode
    keeps PyTorch's own choice, so none). Math is not timed on a GPU: it is never picked there, and at full size
    it materialises every attention matrix (60 GB for ConsisID)."""
    from genface.models.attention import KERNELS, choose_kernel, kernel_unavailable, measure_kernel

    gpu = device.startswith("cuda")
    dtype = torch.bfloat16 if gpu else torch.float32
    rows = []
    for model, shape in ATTENTION_SHAPES[scale].items():
        batch, heads, tokens, dim = shape
        flops = 4 * batch * heads * tokens**2 * dim
        timed: dict[str, float] = {}
        for name in KERNELS:
            row: dict[str, Any] = {"model": model, "shape": list(shape), "kernel": name, "ms": None, "chosen": False}
            why = "never picked on a GPU" if gpu and name == "math" else kernel_unavailable(name, device, dtype, dim)
            if why is None:
                try:
                    timed[name] = measure_kernel(name, device, dtype, shape, repeats)
                except RuntimeError as exc:  # out of memory at this size, or refused beyond the small probe
                    why = str(exc).splitlines()[0][:160]
            if why is None:
                row |= {"ms": round(timed[name] * 1000, 3), "tflops": round(flops / timed[name] / 1e12, 1)}
            rows.append(row if why is None else row | {"unavailable": why})
        if gpu and timed:
            chosen = choose_kernel(timed)
            next(row for row in rows if row["model"] == model and row["kernel"] == chosen)["chosen"] = True
    return rows


def _denoising_rows(
    pipeline: str,
    runs: dict[str, Callable[[Any, int], object]],
    reference: str,
    device: str,
    warmup: int,
    timed: int,
    steps: int,
    exact: tuple[str, Any] | None = None,
    approximate: tuple[str, dict[str, ApproximateMode], Callable[[Any, Any], dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Rows for pipelines timed step by step with :class:`StepClock`, extrapolated to ``steps`` steps; each
    ``runs`` entry takes the clock and the number of steps to run. A one-step call of each comes first, untimed
    (allocations, kernel autotuning, the VAE's first decode). ``exact``: (contender, its pipeline) run last with
    that pipeline's exact fast mode on (the contenders share modules), its one-step first call reported apart as
    ``compile_seconds``; on a CPU only the fused projections (Inductor's compile is left to the test suite).
    ``approximate``: (contender, its approximate modes, compare(exact output, approximate output) -> quality), each
    mode run as that contender with the mode on, its row carrying the quality against that contender's output."""
    measured, extra, outputs = {}, {}, {}
    default = [name for name in runs if exact is None or name != exact[0]]
    for name in default:
        StepClock(device).run(lambda clock, call=runs[name]: call(clock, 1))
    for name in default:
        clock = StepClock(device).run(lambda clock, call=runs[name]: call(clock, warmup + timed))
        measured[name] = clock.split(warmup) | {"peak_gib": _peak_gib(device), "timed_steps": len(clock.ends) - warmup}
        outputs[name] = clock.output
    name, modes, compare = approximate or ("", {}, None)
    for mode_name, mode in modes.items():
        mode.enable()
        try:
            StepClock(device).run(lambda clock: runs[name](clock, 1))
            clock = StepClock(device).run(lambda clock: runs[name](clock, warmup + timed))
        finally:
            mode.disable()
        row = f"{name} {mode_name}"
        measured[row] = clock.split(warmup) | {"peak_gib": _peak_gib(device), "timed_steps": len(clock.ends) - warmup}
        quality = compare(outputs[name], clock.output)
        psnr = quality.pop("psnr_db")
        extra[row] = {"contender": name, "mode": f"approximate:{mode_name}", "approximate": mode.description,
                      "psnr_db": round(psnr, 2) if math.isfinite(psnr) else "inf", "quality_steps": warmup + timed,
                      **{k: round(v, 4) if isinstance(v, float) else v for k, v in quality.items()}}  # fmt: skip
    if exact is not None:
        name, pipe = exact
        gpu = device.startswith("cuda")
        report = pipe.enable_fast_mode(compile=gpu)
        try:
            first = StepClock(device).run(lambda clock: runs[name](clock, 1))
            clock = StepClock(device).run(lambda clock: runs[name](clock, warmup + timed))
        finally:
            pipe.disable_fast_mode()
        measured[name] = clock.split(warmup) | {"peak_gib": _peak_gib(device), "timed_steps": len(clock.ends) - warmup}
        extra[name] = {"mode": "exact", "compile_seconds": round(first.end - first.start, 3), "fast_mode": report}
        if not gpu:
            extra[name]["note"] = "CPU: compile skipped (its time); tests/pipelines/test_fast_mode.py checks it"
    base = measured[reference]
    base_seconds = base["before"] + steps * base["per_step"] + base["after"]
    rows = []
    for name, split in measured.items():
        seconds = split["before"] + steps * split["per_step"] + split["after"]
        rows.append({
            "pipeline": pipeline, "contender": name, "mode": "default",
            "seconds": round(seconds, 3), "fps": None,
            "peak_gib": None if split["peak_gib"] is None else round(split["peak_gib"], 2),
            "time_vs_reference": round(seconds / base_seconds, 3), "seconds_per_step": round(split["per_step"], 4),
            "seconds_before_steps": round(split["before"], 3), "seconds_after_steps": round(split["after"], 3),
            "steps": steps, "timed_steps": split["timed_steps"], "extrapolated": True, **extra.get(name, {}),
        })  # fmt: skip
    return rows


def video(scale: str, device: str, warmup: int, timed: int, judge: QualityJudge) -> list[dict[str, Any]]:
    """Identity video, genface against diffusers' ConsisIDPipeline (see the module docstring)."""
    from benchmarks.identity_video import approximate_modes, contenders

    ours, reference, identity, size, conditions = contenders(scale, device)
    common = dict(prompt="a person smiling", output_type="np", **size)
    genface = lambda clock, steps: ours(  # noqa: E731
        identity=identity, num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
        callback_on_step_end=clock, **common,
    )  # fmt: skip
    runs = {
        "genface": genface,
        "diffusers": lambda clock, steps: reference(
            num_inference_steps=steps, generator=torch.Generator().manual_seed(0), callback_on_step_end=clock,
            **conditions, **common,
        ),
        "genface exact": genface,
    }  # fmt: skip
    compare = lambda exact, output: judge.compare(  # noqa: E731
        exact.frames[0], output.frames[0], identity.crop, common["prompt"]
    )
    approximate = ("genface", approximate_modes(ours), compare)
    exact = ("genface exact", ours)
    return _denoising_rows("identity_video", runs, "diffusers", device, warmup, timed, 50, exact, approximate)


def makeup(scale: str, device: str, warmup: int, timed: int, judge: QualityJudge) -> list[dict[str, Any]]:
    """Makeup, MakeupPipeline against FluxKontextPipeline with the injector's processors."""
    import numpy as np

    from benchmarks.makeup import approximate_modes, contenders, reference_inputs
    from genface.pipelines.makeup.pipeline import DEFAULT_PROMPT

    ours, reference, size = contenders(scale, device)
    rng = np.random.default_rng(0)
    source, look = (rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2))
    genface = lambda clock, steps: ours.edit(  # noqa: E731
        source, look, size=size, num_inference_steps=steps, guidance_scale=2.5,
        generator=torch.Generator().manual_seed(0), callback_on_step_end=clock,
    )  # fmt: skip
    runs = {
        "genface": genface,
        "diffusers + processor swap": lambda clock, steps: reference(
            **reference_inputs(ours, source, look, size), num_inference_steps=steps, guidance_scale=2.5,
            generator=torch.Generator().manual_seed(0), callback_on_step_end=clock,
        ),
        "genface exact": genface,
    }  # fmt: skip
    exact = ("genface exact", ours)
    compare = lambda exact, output: judge.compare(exact, output, source, DEFAULT_PROMPT)  # noqa: E731
    approximate = ("genface", approximate_modes(ours), compare)
    return _denoising_rows("makeup", runs, "diffusers + processor swap", device, warmup, timed, 25, exact, approximate)


class FixedFace:
    """A face analyzer that finds the sample astronaut's face (as dlib does) in every frame without looking.

    The GPU machines lack dlib's 100 MB landmark model (over what the device tool carries), so the device run's
    talking-face figures leave out face detection, which runs on the CPU whatever the device:
    ``python -m benchmarks.run --pipeline identity`` times it.
    """

    min_face_size = 0
    recognizer = None
    backend = SimpleNamespace(name="fixed")  # what a prepared video's key records of the face engine
    det_thresh = 0.0

    @staticmethod
    def load(image: Any) -> Any:
        """The image as RGB (the identity encoder reads photos through its analyzer)."""
        from genface.media import load_image

        return load_image(image)

    def detect(self, image: Any) -> list[Any]:
        import numpy as np

        from genface.identity import Face

        kps = [[203.2, 101.5], [246.5, 104.2], [225.0, 127.0], [201.0, 139.0], [246.0, 141.0]]
        landmarks = np.array(ASTRONAUT_LANDMARKS, np.float32)
        return [Face(np.array(ASTRONAUT_BOX, np.float32), 1.0, np.array(kps, np.float32), landmarks)]

    def get(self, image: Any, face_index: int | None = None, **_: Any) -> Any:
        """The one face (the talking-portrait pipeline asks for one)."""
        return self.detect(image)[0]


#: dlib's box and 68 landmarks of the face in genface.samples' "astronaut" photo (512x512).
ASTRONAUT_BOX = (175.0, 76.0, 265.0, 166.0)
ASTRONAUT_LANDMARKS = (
    (179, 104), (180, 116), (181, 127), (182, 139), (185, 150), (191, 160), (200, 168), (209, 176), (220, 178),
    (232, 177), (243, 171), (253, 163), (260, 154), (265, 143), (268, 131), (270, 120), (272, 108), (186, 94),
    (192, 88), (200, 87), (208, 89), (216, 92), (236, 93), (244, 91), (252, 91), (260, 92), (265, 99), (226, 102),
    (225, 111), (225, 119), (225, 127), (214, 131), (219, 133), (224, 134), (229, 133), (234, 132), (195, 101),
    (200, 98), (207, 98), (212, 104), (206, 104), (199, 104), (237, 106), (243, 100), (250, 100), (255, 105),
    (250, 107), (244, 107), (201, 139), (209, 139), (218, 139), (224, 141), (230, 140), (238, 140), (246, 141),
    (238, 151), (229, 155), (222, 156), (216, 155), (208, 150), (204, 141), (218, 143), (223, 144), (230, 143),
    (243, 142), (229, 150), (223, 151), (217, 150),
)  # fmt: skip


def talk(scale: str, device: str, frames: int, judges: dict[str, Any]) -> list[dict[str, Any]]:
    """Talking faces (MuseTalk): frames per second, end to end (face detection left out, see :class:`FixedFace`;
    with Sync-C/D where ``judges`` are given) and of the model path against the diffusers loop; live speech into a
    dub (``stream``, speech in 200 ms chunks: frames per second and first-frame latency); then a dub of a video file
    into a marked mp4, as it comes, its preparation and from the prepared video, each with milliseconds per frame of
    every stage (``stages_ms_per_frame``, :func:`benchmarks.talking_face.dub_stages`)."""
    from benchmarks.harness import time_alternating
    from benchmarks.talking_face import contenders, dub_stages, stream_timing, sync_quality

    bench = contenders(scale, device, frames, face_analyzer=FixedFace())
    frames, dtype = bench.frames, str(bench.dtype).removeprefix("torch.")
    timings = time_alternating(bench.runs, 1, device)
    base = timings.median("diffusers loop")
    modes = {
        "diffusers loop": "model path",
        "genface model path": "model path",
        "genface end to end": "end to end without face detection",
    }
    rows = [
        {
            "pipeline": "talking_face",
            "contender": name,
            "mode": "default",
            "seconds": round(timings.median(name), 3),
            "fps": round(frames / timings.median(name), 2),
            "peak_gib": timings.peak_gib.get(name),
            "time_vs_reference": round(timings.median(name) / base, 3),
            "measures": modes[name],
            "frames": frames,
            "dtype": dtype,
        }  # fmt: skip
        for name in bench.runs
    ]
    if judges:
        dubbed = bench.pipe(bench.clip, bench.speech, audio_rate=16000, fps=25, measure=False).frames
        rows[-1] |= sync_quality(dubbed, bench.speech, 25, bench.pipe.face_analyzer, judges)
    live = stream_timing(bench.pipe, bench.pipe.prepare(bench.clip, fps=25), bench.speech, batch_size=8)
    rows.append({
        "pipeline": "talking_face", "contender": "genface stream", "mode": "default",
        "seconds": round(live["seconds"], 3), "fps": round(live["fps"], 2), "peak_gib": None,
        "time_vs_reference": round(live["seconds"] / base, 3),
        "first_frame_seconds": round(live["first_frame_seconds"], 3),
        "measures": "stream: speech in 200 ms chunks, batches of 8 frames, the video prepared before", "frames": frames,
        "dtype": dtype,
    })  # fmt: skip
    dubs = {  # contender, mode (a prepared video gives the same frames: an exact lever), what it measures
        "dub": ("genface dub", "default", "video file to marked mp4, without face detection"),
        "prepare": ("genface prepare", "default", "preparing the video once (per source frame)"),
        "dub prepared": ("genface dub, prepared video", "exact", "the same dub from the prepared video"),
    }
    for name, stages in dub_stages(bench.pipe, bench.clip, bench.speech).items():
        contender, mode, measures = dubs[name]
        seconds = frames / stages.pop("end-to-end fps")
        rows.append({
            "pipeline": "talking_face", "contender": contender, "mode": mode, "seconds": round(seconds, 3),
            "fps": round(frames / seconds, 2), "peak_gib": None,
            "time_vs_reference": round(seconds / base, 3), "measures": measures, "frames": frames, "dtype": dtype,
            "stages_ms_per_frame": stages,
        })  # fmt: skip
    return rows


def latentsync(scale: str, device: str, frames: int, judges: dict[str, Any]) -> list[dict[str, Any]]:
    """LatentSync 1.6 at 512 px (random weights at the published sizes, fp16 on a GPU): frames per second and peak
    memory of a dub (frames kept, face detection left out as for ``talk``; 20 DDIM steps with guidance, 16-frame
    clips), eagerly and in fast mode (its first call apart as ``compile_seconds``; ``max_diff_vs_eager``: the
    largest pixel difference from the eager frames, exact levers only); with Sync-C/D where ``judges`` are given;
    and live speech into it (``stream``: first-frame latency)."""
    import numpy as np

    from benchmarks.talking_face import latentsync_pipeline, stream_timing, sync_quality
    from genface.media import load_image
    from genface.samples import sample_path, speech_like

    cuda = device.startswith("cuda")
    dtype = torch.float16 if cuda and scale == "full" else torch.float32
    steps = 20 if scale == "full" else 2
    pipe = latentsync_pipeline(scale, device, dtype, FixedFace())
    photo = load_image(sample_path("astronaut"))
    clip = np.stack([np.roll(photo, i % 5, axis=1) for i in range(frames)])
    speech = speech_like(frames / 25)
    dub = {"audio_rate": 16000, "fps": 25, "num_inference_steps": steps, "measure": False}

    def timed(call: Callable[[], Any]) -> tuple[float, Any]:
        _free()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        _sync(device)
        started = time.perf_counter()
        result = call()
        _sync(device)
        return time.perf_counter() - started, result

    pipe(clip[:16], speech[: 16 * 640], **dub)  # warm-up: one clip
    eager_seconds, eager = timed(lambda: pipe(clip, speech, **dub))
    eager_peak = _peak_gib(device)
    report = pipe.enable_fast_mode(compile=cuda)
    compile_seconds, _ = timed(lambda: pipe(clip[:16], speech[: 16 * 640], **dub))
    fast_seconds, fast = timed(lambda: pipe(clip, speech, **dub))
    fast_peak = _peak_gib(device)
    pipe.disable_fast_mode()
    live = stream_timing(pipe, clip, speech, num_inference_steps=steps)
    common = {"pipeline": "talking_face", "frames": frames, "dtype": str(dtype).removeprefix("torch."),
              "resolution": pipe.config.resolution, "steps": steps}  # fmt: skip
    measures = f"LatentSync {pipe.config.resolution} px: video to frames, {steps} DDIM steps, without face detection"
    rows = [
        common | {"contender": "genface latentsync", "mode": "default", "seconds": round(eager_seconds, 3),
                  "fps": round(frames / eager_seconds, 2), "peak_gib": eager_peak, "time_vs_reference": 1.0,
                  "measures": measures} | sync_quality(eager.frames, speech, 25, pipe.face_analyzer, judges),
        common | {"contender": "genface latentsync exact", "mode": "exact", "seconds": round(fast_seconds, 3),
                  "fps": round(frames / fast_seconds, 2), "peak_gib": fast_peak,
                  "time_vs_reference": round(fast_seconds / eager_seconds, 3),
                  "compile_seconds": round(compile_seconds, 3), "fast_mode": report,
                  "max_diff_vs_eager": int(np.abs(eager.frames.astype(int) - fast.frames).max()),
                  "measures": measures + ", fast mode"},
        common | {"contender": "genface latentsync stream", "mode": "default", "seconds": round(live["seconds"], 3),
                  "fps": round(live["fps"], 2), "peak_gib": None,
                  "time_vs_reference": round(live["seconds"] / eager_seconds, 3),
                  "first_frame_seconds": round(live["first_frame_seconds"], 3),
                  "measures": "stream: speech in 200 ms chunks, 16-frame clips"},
    ]  # fmt: skip
    if not cuda:
        rows[1]["note"] = "compile skipped on the CPU: fast mode here fuses the projections only"
    return rows


def _portrait_pipeline(scale: str, device: str, dtype: torch.dtype) -> Any:
    """Ditto at its published sizes with random weights built on ``device`` (or the tiny model), FixedFace."""
    from genface.pipelines.talking_portrait import TalkingPortraitPipeline
    from genface.pipelines.talking_portrait.tiny import tiny_pipeline

    if scale == "tiny":
        return tiny_pipeline(FixedFace()).to(device)
    from transformers import HubertConfig, HubertModel

    from genface.pipelines.talking_portrait.pipeline import COMPONENTS

    hubert = HubertConfig(  # facebook/hubert-large-ls960-ft
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
    )  # fmt: skip
    with torch.device(device):
        modules = {name: module_class() for name, (module_class, _) in COMPONENTS.items()}
        modules["audio_encoder"] = HubertModel(hubert)
    pipe = TalkingPortraitPipeline(**{k: m.eval() for k, m in modules.items()}, face_analyzer=FixedFace())
    return pipe.to(dtype=dtype)


def portrait(scale: str, device: str, seconds: float) -> list[dict[str, Any]]:
    """Talking portraits: frames per second of the offline call and of streaming, and streaming's first-frame
    latency (seconds from the first audio chunk to the first frame out)."""
    from genface.media import load_image
    from genface.samples import sample_path, speech_like

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = _portrait_pipeline(scale, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    photo, speech = load_image(sample_path("astronaut")), speech_like(seconds)
    steps = 50 if scale == "full" else 2
    pipe(photo, speech[:16000], audio_rate=16000, num_inference_steps=steps, measure=False)  # warm-up
    how = {
        "offline": f"{steps} DDIM steps",
        "stream": "online preset (10 steps), 200 ms chunks given at once (first_frame_seconds is compute; live "
        "speech adds the 0.8 s Ditto's first two windows wait for)",
    }
    rows = []
    for mode in ("offline", "stream"):
        _sync(device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        first = None
        if mode == "offline":
            output = pipe(photo, speech, audio_rate=16000, num_inference_steps=steps, measure=False)
            frames = len(output.frames)
        else:
            chunks = [speech[i : i + 3200] for i in range(0, len(speech), 3200)]  # 200 ms each
            frames = 0
            for chunk in pipe.stream(photo, chunks):
                first = first or time.perf_counter() - start
                frames += len(chunk)
        _sync(device)
        elapsed = time.perf_counter() - start
        rows.append(
            {
                "pipeline": "talking_portrait",
                "contender": "genface",
                "mode": "default",
                "seconds": round(elapsed, 3),
                "fps": round(frames / elapsed, 2),
                "peak_gib": _peak_gib(device),
                "time_vs_reference": None,
                "measures": f"{mode}, end to end without face detection, {how[mode]}",
                "first_frame_seconds": None if first is None else round(first, 3),
                "frames": frames,
                "dtype": str(dtype).removeprefix("torch."),
            }  # fmt: skip
        )
    return rows


def memory(scale: str, device: str, warmup: int, timed: int) -> list[dict[str, Any]]:
    """Identity video in each low-memory mode: seconds per step and peak GPU memory (CUDA only)."""
    from benchmarks.identity_video import contenders
    from genface.pipelines import IdentityVideoPipeline

    ours, _, identity, size, _ = contenders(scale, device)  # built on the GPU (fast), then moved off it
    components = {k: v.to("cpu") if isinstance(v, torch.nn.Module) else v for k, v in ours.components.items()}
    del ours
    common = dict(prompt="a person smiling", num_inference_steps=warmup + timed, output_type="np", **size)
    rows = []
    for mode in ("model", "group"):  # sequential (layer by layer) is far too slow at full size for one call
        _free()
        pipe = IdentityVideoPipeline(**components)
        pipe.set_progress_bar_config(disable=True)
        pipe.enable_low_memory(mode)
        clock = StepClock(device).run(
            lambda clock, pipe=pipe: pipe(
                identity=identity, generator=torch.Generator().manual_seed(0), callback_on_step_end=clock, **common
            )
        )
        split = clock.split(warmup)
        rows.append({
            "pipeline": "identity_video", "contender": "genface", "mode": f"low-memory:{mode}",
            "seconds": round(split["before"] + 50 * split["per_step"] + split["after"], 3), "fps": None,
            "peak_gib": round(_peak_gib(device), 2), "time_vs_reference": None,
            "seconds_per_step": round(split["per_step"], 4), "steps": 50, "extrapolated": True,
        })  # fmt: skip
        pipe.remove_all_hooks()
    return rows


def wan(scale: str, device: str, warmup: int, timed: int) -> list[dict[str, Any]]:
    """Identity video on Wan: Stand-In and VACE against diffusers' WanPipeline without the adapter (see the module
    docstring); Stand-In's adapter is taken out of the transformer while the reference runs."""
    import PIL.Image

    from benchmarks.wan_video import contenders
    from genface.models.stand_in import StandInAdapter
    from genface.pipelines.identity_video.vace import vace_reference

    bench = contenders(scale, device, FixedFace())
    stand_in, face, call = bench.stand_in, bench.face, bench.call
    seeded = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    model = "Wan2.1-T2V-14B" if scale == "full" else "tiny"

    def bare(clock: StepClock, steps: int) -> Any:
        StandInAdapter.remove(stand_in.transformer)
        try:
            return bench.wan(num_inference_steps=steps, generator=seeded(), callback_on_step_end=clock, **call)
        finally:
            stand_in.states = stand_in.install_adapters()

    def genface(clock: StepClock, steps: int, pipe: Any = stand_in) -> Any:
        return pipe(face_image=face, num_inference_steps=steps, generator=seeded(), callback_on_step_end=clock,
                    measure=False, **call)  # fmt: skip

    runs = {"diffusers WanPipeline": bare, "genface Stand-In": genface, "genface Stand-In exact": genface}
    rows = _denoising_rows("wan_video", runs, "diffusers WanPipeline", device, warmup, timed, 50,
                           ("genface Stand-In exact", stand_in))  # fmt: skip
    for row in rows:
        row["model"] = model
    reference = rows[0]["seconds"]
    for size, build in bench.vace.items():
        pipe = build().to(device)
        pipe.set_progress_bar_config(disable=True)
        vace_runs = {f"genface VACE {size}": lambda clock, steps, pipe=pipe: genface(clock, steps, pipe)}
        if size == "1.3B":  # diffusers' own call on the same modules and the reference genface prepares
            from diffusers import WanVACEPipeline

            diffusers = WanVACEPipeline(**pipe.components)
            diffusers.set_progress_bar_config(disable=True)
            prepared = PIL.Image.fromarray(vace_reference(face, FixedFace().detect(face)[0].bbox))
            vace_runs[f"diffusers WanVACEPipeline {size}"] = lambda clock, steps, diffusers=diffusers, ref=prepared: (
                diffusers(reference_images=[ref], num_inference_steps=steps, generator=seeded(),
                          callback_on_step_end=clock, **call)
            )  # fmt: skip
        found = _denoising_rows("wan_video", vace_runs, list(vace_runs)[-1], device, warmup, timed, 50)
        for row in found:
            row["model"] = f"Wan2.1-VACE-{size}" if scale == "full" else "tiny"
            row["time_vs_diffusers_vace"] = row["time_vs_reference"] if len(vace_runs) > 1 else None
            row["time_vs_reference"] = round(row["seconds"] / reference, 3)
        rows += found
        del pipe, vace_runs
        _free()
    if device.startswith("cuda"):
        rows.append(_stand_in_low_memory(stand_in, face, call, device, warmup, timed, reference) | {"model": model})
    return rows


def _stand_in_low_memory(
    stand_in: Any, face: Any, call: dict[str, Any], device: str, warmup: int, timed: int, reference: float
) -> dict[str, Any]:
    """Stand-In in the low-memory ``group`` mode (both models' blocks streamed from the CPU): the row's
    ``peak_gib`` is what a smaller GPU needs."""
    components = {k: v.to("cpu") if isinstance(v, torch.nn.Module) else v for k, v in stand_in.components.items()}
    _free()
    pipe = type(stand_in)(**components, identity_encoder=stand_in.identity_encoder, face_parser=stand_in.face_parser)
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_low_memory("group")
    seed = torch.Generator().manual_seed(0)
    clock = StepClock(device).run(
        lambda clock: pipe(face_image=face, num_inference_steps=warmup + timed, generator=seed,
                           callback_on_step_end=clock, measure=False, **call)
    )  # fmt: skip
    split = clock.split(warmup)
    seconds = split["before"] + 50 * split["per_step"] + split["after"]
    return {
        "pipeline": "wan_video", "contender": "genface Stand-In", "mode": "low-memory:group",
        "seconds": round(seconds, 3), "fps": None, "peak_gib": round(_peak_gib(device), 2),
        "time_vs_reference": round(seconds / reference, 3), "seconds_per_step": round(split["per_step"], 4),
        "steps": 50, "extrapolated": True,
    }  # fmt: skip


def _sync_judges(args: argparse.Namespace) -> dict[str, Any]:
    """The lip-sync judges whose weights are given (:mod:`genface.eval.sync`), on the run's device."""
    from genface.eval.sync import load_latentsync_syncnet, load_syncnet

    judges = {}
    if args.syncnet:
        judges["syncnet"] = load_syncnet(args.syncnet).to(args.device)
    if args.latentsync_syncnet:
        judges["latentsync"] = load_latentsync_syncnet(args.latentsync_syncnet).to(args.device)
    return judges


def tables(record: dict[str, Any]) -> str:
    """The record as Markdown: the device line, the pipeline rows, the attention kernels, what was skipped."""
    columns = ["pipeline", "contender", "mode", "seconds", "seconds_per_step", "compile_seconds", "fps", "peak_gib",
               "first_frame_seconds", "time_vs_reference", "psnr_db", "facesim_delta", "clipscore_delta", "sync_c",
               "sync_d", "latentsync_conf"]  # fmt: skip
    show = lambda value: "" if value is None else str(value)  # noqa: E731
    parts = [
        f"Device run on {record['device']}, {record['date']} (random weights at the {record['scale']} sizes; "
        "denoising figures extrapolated to 50 / 25 steps from the timed steps)",
        markdown_table(columns, [[show(row.get(c)) for c in columns] for row in record["rows"]]),
    ]
    staged = {row["contender"]: row["stages_ms_per_frame"] | {"end-to-end fps": row["fps"]}
              for row in record["rows"] if "stages_ms_per_frame" in row}  # fmt: skip
    if staged:
        from benchmarks.talking_face import stage_table

        parts.append(stage_table(staged))
    if record["attention"]:
        header = ["model", "shape", "kernel", "ms", "tflops", "chosen", "unavailable"]
        parts.append(markdown_table(header, [[show(row.get(c)) for c in header] for row in record["attention"]]))
    if record["skipped"]:
        parts.append("Skipped: " + "; ".join(f"{name} ({why})" for name, why in record["skipped"].items()))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["full", "tiny"], default="full")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON and Markdown record")
    parser.add_argument("--budget-s", type=float, default=420, help="start no section after this many seconds")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--timed-steps", type=int, default=5)
    QualityJudge.add_arguments(parser)
    parser.add_argument(
        "--syncnet", default=None, help="Sync-C/D judge of the dubs: syncnet_v2.model, folder or Hub id"
    )
    parser.add_argument(
        "--latentsync-syncnet", default=None, help="LatentSync's SyncNet judge of the dubs: latentsync_syncnet.pt"
    )
    args = parser.parse_args(argv)
    sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    if unknown := set(sections) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    import diffusers
    import transformers

    started = time.perf_counter()
    date = _dt.date.today().isoformat()
    label = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    stem = f"{date}-{re.sub(r'[^A-Za-z0-9.]+', '-', label).strip('-').lower()}"
    record: dict[str, Any] = {
        "device": device_line(args.device), "date": date, "scale": args.scale,
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__},
        "rows": [], "attention": [], "skipped": {},
    }  # fmt: skip
    steps = (args.warmup_steps, args.timed_steps)
    judge = QualityJudge.from_args(args)
    judges = _sync_judges(args)
    work = {
        "attention": lambda: record["attention"].extend(attention(args.scale, args.device)),
        "video": lambda: record["rows"].extend(video(args.scale, args.device, *steps, judge)),
        "makeup": lambda: record["rows"].extend(makeup(args.scale, args.device, *steps, judge)),
        "talk": lambda: record["rows"].extend(talk(args.scale, args.device, 32 if args.scale == "full" else 2, judges)),
        "latentsync": lambda: record["rows"].extend(
            latentsync(args.scale, args.device, 32 if args.scale == "full" else 17, judges)
        ),
        "portrait": lambda: record["rows"].extend(
            portrait(args.scale, args.device, 8.0 if args.scale == "full" else 1.0)
        ),
        "memory": lambda: record["rows"].extend(memory(args.scale, args.device, *steps)),
        "wan": lambda: record["rows"].extend(wan(args.scale, args.device, *steps)),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name in sections:
        elapsed = time.perf_counter() - started
        if name == "memory" and not args.device.startswith("cuda"):
            record["skipped"][name] = "offloading needs a GPU"
        elif elapsed > args.budget_s:
            record["skipped"][name] = f"budget of {args.budget_s:g} s spent after {elapsed:.0f} s"
        else:
            print(f"[{elapsed:6.1f} s] {name} ...", flush=True)
            try:
                work[name]()
            except Exception as exc:  # one failing section must not lose the others' figures
                record["skipped"][name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            _free()
        (args.out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
        (args.out / f"{stem}.md").write_text(tables(record))
    print(tables(record))
    return record


if __name__ == "__main__":
    main()
