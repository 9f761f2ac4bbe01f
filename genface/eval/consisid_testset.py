"""ConsisID's published test set (``BestWishYsh/ConsisID-preview-Data``) as genface jobs and an eval manifest.

ConsisID's ``eval/eval_all_in_once.py`` pairs every face in ``eval/face_images/`` (natural order) with every row of
``video_caption_eval_old.csv``: the prompt is ``Refined_woman`` when the file name holds "woman", else
``Refined_man``, with ``{class_token}`` replaced by the row's ``Class``; the video of face ``NAME`` and row ``index``
goes to ``NAME--index/``. This writes those pairs as ``jobs.jsonl`` for ``examples/batch_generate.py`` (seed 42,
the script's default) and as a manifest for ``genface eval video``, finding each video as ``VIDEOS/ID.mp4`` (what
batch_generate writes) or the first ``.mp4`` in ``VIDEOS/ID/`` (what ConsisID's script writes)::

    genface eval consisid-testset ConsisID-preview-Data --jobs jobs.jsonl
    genface eval consisid-testset ConsisID-preview-Data --videos videos/ --out items.jsonl
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from genface.errors import InvalidArgumentError

CAPTIONS = "video_caption_eval_old.csv"
FACES = Path("eval") / "face_images"
SEED = 42
_COLUMNS = ("index", "Class", "Refined_man", "Refined_woman")


@dataclass
class TestCase:
    """One (face, prompt) pair: ``id`` is ConsisID's output folder name, ``NAME--index``."""

    id: str
    face: Path
    prompt: str


def _natural(name: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def consisid_test_cases(data_dir: str | os.PathLike) -> list[TestCase]:
    """Every (face, prompt) pair of the test set in ``data_dir``, in ConsisID's order."""
    data = Path(data_dir).expanduser()
    captions, faces = data / CAPTIONS, data / FACES
    if not captions.is_file() or not faces.is_dir():
        raise InvalidArgumentError(
            f"{data} is not ConsisID's test set: it needs {CAPTIONS} and {FACES}/ (BestWishYsh/ConsisID-preview-Data)."
        )
    with open(captions, encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows or not set(_COLUMNS) <= set(rows[0]):
        raise InvalidArgumentError(f"{captions} needs the columns {', '.join(_COLUMNS)}.")
    cases = []
    for face in sorted((p for p in faces.iterdir() if p.is_file()), key=lambda p: _natural(p.name)):
        for row in rows:
            prompt = row["Refined_woman" if "woman" in face.name else "Refined_man"]
            cases.append(TestCase(f"{face.name}--{row['index']}", face, prompt.replace("{class_token}", row["Class"])))
    if not cases:
        raise InvalidArgumentError(f"{faces} holds no face images.")
    return cases


def find_video(videos: Path, case_id: str) -> Path | None:
    """The video of a case: ``videos/ID.mp4``, else the first ``.mp4`` in ``videos/ID/``; None when neither."""
    if (videos / f"{case_id}.mp4").is_file():
        return videos / f"{case_id}.mp4"
    folder = videos / case_id
    found = sorted(folder.glob("*.mp4"), key=lambda p: _natural(p.name)) if folder.is_dir() else []
    return found[0] if found else None


def _write_lines(path: str | os.PathLike, lines: list[dict[str, str | int]]) -> None:
    from genface.media._files import atomic_path

    with atomic_path(path) as partial:
        partial.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


def write_consisid_files(
    data_dir: str | os.PathLike,
    videos: str | os.PathLike | None = None,
    jobs: str | os.PathLike | None = None,
    manifest: str | os.PathLike | None = None,
    seed: int = SEED,
) -> tuple[int, int]:
    """Write the test set's generation ``jobs`` and the eval ``manifest`` of the videos found in ``videos`` (absolute
    paths), each whole or not at all; returns (cases, videos found), 0 found when no ``videos`` are given."""
    from genface.media import check_output_path

    for path, name in ((jobs, "jobs"), (manifest, "manifest")):
        check_output_path(path, (".jsonl",), [data_dir], name=name)
    if manifest is not None and videos is None:
        raise InvalidArgumentError("The manifest lists generated videos: give the folder that holds them.")
    cases = consisid_test_cases(data_dir)
    folder = None if videos is None else Path(videos).expanduser().absolute()
    found = {} if folder is None else {case.id: find_video(folder, case.id) for case in cases}
    listed = [case for case in cases if found.get(case.id) is not None]
    if manifest is not None and not listed:
        raise InvalidArgumentError(
            f"{videos} holds none of the test set's {len(cases)} videos (ID.mp4, or ConsisID's ID/*.mp4, for example "
            f"{cases[0].id}.mp4)."
        )
    if jobs is not None:
        _write_lines(jobs, [{"id": c.id, "face": str(c.face.absolute()), "prompt": c.prompt, "seed": seed}
                            for c in cases])  # fmt: skip
    if manifest is not None:
        _write_lines(manifest, [{"id": c.id, "video": str(found[c.id]), "reference": str(c.face.absolute()),
                                 "prompt": c.prompt} for c in listed])  # fmt: skip
    return len(cases), len(listed)
