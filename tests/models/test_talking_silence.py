"""Where the speech is silent (genface.models.talking.silence): hysteresis, short gaps, the fade, the same weights
however the frames arrive, and espeak-ng speech with a pause."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from genface.media import load_audio
from genface.models.talking.metrics import frame_loudness
from genface.models.talking.silence import SilenceGate, speech_weights


def test_hysteresis_short_gaps_and_the_fade() -> None:
    loudness = np.array(
        [-20] * 5 + [-100] * 10 + [-20] * 3 + [-100] * 2 + [-30] * 4 + [-48] * 3 + [-46, -40] + [-55] * 4
    )
    weights = speech_weights(loudness, 25)
    assert weights[:5].tolist() == [1] * 5
    np.testing.assert_allclose(weights[5:15], [2 / 3, 1 / 3, 0, 0, 0, 0, 0, 0, 1 / 3, 2 / 3])  # the fade, both ways
    assert (weights[15:29] == 1).all()  # a 2-frame gap is speech; -48 and -46 after speech stay speech
    np.testing.assert_allclose(weights[29:], [2 / 3, 1 / 3, 0, 0])
    assert (speech_weights(np.array([-60, -46, -60, -60] * 3), 25) == 0).all()  # below -45 a silence goes on


def test_the_same_weights_however_the_frames_arrive() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        loudness = rng.choice([-20.0, -100.0, -47.0, -52.0], size=rng.integers(1, 60))
        gate, got, i = SilenceGate(25), [], 0
        while i < len(loudness):
            step = int(rng.integers(1, 7))
            gate.push(loudness[i : i + step])
            i += step
            got.append(gate.ready())
        got.append(gate.ready(end=True))
        np.testing.assert_array_equal(np.concatenate(got), speech_weights(loudness, 25))


def test_espeak_speech_is_speech_and_its_pause_is_silence(tmp_path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed; .ci/run installs it (apt-get install espeak-ng).")
    subprocess.run(["espeak-ng", "-w", str(tmp_path / "a.wav"), "Hello there."], check=True)
    subprocess.run(["espeak-ng", "-w", str(tmp_path / "b.wav"), "How are you?"], check=True)
    first, second = (load_audio(tmp_path / name, 16000) for name in ("a.wav", "b.wav"))
    speech = np.concatenate([first, np.zeros(12800, np.float32), second])  # a 0.8 s pause
    loudness = frame_loudness(speech, 25, int(len(speech) / 16000 * 25))
    weights = speech_weights(loudness, 25)
    spoken = loudness > -60
    assert spoken.sum() > 25 and (weights[spoken] == 1).all()  # every frame of speech, quiet onsets included
    pause = slice(int(len(first) / 640) + 3, int((len(first) + 12800) / 640) - 2)
    assert (weights[pause] == 0).all() and pause.stop - pause.start >= 15
