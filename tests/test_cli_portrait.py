"""`genface portrait` with the offline tiny model, its errors, Ditto's controls as flags, and `genface convert` for
Ditto's layout."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from genface.cli import main
from genface.media import load_image, save_image
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
        (["--alpha-yaw", "4"], "--alpha-yaw: must be from 0.0 to 3.0, got 4"),
        (["--alpha-pitch", "-0.5"], "--alpha-pitch: must be from 0.0 to 3.0"),
        (["--alpha-roll", "inf"], "--alpha-roll: must be from 0.0 to 3.0, got inf"),
        (["--vad-alpha", "1.5"], "--vad-alpha: must be from 0.0 to 1.0, got 1.5"),
        (["--fade-in", "-2"], "--fade-in: must be from -1 to 90000, got -2"),
        (["--fade-out", "2.5"], "--fade-out: '2.5' is not an integer"),
        (["--fade-type", "x"], "--fade-type: invalid choice: 'x'"),
        (["--max-size", "20000"], "--max-size: must be from -1 to 16384, got 20000"),
        (["--source-smoothing", "0"], "--source-smoothing: must be from 1 to 101, got 0"),
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


# ---- Ditto's controls (issue 26) as flags: each reaches the pipeline and changes what it should -------------------


class Runs:
    """`genface portrait` runs on short speech (0.4 s) and a 256 px photo brought down to 200 px (--max-size): the
    JSON result of each, and the frames the pipeline wrote (before the video's encoding); each model is built or
    loaded once."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import genface.pipelines
        import genface.provenance
        from genface.media import write_video
        from genface.models.motion.crop import resize_frame
        from genface.samples import sample_path, speech_like

        self.folder, self.written = folder, []
        photo = resize_frame(load_image(sample_path("astronaut")), 256)
        save_image(photo, folder / "me.png")
        # 6 frames that zoom in on the face: the speech (10 frames) plays the video forwards, then backwards
        zoom = [cv2.resize(photo[i * 8 : 256 - i * 8, i * 6 : 256 - i * 10], (192, 192)) for i in range(6)]
        write_video(folder / "clip.mp4", np.stack(zoom), 25)
        sf.write(folder / "s.wav", speech_like(0.4), 16000)
        real_load, real_writer, built = genface.pipelines.load_pipeline, genface.provenance.marked_video_writer, {}

        def load(task: str, model: str, **options):  # each model built or loaded once
            if model not in built:
                built[model] = real_load(task, model, **options)
            return built[model]

        def writer(*args, **options):  # the frames as the pipeline hands them over, then written as usual
            out = real_writer(*args, **options)
            write = out.write
            out.write = lambda frames: (self.written.append(frames.copy()), write(frames))[1]
            return out

        monkeypatch.setattr(genface.pipelines, "load_pipeline", load)
        monkeypatch.setattr(genface.provenance, "marked_video_writer", writer)

    def argv(self, model: str, photo: str, out: Path) -> list[str]:
        folder = self.folder
        return ["portrait", "--model", model, "--photo", str(folder / photo), "--audio", str(folder / "s.wav"), "--out",
                str(out)]  # fmt: skip

    def __call__(self, *extra: str, model: str = "tiny", photo: str = "me.png") -> tuple[dict, np.ndarray, Path]:
        out = self.folder / f"out{len(list(self.folder.glob('out*.mp4')))}.mp4"
        argv = [*self.argv(model, photo, out), "--steps", "1", "--batch-size", "10", "--max-size", "200", "--json"]
        argv += ["--no-metrics", *extra]
        self.written.clear()
        with pytest.MonkeyPatch.context() as patch:
            stdout = io.StringIO()
            patch.setattr(sys, "stdout", stdout)
            assert main(argv) == 0
        return json.loads(stdout.getvalue()), np.concatenate(self.written), out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield Runs(tmp_path_factory.mktemp("ditto"), monkeypatch)


@pytest.fixture(scope="module")
def default(runs: Runs) -> tuple[dict, np.ndarray, Path]:
    return runs()


def _spread(result: dict) -> np.ndarray:
    return np.array([result["head_pose_std_degrees"][axis] for axis in ("pitch", "yaw", "roll")])


def test_max_size_resizes_the_photo_and_the_video(default) -> None:
    result, frames, out = default
    assert result["frames"] == 10 and frames.shape == (10, 200, 200, 3)  # the 256 px photo resized to 200
    assert verify(out)["synthetic"]


def test_pose_factors_reach_their_own_angle(runs, default) -> None:
    """--alpha-yaw 0: the yaw bins' logits times 0 give 0 degrees on every frame (no yaw motion); the other angles
    keep theirs. --alpha-pitch 0 --alpha-roll 2: no pitch, a sharper roll, the yaw as by default."""
    spread = _spread(default[0])
    assert (spread > 0).all()
    yaw, frames, _ = runs("--alpha-yaw", "0")
    assert _spread(yaw)[1] == 0 and (_spread(yaw)[[0, 2]] == spread[[0, 2]]).all()
    assert not np.array_equal(frames, default[1])
    others, _, _ = runs("--alpha-pitch", "0", "--alpha-roll", "2")
    assert _spread(others)[0] == 0 and _spread(others)[1] == spread[1] and _spread(others)[2] != spread[2]


def test_voice_activity_takes_the_expression_back_to_the_photos(runs, default) -> None:
    """--vad-alpha 0: the photo's expression on every frame, the head's motion as by default. Frame 0 is the
    photo's expression by default too (the motion is relative to the first frame's)."""
    result, frames, _ = runs("--vad-alpha", "0")
    assert (_spread(result) == _spread(default[0])).all()
    assert np.array_equal(frames[0], default[1][0])
    assert all(not np.array_equal(frames[i], default[1][i]) for i in range(1, 10))


def test_fades_change_the_first_and_last_frames_only(runs, default) -> None:
    """--fade-in 3 --fade-out 3 --fade-type s: frames 1-2 and 7-9 are faded towards the photo's expression (frame 0
    is the photo's already), frames 3-6 are the default's, pixel for pixel; without --fade-type the tiny model's
    configuration gives none, and the fades are refused in one line naming the flags."""
    _, frames, _ = runs("--fade-in", "3", "--fade-out", "3", "--fade-type", "s")
    same = [np.array_equal(frames[i], default[1][i]) for i in range(10)]
    assert same == [True, False, False, True, True, True, True, False, False, False]


def test_fades_without_a_target_are_refused_in_one_line(runs, capsys) -> None:
    out = runs.folder / "refused.mp4"
    assert main([*runs.argv("tiny", "me.png", out), "--fade-in", "3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("genface: error: --fade-in and --fade-out need --fade-type 'd0'") and err.count("\n") == 1
    assert not out.exists()


def test_no_motion_clamp_turns_off_the_configurations_clamp(runs, tmp_path) -> None:
    """A tiny model saved with a motion clamp in its configuration (Ditto's v_min_max_for_clip: here every motion
    value held at 0): the head stays still; --no-motion-clamp lets it move."""
    from genface.pipelines.talking_portrait import TalkingPortraitPipeline
    from genface.pipelines.talking_portrait.tiny import TINY_INPUT_SIZE, tiny_components

    clamp = np.zeros((2, 265)).tolist()
    clamped = TalkingPortraitPipeline(
        **tiny_components(), input_size=TINY_INPUT_SIZE, default_kwargs={"v_min_max_for_clip": clamp}
    )
    clamped.save_pretrained(tmp_path / "clamped")
    held, _, _ = runs(model=str(tmp_path / "clamped"))
    assert (_spread(held) == 0).all()
    free, _, _ = runs("--no-motion-clamp", model=str(tmp_path / "clamped"))
    assert (_spread(free) > 0).all()


def test_a_video_source_follows_the_speech_with_its_smoothing(runs) -> None:
    """--photo clip.mp4 (6 frames): a marked mp4 as long as the speech (10 frames, the video played forwards then
    backwards), at the video's size; --source-smoothing 1 takes the video's motion unsmoothed (default: 13 frames)."""
    from genface.media.video import VideoReader

    result, frames, out = runs(photo="clip.mp4")
    assert result["frames"] == 10 and frames.shape == (10, 192, 192, 3)
    assert len(list(VideoReader(out))) == 10 and verify(out)["metadata"]["pipeline"] == "talking_portrait"
    raw, _, _ = runs("--source-smoothing", "1", photo="clip.mp4")
    assert _spread(raw)[0] > _spread(result)[0]  # the zoom tilts the face: smoothing calms it
