"""What both dubbing pipelines (MuseTalk's and LatentSync's, tiny random weights) do around their models: the silence
mode on espeak-ng speech with a pause, and live speech (stream) cut into chunks any way."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch

from genface.errors import InvalidArgumentError, InvalidMediaError
from genface.media import load_audio
from genface.models.talking.audio import SpeechWindows, WhisperFrameFeatures, frame_count
from genface.models.talking.metrics import frame_loudness
from genface.models.talking.silence import speech_weights
from genface.pipelines.talking_face.latentsync import LatentSyncPipeline
from genface.pipelines.talking_face.pipeline import TalkingFacePipeline, _Meter
from genface.pipelines.talking_face.tiny import tiny_pipeline as tiny_musetalk
from genface.pipelines.talking_face.tiny_latentsync import tiny_pipeline as tiny_latentsync
from genface.samples import speech_like

#: Each pipeline's cheapest call: one DDIM step for LatentSync.
CHEAP = {"musetalk": {"batch_size": 4}, "latentsync": {"num_inference_steps": 1}}


@pytest.fixture(scope="module", params=["musetalk", "latentsync"])
def dub(request, dlib_analyzer) -> tuple[str, TalkingFacePipeline | LatentSyncPipeline]:
    pipe = (tiny_musetalk if request.param == "musetalk" else tiny_latentsync)(dlib_analyzer)
    pipe.set_progress_bar_config(disable=True)
    return request.param, pipe


@pytest.fixture(scope="module")
def paused_speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """espeak-ng's "Hi." and "Go on." with 0.6 s of silence between them, 16 kHz."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed; .ci/run installs it (apt-get install espeak-ng).")
    folder = tmp_path_factory.mktemp("paused")
    parts = []
    for name, text in (("a", "Hi."), ("b", "Go on.")):
        subprocess.run(["espeak-ng", "-w", str(folder / f"{name}.wav"), text], check=True)
        parts.append(load_audio(folder / f"{name}.wav", 16000))
    return np.concatenate([parts[0], np.zeros(9600, np.float32), parts[1]])


def _source_opening(name: str, pipe, photo: np.ndarray) -> float:
    """The mouth opening the pipeline's meter reads on the unchanged photo."""
    track = pipe._track([photo], None, 1.5) if name == "musetalk" else pipe._follow([photo], None).track
    meter = _Meter(pipe.face_analyzer, [photo], track, 1)
    meter.add(photo[None])
    return float(meter.openings()[0])


def test_silence_source_keeps_the_source_mouth_in_the_pause(dub, astronaut, paused_speech) -> None:
    name, pipe = dub
    weights = speech_weights(frame_loudness(paused_speech, 25, frame_count(len(paused_speech), 25)), 25)
    pause = weights == 0
    assert 8 <= pause.sum() < len(weights) - 12  # espeak's trailing silence is short of 0.12 s; the pause is not
    kept = pipe(astronaut, paused_speech, audio_rate=16000, silence="source", **CHEAP[name])
    for frame in kept.frames[pause]:
        assert np.array_equal(frame, astronaut)
    opening = _source_opening(name, pipe, astronaut)
    np.testing.assert_allclose(kept.mouth_opening[pause], opening)  # the pause's mouth is the source's
    animated = pipe(astronaut, paused_speech, audio_rate=16000, measure=False, **CHEAP[name]).frames
    assert all((frame != astronaut).any() for frame in animated[pause])  # the default redraws it
    speaking = weights == 1
    assert np.array_equal(kept.frames[speaking], animated[speaking])  # frames of speech are unchanged
    fading = (weights > 0) & (weights < 1)
    assert fading.sum() >= 2
    expected = np.rint(weights[fading, None, None, None] * animated[fading] + (1 - weights[fading, None, None, None])
                       * astronaut.astype(np.float32))  # fmt: skip
    assert np.abs(kept.frames[fading] - expected).max() <= 1


def test_silence_closed_gives_the_model_the_windows_of_silence(dub, astronaut, paused_speech, monkeypatch) -> None:
    name, pipe = dub
    seen = []
    if name == "musetalk":
        render = TalkingFacePipeline.render
        monkeypatch.setattr(TalkingFacePipeline, "render", lambda self, latents, audio: seen.append(audio) or render(
            self, latents, audio))  # fmt: skip
    else:
        render = LatentSyncPipeline.render_clip
        monkeypatch.setattr(LatentSyncPipeline, "render_clip", lambda self, crops, audio, *a: seen.append(audio) or
                            render(self, crops, audio, *a))  # fmt: skip
    # the speech as the pipeline read it (LatentSync's reader gives whisper's 16-bit samples)
    speech = pipe(astronaut, paused_speech, audio_rate=16000, silence="closed", measure=False, **CHEAP[name]).audio
    closed = torch.cat(seen)
    count = frame_count(len(speech), 25)
    weights = speech_weights(frame_loudness(speech, 25, count), 25)
    if name == "musetalk":
        encoder = WhisperFrameFeatures(pipe.audio_encoder, pipe.feature_extractor)
        spoken, silent = (SpeechWindows(encoder, a, 25)(0, count) for a in (speech, np.zeros_like(speech)))
    else:
        from genface.models.latentsync.audio import LatentSyncSpeech

        whisper = pipe._whisper()
        spoken, silent = (LatentSyncSpeech(whisper, a, 25)(0, count) for a in (speech, np.zeros_like(speech)))
    torch.testing.assert_close(closed[:count][weights == 0], silent[weights == 0])
    torch.testing.assert_close(closed[:count][weights == 1], spoken[weights == 1])
    fading = (weights > 0) & (weights < 1)
    w = torch.from_numpy(weights[fading]).float()[:, None, None]
    torch.testing.assert_close(closed[:count][fading], w * spoken[fading] + (1 - w) * silent[fading])
    assert not torch.allclose(silent[weights == 0], spoken[weights == 0])


def _pieces(audio: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    pieces, i = [], 0
    while i < len(audio):
        for size in sizes:
            pieces.append(audio[i : i + size])
            i += size
    return [p for p in pieces if p.size]


def test_stream_gives_the_same_frames_however_the_speech_arrives(dub, astronaut) -> None:
    """Silence mode "source" on: the silence gate's weights arrive with the blocks too."""
    name, pipe = dub
    audio = np.concatenate([speech_like(0.8), np.zeros(4800, np.float32), speech_like(0.2)])
    taken = []

    def arriving(pieces):
        for piece in pieces:
            taken.append(len(piece))
            yield piece

    runs = []
    for sizes in ([640] * 3 + [1], [7, 3333, 123, 9999]):
        taken.clear()
        stream = pipe.stream(astronaut, arriving(_pieces(audio, sizes)), silence="source", **CHEAP[name])
        runs.append([(sum(taken), batch) for batch in stream])
    whole = np.concatenate([batch for _, batch in runs[0]])
    assert whole.shape == (frame_count(len(audio), 25), *astronaut.shape)
    assert np.array_equal(np.concatenate([batch for _, batch in runs[1]]), whole)
    first_heard = runs[0][0][0]  # speech taken when the first frames came out, fed 40 ms at a time
    block = 4 if name == "musetalk" else 16
    assert first_heard < len(audio) and first_heard <= (block / 25 + 0.24) * 16000 + 640
    assert (whole[22:25] == astronaut).all()  # the middle of the 0.3 s silence (frames 20-26): the source
    assert (whole[:20] != astronaut).any(axis=(1, 2, 3)).all()  # the speech redrawn


def test_stream_refuses_what_is_not_speech(dub, astronaut) -> None:
    name, pipe = dub
    with pytest.raises(InvalidMediaError, match="1-D float pieces"):
        next(pipe.stream(astronaut, iter([np.zeros(16000, np.int16)]), **CHEAP[name]))
    with pytest.raises(InvalidArgumentError, match="silence must be one of"):
        next(pipe.stream(astronaut, iter([speech_like(0.5)]), silence="mute", **CHEAP[name]))
