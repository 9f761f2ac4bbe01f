"""What every benchmark shares: alternating timed runs, the device line, tables, RESULTS.md records, and what an
approximate mode costs in quality against exact mode."""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).with_name("RESULTS.md")


@dataclass
class Timings:
    """Seconds per run of each contender, and peak GPU memory (GiB) when on CUDA."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    peak_gib: dict[str, float] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])


def time_alternating(runs: dict[str, Callable[[], object]], repeats: int, device: str) -> Timings:
    """Warm each run up once, then time them in turn ``repeats`` times, so that drift (clocks, caches, other
    load) affects all alike."""
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    timings = Timings({name: [] for name in runs})
    for run in runs.values():
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            gc.collect()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            sync()
            start = time.perf_counter()
            run()
            sync()
            timings.seconds[name].append(time.perf_counter() - start)
            if cuda:
                timings.peak_gib[name] = torch.cuda.max_memory_allocated() / 2**30
    return timings


def device_line(device: str) -> str:
    """The hardware and software a figure was measured on."""
    import diffusers

    hardware = (
        torch.cuda.get_device_name()
        if device.startswith("cuda")
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    return f"{hardware}; torch {torch.__version__}, diffusers {diffusers.__version__}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    aligns = ["---"] + ["---:"] * (len(header) - 1)
    lines = [header, aligns, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def report(title: str, body: str, record: bool) -> None:
    """Print a result; with ``record``, also append it to RESULTS.md under a dated heading."""
    print(f"# {title}\n{body}")
    if record:
        today = _dt.date.today().isoformat()
        with RESULTS.open("a") as results:
            results.write(f"\n## {title} ({today})\n\n{body}\n")


def psnr_db(exact: np.ndarray, approximate: np.ndarray) -> float:
    """PSNR (dB) of ``approximate`` against ``exact`` over every frame and pixel: ``10 log10(peak^2 / MSE)``, the peak
    255 for integer arrays and 1 for float ones in [0, 1]; infinite when they are equal."""
    exact, approximate = np.asarray(exact), np.asarray(approximate)
    if exact.shape != approximate.shape:
        raise ValueError(f"PSNR needs outputs of one shape; got {exact.shape} and {approximate.shape}.")
    mse = float(np.mean((approximate.astype(np.float64) - exact.astype(np.float64)) ** 2))
    peak = 255.0 if np.issubdtype(exact.dtype, np.integer) else 1.0
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def _uint8(output: np.ndarray) -> np.ndarray:
    output = np.asarray(output)
    return output if output.dtype == np.uint8 else (output.clip(0, 1) * 255).round().astype(np.uint8)


#: The metrics a :class:`QualityJudge` adds to PSNR when it has the weights, in the order tables show them.
JUDGED = ("facesim", "clipscore")


@dataclass
class QualityJudge:
    """What an approximate mode loses against exact mode's output of the same seeds: PSNR always; FaceSim-Arc to the
    reference face (ConsisID's protocol, :func:`genface.eval.facesim_arc`) given a face ``analyzer`` with a
    recognizer, and CLIPScore for the prompt (RGB frames, :func:`genface.eval.clip_score`) given ``clip`` (model,
    processor). ``skipped`` says why a metric is left out."""

    analyzer: Any = None
    clip: tuple[Any, Any] | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.analyzer is None:
            self.skipped.setdefault("facesim", "no --face-encoder weights given")
        if self.clip is None:
            self.skipped.setdefault("clipscore", "no --clip weights given")

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """The options that give the judges' weights (as ``genface eval video`` takes them)."""
        parser.add_argument(
            "--face-encoder", default=None,
            help="FaceSim judge: folder or Hub id of an insightface pack (in face_encoder/ when there is one)",
        )  # fmt: skip
        parser.add_argument("--face-pack", default="buffalo_l", choices=["buffalo_l", "antelopev2"])
        parser.add_argument("--clip", default=None, help="CLIPScore judge: CLIP folder or Hub id")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> QualityJudge:
        from genface.eval import consisid_analyzer, load_clip
        from genface.eval.weights import judge_source

        analyzer = None
        if args.face_encoder:
            analyzer = consisid_analyzer(*judge_source(args.face_encoder, "face_encoder"), model_name=args.face_pack)
        clip = None
        if args.clip:
            model, processor = load_clip(args.clip)
            clip = (model.to(args.device), processor)
        return cls(analyzer, clip)

    def scores(self, output: np.ndarray, reference: np.ndarray, prompt: str) -> dict[str, float]:
        """FaceSim-Arc of ``output`` (T x H x W x 3 frames or one H x W x 3 image) to the face in ``reference``, and
        its CLIPScore for ``prompt``, of the judges present; a reference without a face goes into ``skipped``."""
        from genface.errors import NoFaceError
        from genface.eval import clip_score, consisid_faces, facesim_arc

        frames = _uint8(output)
        frames = frames if frames.ndim == 4 else frames[None]
        scores = {}
        if self.analyzer is not None:
            try:
                ref = consisid_faces(_uint8(reference), self.analyzer)
                scores["facesim"] = facesim_arc(ref, consisid_faces(frames, self.analyzer)).mean
            except NoFaceError:
                self.skipped["facesim"] = "no face found in the reference"
        if self.clip is not None:
            scores["clipscore"] = clip_score(frames, prompt, *self.clip, protocol="standard")
        return scores

    def compare(self, exact: np.ndarray, approximate: np.ndarray, reference: np.ndarray, prompt: str) -> dict[str, Any]:
        """``psnr_db`` of ``approximate`` against ``exact``; per judge the approximate output's score (``facesim``,
        ``clipscore``) and its change from exact mode's (``facesim_delta``, ``clipscore_delta``); and
        ``quality_skipped``, what was left out and why."""
        quality: dict[str, Any] = {"psnr_db": psnr_db(exact, approximate)}
        before, after = self.scores(exact, reference, prompt), self.scores(approximate, reference, prompt)
        for name, value in after.items():
            quality |= {name: value, f"{name}_delta": value - before[name]}
        if self.skipped:
            quality["quality_skipped"] = "; ".join(
                f"{name}: {self.skipped[name]}" for name in JUDGED if name in self.skipped
            )
        return quality


def quality_cells(quality: dict[str, Any]) -> list[str]:
    """A quality record as table cells: PSNR (dB), FaceSim and CLIPScore with their change from exact mode."""
    cells = [f"{quality['psnr_db']:.1f}"]
    for name in JUDGED:
        cells.append(f"{quality[name]:.3f} ({quality[f'{name}_delta']:+.3f})" if name in quality else "skipped")
    return cells


QUALITY_HEADER = ["PSNR vs exact dB", "FaceSim (change)", "CLIPScore (change)"]


@dataclass
class ApproximateMode:
    """An opt-in approximation of a pipeline (a cache hook, fp8): what it is and the switches that turn it on and
    off (off is exact mode again)."""

    description: str
    enable: Callable[[], object]
    disable: Callable[[], object]


def approximate_table(
    modes: dict[str, ApproximateMode],
    run: Callable[[], np.ndarray],
    repeats: int,
    device: str,
    judge: QualityJudge,
    reference: np.ndarray,
    prompt: str,
) -> str:
    """Each mode's end-to-end seconds, speed-up over exact mode and quality against exact mode's output of the same
    seeds (``run`` makes the output, seeded); a note below says which judges were skipped and why."""
    exact = run()
    rows, skipped = [], ""
    for mode in modes.values():
        mode.enable()
        try:
            seconds = time_alternating({"approximate": run}, repeats, device).median("approximate")
            output = run()
        finally:
            mode.disable()
        exact_seconds = time_alternating({"exact": run}, repeats, device).median("exact")
        quality = judge.compare(exact, output, reference, prompt)
        skipped = quality.get("quality_skipped", "")
        rows.append([mode.description, f"{seconds:.3f}", f"{exact_seconds / seconds:.2f}x", *quality_cells(quality)])
    table = markdown_table(["approximate mode", "end-to-end s", "speed-up vs exact", *QUALITY_HEADER], rows)
    return table + (f"\n\nSkipped: {skipped}." if skipped else "")
