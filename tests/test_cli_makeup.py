"""`genface makeup` with the offline tiny model, and `genface convert` for the published checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from genface.cli import main
from genface.media import load_image, save_image
from genface.provenance import read_mark
from genface.samples import sample_path

TINY = ["makeup", "--model", "tiny", "--steps", "2"]


def test_tiny_makeup_writes_a_marked_image(tmp_path: Path, capsys) -> None:
    out = tmp_path / "made_up.png"
    args = [*TINY, "--face", str(sample_path("astronaut")), "--reference", str(sample_path("portrait"))]
    assert main([*args, "--out", str(out), "--regions", "lips,skin", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert load_image(out).shape == load_image(sample_path("astronaut")).shape
    assert result["regions"] == ["lips", "skin"] and set(result["makeup_similarity"]) <= {"lips", "skin", "brows"}
    mark = read_mark(out)
    assert mark["pipeline"] == "makeup" and mark["injector"] == "tiny"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["made_up.png"]


def test_makeup_errors_exit_1(tmp_path: Path, capsys) -> None:
    blank = save_image(np.full((96, 96, 3), 80, np.uint8), tmp_path / "blank.png")
    face = str(sample_path("astronaut"))
    assert (
        main([*TINY, "--face", face, "--reference", face, "--out", str(tmp_path / "x.png"), "--regions", "nails"]) == 1
    )
    assert "Unknown face regions ['nails']" in capsys.readouterr().err
    assert main([*TINY, "--face", str(blank), "--reference", face, "--out", str(tmp_path / "x.png")]) == 1
    assert "No face found in the source photo" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_convert_published_checkpoint(tmp_path: Path, capsys) -> None:
    from genface.models.makeup import MakeupInjector
    from genface.pipelines.makeup.tiny import tiny_injector

    published = tiny_injector().state_dict()
    torch.save(published, tmp_path / "checkpoint.pt")
    args = ["convert", str(tmp_path / "checkpoint.pt"), str(tmp_path / "converted"), "--attention-head-dim", "16"]
    assert main(args) == 0
    assert "safetensors" in capsys.readouterr().out
    assert (tmp_path / "converted" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = MakeupInjector.from_pretrained(tmp_path / "converted").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in published.items())
    assert main(["convert", str(tmp_path / "missing.pt"), str(tmp_path / "x")]) == 1
    assert "not found" in capsys.readouterr().err
