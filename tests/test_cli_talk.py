"""`genface talk` with the offline tiny model, its errors, and `genface convert` for MuseTalk's layout."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import torch

from genface.cli import main
from genface.media import save_image


def _speech(path: Path) -> Path:
    subprocess.run(["espeak-ng", "-w", str(path), "Hi."], check=True)
    return path


def test_talk_tiny_writes_a_marked_video_with_metrics(tmp_path, astronaut, capsys) -> None:
    save_image(astronaut, tmp_path / "me.png")
    out = tmp_path / "out.mp4"
    args = ["talk", "--model", "tiny", "--face", str(tmp_path / "me.png"), "--audio", str(_speech(tmp_path / "s.wav"))]
    assert main([*args, "--out", str(out), "--json", "--batch-size", "16"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert out.is_file() and result["video"] == str(out) and result["fps"] == 25
    assert result["frames"] == int(result["seconds_of_audio"] * 25) and result["lost_frames"] == []
    assert result["facesim"]["model"] == "dlib_resnet_v1"


def test_talk_prepared_folder_is_made_then_read_back_with_the_same_video(tmp_path, astronaut, capsys) -> None:
    from genface.media import read_video, write_video

    write_video(tmp_path / "clip.mp4", np.stack([astronaut] * 4), fps=25)
    speech = str(_speech(tmp_path / "s.wav"))
    base = ["talk", "--model", "tiny", "--face", str(tmp_path / "clip.mp4"), "--audio", speech, "--no-metrics"]
    prepared = tmp_path / "prepared"
    assert main([*base, "--out", str(tmp_path / "a.mp4"), "--prepared", str(prepared)]) == 0
    assert (prepared / "prepared.json").is_file()
    stamp = (prepared / "prepared.json").stat().st_mtime_ns
    assert main([*base, "--out", str(tmp_path / "b.mp4"), "--prepared", str(prepared)]) == 0
    assert (prepared / "prepared.json").stat().st_mtime_ns == stamp  # read back, not made again
    assert (read_video(tmp_path / "a.mp4")[0] == read_video(tmp_path / "b.mp4")[0]).all()
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "c.mp4"), "--prepared", speech]) == 1
    assert "is a file" in capsys.readouterr().err and not (tmp_path / "c.mp4").exists()


def test_talk_refuses_a_photo_without_a_face(tmp_path, capsys) -> None:
    save_image(np.full((200, 200, 3), 90, np.uint8), tmp_path / "wall.png")
    out = tmp_path / "out.mp4"
    code = main(
        ["talk", "--model", "tiny", "--face", str(tmp_path / "wall.png"), "--audio", str(_speech(tmp_path / "s.wav")),
         "--out", str(out)]
    )  # fmt: skip
    assert code == 1 and "No face found" in capsys.readouterr().err and not out.exists()


def test_convert_musetalk_layout_to_one_safetensors_folder(tmp_path, capsys) -> None:
    from genface.pipelines.talking_face.tiny import tiny_pipeline

    pipe = tiny_pipeline()
    models = tmp_path / "models"
    (models / "musetalkV15").mkdir(parents=True)
    (models / "musetalkV15" / "musetalk.json").write_text(json.dumps(dict(pipe.unet.config)))
    torch.save(pipe.unet.state_dict(), models / "musetalkV15" / "unet.pth")
    pipe.vae.save_pretrained(tmp_path / "vae")
    pipe.audio_encoder.save_pretrained(tmp_path / "whisper")
    pipe.feature_extractor.save_pretrained(tmp_path / "whisper")
    out = tmp_path / "converted"
    assert (
        main(["convert", str(models), str(out), "--vae", str(tmp_path / "vae"), "--whisper", str(tmp_path / "whisper")])
        == 0
    )
    assert "diffusers layout" in capsys.readouterr().out
    assert (out / "model_index.json").is_file() and (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
