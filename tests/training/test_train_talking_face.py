"""examples/train_talking_face.py on the tiny model and a short synthetic video of a real face with speech:
the loss goes down, a resumed run repeats the uninterrupted one exactly, and the result loads and runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genface.media import write_video
from genface.pipelines import load_pipeline
from genface.samples import speech_like
from tests.training.scripts import load_script, logged_losses, run_on_two_processes


@pytest.fixture(scope="module")
def person(tmp_path_factory, astronaut) -> Path:
    """16 frames (a face moving a little) with a speech-like track."""
    speech = speech_like(16 / 25)
    frames = np.stack([np.roll(astronaut, i % 6, axis=1) for i in range(16)])
    return write_video(tmp_path_factory.mktemp("data") / "person.mp4", frames, 25, audio=speech, audio_rate=16000)


def test_fine_tuning_learns_resumes_exactly_and_loads(person: Path, tmp_path: Path, astronaut) -> None:
    train = load_script("train_talking_face").main
    common = [
        "--videos",
        str(person),
        "--model",
        "tiny",
        "--batch-size",
        "4",
        "--lr",
        "1e-3",
        "--checkpoint-every",
        "3",
    ]
    train([*common, "--output-dir", str(tmp_path / "whole"), "--steps", "6"])
    whole = logged_losses(tmp_path / "whole")
    assert list(whole) == [1, 2, 3, 4, 5, 6] and whole[6] < 0.7 * whole[1]  # it learns
    checks = [json.loads(line) for line in (tmp_path / "whole" / "validation.jsonl").read_text().splitlines()]
    assert [c["step"] for c in checks] == [3, 6] and all({"facesim", "lip_sync"} <= set(c) for c in checks)
    assert all(c["facesim"] is None or -1 <= c["facesim"] <= 1 for c in checks)

    train([*common, "--output-dir", str(tmp_path / "split"), "--steps", "3"])  # stopped after a checkpoint
    train([*common, "--output-dir", str(tmp_path / "split"), "--steps", "6", "--resume", "latest"])
    assert logged_losses(tmp_path / "split") == whole  # the same curve, to the last digit

    from genface.identity import FaceAnalyzer
    from genface.pipelines import TalkingFacePipeline

    pipe = TalkingFacePipeline.from_pretrained(tmp_path / "whole" / "pipeline", face_analyzer=FaceAnalyzer("dlib"))
    pipe.set_progress_bar_config(disable=True)
    speech = np.sin(np.arange(3200) / 9).astype(np.float32) * 0.3
    output = pipe(astronaut, speech, audio_rate=16000, measure=False)
    assert output.frames.shape == (5, *astronaut.shape)


def test_two_processes_each_draw_their_own_batch(person: Path, tmp_path: Path) -> None:
    """accelerate's DDP on 2 CPU processes: process k trains on the batch of step 2s + k; the logged loss of the
    first step is the mean of the two batches' losses under the initial weights."""
    import torch

    options = ["--videos", str(person), "--model", "tiny", "--batch-size", "4", "--steps", "2"]
    run_on_two_processes("train_talking_face", [*options, "--validation-frames", "0", "--output-dir", str(tmp_path)])
    losses = logged_losses(tmp_path)
    assert list(losses) == [1, 2] and (tmp_path / "pipeline" / "model_index.json").is_file()

    script = load_script("train_talking_face")
    torch.manual_seed(0)  # the script's --seed, before it builds the tiny model
    pipe = load_pipeline("talk", "tiny")
    data = script.prepare(pipe, [person], tmp_path / "cache")  # the run's cache
    with torch.no_grad():
        first = [script.training_loss(pipe.unet, script.batch_at(data, k, 4, 0), 2.0, 0.5).item() for k in (0, 1)]
    assert abs(first[0] - first[1]) > 1e-4  # two different batches
    assert losses[1] == pytest.approx(sum(first) / 2, rel=1e-5)


def test_the_optional_syncnet_loss_adds_to_the_objective(person: Path, tmp_path: Path) -> None:
    import pytest
    import torch

    from genface.models.talking.syncnet import SyncNet
    from tests.models.test_talking_syncnet import TINY

    script = load_script("train_talking_face")
    torch.manual_seed(0)
    SyncNet(**TINY).save_pretrained(tmp_path / "syncnet")
    options = ["--videos", str(person), "--model", "tiny", "--steps", "2", "--validation-frames", "0"]
    sync = ["--sync-weight", "1", "--syncnet", str(tmp_path / "syncnet")]
    with pytest.raises(SystemExit):  # the SyncNet scores 16 frames: a batch of 4 is refused
        script.main([*options, *sync, "--batch-size", "4", "--output-dir", str(tmp_path / "refused")])
    script.main([*options, *sync, "--batch-size", "16", "--output-dir", str(tmp_path / "out")])
    script.main([*options, "--batch-size", "16", "--output-dir", str(tmp_path / "plain")])
    with_sync, plain = logged_losses(tmp_path / "out"), logged_losses(tmp_path / "plain")
    # the same batches and weights at step 1: the losses differ by the SyncNet term, which is positive
    assert list(with_sync) == [1, 2] and with_sync[1] > plain[1]
