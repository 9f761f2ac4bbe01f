"""`genface video` with the offline tiny models (ConsisID's, and Stand-In's and VACE's on Wan): a real mp4 with its
synthetic mark, FaceSim, each model's defaults (the web demo's too), clear errors."""

from __future__ import annotations

import functools
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
WAN = ["--steps", "2", "--prompt", "a woman smiling", "--face", str(sample_path("astronaut"))]


def _spy(monkeypatch, pipeline: type) -> list[dict]:
    """The keyword arguments of each call of ``pipeline`` (and its reference cache switch when it has one)."""
    calls, original = [], pipeline.__call__

    @functools.wraps(original)  # its signature stays the call's: the defaults are read from it
    def spy(self, *args, **kwargs):
        calls.append({**kwargs, "reference_cache": getattr(self, "reference_cache", None)})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pipeline, "__call__", spy)
    return calls


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


@pytest.mark.parametrize(("model", "kind"), [("tiny-stand-in", "stand-in"), ("tiny-vace", "vace")])
def test_tiny_wan_models_write_a_marked_16_fps_video_with_wans_defaults(
    tmp_path: Path, capsys, monkeypatch, model, kind
):
    import genface.pipelines
    from genface.pipelines import default_size
    from genface.pipelines.identity_video.wan import NEGATIVE_PROMPT

    calls = _spy(monkeypatch, getattr(genface.pipelines, {"stand-in": "StandInPipeline", "vace": "VacePipeline"}[kind]))
    out = tmp_path / "w.mp4"
    assert main(["video", "--model", model, *WAN, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    frames, fps = read_video(out)
    size = default_size("video", model)
    assert frames.shape == (size["num_frames"], size["height"], size["width"], 3) == (9, 32, 32, 3)
    assert fps == pytest.approx(16.0) and "(9 frames, 32x32, 16 fps;" in printed
    assert re.search(r"^FaceSim(: no face found| vs reference)", printed, re.M)  # noise: no face, but measured
    call = calls[0]
    assert call["guidance_scale"] == 5.0 and call["negative_prompt"] == NEGATIVE_PROMPT
    assert call["num_frames"] == 9 and call["reference_cache"] is (True if kind == "stand-in" else None)
    mark = read_mark(out)
    assert mark["synthetic"] is True and mark["model"] == model and mark["model_kind"] == kind and mark["seed"] == 42
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.mp4"]
    if kind == "stand-in":  # --no-reference-cache reaches the pipeline; the frames are the cached run's (exact)
        by_hand = ["--guidance", "5", "--fps", "16", "--frames", "9", "--negative-prompt", NEGATIVE_PROMPT]
        uncached = ["--no-reference-cache", "--out", str(tmp_path / "u.mp4")]
        assert main(["video", "--model", model, *WAN, *by_hand, *uncached]) == 0
        assert calls[1]["reference_cache"] is False and calls[1]["negative_prompt"] == NEGATIVE_PROMPT
        np.testing.assert_array_equal(read_video(tmp_path / "u.mp4")[0], frames)


def test_one_set_of_defaults_for_the_cli_the_web_demo_and_the_help(tmp_path: Path) -> None:
    """What a run starts from comes from genface.pipelines.call_defaults: the web demo's video tab sets the same
    values for each of its models, and `genface video --help` states them."""
    from genface.cli import build_parser
    from genface.pipelines import call_defaults
    from genface.web import CHOICES, Jobs

    for app in ("hub", "tiny"):
        jobs = Jobs(app, "cpu", tmp_path)
        for choice in CHOICES["video"]:
            found = call_defaults("video", jobs._model("video", choice)[0])
            expected = (found["guidance_scale"], found["num_frames"], found["fps"], found["negative_prompt"] or "")
            assert jobs.video_settings(choice) == expected, (app, choice)
    consisid, wan = call_defaults("video", "consisid"), call_defaults("video", "stand-in")
    assert wan == call_defaults("video", "vace") and (wan["num_frames"] - 1) % 4 == 0
    assert wan["height"] % 16 == 0 and wan["width"] % 16 == 0
    parser = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices)
    helps = {a.option_strings[0]: " ".join(a.help.split()) for a in parser.choices["video"]._actions if a.help}
    for flag, key in (("--guidance", "guidance_scale"), ("--frames", "num_frames"), ("--height", "height"),
                      ("--width", "width"), ("--fps", "fps")):  # fmt: skip
        assert f"default: ConsisID's {consisid[key]:g}, Wan's {wan[key]:g}" in helps[flag], flag
    tiny = {key: call_defaults("video", name)["num_frames"] for key, name in (("c", "tiny"), ("w", "tiny-vace"))}
    assert tiny["c"] == tiny["w"] and f"the tiny models' {tiny['c']}" in helps["--frames"]


# --model, options, what the one line says
OTHER_MODELS_OPTIONS = [
    ("tiny-stand-in", ["--dynamic-cfg"], r"--dynamic-cfg is for ConsisID only .*; --model tiny-stand-in is Stand-In\."),
    ("tiny-vace", ["--no-reference-cache"], r"--no-reference-cache is for Stand-In only .*; --model tiny-vace is VACE"),
    ("tiny", ["--no-reference-cache"], r"--no-reference-cache is for Stand-In only .*; --model tiny is ConsisID"),
    ("tiny", ["--guidance-2", "4"], r"--guidance-2 is for Stand-In or VACE only .*; --model tiny is ConsisID"),
    ("tiny-stand-in", ["--conditioning-scale", "0"], r"--conditioning-scale is for VACE only .*; --model tiny-stand"),
    ("tiny-wan", [], r"Unknown tiny model 'tiny-wan' for video; choose one of: tiny, tiny-consisid, tiny-stand-in"),
]


def test_an_option_of_another_model_is_refused_before_torch_is_imported(tmp_path: Path) -> None:
    """One line, exit code 1, no file, from a process that never imported torch or diffusers: which model a name
    loads is known without them."""
    import subprocess
    import sys

    code = """
import contextlib, io, json, sys
from genface.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(argv)
    results.append([status, err.getvalue(), sorted(m for m in ("torch", "diffusers") if m in sys.modules)])
print(json.dumps(results))
"""
    out = tmp_path / "x.mp4"
    lines = [["video", "--model", model, *WAN, *extra, "--out", str(out)] for model, extra, _ in OTHER_MODELS_OPTIONS]
    run = subprocess.run([sys.executable, "-c", code, json.dumps(lines)], capture_output=True, text=True, check=True)
    for (status, err, heavy), (_, _, message) in zip(json.loads(run.stdout), OTHER_MODELS_OPTIONS, strict=True):
        assert status == 1 and err.count("\n") == 1 and re.search(message, err) and heavy == [], (err, heavy)
    assert list(tmp_path.iterdir()) == []


def test_wan_22_guidance_and_vace_conditioning_reach_their_pipelines(tmp_path: Path, monkeypatch, capsys) -> None:
    """--conditioning-scale is VACE's call argument; --guidance-2 on a Wan 2.1 base (one expert) is refused in one
    line after loading, with no file written."""
    from genface.cli import main
    from genface.pipelines import VacePipeline

    seen = {}
    call = VacePipeline.__call__

    @functools.wraps(call)
    def spy(self, *args, **kwargs):
        seen.update(kwargs)
        return call(self, *args, **kwargs)

    monkeypatch.setattr(VacePipeline, "__call__", spy)
    out = tmp_path / "v.mp4"
    assert main(["video", "--model", "tiny-vace", *WAN, "--steps", "1", "--conditioning-scale", "0.5", "--out",
                 str(out)]) == 0  # fmt: skip
    assert seen["conditioning_scale"] == 0.5 and "guidance_scale_2" not in seen and out.is_file()
    capsys.readouterr()
    refused = tmp_path / "w.mp4"
    assert main(["video", "--model", "tiny-stand-in", *WAN, "--guidance-2", "3", "--out", str(refused)]) == 1
    assert "--guidance-2 is for a Wan 2.2 base" in capsys.readouterr().err and not refused.exists()
