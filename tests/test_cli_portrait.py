"""`genface portrait` with the offline tiny model, its errors, and `genface convert` for Ditto's layout."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from genface.cli import main
from genface.media import save_image
from genface.provenance import verify


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, astronaut) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("portrait")
    save_image(astronaut, folder / "me.png")
    subprocess.run(["espeak-ng", "-w", str(folder / "s.wav"), "Hi there."], check=True)
    return folder / "me.png", folder / "s.wav"


def _refuse(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


def test_portrait_tiny_writes_a_marked_video_with_its_statistics(inputs, tmp_path, capsys) -> None:
    photo, speech = inputs
    out = tmp_path / "out.mp4"
    args = ["portrait", "--model", "tiny", "--photo", str(photo), "--audio", str(speech), "--out", str(out)]
    assert main([*args, "--json", "--steps", "2", "--emotion", "happy,surprise", "--yaw", "5", "--seed", "3"]) == 0
    result = json.loads(capsys.readouterr().out, parse_constant=_refuse)  # strict JSON: no NaN
    assert out.is_file() and result["video"] == str(out) and result["fps"] == 25 and result["seed"] == 3
    assert result["frames"] == -(-round(result["seconds_of_audio"] * 16000) // 640)  # HuBERT's 25 fps frames
    assert set(result["head_pose_std_degrees"]) == {"pitch", "yaw", "roll"} and result["blinks"] is not None
    assert result["facesim"]["model"] == "dlib_resnet_v1" and result["first_frame_seconds"] > 0
    assert result["facesim"]["mean"] is None or 0 <= result["facesim"]["mean"] <= 1  # null when no face was seen
    mark = verify(out)
    assert mark["synthetic"] and mark["metadata"]["pipeline"] == "talking_portrait"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--emotion", "bored"], "choose from angry"),
        (["--head-motion", "4"], "must be from 0.0 to 3.0"),
        (["--yaw", "90"], "must be from -45.0 to 45.0"),
        (["--blink-rate", "nan"], "must be from 0.0 to 120.0"),
        (["--steps", "0"], "must be from 1 to 1000"),
    ],
)
def test_portrait_refuses_bad_numbers_in_one_line(inputs, tmp_path, capsys, extra, message) -> None:
    photo, speech = inputs
    out = tmp_path / "out.mp4"
    args = ["portrait", "--model", "tiny", "--photo", str(photo), "--audio", str(speech), "--out", str(out)]
    with pytest.raises(SystemExit) as info:  # argparse's usage errors
        main([*args, *extra])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_portrait_refuses_a_photo_without_a_face_and_a_bad_output(inputs, tmp_path, capsys) -> None:
    _, speech = inputs
    save_image(np.full((200, 200, 3), 90, np.uint8), tmp_path / "wall.png")
    out = tmp_path / "out.mp4"
    base = ["portrait", "--model", "tiny", "--audio", str(speech)]
    assert main([*base, "--photo", str(tmp_path / "wall.png"), "--out", str(out), "--steps", "1"]) == 1
    assert "No face found" in capsys.readouterr().err and not out.exists()
    assert main([*base, "--photo", str(tmp_path / "wall.png"), "--out", str(tmp_path / "out.avi")]) == 1
    assert "must end in .mp4" in capsys.readouterr().err


def test_convert_dittos_layout_to_a_safetensors_folder(tmp_path, capsys) -> None:
    from genface.pipelines.talking_portrait.tiny import tiny_pipeline
    from tests.tiny_models import save_ditto_layout

    pipe = tiny_pipeline()
    ditto = save_ditto_layout(pipe, tmp_path / "ditto")
    pipe.audio_encoder.save_pretrained(tmp_path / "hubert")
    out = tmp_path / "converted"
    assert main(["convert", str(ditto), str(out), "--hubert", str(tmp_path / "hubert")]) == 0
    assert "usable as `portrait --model`" in capsys.readouterr().out
    assert (out / "warping_network" / "diffusion_pytorch_model.safetensors").is_file()
    assert (out / "audio_encoder" / "model.safetensors").is_file()
