"""The synthetic mark: written into generated videos, read back, absent from other files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genface.media import write_video
from genface.provenance import read_mark, synthetic_mark


def test_mark_round_trip(tmp_path: Path) -> None:
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    path = write_video(tmp_path / "m.mp4", frames, metadata=synthetic_mark("identity_video", "some/model", seed=3))
    mark = read_mark(path)
    assert mark["synthetic"] is True and mark["model"] == "some/model" and mark["seed"] == 3
    assert mark["generator"].startswith("genface ") and mark["created"].endswith("+00:00")


def test_unmarked_files_report_no_mark(tmp_path: Path) -> None:
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    assert read_mark(write_video(tmp_path / "plain.mp4", frames)) is None
    assert read_mark(write_video(tmp_path / "other.mp4", frames, metadata={"comment": "holiday"})) is None
    assert read_mark(write_video(tmp_path / "json.mp4", frames, metadata={"comment": '{"synthetic": false}'})) is None


def test_images_carry_the_mark(tmp_path: Path) -> None:
    from genface.media import save_image

    pixels = np.zeros((8, 8, 3), np.uint8)
    for name in ("a.png", "a.jpg", "a.webp"):
        path = save_image(pixels, tmp_path / name, metadata=synthetic_mark("makeup", "tiny"))
        assert read_mark(path)["pipeline"] == "makeup", name
        assert read_mark(save_image(pixels, tmp_path / f"plain-{name}")) is None
