"""`genface verify` with a forgery detector (a tiny FSFM model in a folder), over several files and folders, in
text and JSON; without weights it says so once and reports the marks; `genface convert --fsfm`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genface.cli import main
from genface.forensics import tiny_fsfm
from genface.media import save_image, write_video
from genface.models.fsfm import load_fsfm
from genface.provenance import save_marked_image


@pytest.fixture(scope="module")
def fsfm(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fsfm")
    tiny_fsfm().save_pretrained(folder)
    return folder


@pytest.fixture()
def files(tmp_path, astronaut) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    save_marked_image(folder / "made.png", astronaut, "makeup", "some/model")
    save_image(astronaut, folder / "photo.jpg")
    save_image(np.full((300, 300, 3), 90, np.uint8), folder / "wall.png")
    write_video(folder / "clip.mp4", np.stack([astronaut] * 3), fps=2)
    (folder / "notes.txt").write_text("not media")
    return folder


def test_verify_reports_marks_and_forgery_scores_worded_as_estimates(fsfm, files, capsys) -> None:
    assert main(["verify", str(files), "--detector-weights", str(fsfm)]) == 0
    out = capsys.readouterr().out
    assert out.index("clip.mp4") < out.index("made.png") < out.index("photo.jpg") < out.index("wall.png")
    assert "notes.txt" not in out
    assert "made.png: synthetic (made by genface)" in out and "photo.jpg: no mark" in out
    assert out.count("forgery score (FSFM deepfake): 0.") == 3
    assert "for its face" in out and "for the face followed over 3 frame(s), highest at frame(s) " in out
    assert "forgery score (FSFM deepfake): none (No face found" in out  # the wall
    assert out.count("not proof") == 3


def test_verify_json_for_one_file_and_for_several(fsfm, files, capsys) -> None:
    assert (
        main(["verify", str(files / "photo.jpg"), "--detector", "diffusion", "--detector-weights", str(fsfm), "--json"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    forgery = result["forgery"]
    assert result["synthetic"] is False and forgery["kind"] == "image" and 0 <= forgery["probability"] <= 1
    assert forgery["detector"] == "FSFM diffusion" and "not proof" in forgery["caution"]
    assert main(["verify", str(files / "made.png"), str(files / "wall.png"), "--detector", "none", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["synthetic"] for r in results] == [True, False] and "forgery" not in results[0]


def test_verify_without_detector_weights_reports_the_marks(files, tmp_path, capsys, monkeypatch) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert main(["verify", str(files / "made.png"), str(files / "photo.jpg")]) == 0  # the Hub checkpoint, offline
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("genface: note: no forgery score: the FSFM")
    assert "made.png: synthetic (made by genface)" in captured.out and "forgery" not in captured.out
    assert main(["verify", str(files / "photo.jpg"), "--detector-weights", str(tmp_path / "none"), "--json"]) == 0
    assert "does not exist" in json.loads(capsys.readouterr().out)["forgery"]["unavailable"]


def test_verify_bad_files(files, tmp_path, capsys) -> None:
    (files / "broken.png").write_bytes(b"not an image")
    assert main(["verify", str(files / "broken.png"), str(files / "made.png"), "--detector", "none"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"genface: error: {files / 'broken.png'}: ") and captured.err.count("\n") == 1
    assert "made.png: synthetic" in captured.out
    assert main(["verify", str(tmp_path / "missing.png")]) == 1
    assert "missing.png does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["verify", str(tmp_path / "empty")]) == 1
    assert "holds no images or videos" in capsys.readouterr().err


def test_convert_fsfm_checkpoint(tmp_path, capsys) -> None:
    model = tiny_fsfm()
    published = tmp_path / "published"
    published.mkdir()
    checkpoint = {"model": model.state_dict(), "args": argparse.Namespace(model="vit_base_patch16"), "epoch": 3}
    torch.save(checkpoint, published / "checkpoint-min_val_loss.pth")
    (published / "pretrain_ds_mean_std.txt").write_text('{"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}\n')
    assert main(["convert", "--fsfm", str(published), str(tmp_path / "converted")]) == 0
    assert "FSFM linear head" in capsys.readouterr().out
    loaded = load_fsfm(tmp_path / "converted")
    assert list(loaded.config.image_mean) == [0.5, 0.4, 0.3]
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    assert main(["convert", "--fsfm", str(tmp_path / "none.pth"), str(tmp_path / "x")]) == 1
    assert not (tmp_path / "x").exists()
