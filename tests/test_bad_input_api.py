"""The bad-input corpus through the Python API and the media layer (the command line's cases are in
test_bad_input_corpus.py): each hostile case is answered in one line by a genface.errors type, or gives the
documented result (marked OK); no input file changes (its bytes are compared before and after) and nothing
partial is left beside them."""
# ruff: noqa: F811 (fixtures of the corpus module, imported, are the tests' parameters)

from __future__ import annotations

import dataclasses
import json
import os
import stat
import threading
import tracemalloc
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from genface import errors
from genface.media import check_output_path, load_audio, load_image, read_video, write_video
from genface.models.talking.audio import frame_count
from genface.samples import sample_path, speech_like
from tests.test_bad_input_corpus import (  # noqa: F401 (its fixtures are used here too)
    _encoded,
    _png_header,
    _snapshot,
    _wav,
    _write,
    identity,
    portrait_pipe,
    talk_pipe,
    video_pipe,
)

# root writes anywhere but where the kernel refuses files
_LOCKED = "/sys" if os.geteuid() == 0 else "{t}/locked"


def _fail(*args: Any, **kwargs: Any) -> None:
    pytest.fail("model work started")


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A folder of inputs: a photo, speech, a clip, links to them, a locked folder and a folder named like a video."""
    t = tmp_path / "inputs"
    t.mkdir()
    _write(t / "face.png", sample_path("astronaut").read_bytes())
    _wav(t / "speech.wav", speech_like(0.3), 16000)
    write_video(t / "clip.mp4", np.zeros((2, 32, 32, 3), np.uint8))
    (t / "face-link.mp4").symlink_to(t / "face.png")
    (t / "speech-link.mp4").symlink_to(t / "speech.wav")
    os.link(t / "clip.mp4", t / "clip-hardlink.mp4")
    (t / "folder.mp4").mkdir()
    (t / "locked").mkdir(mode=0o500)
    return t


def _unchanged(folder: Path, run: Callable[[], Any]) -> Any:
    """Run ``run`` and check that the files in ``folder`` are exactly as before, none added."""
    before = _snapshot(folder)
    try:
        return run()
    finally:
        assert _snapshot(folder) == before


# --- output paths -------------------------------------------------------------------------------------

# name: (output path, {t} the folder of inputs), what the one line says
OUTPUT_ERRORS = {
    "the photo": ("{t}/face.png", r"output_path .*face.png: the name must end in \.mp4\.$"),
    "the speech": ("{t}/speech.wav", r"speech.wav: the name must end in \.mp4\.$"),
    "another extension": ("{t}/x.txt", r"x.txt: the name must end in \.mp4\.$"),
    "no extension": ("{t}/out", r"the name must end in \.mp4"),
    "an existing folder": ("{t}/folder.mp4", r"folder.mp4 is a folder; give a file name \(for example .*out\.mp4\)"),
    "a symlink to the photo": ("{t}/face-link.mp4", "face-link.mp4 is also an input; write the result to another"),
    "a symlink to the speech": ("{t}/speech-link.mp4", "speech-link.mp4 is also an input"),
    "the photo by another name": ("{t}/../inputs/./face-link.mp4", "is also an input"),
    "a newline in the name": ("{t}/a\nb.mp4", r"output_path '.*a\\nb.mp4': the name holds a control character"),
    "a NUL in the name": ("{t}/a\0b.mp4", r"'.*a\\x00b.mp4': the name holds a control character"),
    "a read-only folder": (f"{_LOCKED}/new/out.mp4", r"out.mp4: cannot write in .* \(.+\)\.$"),
    "under a file": ("{t}/face.png/out.mp4", r"face.png is a file, not a folder"),
    "empty": ("", "output_path is empty"),
}


@pytest.mark.parametrize(("name", "case"), OUTPUT_ERRORS.items(), ids=list(OUTPUT_ERRORS))
@pytest.mark.parametrize("pipeline", ["talking_face", "talking_portrait"])
def test_pipeline_outputs_are_checked_before_model_work(
    talk_pipe, portrait_pipe, inputs: Path, monkeypatch, pipeline: str, name: str, case
) -> None:
    """Once the photo or the speech was replaced by the mp4, an mp4 was named x.txt, and a folder ended the whole
    render in a raw IsADirectoryError."""
    path, message = case
    output = path.format(t=inputs)
    if pipeline == "talking_face":
        monkeypatch.setattr(talk_pipe, "_track", _fail)
        run = lambda: talk_pipe(inputs / "face.png", inputs / "speech.wav", output_path=output)  # noqa: E731
    else:
        monkeypatch.setattr(portrait_pipe, "prepare_source", _fail)
        run = lambda: portrait_pipe(inputs / "face.png", inputs / "speech.wav", output_path=output)  # noqa: E731
    with pytest.raises(errors.InvalidArgumentError, match=message) as raised:
        _unchanged(inputs, run)
    assert "\n" not in str(raised.value)


def test_a_clip_is_not_dubbed_onto_itself(talk_pipe, inputs: Path, monkeypatch) -> None:
    """The clip, a hard link to it, or a prepared video made from it."""
    from genface.pipelines.talking_face.prepared import PreparedVideo

    monkeypatch.setattr(talk_pipe, "_track", _fail)
    prepared = PreparedVideo.__new__(PreparedVideo)
    prepared.frames = talk_pipe._load_face(inputs / "clip.mp4", None)[0]
    for face in (inputs / "clip.mp4", prepared):
        for output in (inputs / "clip.mp4", inputs / "clip-hardlink.mp4"):
            with pytest.raises(errors.InvalidArgumentError, match="is also an input"):
                _unchanged(inputs, lambda f=face, o=output: talk_pipe(f, inputs / "speech.wav", output_path=o))


def test_output_rules(inputs: Path) -> None:
    """OK: a new name (unicode, ``~``, folders still to make) comes back expanded, nothing created; a file that is
    no input may be replaced. Folders (no suffix) must be new or empty; anything but a path is refused."""
    new = inputs / "ünïcödé 名前" / "deep" / "out.mp4"
    assert check_output_path(new, (".mp4",), [inputs / "face.png"]) == new and not new.parent.parent.exists()
    assert check_output_path("~/x.MP4", (".mp4",)) == Path.home() / "x.MP4"
    assert check_output_path(inputs / "clip.mp4", (".mp4",), [inputs / "face.png"]) == inputs / "clip.mp4"
    assert check_output_path(None, (".mp4",)) is None
    assert check_output_path(inputs / "folder.mp4", (), name="cache") == inputs / "folder.mp4"
    refused = {
        "exists and is not an empty folder; give a new folder": (inputs, ()),
        r"exists and is not an empty folder \(it is a file\)": (inputs / "face.png", ()),
        "must be a path": (42, (".mp4",)),
    }
    for message, (path, suffixes) in refused.items():
        with pytest.raises(errors.InvalidArgumentError, match=message):
            check_output_path(path, suffixes)


def test_identity_and_eval_outputs_follow_the_same_rules(identity, inputs: Path) -> None:
    from genface.eval.runner import Item, evaluate, write_summary

    with pytest.raises(errors.InvalidArgumentError, match=r"path .*id.txt: the name must end in \.safetensors"):
        identity.save(inputs / "id.txt")
    (inputs / "id.safetensors").mkdir()
    with pytest.raises(errors.InvalidArgumentError, match="id.safetensors is a folder"):
        identity.save(inputs / "id.safetensors")
    item = Item("a", {"video": str(inputs / "clip.mp4"), "prompt": str(inputs / "face.png")})
    with pytest.raises(errors.InvalidArgumentError, match=r"output .*clip.mp4: the name must end in \.jsonl"):
        _unchanged(inputs, lambda: evaluate([item], [_fail], inputs / "clip.mp4", progress=False))
    (inputs / "records.summary.json").mkdir()
    with pytest.raises(errors.InvalidArgumentError, match="summary .*records.summary.json is a folder"):
        write_summary({}, inputs / "records.jsonl")
    assert not list(inputs.glob("records.summary.md*")) and not list(inputs.glob(".*partial*"))


# --- numbers ------------------------------------------------------------------------------------------

# name: the value, what the one line says (cli28's genface.arguments bounds steps and fps the same way)
GUIDANCE = {
    "NaN": (float("nan"), "guidance_scale must be from 0.0 to 50.0, got nan"),
    "infinite": (float("inf"), "guidance_scale must be from 0.0 to 50.0, got inf"),
    "negative": (-1.0, r"guidance_scale must be from 0.0 to 50.0, got -1.0"),
    "huge": (1e30, "guidance_scale must be from 0.0 to 50.0, got 1e"),
    "text": ("6", "guidance_scale must be .*from 0.0 to 50.0, got '6'"),
}


@pytest.mark.parametrize(("name", "case"), GUIDANCE.items(), ids=list(GUIDANCE))
def test_guidance_is_refused_before_model_work(video_pipe, identity, dlib_analyzer, monkeypatch, name, case) -> None:
    """NaN, infinite or negative guidance once ran silently through the identity-video and makeup pipelines."""
    from genface.pipelines.makeup.tiny import tiny_pipeline

    value, message = case
    monkeypatch.setattr(video_pipe, "encode_identity", _fail)
    with pytest.raises(errors.InvalidArgumentError, match=message):
        video_pipe("a person", identity=identity, height=64, width=64, num_frames=5, guidance_scale=value)
    makeup = tiny_pipeline(dlib_analyzer)
    monkeypatch.setattr(makeup, "_face", _fail)
    with pytest.raises(errors.InvalidArgumentError, match=message):
        makeup(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), size=32, guidance_scale=value)


# --- media --------------------------------------------------------------------------------------------


def _cut(path: Path, fraction: float) -> Callable[[Path], Path]:
    """``path`` (relative: in the folder given) cut to ``fraction`` of its bytes, beside it."""

    def build(t: Path) -> Path:
        data = path.read_bytes() if path.is_absolute() else (t / path).read_bytes()
        return _write(t / f"cut-{fraction}{path.suffix}", data[: int(len(data) * fraction)])

    return build


def _audio_only_mp4(t: Path) -> Path:
    import av

    with av.open(str(t / "audio.mp4"), "w") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(speech_like(0.3)[None], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return t / "audio.mp4"


def _speech_wav(rate: int, seconds: float) -> Callable[[Path], Path]:
    return lambda t: _wav(t / f"{rate}.wav", speech_like(seconds, rate), rate)


# name: (face, speech) built in the folder of inputs (a name is a file there), the error, what its message says
MEDIA_ERRORS = {
    "clip cut at 10%": (_cut(Path("clip.mp4"), 0.1), "speech.wav", errors.InvalidMediaError, "could not be decoded as"),
    "clip cut at 90%": (_cut(Path("clip.mp4"), 0.9), "speech.wav", errors.InvalidMediaError, "could not be decoded as"),
    "empty clip": (lambda t: _write(t / "e.mp4", b""), "speech.wav", errors.InvalidMediaError, "could not be decoded"),
    "a video without a video stream": (_audio_only_mp4, "speech.wav", errors.InvalidMediaError, "has no video stream"),
    "empty photo": (lambda t: _write(t / "e.jpg", b""), "speech.wav", errors.InvalidImageError, "Image file is empty"),
    "jpeg cut at 50%": (
        lambda t: _write(t / "c.jpg", _encoded(np.full((64, 64, 3), 90, np.uint8), "JPEG")[:300]), "speech.wav",
        errors.InvalidImageError, "truncated or corrupt",
    ),
    "decompression bomb": (
        lambda t: _write(t / "b.png", _png_header(20000, 20000)), "speech.wav", errors.InvalidImageError,
        "decompression bombs",
    ),
    "1x1 photo": (lambda t: np.zeros((1, 1, 3), np.uint8), "speech.wav", errors.NoFaceError, "No face found"),
    "20000x20 photo": (lambda t: np.full((20, 20000, 3), 90, np.uint8), "speech.wav", errors.NoFaceError, "No face"),
    "empty speech": ("face.png", lambda t: _write(t / "e.wav", b""), errors.InvalidMediaError, "Audio file is empty"),
    "speech cut in its header": ("face.png", _cut(Path("speech.wav"), 0.002), errors.InvalidMediaError, "decoded"),
    "speech at 1 Hz": ("face.png", _speech_wav(1, 30), errors.InvalidMediaError, "sampled at 1 Hz, too slowly to"),
    "10 ms of speech": ("face.png", _speech_wav(16000, 0.01), errors.InvalidMediaError, "lasts 10 ms, shorter than"),
    "a photo as speech": ("face.png", "face.png", errors.InvalidMediaError, "face.png has no audio stream"),
}  # fmt: skip


@pytest.mark.parametrize(("name", "case"), MEDIA_ERRORS.items(), ids=list(MEDIA_ERRORS))
def test_talking_face_media(talk_pipe, inputs: Path, name: str, case) -> None:
    face, speech, error, message = case
    face, speech = ((inputs / x if isinstance(x, str) else x(inputs)) for x in (face, speech))
    with pytest.raises(error, match=message) as raised:
        _unchanged(inputs, lambda: talk_pipe(face, speech, output_path=inputs / "out.mp4", measure=False))
    assert "\n" not in str(raised.value)


def test_ten_minutes_of_silence_are_refused_in_bounded_memory(talk_pipe, tmp_path: Path) -> None:
    """The whole track is read once at 16 kHz (38 MB of samples for 10 min); peak memory stays within a few copies
    of it (the silence check once made two float64 copies: 193 MB in all), and the silence is refused in one
    line."""
    with wave.open(str(tmp_path / "silence.wav"), "wb") as handle:
        handle.setnchannels(1), handle.setsampwidth(2), handle.setframerate(16000)
        handle.writeframes(bytes(2 * 16000 * 600))
    tracemalloc.start()
    try:
        with pytest.raises(errors.InvalidMediaError, match="The audio is silent"):
            talk_pipe(sample_path("astronaut"), tmp_path / "silence.wav", output_path=tmp_path / "out.mp4")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 600 * 16000 * 4, peak
    assert sorted(p.name for p in tmp_path.iterdir()) == ["silence.wav"]


def test_extreme_speech_rates_and_an_odd_output_name(talk_pipe, inputs: Path) -> None:
    """OK: speech at 192 kHz (its AAC encoder once refused it) is dubbed into a new unicode-named folder; the track
    is written at 48 kHz, as long as the speech, and the file is as readable as any other output."""
    speech = _speech_wav(192000, 0.3)(inputs)
    out = inputs / "ünïcödé 名前" / "out.mp4"
    result = _unchanged(inputs / "face.png", lambda: talk_pipe(inputs / "face.png", speech, output_path=out))
    assert result.path == out and read_video(out)[0].shape[0] == frame_count(len(result.audio), 25) == 7
    assert len(load_audio(out)) == pytest.approx(0.3 * 16000, abs=600)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.mp4"]


# --- identity files -----------------------------------------------------------------------------------


def _edited(identity: Any, t: Path, **changes: Any) -> Path:
    return dataclasses.replace(identity, **changes).save(t / "edited.safetensors")


def _metadata(identity: Any, t: Path, meta: Any) -> Path:
    from safetensors.numpy import load_file, save_file

    identity.save(t / "id.safetensors")
    save_file(load_file(t / "id.safetensors"), t / "meta.safetensors", metadata={"genface": meta})
    return t / "meta.safetensors"


def _five_by_five(identity: Any, t: Path) -> Path:
    from genface.identity import Face

    face = Face([0, 0, 5, 5], 1.0, np.full((5, 2), 2.5))
    return _edited(identity, t, face=face, crop=np.zeros((5, 5, 3), np.uint8), image_size=(5, 5))


# name: a saved identity built from a good one in a folder, the error, what its message says
IDENTITY_ERRORS = {
    "a 5x5 black crop": (_five_by_five, errors.FaceTooSmallError, r"face of only 5 pixels .* at least 32 are needed"),
    "a 20 px crop": (
        lambda i, t: _edited(i, t, crop=i.crop[::25, ::25].copy()), errors.FaceTooSmallError, "crop 21x21",
    ),
    "a blank crop": (lambda i, t: _edited(i, t, crop=np.zeros_like(i.crop)), errors.InvalidIdentityFileError, "blank"),
    "NaN features": (
        lambda i, t: _edited(i, t, recognition=i.recognition * np.nan), errors.InvalidIdentityFileError, "damaged",
    ),
    "a 2x2 crop matrix": (
        lambda i, t: _edited(i, t, crop_matrix=np.eye(2, dtype=np.float32)), errors.InvalidIdentityFileError, "damaged",
    ),
    "metadata not JSON": (lambda i, t: _metadata(i, t, "{"), errors.InvalidIdentityFileError, "not a saved FaceIden"),
    "metadata a list": (lambda i, t: _metadata(i, t, "[1]"), errors.InvalidIdentityFileError, "not a saved FaceIden"),
    "metadata without the score": (
        lambda i, t: _metadata(i, t, json.dumps({"format": "genface.FaceIdentity", "format_version": "1"})),
        errors.InvalidIdentityFileError, r"damaged FaceIdentity file \(KeyError\('score'\)\)",
    ),
    "a text score": (
        lambda i, t: _metadata(i, t, json.dumps({"format": "genface.FaceIdentity", "format_version": "1",
                                                 "score": "high", "image_size": [9, 9], "crop_template": "ffhq"})),
        errors.InvalidIdentityFileError, "damaged FaceIdentity file",
    ),
    "foreign weights": (
        lambda i, t: _save_tensors(t / "model.safetensors"), errors.InvalidIdentityFileError, "not a saved FaceIdentity"
    ),
    "empty file": (lambda i, t: _write(t / "e.safetensors", b""), errors.InvalidIdentityFileError, "not a safetensors"),
    "cut in half": (
        lambda i, t: _cut(i.save(t / "whole.safetensors"), 0.5)(t), errors.InvalidIdentityFileError, "not a safetensors"
    ),
}  # fmt: skip


def _save_tensors(path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2, 2)}, str(path))
    return path


@pytest.mark.parametrize(("name", "case"), IDENTITY_ERRORS.items(), ids=list(IDENTITY_ERRORS))
def test_identity_files(identity, tmp_path: Path, name: str, case) -> None:
    from genface.identity import FaceIdentity

    build, error, message = case
    path = build(identity, tmp_path)
    with pytest.raises(error, match=message) as raised:
        _unchanged(tmp_path, lambda: FaceIdentity.load(path))
    assert "\n" not in str(raised.value)


def test_a_tiny_face_is_no_identity_for_a_video(video_pipe, identity, tmp_path: Path) -> None:
    """A 5x5 black crop once passed as a saved identity and a video was made from it; given as an object (no
    file) it is refused too, as a photo with such a face is."""
    from genface.identity import FaceIdentity

    tiny = FaceIdentity.load(identity.save(tmp_path / "id.safetensors"))
    tiny = dataclasses.replace(tiny, crop=np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(errors.FaceTooSmallError, match="The identity holds a face of only 5 pixels"):
        video_pipe("a person", identity=tiny, height=64, width=64, num_frames=5, num_inference_steps=1)


def test_identity_files_and_prepared_folders_are_as_readable_as_other_outputs(
    identity, talk_pipe, tmp_path: Path
) -> None:
    umask = os.umask(0o022)
    try:
        saved = identity.save(tmp_path / "id.safetensors")
        talk_pipe.prepare(sample_path("astronaut"), cache=tmp_path / "prepared")
    finally:
        os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [saved, *tmp_path.glob("prepared*"), *(tmp_path /
             "prepared").iterdir()]}  # fmt: skip
    assert modes == {"id.safetensors": 0o644, "prepared": 0o755, "prepared.json": 0o644, "prepared.safetensors": 0o644}


# --- prompts and seeds --------------------------------------------------------------------------------


def test_long_prompts_with_nul_and_extreme_seeds(video_pipe, identity, dlib_analyzer) -> None:
    """OK: a 100,000-character prompt holding NULs is cut to the text encoders' length; the largest seed a
    generator takes gives a video."""
    from genface.pipelines.makeup.tiny import tiny_pipeline

    prompt = "a person\0 smiling " * 5600
    generator = torch.Generator().manual_seed(2**64 - 1)
    frames = video_pipe(prompt, identity=identity, height=64, width=64, num_frames=5, num_inference_steps=1,
                        generator=generator, output_type="np").frames  # fmt: skip
    assert frames.shape[2:] == (64, 64, 3) and np.isfinite(frames).all()
    makeup = tiny_pipeline(dlib_analyzer)
    face = load_image(sample_path("astronaut"))
    result = makeup(face, face, prompt=prompt, size=32, num_inference_steps=1, output_type="np")
    assert result.images[0].shape == face.shape


# --- interruptions and races --------------------------------------------------------------------------


def _interrupt_on_second_call(method: Callable[..., Any]) -> Callable[..., Any]:
    calls = []

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return method(*args, **kwargs)

    return interrupted


@pytest.mark.parametrize("pipeline", ["talking_face", "talking_portrait"])
def test_ctrl_c_mid_render_leaves_no_file(talk_pipe, portrait_pipe, inputs: Path, monkeypatch, pipeline) -> None:
    """Ctrl-C after the first frames were encoded: the partial mp4 beside the output is removed."""
    speech = _wav(inputs / "long.wav", speech_like(0.8), 16000)
    out = inputs / "out.mp4"
    if pipeline == "talking_face":
        monkeypatch.setattr(talk_pipe, "render", _interrupt_on_second_call(talk_pipe.render))
        run = lambda: talk_pipe(inputs / "face.png", speech, output_path=out, batch_size=4)  # noqa: E731
    else:
        monkeypatch.setattr(portrait_pipe, "render", _interrupt_on_second_call(portrait_pipe.render))
        run = lambda: portrait_pipe(inputs / "face.png", speech, output_path=out, num_inference_steps=1,  # noqa: E731
                                    batch_size=4)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        _unchanged(inputs, run)


def test_two_writers_of_one_output_leave_one_whole_file(tmp_path: Path) -> None:
    """OK: two runs writing one output at once each write their own partial file; the last to finish wins, whole."""
    from genface.media.video import VideoWriter

    out, barrier = tmp_path / "out.mp4", threading.Barrier(2)
    clips = [np.full((6, 32, 32, 3), value, np.uint8) for value in (40, 200)]

    def write(clip: np.ndarray) -> None:
        with VideoWriter(out, 25) as writer:
            writer.write(clip[:3])
            barrier.wait()  # both partial files exist now
            writer.write(clip[3:])

    threads = [threading.Thread(target=write, args=(clip,)) for clip in clips]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    frames = read_video(out)[0]
    assert frames.shape == (6, 32, 32, 3) and any(np.abs(frames.astype(int) - c).max() < 4 for c in clips)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
