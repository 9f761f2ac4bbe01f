"""The batch runner behind ``genface eval``: items from a folder or a manifest, judged one at a time into a
resumable JSON-lines file, and a summary (mean and 95% confidence interval per metric) in Markdown and JSON.

A manifest is JSON lines (one object per line) or CSV (a header row), with paths relative to its folder. Fields per
kind: ``video``: ``video``, ``reference`` (the face photo), optional ``prompt``; ``talk``: ``video``, optional
``speech`` (default: the video's own audio track); ``makeup``: ``image`` (the result), ``source``, ``reference``.
Every kind takes an optional ``id`` (default: the first path as written). A folder gives one item per video, with
the files of the same name beside it: ``NAME.png`` / ``.jpg`` / ``.jpeg`` / ``.webp`` the reference and ``NAME.txt``
the prompt (video), ``NAME.wav`` / ``.mp3`` / ``.m4a`` / ``.flac`` the speech (talk).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genface.errors import (
    FaceTooSmallError,
    InvalidArgumentError,
    InvalidImageError,
    InvalidMediaError,
    MultipleFacesError,
    NoFaceError,
)
from genface.media import check_output_path
from genface.media.image import IMAGE_SUFFIXES

#: Per kind: the fields every item needs, and the optional ones.
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "video": (("video", "reference"), ("prompt",)),
    "talk": (("video",), ("speech",)),
    "makeup": (("image", "source", "reference"), ()),
}
_SPEECH = (".wav", ".mp3", ".m4a", ".flac")
#: Failures of one item's own files, recorded in its line while the batch goes on.
ITEM_ERRORS = (NoFaceError, FaceTooSmallError, MultipleFacesError, InvalidImageError, InvalidMediaError)


@dataclass
class Item:
    """One thing to judge: its ``id`` and ``fields`` (absolute paths, and the prompt)."""

    id: str
    fields: dict[str, str]

    @property
    def media(self) -> str:
        """The generated file: the video, or the made-up image."""
        return self.fields.get("video") or self.fields["image"]


Judge = Callable[[Item], dict[str, float | None]]


def _folder_rows(folder: Path, kind: str) -> Iterable[tuple[str, dict[str, str]]]:
    from genface.media.video import VIDEO_SUFFIXES

    if kind == "makeup":
        raise InvalidArgumentError(
            f"{folder} is a folder; genface eval makeup reads a manifest (.jsonl or .csv) with image, source and "
            "reference per row."
        )
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise InvalidArgumentError(f"{folder} holds no videos ({', '.join(VIDEO_SUFFIXES)}).")
    for video in videos:
        row = {"id": video.name, "video": video.name}  # names: read_items reads them in the folder
        beside = {p.suffix.lower(): p for p in folder.glob(f"{video.stem}.*") if p != video}
        if kind == "video":
            reference = next((beside[s] for s in IMAGE_SUFFIXES if s in beside), None)
            if reference is None:
                raise InvalidArgumentError(
                    f"{video}: no face photo beside it; in a folder, each video has its reference face under its "
                    f"name ({video.stem}{', '.join(IMAGE_SUFFIXES[:-1])} or {IMAGE_SUFFIXES[-1]}) and, optionally, "
                    f"its prompt ({video.stem}.txt)."
                )
            row["reference"] = reference.name
            row |= {"prompt": beside[".txt"].read_text().strip()} if ".txt" in beside else {}
        else:
            speech = next((beside[s] for s in _SPEECH if s in beside), None)
            row |= {"speech": speech.name} if speech else {}
        yield str(video), row


def _manifest_rows(path: Path) -> Iterable[tuple[str, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise InvalidArgumentError(f"{path}: give a folder or a manifest ending in .jsonl or .csv.")
    with open(path, encoding="utf-8", newline="") as file:
        if suffix == ".csv":
            reader = csv.DictReader(file)
            for row in reader:
                yield f"{path}:{reader.line_num}", {k: v for k, v in row.items() if k is not None}
            return
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidArgumentError(f"{path}:{number} is not a JSON object ({exc.msg}).") from None
            if not isinstance(row, dict):
                raise InvalidArgumentError(f"{path}:{number} is not a JSON object.")
            yield f"{path}:{number}", row


def read_items(source: str | os.PathLike, kind: str) -> list[Item]:
    """The items of a folder or manifest for ``kind`` (see the module's doc), every file checked to exist."""
    if kind not in KINDS:
        raise InvalidArgumentError(f"Unknown kind {kind!r}; choose from {sorted(KINDS)}.")
    path = Path(source).expanduser()
    if not path.exists():
        raise InvalidArgumentError(f"{source} does not exist; give a folder or a manifest (.jsonl or .csv).")
    rows = _folder_rows(path, kind) if path.is_dir() else _manifest_rows(path)
    base = path if path.is_dir() else path.parent
    required, optional = KINDS[kind]
    items: dict[str, Item] = {}
    for where, row in rows:
        unknown = sorted(set(row) - {"id", *required, *optional})
        missing = [name for name in required if not row.get(name)]
        if unknown or missing:
            fields = ", ".join([*required, *(f"{name} (optional)" for name in ("id", *optional))])
            problem = f"no {', '.join(missing)}" if missing else f"unknown field(s) {', '.join(unknown)}"
            raise InvalidArgumentError(f"{where}: {problem}; genface eval {kind} items have {fields}.")
        if not all(isinstance(value, str) for value in row.values()):
            raise InvalidArgumentError(f"{where}: every field must be a string.")
        fields = {}
        for name, value in row.items():
            if name == "id" or not value:
                continue
            if name == "prompt":
                fields[name] = value
                continue
            file = (base / value).expanduser()
            if not file.is_file():
                raise InvalidArgumentError(f"{where}: {name} {value} is not a file.")
            fields[name] = str(file.absolute())
        item_id = row.get("id") or row[required[0]]
        if item_id in items:
            raise InvalidArgumentError(f"{where}: id {item_id!r} appears twice; give each item its own id.")
        items[item_id] = Item(item_id, fields)
    if not items:
        raise InvalidArgumentError(f"{source} holds no items.")
    return list(items.values())


def _record(line: str) -> dict[str, Any] | None | bool:
    """The record a runner's line holds (an ``id`` with ``metrics`` or an ``error``); None for other JSON, False
    for a line that is not JSON."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return False
    if isinstance(record, dict) and isinstance(record.get("id"), str) and ("metrics" in record or "error" in record):
        return record
    return None


def read_records(output: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The records already in a runner's JSON-lines file, the last one per id. A last line cut short by an
    interruption is removed from the file; a file with any other line (a manifest, say) is refused unchanged."""
    path = Path(output)
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    # what evaluate() writes, cut short: the start of a record's line, not JSON yet, with no newline after it
    cut = bool(text) and not text.endswith("\n") and lines[-1].startswith('{"id": ') and _record(lines[-1]) is False
    records = {}
    for number, line in enumerate(lines[:-1] if cut else lines, 1):
        record = _record(line)
        if not record:
            raise InvalidArgumentError(
                f"{path}:{number} is not a record of genface eval; resume only with the file it wrote, or give a new "
                "output file."
            )
        records[record["id"]] = record
    if cut:
        with open(path, "r+", encoding="utf-8") as file:
            file.truncate(len(text[: text.rfind("\n") + 1].encode("utf-8")))
    elif text and not text.endswith("\n"):  # a whole last record without its newline: the next one starts a line
        with open(path, "a", encoding="utf-8") as file:
            file.write("\n")
    return records


def judge_item(item: Item, judges: Sequence[Judge]) -> dict[str, Any]:
    """One item's record: its fields and ``metrics`` from every judge, or ``error`` when its files fail."""
    record: dict[str, Any] = {"id": item.id, **item.fields}
    try:
        metrics: dict[str, float | None] = {}
        for judge in judges:
            metrics.update(judge(item))
        record["metrics"] = metrics
    except ITEM_ERRORS as exc:
        record["error"] = " ".join(str(exc).split())
    return record


def evaluate(
    items: Sequence[Item], judges: Sequence[Judge], output: str | os.PathLike, *, progress: bool = True
) -> list[dict[str, Any]]:
    """Judge every item that has no scored record in ``output`` yet, appending one JSON line per item as it
    finishes (so an interrupted run resumes where it stopped; failed items are tried again), and return the
    records of ``items`` in their order."""
    from tqdm.auto import tqdm

    inputs = [value for item in items for name, value in item.fields.items() if name != "prompt"]
    check_output_path(output, (".jsonl",), inputs, name="output")
    records = read_records(output)
    todo = [item for item in items if "metrics" not in records.get(item.id, {})]
    for item in tqdm(todo, desc="evaluating", unit="item", disable=not progress):
        record = judge_item(item, judges)
        with open(output, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
        records[item.id] = record
    return [records[item.id] for item in items]


#: The values each metric can take (low, high), by name or by prefix ending in ``_``: a confidence interval is cut
#: to them, so a few scores near a bound do not give an interval past it (FaceSim above 1, a negative FID).
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "facesim": (-1.0, 1.0), "facesim_arc": (-1.0, 1.0), "facesim_cur": (-1.0, 1.0),  # cosine similarities
    "latentsync_conf": (-1.0, 1.0), "latentsync_acc": (0.0, 1.0), "forgery": (0.0, 1.0),
    "fid": (0.0, math.inf), "sync_c": (0.0, math.inf), "sync_d": (0.0, math.inf), "frames_with_face": (0.0, math.inf),
    "makeup_": (-math.inf, 1.0),  # 1 - ΔE76 / 100 per region
    "opens2v_facesim_arc": (0.0, 1.0), "opens2v_facesim_cur": (0.0, 1.0),  # cosines clipped at 0
    "opens2v_frames_with_face": (0.0, math.inf),
}  # fmt: skip


def metric_range(name: str) -> tuple[float, float]:
    """The values metric ``name`` can take (see :data:`METRIC_RANGES`); unbounded when unknown."""
    found = METRIC_RANGES.get(name) or next(
        (span for prefix, span in METRIC_RANGES.items() if prefix.endswith("_") and name.startswith(prefix)), None
    )
    return found or (-math.inf, math.inf)


def confidence_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float | None]:
    """The mean and the half-width of its Student-t confidence interval (None for fewer than two values)."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None
    scale = values.std(ddof=1) / math.sqrt(len(values))
    return mean, float(stats.t.ppf((1 + level) / 2, len(values) - 1) * scale)


def summarize(records: Sequence[dict[str, Any]], **about: Any) -> dict[str, Any]:
    """Per metric over the scored records (finite values only): ``n``, ``mean``, ``std`` and ``ci95`` ([low,
    high], the Student-t interval cut to the metric's range of :func:`metric_range`; None for one value); ``about``
    (kind, protocol, ...) is kept as given, and failed items are listed."""
    scored = [r for r in records if "metrics" in r]
    metrics = {}
    for name in dict.fromkeys(name for r in scored for name in r["metrics"]):
        values = [v for r in scored if isinstance(v := r["metrics"].get(name), (int, float)) and math.isfinite(v)]
        if not values:
            continue
        mean, half = confidence_interval(values)
        low, high = metric_range(name)
        metrics[name] = {
            "n": len(values),
            "mean": mean,
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "ci95": None if half is None else [max(mean - half, low), min(mean + half, high)],
        }
    failed = {r["id"]: r["error"] for r in records if "error" in r}
    return {**about, "items": len(records), "scored": len(scored), "metrics": metrics, "failed": failed}


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (metric, n, mean, 95% CI) and a line on failed items."""
    lines = ["| metric | n | mean | 95% CI |", "|---|---:|---:|---|"]
    for name, stats in summary["metrics"].items():
        ci = "n/a" if stats["ci95"] is None else f"{stats['ci95'][0]:.4f} to {stats['ci95'][1]:.4f}"
        lines.append(f"| {name} | {stats['n']} | {stats['mean']:.4f} | {ci} |")
    lines.append("")
    fid = summary.get("fid_set")
    if fid is not None:
        value = "n/a (a set needs two faces)" if fid["value"] is None else f"{fid['value']:.4f}"
        lines.append(f"Set-level FID (pytorch-fid): {value}, {fid['real']} real faces against {fid['fake']} frames "
                     f"of {fid['items']} item(s).")  # fmt: skip
    lines.append(f"{summary['scored']} of {summary['items']} item(s) scored.")
    for item_id, error in summary["failed"].items():
        lines.append(f"- failed: {item_id}: {error}")
    return "\n".join(lines) + "\n"


def fid_folder(output: str | os.PathLike) -> Path:
    """Where :class:`FIDFeatures` keeps the features of ``output``'s (``NAME.jsonl``) items: ``NAME.fid/``."""
    return Path(output).with_suffix(".fid")


def summary_paths(output: str | os.PathLike) -> tuple[Path, Path]:
    """Where the summary of ``output`` (``NAME.jsonl``) goes: ``NAME.summary.json`` and ``NAME.summary.md``."""
    output = Path(output)
    return output.with_suffix(".summary.json"), output.with_suffix(".summary.md")


def write_summary(summary: dict[str, Any], output: str | os.PathLike) -> tuple[Path, Path]:
    """Write the summary beside ``output`` (see :func:`summary_paths`), each file whole or not at all."""
    from genface.media._files import atomic_path

    paths = summary_paths(output)
    for path, suffix in zip(paths, (".json", ".md"), strict=True):
        check_output_path(path, (suffix,), name="summary")
    for path, text in zip(paths, (json.dumps(summary, indent=2) + "\n", summary_markdown(summary)), strict=True):
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return paths


class FIDFeatures:
    """The FID Inception's features (``model`` from ``load_inception(..., fid=True)``) of each item's face crops,
    one ``.npz`` per item in ``folder`` (written whole), so that a resumed run still has every scored item's
    features for the set-level FID (:meth:`set_fid`)."""

    def __init__(self, model: Any, folder: str | os.PathLike) -> None:
        self.model, self.folder = model, Path(folder)

    def _path(self, item_id: str) -> Path:
        return self.folder / f"{hashlib.sha256(item_id.encode()).hexdigest()[:24]}.npz"

    def add(self, item: Item, reference: np.ndarray, frames: Sequence[np.ndarray]) -> None:
        """Keep the features of an item's reference crop and of its sampled frames' crops."""
        from genface.eval.fid import fid_features
        from genface.media._files import atomic_path

        features = fid_features([reference, *frames], self.model)
        with atomic_path(self._path(item.id)) as tmp:
            np.savez(tmp, reference=features[:1], frames=features[1:], reference_path=item.fields["reference"])

    def set_fid(self, records: Sequence[dict[str, Any]], real: np.ndarray | None = None) -> dict[str, Any]:
        """The standard FID of the scored records' frame crops against ``real`` (features of real faces, see
        :func:`real_features`), by default the references' crops (each reference file once)."""
        from genface.eval.fid import set_fid

        kept = [np.load(path) for r in records if "metrics" in r and (path := self._path(r["id"])).is_file()]
        fake = np.concatenate([k["frames"] for k in kept]) if kept else np.empty((0, 0))
        if real is None:
            references = {str(k["reference_path"]): k["reference"] for k in kept}
            real = np.concatenate(list(references.values())) if references else np.empty((0, 0))
        return {"value": set_fid(real, fake), "real": len(real), "fake": len(fake), "items": len(kept)}


def real_features(folder: str | os.PathLike, analyzer: Any, model: Any) -> np.ndarray:
    """FID features of the face crops (ConsisID's, as the frames') of the images in ``folder``; images without a
    face are skipped."""
    from genface.eval.facesim import consisid_faces
    from genface.eval.fid import fid_features

    images = sorted(p for p in Path(folder).expanduser().iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    crops = [crop for path in images if (crop := consisid_faces(str(path), analyzer).crops[0]) is not None]
    if not crops:
        raise InvalidArgumentError(f"{folder} holds no image with a face for the FID's real set.")
    return fid_features(crops, model)


class VideoJudge:
    """ConsisID's identity-video metrics of an item's video against its reference face: FaceSim-Arc, FaceSim-Cur
    (with ``curricularface``), ConsisID's per-frame FID (with ``inception``; ``protocol="consisid"`` only) and
    CLIPScore (with ``clip`` = (model, processor), for items with a prompt; BGR frames for ``"consisid"``, RGB for
    ``"standard"``), plus how many sampled frames showed a face; with ``fid_features`` it keeps each item's FID
    features for the set-level FID."""

    def __init__(
        self,
        analyzer: Any,
        *,
        curricularface: Any = None,
        inception: Any = None,
        clip: tuple[Any, Any] | None = None,
        fid_features: FIDFeatures | None = None,
        protocol: str = "consisid",
        num_frames: int = 16,
    ) -> None:
        from genface.eval.clipscore import PROTOCOLS

        if protocol not in PROTOCOLS:
            raise InvalidArgumentError(f"Unknown protocol {protocol!r}; choose from {PROTOCOLS}.")
        if inception is not None and protocol != "consisid":
            raise InvalidArgumentError(
                "The per-frame FID is ConsisID's; the standard FID compares two sets (VideoJudge's fid_features)."
            )
        self.analyzer, self.curricularface, self.inception, self.clip = analyzer, curricularface, inception, clip
        self.fid_features, self.protocol, self.num_frames = fid_features, protocol, num_frames

    def __call__(self, item: Item) -> dict[str, float]:
        from genface.eval.clipscore import clip_score
        from genface.eval.facesim import consisid_faces, facesim_arc, facesim_cur
        from genface.eval.fid import consisid_frame_fid
        from genface.eval.frames import load_frames

        reference = consisid_faces(item.fields["reference"], self.analyzer)
        reference.single()
        video = load_frames(item.fields["video"])
        frames = consisid_faces(video, self.analyzer, self.num_frames)
        scores = {"facesim_arc": facesim_arc(reference, frames).mean}
        if self.curricularface is not None:
            scores["facesim_cur"] = facesim_cur(reference, frames, self.curricularface).mean
        if self.inception is not None:
            scores["fid"] = consisid_frame_fid(reference, frames, self.inception).mean
        if self.clip is not None and item.fields.get("prompt"):
            scores["clipscore"] = clip_score(
                video, item.fields["prompt"], *self.clip, protocol=self.protocol, num_frames=self.num_frames
            )
        if self.fid_features is not None:
            self.fid_features.add(item, reference.crops[0], [c for c in frames.crops if c is not None])
        scores["frames_with_face"] = int(frames.found.sum())
        return scores


#: The protocols of ``video`` items: ConsisID's scripts, the same on RGB frames (``standard``), and OpenS2V-Eval's
#: FaceSim (:mod:`genface.eval.opens2v`).
VIDEO_PROTOCOLS = ("consisid", "standard", "opens2v")


def video_judge(
    protocol: str, analyzer: Any, curricularface: Any = None, num_frames: int | None = None, **metrics: Any
) -> Judge:
    """The judge of ``video`` items under ``protocol`` (:data:`VIDEO_PROTOCOLS`): :class:`VideoJudge`, whose other
    ``metrics`` (``inception``, ``clip``, ``fid_features``) it takes, or OpenS2V's FaceSim only
    (:class:`~genface.eval.opens2v.OpenS2VJudge`, which refuses them); ``num_frames``: the protocol's (16; OpenS2V's
    32) when None."""
    if protocol not in VIDEO_PROTOCOLS:
        raise InvalidArgumentError(f"Unknown protocol {protocol!r}; choose from {VIDEO_PROTOCOLS}.")
    if protocol == "opens2v":
        from genface.eval.opens2v import NUM_FRAMES, OpenS2VJudge

        given = sorted(name for name, value in metrics.items() if value is not None)
        if given:
            raise InvalidArgumentError(
                f"OpenS2V's protocol scores FaceSim only (their eval/get_facesim.py); {', '.join(given)}: ConsisID's "
                "or the standard protocol."
            )
        return OpenS2VJudge(analyzer, curricularface, num_frames or NUM_FRAMES)
    from genface.eval.frames import NUM_FRAMES

    num_frames = num_frames or NUM_FRAMES
    return VideoJudge(analyzer, curricularface=curricularface, protocol=protocol, num_frames=num_frames, **metrics)


class TalkJudge:
    """Lip sync of an item's video and its speech (the ``speech`` file, else the video's audio track): with
    ``syncnet`` (syncnet_python's) Sync-C / Sync-D and the offset in frames, on
    :func:`~genface.eval.sync.syncnet_crops`; with ``latentsync`` (LatentSync's SyncNet) its mean cosine similarity
    and the share of windows above 0.5, on :func:`~genface.eval.sync.latentsync_crops`."""

    def __init__(self, analyzer: Any, syncnet: Any = None, *, latentsync: Any = None) -> None:
        if syncnet is None and latentsync is None:
            raise InvalidArgumentError("TalkJudge needs a SyncNet: syncnet (syncnet_python's), latentsync, or both.")
        self.analyzer, self.syncnet, self.latentsync = analyzer, syncnet, latentsync

    def __call__(self, item: Item) -> dict[str, float]:
        from genface.eval.sync import SAMPLE_RATE, latentsync_crops, latentsync_scores, sync_scores, syncnet_crops
        from genface.media import load_audio, read_video

        frames, fps = read_video(item.fields["video"])
        speech = load_audio(item.fields.get("speech") or item.fields["video"], SAMPLE_RATE)
        scores: dict[str, float] = {}
        if self.syncnet is not None:
            result = sync_scores(syncnet_crops(frames, self.analyzer, fps), speech, self.syncnet)
            scores |= {"sync_c": result.confidence, "sync_d": result.min_dist, "offset": result.offset}
        if self.latentsync is not None:
            latent = latentsync_scores(latentsync_crops(frames, self.analyzer, fps), speech, self.latentsync)
            scores |= {"latentsync_conf": latent.confidence, "latentsync_acc": latent.accuracy}
        return scores


def forgery_judge(detector: Any) -> Judge:
    """The forgery detector's P(fake) of an item's generated file (see :class:`genface.forensics.ForgeryDetector`),
    so each pipeline's output shows how detectable it is; None where its detector finds no face large enough."""

    def judge(item: Item) -> dict[str, float | None]:
        try:
            return {"forgery": detector.score(item.media).probability}
        except (NoFaceError, FaceTooSmallError):
            return {"forgery": None}

    return judge
