"""`genface video` with the offline tiny model: a real mp4 with its synthetic mark, FaceSim, clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from genface.cli import main
from genface.media import read_video, save_image
from genface.provenance import read_mark
from genface.samples import sample_path

TINY = ["--model", "tiny", "--steps", "2", "--prompt", "a woman smiling"]


def test_tiny_demo_writes_a_marked_video(tmp_path: Path, capsys) -> None:
    out = tmp_path / "v.mp4"
    assert main(["video", *TINY, "--face", str(sample_path("astronaut")), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    frames, fps = read_video(out)
    assert frames.shape == (9, 64, 64, 3) and fps == pytest.approx(8.0)
    assert result["frames"] == 9 and result["seed"] == 42
    assert result["facesim"]["frames"] == 9  # measured (noise has no face: all frames listed as missing)
    mark = read_mark(out)
    assert mark["synthetic"] is True and mark["pipeline"] == "identity_video" and mark["model"] == "tiny"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_saved_identity_reproduces_the_photo_run(tmp_path: Path, dlib_analyzer) -> None:
    """Both a pipeline-encoded identity and the documented flow (`genface identity --save`, whose file holds
    recognition only) give the photo's video."""
    from genface.pipelines.identity_video.tiny import tiny_identity_encoder

    face = str(sample_path("astronaut"))
    saved = tiny_identity_encoder(dlib_analyzer).encode(face).save(tmp_path / "id.safetensors")
    assert main(["identity", face, "--backend", "dlib", "--save", str(tmp_path / "me.safetensors")]) == 0
    assert main(["video", *TINY, "--face", face, "--out", str(tmp_path / "a.mp4")]) == 0
    assert main(["video", *TINY, "--identity", str(saved), "--out", str(tmp_path / "b.mp4")]) == 0
    assert main(["video", *TINY, "--identity", str(tmp_path / "me.safetensors"), "--out", str(tmp_path / "c.mp4")]) == 0
    photo_run = read_video(tmp_path / "a.mp4")[0]
    np.testing.assert_array_equal(photo_run, read_video(tmp_path / "b.mp4")[0])
    np.testing.assert_array_equal(photo_run, read_video(tmp_path / "c.mp4")[0])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "exactly one of --face"),
        (["--frames", "8"], r"4k\+1"),
        (["--low-memory"], "needs a GPU|offloads to a GPU"),
    ],
)
def test_errors_exit_1_and_write_nothing(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    face = [] if not extra else ["--face", str(sample_path("astronaut"))]
    out = tmp_path / "x.mp4"
    assert main(["video", *TINY, *face, *extra, "--out", str(out)]) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_no_face_exit_1_and_no_video(tmp_path: Path, capsys) -> None:
    blank = save_image(np.full((128, 128, 3), 90, np.uint8), tmp_path / "blank.png")
    assert main(["video", *TINY, "--face", str(blank), "--out", str(tmp_path / "x.mp4")]) == 1
    assert "No face found" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()
