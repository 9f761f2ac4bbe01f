"""A newcomer's first hour on the command line: `genface samples` gives the inputs the README's commands name,
a video has the frames asked, `genface eval` runs offline on tiny judges, and a run says which scores it could
not measure. (Refusals of bad input: tests/test_bad_input_corpus.py.)"""

from __future__ import annotations

import json
import wave
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from genface.cli import main
from genface.identity import FaceAnalyzer
from genface.media import load_audio, load_image, read_video


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("first") / "demo"
    assert main(["samples", str(folder)]) == 0
    return folder


def test_samples_are_what_the_readme_commands_name(samples: Path, dlib_analyzer: FaceAnalyzer) -> None:
    assert sorted(p.name for p in samples.iterdir()) == ["clip.mp4", "group.jpg", "look.jpg", "me.jpg", "speech.wav"]
    assert len(dlib_analyzer.detect(samples / "me.jpg")) == 1 and len(dlib_analyzer.detect(samples / "look.jpg")) == 1
    assert len(dlib_analyzer.detect(samples / "group.jpg")) == 6
    frames, fps = read_video(samples / "clip.mp4")
    assert frames.shape == (25, 384, 384, 3) and fps == 25 and len(dlib_analyzer.detect(frames[-1])) == 1
    with wave.open(str(samples / "speech.wav")) as handle:
        assert (handle.getframerate(), handle.getnframes(), handle.getnchannels()) == (16000, 16000, 1)
    assert abs(len(load_audio(samples / "clip.mp4")) - 16000) <= 1024  # the speech as its sound (AAC frames pad)


def test_samples_never_overwrite_a_file(tmp_path: Path, capsys) -> None:
    """A file of the user's under a sample's name is kept as it is (and said so); the others are written."""
    (tmp_path / "me.jpg").write_bytes(b"my own photo")
    assert main(["samples", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "me.jpg").read_bytes() == b"my own photo"
    assert f"kept  {tmp_path / 'me.jpg'} (it exists; left as it is)" in out and f"wrote {tmp_path / 'look.jpg'}" in out
    assert load_image(tmp_path / "look.jpg").shape == (448, 448, 3)
    assert not list(tmp_path.glob(".*"))  # no partial file left


def test_readme_commands_run_on_the_samples(samples: Path, monkeypatch, capsys) -> None:
    """As the README has them, from the samples' folder: FaceSim of me.jpg in the group photo, and a tiny video of
    exactly the 5 frames asked (CogVideoX's VAE decodes 8)."""
    monkeypatch.chdir(samples)
    assert main(["identity", "me.jpg", "group.jpg", "--backend", "dlib", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["facesim"]["frames"] == 1
    video = ["video", "--model", "tiny", "--face", "me.jpg", "--prompt", "a person smiling", "--out", "tiny.mp4"]
    assert main([*video, "--frames", "5", "--steps", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 5 and read_video("tiny.mp4")[0].shape[0] == 5
    (samples / "tiny.mp4").unlink()


@pytest.mark.parametrize("kind", ["video", "talk"])
def test_eval_runs_offline_on_tiny_judges(samples: Path, tmp_path: Path, capsys, kind: str) -> None:
    """`genface eval video|talk --judges tiny`: every stage of an evaluation with no weights to download."""
    items = tmp_path / "items"
    items.mkdir()
    (items / "clip.mp4").write_bytes((samples / "clip.mp4").read_bytes())
    if kind == "video":
        (items / "clip.png").write_bytes((samples / "me.jpg").read_bytes())
    out = tmp_path / "scores.jsonl"
    argv = ["eval", kind, str(items), "--out", str(out), "--judges", "tiny", "--backend", "dlib", "--frames", "4"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    expected = {"facesim_arc", "facesim_cur", "frames_with_face"} if kind == "video" else {"sync_c", "latentsync_conf"}
    assert expected <= set(record["metrics"]), record
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["weights"]["judges"].startswith("tiny random") and "records:" in printed


def _spoken(facesim: object, lip_sync: float | None) -> tuple[SimpleNamespace, dict]:
    return SimpleNamespace(facesim=facesim), {"lip_sync": lip_sync}


def test_talk_and_portrait_say_which_scores_they_could_not_measure(capsys) -> None:
    from genface.cli.common import print_spoken_scores
    from genface.identity import FaceSimResult

    unseen = FaceSimResult(np.array([np.nan, np.nan]), "dlib_resnet_v1", 0.92)
    seen = FaceSimResult(np.array([0.5, np.nan]), "dlib_resnet_v1", 0.92)
    expected = [
        ((unseen, None), ["FaceSim: no face found in the generated frames", "lip-sync proxy: not measured"]),
        ((None, 0.25), ["FaceSim: not measured (the face engine has no recognizer)", "lip-sync proxy (mouth"]),
        ((seen, 0.25), ["FaceSim vs source (dlib_resnet_v1): mean 0.5000", "lip-sync proxy (mouth opening"]),
    ]
    for (facesim, lip_sync), starts in expected:
        print_spoken_scores(*_spoken(facesim, lip_sync), "source", measured=True)
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 2 and all(line.startswith(s) for line, s in zip(lines, starts, strict=True)), lines
    print_spoken_scores(*_spoken(unseen, None), "source", measured=False)  # --no-metrics: nothing to say
    assert capsys.readouterr().out == ""
