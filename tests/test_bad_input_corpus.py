"""The bad-input corpus: every case is generated here and asserts either the exact exception type with a
helpful message, or the documented graceful behaviour (marked OK)."""

from __future__ import annotations

import io
import os
import pickle
import re
import struct
import wave
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from genface import errors
from genface.media import load_audio, load_image, read_video, write_video
from genface.samples import sample_path

OK = None  # expected outcome: no exception (the check function asserts the graceful result)


def _astronaut() -> np.ndarray:
    return load_image(sample_path("astronaut"))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _encoded(array: np.ndarray, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + end


def _wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        scale = 2 ** (8 * width - 1) - 1
        ints = np.clip(samples, -1, 1) * scale
        if width == 2:
            handle.writeframes(ints.astype("<i2").tobytes())
        else:  # 24-bit little endian
            ints = ints.astype("<i4")
            handle.writeframes(b"".join(int(v).to_bytes(4, "little", signed=True)[:3] for v in ints.reshape(-1)))
    return path


def _tone(rate: int, seconds: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def _exif_rotated(tmp: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp / f"rot{orientation}.jpg"
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(path, exif=exif)
    return path


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def _evil(tmp: Path, name: str) -> Path:
    with open(tmp / name, "wb") as handle:
        pickle.dump({"weight": _Payload(tmp / "pwned")}, handle)
    return tmp / name


# --- images -------------------------------------------------------------------------------------------


def _truncated(fmt: str, fraction: float) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        data = _encoded(np.tile(_astronaut(), (1, 1, 1)), fmt)
        return _write(tmp / f"cut.{fmt.lower()}", data[: int(len(data) * fraction)])

    return build


IMAGE_ERRORS = {
    "empty jpg": (lambda t: _write(t / "e.jpg", b""), errors.InvalidImageError, "empty"),
    "empty png": (lambda t: _write(t / "e.png", b""), errors.InvalidImageError, "empty"),
    "html saved as jpg": (
        lambda t: _write(t / "p.jpg", b"<html><body>hi</body></html>"),
        errors.InvalidImageError,
        "not an image",
    ),
    "text saved as png": (lambda t: _write(t / "t.png", b"hello world" * 50), errors.InvalidImageError, "not an image"),
    "zip saved as jpg": (
        lambda t: _write(t / "z.jpg", b"PK\x03\x04" + b"\x00" * 200),
        errors.InvalidImageError,
        "not an image",
    ),
    "jpeg cut at 10%": (_truncated("JPEG", 0.1), errors.InvalidImageError, "truncated or corrupt"),
    "jpeg cut at 50%": (_truncated("JPEG", 0.5), errors.InvalidImageError, "truncated or corrupt"),
    "jpeg cut at 90%": (_truncated("JPEG", 0.9), errors.InvalidImageError, "truncated or corrupt"),
    "png cut at 10%": (_truncated("PNG", 0.1), errors.InvalidImageError, "truncated or corrupt"),
    "png cut at 50%": (_truncated("PNG", 0.5), errors.InvalidImageError, "truncated or corrupt"),
    "png cut at 90%": (_truncated("PNG", 0.9), errors.InvalidImageError, "truncated or corrupt"),
    "81 MP header": (
        lambda t: _write(t / "b.png", _png_header(9000, 9000)),
        errors.InvalidImageError,
        "decompression bombs",
    ),
    "400 MP header (bomb)": (
        lambda t: _write(t / "b.png", _png_header(20000, 20000)),
        errors.InvalidImageError,
        "decompression bombs",
    ),
    "missing file": (lambda t: t / "nope.jpg", errors.InvalidImageError, "not found"),
    "a directory": (lambda t: t, errors.InvalidImageError, "not found"),
    "zero-size array": (lambda t: np.zeros((0, 5, 3), np.uint8), errors.InvalidImageError, "no pixels"),
    "five channels": (lambda t: np.zeros((4, 4, 5), np.uint8), errors.InvalidImageError, "shape"),
    "1-d array": (lambda t: np.zeros(12, np.uint8), errors.InvalidImageError, "no pixels|shape"),
    "NaN pixels": (lambda t: np.full((4, 4, 3), np.nan, np.float32), errors.InvalidImageError, "NaN"),
    "infinite pixels": (lambda t: np.full((4, 4, 3), np.inf, np.float32), errors.InvalidImageError, "NaN or infinite"),
    "int64 pixels": (lambda t: np.zeros((4, 4, 3), np.int64), errors.InvalidImageError, "dtype"),
    "bool pixels": (lambda t: np.zeros((4, 4, 3), bool), errors.InvalidImageError, "dtype"),
    "not an image object": (lambda t: 42, errors.InvalidImageError, "pass a path"),
}


def _loads_as(shape: tuple[int, ...]) -> Callable[[np.ndarray], None]:
    def check(result: np.ndarray) -> None:
        assert result.dtype == np.uint8 and result.shape == shape

    return check


def _mode(mode: str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (9, 7, 3), dtype=np.uint8))
        if mode == "I;16":
            image = Image.fromarray(np.full((9, 7), 40000, np.uint16))
        else:
            image = image.convert(mode)
        path = tmp / f"m.{'jpg' if mode == 'CMYK' else 'png' if mode != 'P-gif' else 'gif'}"
        image.save(path)
        return path

    return build


IMAGE_GRACEFUL = {
    "grayscale": (_mode("L"), _loads_as((9, 7, 3))),
    "CMYK jpeg": (_mode("CMYK"), _loads_as((9, 7, 3))),
    "RGBA": (_mode("RGBA"), _loads_as((9, 7, 3))),
    "gray + alpha": (_mode("LA"), _loads_as((9, 7, 3))),
    "16-bit": (_mode("I;16"), lambda r: np.testing.assert_array_equal(r, np.full((9, 7, 3), 156, np.uint8))),
    "palette": (_mode("P"), _loads_as((9, 7, 3))),
    "EXIF orientation 3": (lambda t: _exif_rotated(t, 3), _loads_as((10, 20, 3))),
    "EXIF orientation 6": (lambda t: _exif_rotated(t, 6), _loads_as((20, 10, 3))),
    "EXIF orientation 8": (lambda t: _exif_rotated(t, 8), _loads_as((20, 10, 3))),
    "PNG named .jpg": (
        lambda t: _write(t / "x.jpg", _encoded(np.zeros((5, 6, 3), np.uint8), "PNG")),
        _loads_as((5, 6, 3)),
    ),
    "JPEG named .png": (
        lambda t: _write(t / "x.png", _encoded(np.zeros((5, 6, 3), np.uint8), "JPEG")),
        _loads_as((5, 6, 3)),
    ),
    "1x1": (lambda t: _write(t / "one.png", _encoded(np.zeros((1, 1, 3), np.uint8), "PNG")), _loads_as((1, 1, 3))),
    "animated gif": (
        lambda t: (
            Image.new("RGB", (4, 4), (255, 0, 0)).save(
                t / "a.gif", save_all=True, append_images=[Image.new("RGB", (4, 4), (0, 0, 255))]
            ),
            t / "a.gif",
        )[1],
        lambda r: np.testing.assert_array_less(r[..., 2].astype(int), 60),  # the first (red) frame
    ),
    "uint16 array": (lambda t: np.full((3, 3, 3), 65535, np.uint16), lambda r: np.testing.assert_array_equal(r, 255)),
    "float array": (lambda t: np.full((3, 3), 0.5, np.float32), lambda r: np.testing.assert_array_equal(r, 128)),
}


@pytest.mark.parametrize(("name", "case"), IMAGE_ERRORS.items(), ids=list(IMAGE_ERRORS))
def test_image_errors(tmp_path: Path, name: str, case) -> None:
    build, error, message = case
    with pytest.raises(error, match=message):
        load_image(build(tmp_path))


@pytest.mark.parametrize(("name", "case"), IMAGE_GRACEFUL.items(), ids=list(IMAGE_GRACEFUL))
def test_image_graceful(tmp_path: Path, name: str, case) -> None:
    build, check = case
    check(load_image(build(tmp_path)))


def test_image_url_offline(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(errors.OfflineError, match="local path"):
        load_image("http://example.com/a.jpg")


# --- faces --------------------------------------------------------------------------------------------

FACE_CASES = {
    "blank": (lambda: np.full((200, 200, 3), 128, np.uint8), {}, errors.NoFaceError, "No face found"),
    "noise": (
        lambda: np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8),
        {},
        errors.NoFaceError,
        "No face",
    ),
    "1x1 photo": (lambda: np.zeros((1, 1, 3), np.uint8), {}, errors.NoFaceError, "No face"),
    "upside down": (lambda: _astronaut()[::-1], {}, errors.NoFaceError, "roughly frontal"),
    "several faces, one required": (
        lambda: load_image(sample_path("group")),
        {"require_single": True},
        errors.MultipleFacesError,
        "face_index",
    ),
    "face index out of range": (_astronaut, {"face_index": 3}, errors.NoFaceError, "indexed 0 to 0"),
    "face too small": (
        lambda: np.asarray(Image.fromarray(_astronaut()).resize((200, 200))),
        {},
        errors.FaceTooSmallError,
        "larger or closer",
    ),
}


@pytest.mark.parametrize(("name", "case"), FACE_CASES.items(), ids=list(FACE_CASES))
def test_face_cases(dlib_analyzer, name: str, case) -> None:
    from genface.identity import FaceAnalyzer

    build, kwargs, error, message = case
    analyzer = FaceAnalyzer(dlib_analyzer.backend, min_face_size=48)
    with pytest.raises(error, match=message):
        analyzer.get(build(), **kwargs)


def test_face_cut_off_at_the_border_is_still_found_or_refused_clearly(dlib_analyzer) -> None:
    shifted = np.zeros_like(_astronaut())
    shifted[:, :300] = _astronaut()[:, 212:]  # the face's right half falls outside
    try:
        face = dlib_analyzer.get(shifted)
    except errors.NoFaceError:
        return
    assert face.bbox[0] < 100  # found where it is


# --- audio --------------------------------------------------------------------------------------------

AUDIO_ERRORS = {
    "empty wav": (lambda t: _write(t / "e.wav", b""), {}, errors.InvalidMediaError, "empty"),
    "text as wav": (
        lambda t: _write(t / "x.wav", b"not audio at all " * 20),
        {},
        errors.InvalidMediaError,
        "could not be decoded",
    ),
    "missing": (lambda t: t / "none.wav", {}, errors.InvalidMediaError, "not found"),
    "NaN samples": (
        lambda t: np.array([0.0, np.nan], np.float32),
        {"source_rate": 16000},
        errors.InvalidMediaError,
        "NaN",
    ),
    "infinite samples": (
        lambda t: np.array([np.inf, 0.0], np.float32),
        {"source_rate": 16000},
        errors.InvalidMediaError,
        "NaN or infinite",
    ),
    "array without a rate": (lambda t: np.zeros(100, np.float32), {}, errors.InvalidMediaError, "source_rate"),
    "negative target rate": (
        lambda t: np.zeros(100, np.float32),
        {"source_rate": 16000, "sample_rate": -1},
        errors.InvalidMediaError,
        "positive",
    ),
    "video without audio": (
        lambda t: write_video(t / "v.mp4", np.zeros((2, 16, 16, 3), np.uint8)),
        {},
        errors.InvalidMediaError,
        "no audio stream",
    ),
    "65 channels": (
        lambda t: _wav(t / "many.wav", np.zeros(65 * 100, np.float32), 16000, channels=65),
        {},
        errors.InvalidMediaError,
        "65 channels; genface reads at most 64",
    ),
    "samples x channels array": (
        lambda t: np.zeros((16000, 2), np.float32),
        {"source_rate": 16000},
        errors.InvalidMediaError,
        r"shape \(16000, 2\) \(channels, samples\) has 16000 channels",
    ),
    "empty array": (lambda t: np.zeros(0, np.float32), {"source_rate": 16000}, errors.InvalidMediaError, "no samples"),
    "3-d array": (lambda t: np.zeros((1, 2, 9), np.float32), {"source_rate": 16000}, errors.InvalidMediaError, "shape"),
    "wav with no samples": (
        lambda t: _wav(t / "z.wav", np.zeros(0, np.float32), 16000),
        {},
        errors.InvalidMediaError,
        "no samples|could not be decoded",
    ),
}

AUDIO_GRACEFUL = {
    "silence": (
        lambda t: _wav(t / "s.wav", np.zeros(16000, np.float32), 16000),
        lambda a: np.testing.assert_array_equal(a, 0),
    ),
    "0.1 s": (
        lambda t: _wav(t / "short.wav", _tone(16000, 0.1), 16000),
        lambda a: np.testing.assert_allclose(len(a), 1600, rtol=0.05),
    ),
    "8 kHz": (
        lambda t: _wav(t / "8k.wav", _tone(8000, 1.0), 8000),
        lambda a: np.testing.assert_allclose(len(a), 16000, rtol=0.02),
    ),
    "96 kHz": (
        lambda t: _wav(t / "96k.wav", _tone(96000, 0.5), 96000),
        lambda a: np.testing.assert_allclose(len(a), 8000, rtol=0.02),
    ),
    "stereo": (
        lambda t: _wav(t / "st.wav", np.repeat(_tone(16000, 0.5), 2), 16000, channels=2),
        lambda a: a.ndim == 1 or pytest.fail("not mono"),
    ),
    "24-bit": (
        lambda t: _wav(t / "24.wav", _tone(16000, 0.2), 16000, width=3),
        lambda a: np.testing.assert_allclose(np.abs(a).max(), 0.3, atol=0.02),
    ),
    "header says 2 h": (
        lambda t: _write(
            t / "long.wav",
            _wav(t / "tmp.wav", _tone(16000, 0.5), 16000).read_bytes()[:40]
            + struct.pack("<I", 2 * 3600 * 32000)
            + _wav(t / "tmp2.wav", _tone(16000, 0.5), 16000).read_bytes()[44:],
        ),
        lambda a: np.testing.assert_allclose(len(a), 8000, rtol=0.05),  # decodes what is there
    ),
}


@pytest.mark.parametrize(("name", "case"), AUDIO_ERRORS.items(), ids=list(AUDIO_ERRORS))
def test_audio_errors(tmp_path: Path, name: str, case) -> None:
    build, kwargs, error, message = case
    with pytest.raises(error, match=message):
        load_audio(build(tmp_path), **kwargs)


@pytest.mark.parametrize(("name", "case"), AUDIO_GRACEFUL.items(), ids=list(AUDIO_GRACEFUL))
def test_audio_graceful(tmp_path: Path, name: str, case) -> None:
    build, check = case
    check(load_audio(build(tmp_path), 16000))


# --- video --------------------------------------------------------------------------------------------

VIDEO_ERRORS = {
    "empty file": (lambda t: _write(t / "e.mp4", b""), errors.InvalidMediaError, "could not be decoded|no video"),
    "junk": (lambda t: _write(t / "j.mp4", b"\x00\x01" * 500), errors.InvalidMediaError, "could not be decoded"),
    "missing": (lambda t: t / "none.mp4", errors.InvalidMediaError, "not found"),
    "audio only": (lambda t: _wav(t / "a.wav", _tone(16000, 0.2), 16000), errors.InvalidMediaError, "no video stream"),
}

VIDEO_GRACEFUL = {
    "one frame": (lambda t: write_video(t / "one.mp4", np.zeros((1, 32, 32, 3), np.uint8)), (1, 32, 32, 3)),
    "odd size": (lambda t: write_video(t / "odd.mp4", np.zeros((3, 31, 45, 3), np.uint8)), (3, 32, 46, 3)),
    "portrait orientation": (lambda t: write_video(t / "tall.mp4", np.zeros((2, 64, 16, 3), np.uint8)), (2, 64, 16, 3)),
    "rotated 90 (display matrix)": (lambda t: _rotated_video(t / "rotated.mp4", 90), (2, 64, 32, 3)),
    "rotated 180 (display matrix)": (lambda t: _rotated_video(t / "upside.mp4", 180), (2, 32, 64, 3)),
}


def _rotated_video(path: Path, degrees: int) -> Path:
    """A 64x32 video (white left edge) whose container says to show it rotated (as phones record)."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(degrees)
        frame = np.zeros((32, 64, 3), np.uint8)
        frame[:, :8] = 255
        for _ in range(2):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def test_rotated_video_is_read_upright(tmp_path: Path) -> None:
    """Display rotation 90 is counter-clockwise: the white left edge ends up at the bottom; 180: on the right."""
    quarter = read_video(_rotated_video(tmp_path / "q.mp4", 90))[0][0, :, :, 0].astype(float)
    half = read_video(_rotated_video(tmp_path / "h.mp4", 180))[0][0, :, :, 0].astype(float)
    assert quarter[-8:].mean() > 240 and quarter[:-8].mean() < 15
    assert half[:, -8:].mean() > 240 and half[:, :-8].mean() < 15


@pytest.mark.parametrize(("name", "case"), VIDEO_ERRORS.items(), ids=list(VIDEO_ERRORS))
def test_video_errors(tmp_path: Path, name: str, case) -> None:
    build, error, message = case
    with pytest.raises(error, match=message):
        read_video(build(tmp_path))


@pytest.mark.parametrize(("name", "case"), VIDEO_GRACEFUL.items(), ids=list(VIDEO_GRACEFUL))
def test_video_graceful(tmp_path: Path, name: str, case) -> None:
    build, shape = case
    assert read_video(build(tmp_path))[0].shape == shape


# --- weights ------------------------------------------------------------------------------------------


def _load_parser(path: Path) -> Any:
    from genface.identity import FaceParser

    return FaceParser.from_pretrained(path)


def _bisenet_state(**changes: torch.Tensor) -> dict[str, torch.Tensor]:
    from genface.identity import BiSeNet

    return {**BiSeNet().state_dict(), **changes}


def _save(tmp: Path, name: str, state: Any) -> Path:
    torch.save(state, tmp / name)
    return tmp / name


def _eva(path: Path) -> Any:
    from genface.identity import EvaClipVisionModel

    return EvaClipVisionModel.from_eva_checkpoint(path)


def _injector(path: Path) -> Any:
    from genface.models import makeup

    return makeup.MakeupInjector.from_published_checkpoint(path)


def _identity(path: Path) -> Any:
    from genface.identity import FaceIdentity

    return FaceIdentity.load(path)


def _insightface(path: Path) -> Any:
    from genface.identity import FaceAnalyzer

    return FaceAnalyzer("insightface", model_root=path)


WEIGHT_CASES = {
    "parser: empty folder": (lambda t: t, _load_parser, errors.MissingWeightsError, "No face-parsing weights"),
    "parser: missing file": (
        lambda t: t / "parsing_bisenet.pth",
        _load_parser,
        errors.MissingWeightsError,
        "does not exist|not found",
    ),
    "parser: wrong keys": (
        lambda t: _save(t, "a.pth", {"conv_out.conv_out.weight": torch.zeros(19, 256, 1, 1), "x": torch.zeros(1)}),
        _load_parser,
        errors.MissingWeightsError,
        "not a BiSeNet",
    ),
    "parser: wrong shapes": (
        lambda t: _save(t, "b.pth", _bisenet_state(**{"cp.resnet.conv1.weight": torch.zeros(8, 3, 7, 7)})),
        _load_parser,
        errors.MissingWeightsError,
        "not a BiSeNet",
    ),
    "parser: pickle with code": (
        lambda t: _evil(t, "parsing_bisenet.pth"),
        _load_parser,
        errors.UnsafeWeightsError,
        "weights_only",
    ),
    "eva: pickle with code": (lambda t: _evil(t, "eva.pt"), _eva, errors.UnsafeWeightsError, "weights_only"),
    "eva: unrelated tensors": (
        lambda t: _save(t, "eva.pt", {"visual.foo": torch.zeros(2)}),
        _eva,
        errors.MissingWeightsError,
        "does not match",
    ),
    "injector: pickle with code": (
        lambda t: _evil(t, "checkpoint.pt"),
        _injector,
        errors.UnsafeWeightsError,
        "weights_only",
    ),
    "injector: base-model tensors": (
        lambda t: _save(t, "c.pt", {"transformer.x_embedder.weight": torch.zeros(1)}),
        _injector,
        errors.MissingWeightsError,
        "outside the reference injector",
    ),
    "injector: missing file": (lambda t: t / "checkpoint.pt", _injector, errors.MissingWeightsError, "not found"),
    "identity: junk file": (
        lambda t: _write(t / "id.safetensors", b"junk"),
        _identity,
        errors.InvalidIdentityFileError,
        "not a safetensors",
    ),
    "identity: missing": (lambda t: t / "none.safetensors", _identity, errors.MissingWeightsError, "not found"),
    "insightface: empty folder": (lambda t: t, _insightface, errors.MissingWeightsError, "looked in"),
    "insightface: corrupt onnx": (
        lambda t: _write(t / "glintr100.onnx", b"not onnx").parent,
        _insightface,
        errors.MissingWeightsError,
        "not a valid model",
    ),
}


@pytest.mark.parametrize(("name", "case"), WEIGHT_CASES.items(), ids=list(WEIGHT_CASES))
def test_weight_cases(tmp_path: Path, name: str, case) -> None:
    build, load, error, message = case
    with pytest.raises(error, match=message):
        load(build(tmp_path))
    assert not (tmp_path / "pwned").exists()


def test_hub_cases(monkeypatch) -> None:
    import huggingface_hub.constants

    from genface.identity import FaceAnalyzer, IdentityEncoder

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(errors.OfflineError, match="--local-dir DIR"):
        IdentityEncoder.from_pretrained("someone/missing-repo", subfolder="face_encoder")
    with pytest.raises(errors.MissingWeightsError, match="owner/name"):
        FaceAnalyzer.from_pretrained("a/b/c")
    with pytest.raises(errors.MissingWeightsError, match="does not exist"):
        FaceAnalyzer.from_pretrained("weights.onnx")
    with pytest.raises(errors.MissingWeightsError, match="does not exist"):
        FaceAnalyzer.from_pretrained("weights/parsing_bisenet.pth")
    # a dotted repo name is a repo id (once refused as a missing file, so Stand-In's Wan base never loaded)
    with pytest.raises(errors.OfflineError, match="hf download Wan-AI/Wan2.1-T2V-14B-Diffusers"):
        FaceAnalyzer.from_pretrained("Wan-AI/Wan2.1-T2V-14B-Diffusers")
    # Stand-In reads the base's model_index.json first; the hint asks for the whole base, which it loads next
    from genface.pipelines import StandInPipeline

    with pytest.raises(errors.OfflineError, match=r"hf download Wan-AI/Wan2.1-T2V-14B-Diffusers --local-dir DIR"):
        StandInPipeline.from_pretrained("Wan-AI/Wan2.1-T2V-14B-Diffusers")


# --- arguments ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video_pipe(dlib_analyzer):
    from genface.pipelines.identity_video.tiny import tiny_identity_encoder, tiny_pipeline

    pipe = tiny_pipeline(tiny_identity_encoder(dlib_analyzer))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def identity(video_pipe):
    return video_pipe.identity_encoder.encode(_astronaut())


VIDEO_ARGUMENTS = {
    "0 frames": ({"num_frames": 0}, errors.InvalidArgumentError, r"4k\+1"),
    "2 frames": ({"num_frames": 2}, errors.InvalidArgumentError, r"4k\+1 \(got 2\); try 1 or 5"),
    "8 frames": ({"num_frames": 8}, errors.InvalidArgumentError, r"try 5 or 9"),
    "50 frames": ({"num_frames": 50}, errors.InvalidArgumentError, r"try 49 or 53"),
    "0 steps": ({"num_inference_steps": 0}, errors.InvalidArgumentError, "must be from 1 to 1000, got 0"),
    "negative steps": ({"num_inference_steps": -3}, errors.InvalidArgumentError, "must be from 1 to"),
    "height not a multiple of 16": ({"height": 72}, errors.InvalidArgumentError, "multiples of 16"),
    "0 height": ({"height": 0}, errors.InvalidArgumentError, "positive multiples of 16"),
    "width not a multiple of 16": ({"width": 100}, errors.InvalidArgumentError, "multiples of 16"),
    "huge size": ({"height": 4096, "width": 4096}, errors.InvalidArgumentError, "fit 64x64 only"),
}


@pytest.mark.parametrize(("name", "case"), VIDEO_ARGUMENTS.items(), ids=list(VIDEO_ARGUMENTS))
def test_video_arguments(video_pipe, identity, name: str, case) -> None:
    kwargs, error, message = case
    settings = {"height": 64, "width": 64, "num_frames": 9, "num_inference_steps": 1, **kwargs}
    with pytest.raises(error, match=message):
        video_pipe("a person", identity=identity, **settings)


def test_other_video_arguments(video_pipe, identity) -> None:
    settings = {"height": 64, "width": 64, "num_frames": 9, "num_inference_steps": 1}
    with pytest.raises(errors.InvalidArgumentError, match="Give face_image .* or identity"):
        video_pipe("a person", **settings)
    with pytest.raises(errors.InvalidArgumentError, match="exactly one"):
        video_pipe("a person", face_image=_astronaut(), identity=identity, **settings)
    with pytest.raises(errors.NoFaceError, match="indexed 0 to 0"):
        video_pipe("a person", face_image=_astronaut(), face_index=9, **settings)
    with pytest.raises(errors.InvalidArgumentError, match="choose from"):
        video_pipe.set_attention_backend("xformers")
    with pytest.raises(errors.InvalidArgumentError, match="choose from"):
        video_pipe.enable_low_memory("everything")
    empty_prompt = video_pipe("", identity=identity, output_type="np", **settings)  # OK: an empty prompt is allowed
    assert empty_prompt.frames.shape == (1, 9, 64, 64, 3)


def test_makeup_arguments(dlib_analyzer) -> None:
    from genface.pipelines.makeup.tiny import tiny_pipeline

    pipe = tiny_pipeline(dlib_analyzer)
    with pytest.raises(errors.InvalidArgumentError, match=r"\['freckles'\]"):
        pipe.check_regions(["lips", "freckles"])
    pipe.check_regions([])  # OK: no regions means the whole face
    with pytest.raises(errors.InvalidArgumentError, match="strength must be from 0.0 to 2.0"):
        pipe(_astronaut(), _astronaut(), strength=-0.5, size=32, num_inference_steps=1)


# --- talking faces ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def talk_pipe(dlib_analyzer):
    from genface.pipelines.talking_face.tiny import tiny_pipeline

    pipe = tiny_pipeline(dlib_analyzer, parser=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _speech(seconds: float) -> np.ndarray:
    return _tone(16000, seconds)


def _photo(t: Path) -> np.ndarray:
    return _astronaut()


_BROKEN_MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(200)
# name: (face, audio, options) built in a temporary folder, the error, and what its message says
TALK_ERRORS = {
    "silent audio": (lambda t: (_photo(t), np.zeros(8000, np.float32), {}), errors.InvalidMediaError, "silent"),
    "audio shorter than a frame": (lambda t: (_photo(t), _speech(0.01), {}), errors.InvalidMediaError, "one frame"),
    "NaN audio": (lambda t: (_photo(t), np.full(8000, np.nan, np.float32), {}), errors.InvalidMediaError, "NaN"),
    "missing audio file": (lambda t: (_photo(t), t / "none.wav", {}), errors.InvalidMediaError, "not found"),
    "text as audio": (lambda t: (_photo(t), _write(t / "s.wav", b"hi " * 99), {}), errors.InvalidMediaError, "decoded"),
    "zero fps": (lambda t: (_photo(t), _speech(0.2), {"fps": 0}), errors.InvalidArgumentError, "fps must be from 1.0"),
    "negative fps": (lambda t: (_photo(t), _speech(0.2), {"fps": -25}), errors.InvalidArgumentError, "fps must be"),
    "batch size 0": (lambda t: (_photo(t), _speech(0.2), {"batch_size": 0}), errors.InvalidArgumentError, "batch_size"),
    "motion on a video": (
        lambda t: (np.stack([_photo(t)] * 2), _speech(0.2), {"motion": lambda photo, i, f0: photo}),
        errors.InvalidArgumentError, "animates a photo",
    ),
    "no face in the photo": (lambda t: (np.full((256, 256, 3), 9, np.uint8), _speech(0.2), {}), errors.NoFaceError, ""),
    "no face in any frame": (
        lambda t: (np.zeros((3, 256, 256, 3), np.uint8), _speech(0.2), {}), errors.NoFaceError, "any of the 3 frame"
    ),
    "corrupt video": (lambda t: (_write(t / "c.mp4", _BROKEN_MP4), _speech(0.2), {}), errors.InvalidMediaError, "dec"),
    "grey frames": (lambda t: (np.zeros((2, 64, 64), np.uint8), _speech(0.2), {}), errors.InvalidImageError, "HxW"),
}  # fmt: skip


@pytest.mark.parametrize(("name", "case"), TALK_ERRORS.items(), ids=list(TALK_ERRORS))
def test_talking_face_errors(talk_pipe, tmp_path: Path, name: str, case) -> None:
    build, error, message = case
    face, audio, options = build(tmp_path)
    rate = None if isinstance(audio, Path) else 16000
    with pytest.raises(error, match=message or None):
        talk_pipe(face, audio, audio_rate=rate, output_path=tmp_path / "o.mp4", **options)
    assert not (tmp_path / "o.mp4").exists()  # nothing that looks like a result is left


def test_talking_face_graceful(talk_pipe, tmp_path: Path) -> None:
    """OK: stereo 44.1 kHz speech from a file, and a face lost in one frame (its box is held there)."""
    speech = _wav(tmp_path / "s.wav", np.stack([_tone(44100, 0.24)] * 2, axis=1), 44100, channels=2)
    face = _photo(tmp_path)
    clip = np.stack([face, np.zeros_like(face), face])
    out = talk_pipe(clip, speech, output_path=tmp_path / "o.mp4", measure=False)
    assert out.lost_frames == [1] and read_video(out.path)[0].shape[0] == 6


def mix_down_many_channels(folder: str) -> None:
    """Run by :func:`test_any_channel_count_is_mixed_down` in a child process (a crash must not kill pytest)."""
    from genface.cli import main

    tmp, tone = Path(folder), _tone(16000, 0.25)
    for channels in (3, 8, 12, 64):
        gains = np.linspace(0.2, 1.0, channels)
        path = _wav(tmp / f"{channels}.wav", (tone[:, None] * gains).reshape(-1), 16000, channels=channels)
        np.testing.assert_allclose(load_audio(path), tone * gains.mean(), atol=2e-4)
    samples = np.stack([tone] * 8)
    np.testing.assert_allclose(load_audio(samples, 16000, mono=False, source_rate=16000), samples, atol=1e-6)
    inputs = ["--face", str(sample_path("astronaut")), "--audio", str(tmp / "8.wav")]
    assert main(["talk", "--model", "tiny", *inputs, "--out", str(tmp / "o.mp4"), "--no-metrics"]) == 0
    assert read_video(tmp / "o.mp4")[0].shape[0] == 6


def test_any_channel_count_is_mixed_down(tmp_path: Path) -> None:
    """OK: 3 to 64 channels (8 or more once crashed the process in PyAV's planar conversion) are averaged to mono,
    also on the way through `genface talk`."""
    import subprocess
    import sys

    code = f"from tests.test_bad_input_corpus import mix_down_many_channels; mix_down_many_channels({str(tmp_path)!r})"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]


# --- command line -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def portrait_pipe(dlib_analyzer):
    from genface.pipelines.talking_portrait.tiny import tiny_pipeline

    pipe = tiny_pipeline(dlib_analyzer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# name: (photo, audio, options) built in a temporary folder, the error, and what its message says
PORTRAIT_ERRORS = {
    "silent audio": (lambda t: (_photo(t), np.zeros(8000, np.float32), {}), errors.InvalidMediaError, "silent"),
    "NaN audio": (lambda t: (_photo(t), np.full(8000, np.nan, np.float32), {}), errors.InvalidMediaError, "NaN"),
    "missing audio file": (lambda t: (_photo(t), t / "none.wav", {}), errors.InvalidMediaError, "not found"),
    "text as audio": (lambda t: (_photo(t), _write(t / "s.wav", b"hi " * 99), {}), errors.InvalidMediaError, "decoded"),
    "a broken video as the source": (
        lambda t: (_write(t / "c.mp4", _BROKEN_MP4), _speech(0.2), {}), errors.InvalidMediaError, "decoded"
    ),
    "no face in the photo": (lambda t: (np.full((256, 256, 3), 9, np.uint8), _speech(0.2), {}), errors.NoFaceError, ""),
    "face index past the faces": (lambda t: (_photo(t), _speech(0.2), {"face_index": 3}), errors.NoFaceError, "index"),
    "NaN head motion": (
        lambda t: (_photo(t), _speech(0.2), {"head_motion": np.nan}), errors.InvalidArgumentError, "head_motion"
    ),
    "negative blink rate": (
        lambda t: (_photo(t), _speech(0.2), {"blink_rate": -1}), errors.InvalidArgumentError, "blink_rate"
    ),
    "NaN pose offset": (
        lambda t: (_photo(t), _speech(0.2), {"pose_offsets": {"yaw": [0, np.nan]}}), errors.InvalidArgumentError,
        "must be from -45.0 to 45.0, got nan",
    ),
    "NaN voice activity on a frame": (
        lambda t: (_photo(t), _speech(0.2), {"vad_alpha": [1, np.nan]}), errors.InvalidArgumentError,
        "vad_alpha must be from 0.0 to 1.0, got nan",
    ),
    "a fade of True frames": (
        lambda t: (_photo(t), _speech(0.2), {"fade_in": True, "fade_type": "s"}), errors.InvalidArgumentError,
        "fade_in must be a whole number from -1 to 90000",
    ),
    "max_size as text": (
        lambda t: (_photo(t), _speech(0.2), {"max_size": "512"}), errors.InvalidArgumentError,
        "max_size must be a whole number from -1 to 16384, got '512'",
    ),
    "smoothing a photo": (
        lambda t: (_photo(t), _speech(0.2), {"smo_k_s": 5}), errors.InvalidArgumentError, "smo_k_s smooths a video",
    ),
    "emotion probabilities of 7": (
        lambda t: (_photo(t), _speech(0.2), {"emotion": [0.1] * 7}), errors.InvalidArgumentError, "emotion"
    ),
}  # fmt: skip


@pytest.mark.parametrize(("name", "case"), PORTRAIT_ERRORS.items(), ids=list(PORTRAIT_ERRORS))
def test_talking_portrait_errors(portrait_pipe, tmp_path: Path, name: str, case) -> None:
    build, error, message = case
    photo, audio, options = build(tmp_path)
    rate = None if isinstance(audio, Path) else 16000
    with pytest.raises(error, match=message or None):
        portrait_pipe(photo, audio, audio_rate=rate, output_path=tmp_path / "o.mp4", num_inference_steps=1, **options)
    assert not (tmp_path / "o.mp4").exists()  # nothing that looks like a result is left


_VIDEO = "video --model tiny --prompt p --face {t}/face.png --out {t}/out.mp4"
_IDENTITY_VIDEO = "video --model tiny --prompt p --out {t}/out.mp4 --identity"
_WAN = "video --model tiny-stand-in --prompt p --face {t}/face.png --out {t}/out.mp4"
_VACE = "video --model tiny-vace --prompt p --face {t}/face.png --out {t}/out.mp4"
_EVAL = "eval video {t} --out {t}/o.jsonl --protocol"
_MAKEUP = "makeup --model tiny --face {t}/face.png --reference {t}/face.png --out {t}/out.png"
_TALK = "talk --model tiny --face {t}/face.png --audio {t}/speech.wav --out {t}/out.mp4"
_LATENTSYNC = "talk --model latentsync --face {t}/face.png --audio {t}/speech.wav --out {t}/out.mp4"
_PORTRAIT = "portrait --model tiny --photo {t}/face.png --audio {t}/speech.wav --out {t}/out.mp4"
_CLIP_PORTRAIT = _PORTRAIT.replace("face.png", "clip.mp4")  # a video source
# name: (command line, {t} the folder of inputs, {locked} an unwritable one), exit code, what the one line says
CLI_ERRORS = {
    "huge --steps": (f"{_VIDEO} --steps 100001", 1, "--steps: must be from 1 to 1000, got 100001"),
    "0 --steps": (f"{_MAKEUP} --steps 0", 1, "--steps: must be from 1"),
    "--steps not a number": (f"{_VIDEO} --steps ten", 1, "'ten' is not an integer"),
    "NaN --guidance": (f"{_VIDEO} --guidance nan", 1, "--guidance: must be from 0.0 to 50.0, got nan"),
    "infinite --guidance": (f"{_MAKEUP} --guidance inf", 1, "--guidance: must be"),
    "negative --guidance": (f"{_MAKEUP} --guidance -1", 1, "--guidance: must be"),
    "NaN --strength": (f"{_MAKEUP} --strength nan", 1, "--strength: must be from 0.0 to 2.0"),
    "huge --strength": (f"{_MAKEUP} --strength 1e9", 1, "--strength: must be"),
    "0 --frames": (f"{_VIDEO} --frames 0", 1, "--frames: must be from 1 to 257, got 0"),
    "huge --frames": (f"{_VIDEO} --frames 100001", 1, "--frames: must be"),
    "0 --height": (f"{_VIDEO} --height 0", 1, "--height: must be from 16"),
    "0 --width": (f"{_VIDEO} --width 0", 1, "--width: must be from 16"),
    "huge --width": (f"{_VIDEO} --width 100000", 1, "--width: must be"),
    "huge video --fps": (f"{_VIDEO} --fps 1000", 1, "--fps: must be from 1.0 to 120.0"),
    "NaN video --fps": (f"{_VIDEO} --fps nan", 1, "--fps: must be"),
    "huge talk --fps": (f"{_TALK} --fps 1000", 1, "--fps: must be"),
    "0 talk --fps": (f"{_TALK} --fps 0", 1, "--fps: must be"),
    "huge LatentSync --guidance": (f"{_LATENTSYNC} --guidance 21", 1, "--guidance: must be from 0.0 to 20.0, got 21"),
    "NaN LatentSync --guidance": (f"{_LATENTSYNC} --guidance nan", 1, "--guidance: must be from 0.0 to 20.0"),
    "--resolution not of 64s": (f"{_LATENTSYNC} --resolution 100", 1, "--resolution must be a multiple of 64"),
    "huge --resolution": (f"{_LATENTSYNC} --resolution 4096", 1, "--resolution: must be from 64 to 1024"),
    "--unet-config missing": (f"{_LATENTSYNC} --unet-config {{t}}/none.yaml", 1, "none.yaml is not a file"),
    "--unet-config and --resolution": (f"{_LATENTSYNC} --unet-config a.yaml --resolution 256", 1, "not allowed with"),
    "unknown --silence": (f"{_TALK} --silence quiet", 1, "--silence: invalid choice: 'quiet'"),
    "unknown --blend": (f"{_TALK} --blend soft", 1, "--blend: invalid choice: 'soft'"),
    "--steps with MuseTalk": (f"{_TALK} --steps 20", 1, "--steps is LatentSync's; --model tiny is MuseTalk"),
    "--blend with LatentSync": (f"{_LATENTSYNC} --blend realtime", 1, "--blend is MuseTalk's; --model latentsync is"),
    "--vae with a tiny model": (f"{_TALK} --vae {{t}}", 1, "--vae choose published weights"),
    "NaN --head-motion": (f"{_PORTRAIT} --head-motion nan", 1, "--head-motion: must be from 0.0 to 3.0"),
    "negative --blink-rate": (f"{_PORTRAIT} --blink-rate -1", 1, "--blink-rate: must be from 0.0 to 120.0"),
    "huge --yaw": (f"{_PORTRAIT} --yaw 46", 1, "--yaw: must be from -45.0 to 45.0"),
    "unknown --emotion": (f"{_PORTRAIT} --emotion calm", 1, "--emotion: 'calm': choose from"),
    "NaN --alpha-yaw": (f"{_PORTRAIT} --alpha-yaw nan", 1, r"--alpha-yaw: must be from 0\.0 to 3\.0, got nan"),
    "negative --alpha-roll": (f"{_PORTRAIT} --alpha-roll -1", 1, "--alpha-roll: must be from 0.0 to 3.0"),
    "huge --alpha-pitch": (f"{_PORTRAIT} --alpha-pitch 1e9", 1, "--alpha-pitch: must be from 0.0 to 3.0"),
    "--vad-alpha over 1": (f"{_PORTRAIT} --vad-alpha 1.01", 1, r"--vad-alpha: must be from 0\.0 to 1\.0, got 1\.01"),
    "--fade-in below -1": (f"{_PORTRAIT} --fade-in -5", 1, "--fade-in: must be from -1 to 90000, got -5"),
    "--fade-out not whole": (f"{_PORTRAIT} --fade-out 2.5", 1, "--fade-out: '2.5' is not an integer"),
    "huge --fade-out": (f"{_PORTRAIT} --fade-out 1e99", 1, "--fade-out: '1e99' is not an integer"),
    "unknown --fade-type": (f"{_PORTRAIT} --fade-type linear", 1, "--fade-type: invalid choice: 'linear'"),
    "huge --max-size": (f"{_PORTRAIT} --max-size 100000", 1, "--max-size: must be from -1 to 16384, got 100000"),
    "--max-size below -1": (f"{_PORTRAIT} --max-size -2", 1, "--max-size: must be from -1"),
    "0 --source-smoothing": (f"{_PORTRAIT} --source-smoothing 0", 1, "--source-smoothing: must be from 1 to 101"),
    "--source-smoothing with a photo": (f"{_PORTRAIT} --source-smoothing 5", 1, "--source-smoothing smooths a video"),
    "--head-motion with a video source": (f"{_CLIP_PORTRAIT} --head-motion 0.5", 1, "--head-motion and --blink-rate"),
    "--blink-rate with a video source": (f"{_CLIP_PORTRAIT} --blink-rate 10", 1, "apply to a photo: from a video"),
    "empty --emotion": (f"{_PORTRAIT} --emotion ,", 1, "--emotion: ',': choose from"),
    "portrait --out is --photo": (f"{_PORTRAIT} --out {{t}}/face.png", 1, r"end in \.mp4"),
    "portrait --out is --audio": (f"{_PORTRAIT} --audio {{t}}/clip.mp4 --out {{t}}/./clip.mp4", 1, "is also an input"),
    "negative --seed": (f"{_VIDEO} --seed -1", 1, "--seed: must be from 0"),
    "--seed over 64 bits": (f"{_MAKEUP} --seed {2**64}", 1, "--seed: must be"),
    "0 --size": (f"{_MAKEUP} --size 0", 1, "--size: must be from 16 to 2048"),
    "0 --batch-size": (f"{_TALK} --batch-size 0", 1, "--batch-size: must be from 1 to 256"),
    "huge --batch-size": (f"{_TALK} --batch-size 100000", 1, "--batch-size: must be"),
    "negative --face-index": (f"{_VIDEO} --face-index -1", 1, "--face-index: must be from 0 to 999"),
    "identity: huge --face-index": ("identity {t}/face.png --save {t}/me.safetensors --face-index 5000", 1, "999"),
    "0 --port": ("serve --model tiny --port 0", 1, "--port: must be from 1 to 65535"),
    "huge --port": ("serve --model tiny --port 70000", 1, "--port: must be"),
    "0 --concurrency": ("serve --model tiny --concurrency 0", 1, "--concurrency: must be from 1 to 64"),
    "0 --max-queue": ("serve --model tiny --max-queue 0", 1, "--max-queue: must be from 1 to 1000"),
    "0 --attention-head-dim": ("convert {t}/c.pt {t}/new --attention-head-dim 0", 1, "--attention-head-dim"),
    "unknown option": (f"{_VIDEO} --colour red", 1, "unrecognized arguments: --colour red"),
    "--out is a folder": ("video --model tiny --prompt p --face {t}/face.png --out {t}/folder.mp4", 1, "is a folder"),
    "--out without extension": ("video --model tiny --prompt p --face {t}/face.png --out {t}", 1, r"end in \.mp4"),
    "video --out .avi": ("video --model tiny --prompt p --face {t}/face.png --out {t}/o.avi", 1, r"end in \.mp4"),
    "makeup --out .txt": (f"{_MAKEUP} --out {{t}}/o.txt", 1, r"end in \.png or \.jpg or \.jpeg or \.webp"),
    "makeup --out is --face": (f"{_MAKEUP} --out {{t}}/face.png", 1, "is also an input"),
    "talk --out is --face": (f"{_TALK} --face {{t}}/clip.mp4 --out {{t}}/./clip.mp4", 1, "is also an input"),
    "talk --out is --audio": (f"{_TALK} --out {{t}}/speech.wav", 1, r"end in \.mp4"),
    "--out under a file": (f"{_VIDEO} --out {{t}}/face.png/out.mp4", 1, "face.png is a file, not a folder"),
    "--out in an unwritable folder": (f"{_TALK} --out {{locked}}/new/out.mp4", 1, "cannot write in"),
    "identity --save is a folder": ("identity {t}/face.png --save {t}", 1, r"end in \.safetensors"),
    "identity --save .txt": ("identity {t}/face.png --save {t}/id.txt", 1, r"end in \.safetensors"),
    "identity --save under a file": ("identity {t}/face.png --save {t}/face.png/id.safetensors", 1, "not a folder"),
    "convert into a file": ("convert {t}/c.pt {t}/face.png", 1, "exists and is not an empty folder"),
    "convert into a full folder": ("convert {t}/c.pt {t}", 1, "exists and is not an empty folder"),
    "convert a cut LatentSync checkpoint": ("convert {t}/latentsync {t}/new", 1, "not a readable PyTorch checkpoint"),
    "convert --latentsync another file": ("convert {t}/c.pt {t}/new --latentsync", 1, "read as latentsync_unet.pt"),
    "convert onto its source": ("convert {t}/musetalk {t}/musetalk", 1, "also an input"),
    "--device nonsense": (f"{_VIDEO} --device toaster", 1, "'toaster' is not a device name"),
    "--device missing GPU": (f"{_TALK} --device cuda:7", 1, "CUDA device"),
    "--regions unknown": (f"{_MAKEUP} --regions lips,nails", 1, r"Unknown face regions \['nails'\]"),
    "identity: truncated": (f"{_IDENTITY_VIDEO} {{t}}/cut.safetensors", 1, "not a safetensors file"),
    "identity: an image": (f"{_IDENTITY_VIDEO} {{t}}/face.png", 1, "not a safetensors file"),
    "identity: missing": (f"{_IDENTITY_VIDEO} {{t}}/none.safetensors", 1, "Identity file not found"),
    "identity: metadata damaged": (f"{_IDENTITY_VIDEO} {{t}}/no_score.safetensors", 1, "damaged FaceIdentity"),
    "identity: NaN embedding": (f"{_IDENTITY_VIDEO} {{t}}/nan.safetensors", 1, "damaged FaceIdentity"),
    "identity: 2-d crop": (f"{_IDENTITY_VIDEO} {{t}}/flat.safetensors", 1, "damaged FaceIdentity"),
    "video: ConsisID's --dynamic-cfg on Stand-In": (f"{_WAN} --dynamic-cfg", 1, "--dynamic-cfg is for ConsisID only"),
    "video: --no-reference-cache on VACE": (f"{_VACE} --no-reference-cache", 1, "for Stand-In only .* is VACE"),
    "video: --no-reference-cache on ConsisID": (f"{_VIDEO} --no-reference-cache", 1, "for Stand-In only .* ConsisID"),
    "video: unknown tiny model": (_VIDEO.replace("tiny", "tiny-wan", 1), 1, "Unknown tiny model 'tiny-wan'"),
    "video: Wan --frames not 4k+1": (f"{_WAN} --frames 80", 1, r"of the form 4k\+1 \(got 80\); try 77 or 81"),
    "video: NaN Wan --guidance": (f"{_VACE} --guidance nan", 1, "--guidance: must be from 0.0 to 50.0, got nan"),
    "video: Wan --width not a multiple of 16": (f"{_WAN} --width 830", 1, r"--width must be a multiple of 16 \(got"),
    "eval: unknown --protocol": (f"{_EVAL} opens3v", 1, "invalid choice: 'opens3v'"),
    "eval: opens2v with --inception": (f"{_EVAL} opens2v --inception {{t}}/c.pt", 1, "FaceSim only; --inception"),
    "eval: opens2v with --clip": (f"{_EVAL} opens2v --clip x", 1, "OpenS2V-Eval's FaceSim only; --clip"),
    "eval: opens2v, 0 --frames": (f"{_EVAL} opens2v --frames 0", 1, "--frames: must be from 1"),
    "eval consisid-testset: nothing to write": ("eval consisid-testset {t}", 1, "writes --jobs FILE.jsonl"),
    "eval consisid-testset: not the test set": ("eval consisid-testset {t} --jobs {t}/j.jsonl", 1, "not ConsisID's"),
    "eval consisid-testset: --jobs is the CSV": ("eval consisid-testset {t} --jobs {t}/face.png", 1, r"end in \.jsonl"),
}


@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory: pytest.TempPathFactory, dlib_analyzer) -> Path:
    """Every input the command-line cases read, in one folder."""
    import dataclasses
    import json

    from safetensors.numpy import load_file, save_file

    from genface.identity import IdentityEncoder

    t = tmp_path_factory.mktemp("cli")
    _write(t / "face.png", sample_path("astronaut").read_bytes())
    _wav(t / "speech.wav", _tone(16000, 0.3), 16000)
    write_video(t / "clip.mp4", np.zeros((2, 32, 32, 3), np.uint8))
    _write(t / "c.pt", b"")
    (t / "folder.mp4").mkdir()
    (t / "musetalk").mkdir()
    (t / "latentsync").mkdir()
    _write(t / "latentsync" / "latentsync_unet.pt", b"PK\x03\x04 cut short")
    identity = IdentityEncoder(dlib_analyzer).encode(t / "face.png")
    data = identity.save(t / "id.safetensors").read_bytes()
    _write(t / "cut.safetensors", data[: len(data) // 2])
    meta = json.loads(_identity_meta(t / "id.safetensors"))
    del meta["score"]
    save_file(load_file(t / "id.safetensors"), t / "no_score.safetensors", metadata={"genface": json.dumps(meta)})
    dataclasses.replace(identity, recognition=identity.recognition * np.nan).save(t / "nan.safetensors")
    dataclasses.replace(identity, crop=identity.crop[..., 0]).save(t / "flat.safetensors")
    (t / "locked").mkdir(mode=0o500)
    return t


def _identity_meta(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        return handle.metadata()["genface"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"/" for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(("name", "case"), CLI_ERRORS.items(), ids=list(CLI_ERRORS))
def test_cli_errors(cli_inputs: Path, monkeypatch, capsys, name: str, case) -> None:
    """One line on stderr and the exit code, before any model work; no file left behind, no input changed."""
    import shlex

    import genface.identity
    import genface.pipelines
    from genface.cli import main

    line, code, message = case
    # root writes anywhere but where the kernel refuses files
    locked = "/sys" if os.geteuid() == 0 else cli_inputs / "locked"
    argv = shlex.split(line.format(t=cli_inputs, locked=locked))
    monkeypatch.setattr(genface.pipelines, "load_pipeline", lambda *a, **k: pytest.fail("model work started"))
    monkeypatch.setattr(genface.identity, "FaceAnalyzer", lambda *a, **k: pytest.fail("model work started"))
    before = _snapshot(cli_inputs)
    try:
        exit_code = main(argv)
    except SystemExit as exc:
        exit_code = exc.code
    err = capsys.readouterr().err
    assert exit_code == code and err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(message, err), err
    assert _snapshot(cli_inputs) == before


# --- command line: a newcomer's first hour (issue 27, cli28) ------------------------------------------------------


@pytest.fixture(scope="module")
def first_hour(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The inputs of this section's cases: a photo, speech, files that are not what their names say, damaged
    checkpoints, and a folder of mixed files."""
    from genface.models.makeup import MakeupInjector
    from genface.provenance import save_marked_image

    t = tmp_path_factory.mktemp("first_hour")
    _write(t / "face.png", sample_path("astronaut").read_bytes())
    _wav(t / "speech.wav", _tone(16000, 0.3), 16000)
    _write(t / "text.png", b"hello world" * 50)
    state = MakeupInjector(num_layers=1, num_single_layers=1, inner_dim=128, in_channels=4, rank=4).state_dict()
    torch.save(list(state.values()), t / "list.pt")
    torch.save({k: v for k, v in state.items() if k != "ref_image_proj_model.proj.0.weight"}, t / "missing.pt")
    mixed = t / "mixed"
    (mixed / "sub").mkdir(parents=True)
    _write(mixed / "photo.png", sample_path("astronaut").read_bytes())
    save_marked_image(mixed / "made.png", _astronaut(), "makeup", "tiny", seed=0)
    _write(mixed / "notes.txt", b"not a picture")
    _write(mixed / "empty.png", b"")
    _write(mixed / "sub" / "inside.png", sample_path("astronaut").read_bytes())
    return t


_V = "video --model tiny --prompt p --face {t}/face.png --out {t}/out.mp4"
# name: (command line, {t} the folder of inputs), exit code, what the one line says
FIRST_HOUR_ERRORS = {
    "--frames not 4k+1": (f"{_V} --frames 4", 1, r"--frames must be of the form 4k\+1 \(got 4\); try 1 or 5\."),
    "--frames 0": (f"{_V} --frames 0", 1, r"--frames: must be from 1 to 257, got 0 \(and of the form 4k\+1\)"),
    "--height not a multiple of 16": (f"{_V} --height 17", 1, r"--height must be a multiple of 16 \(got 17\)"),
    "--out .gif": ("video --model tiny --prompt p --face {t}/face.png --out {t}/o.gif", 1, r"end in \.mp4"),
    "--seed past 2^63-1": (f"{_V} --seed {2**63}", 1, f"--seed: must be from 0 to {2**63 - 1}, got {2**63}"),
    "convert a text file named .png": ("convert {t}/text.png {t}/new", 1, "text.png is a file but not a checkpoint"),
    "convert a list of tensors": ("convert {t}/list.pt {t}/new", 1, "list.pt holds a list, not a state dict"),
    "convert a checkpoint missing a key": (
        "convert {t}/missing.pt {t}/new", 1, r"not FLUX-Makeup's checkpoint.pt .*lacks \['ref_image_proj_model"
    ),
    "samples into a file": ("samples {t}/face.png", 1, "face.png is a file; give a folder"),
}  # fmt: skip


@pytest.mark.parametrize(("name", "case"), FIRST_HOUR_ERRORS.items(), ids=list(FIRST_HOUR_ERRORS))
def test_first_hour_cli_errors(first_hour: Path, monkeypatch, capsys, name: str, case) -> None:
    """One line, exit code 1, before any model work, no input changed (the checks of :func:`test_cli_errors`)."""
    test_cli_errors(first_hour, monkeypatch, capsys, name, case)


def test_invalid_options_are_refused_before_torch_is_imported(first_hour: Path) -> None:
    """`--out o.gif`, `--frames 4`, `--height 17` (once answered after 8-40 s of imports and model loading): the
    refusal comes from a process that never imported torch or the pipelines."""
    import json
    import subprocess
    import sys

    lines = [
        f"video --model tiny --prompt p --face {first_hour}/face.png --out {first_hour}/o.gif",
        f"{_V.format(t=first_hour)} --frames 4",
        f"{_V.format(t=first_hour)} --height 17",
        f"makeup --model tiny --face {first_hour}/face.png --reference {first_hour}/face.png --out {first_hour}/o.gif",
        f"talk --model tiny --face {first_hour}/face.png --audio {first_hour}/speech.wav --out {first_hour}/o.gif",
        f"portrait --model tiny --photo {first_hour}/face.png --audio {first_hour}/speech.wav --out {first_hour}/o.avi",
    ]
    code = """
import contextlib, io, json, shlex, sys
from genface.cli import main
results = []
for line in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            status = main(shlex.split(line))
        except SystemExit as exc:
            status = exc.code
    heavy = sorted(m for m in ("torch", "diffusers", "genface.pipelines") if m in sys.modules)
    results.append([line, status, err.getvalue(), heavy])
print(json.dumps(results))
"""
    before = _snapshot(first_hour)
    run = subprocess.run([sys.executable, "-c", code, json.dumps(lines)], capture_output=True, text=True, check=True)
    for line, status, err, heavy in json.loads(run.stdout):
        assert status == 1 and err.count("\n") == 1 and err.startswith("genface"), (line, err)
        assert heavy == [], (line, heavy)
    assert _snapshot(first_hour) == before


def test_ctrl_c_while_a_command_imports_is_one_line(tmp_path: Path) -> None:
    """Ctrl-C in the first second (while modules load; once a KeyboardInterrupt traceback): one line, exit code
    130. The interrupt is made to arrive at the import of the command line's options (building the parser) or of
    torch (`info` starting), through the console script's own entry point."""
    import json
    import subprocess
    import sys

    code = """
import sys
interrupted = sys.argv[1]
class CtrlC:  # Ctrl-C pressed while this module is being imported
    def find_spec(self, name, path=None, target=None):
        if name == interrupted:
            raise KeyboardInterrupt
sys.meta_path.insert(0, CtrlC())
sys.argv = ["genface", "info"]
from genface.cli import main
sys.exit(main())
"""
    for module in ("genface.cli.options", "torch"):
        run = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True, cwd=tmp_path)
        assert run.returncode == 130 and run.stderr == "genface: interrupted; no partial output was left\n", run
        assert list(tmp_path.iterdir()) == []
    # Before main() runs, the console script imports genface.cli: it loads almost nothing, so that a Ctrl-C can
    # land outside main() only during Python's own start.
    code = "import json, sys; old = set(sys.modules); import genface.cli; print(json.dumps([*set(sys.modules) - old]))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert set(json.loads(run.stdout)) <= {"genface", "genface._lazy", "genface.cli", "signal", "threading"}


def test_verify_reports_every_file_of_a_mixed_folder(first_hour: Path, capsys) -> None:
    """Every entry of the folder gets its line (once, files that are not images or videos were passed over in
    silence): the marked image, the photo, why the empty image cannot be read (exit code 1), and the text file and
    the subfolder as not read; nothing changed."""
    from genface.cli import main

    mixed = first_hour / "mixed"
    before = _snapshot(mixed)
    assert main(["verify", str(mixed), "--detector", "none"]) == 1
    out, err = capsys.readouterr()
    assert f"{mixed / 'made.png'}: synthetic (made by genface)" in out and f"{mixed / 'photo.png'}: no mark" in out
    assert err.splitlines() == [
        f"genface: note: {mixed / 'notes.txt'}: not read: not an image or a video by its name",
        f"genface: note: {mixed / 'sub'}: not read: a folder (name it to verify it)",
        f"genface: error: {mixed / 'empty.png'}: Image file is empty: {mixed / 'empty.png'}",
    ]
    assert main(["verify", str(mixed), "--detector", "none", "--json"]) == 1
    import json

    reported = json.loads(capsys.readouterr().out)
    assert [Path(r["file"]).name for r in reported] == ["empty.png", "made.png", "photo.png"]
    assert _snapshot(mixed) == before


def test_the_cli_names_its_flag_where_the_library_names_an_argument(first_hour: Path, capsys) -> None:
    """A face index past the faces: the message says --face-index (the Python API's face_index is no flag)."""
    from genface.cli import main

    before = _snapshot(first_hour)
    argv = ["identity", str(first_hour / "face.png"), str(first_hour / "face.png"), "--face-index", "3"]
    assert main([*argv, "--backend", "dlib"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"genface: error: --face-index 3, but {first_hour / 'face.png'} has 1 face(s)"), err
    assert "face_index" not in err
    assert err.count("\n") == 1 and _snapshot(first_hour) == before


def test_missing_weights_offline_say_which_and_how_to_get_them(first_hour: Path, monkeypatch, capsys) -> None:
    """The published weights, not cached and offline: one line naming the Hub id, how to download it and pass a
    folder, and --model tiny (once: diffusers' "check the stacktrace above", with no stack trace)."""
    import huggingface_hub.constants

    from genface.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    before = _snapshot(first_hour)
    argv = ["video", "--face", str(first_hour / "face.png"), "--prompt", "p", "--out", str(first_hour / "o.mp4")]
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("genface: error: Could not load 'BestWishYsh/ConsisID-preview': it is not in the local")
    assert "offline mode is on (HF_HUB_OFFLINE)" in err and "hf download BestWishYsh/ConsisID-preview" in err
    assert err.endswith("--model tiny.") and "stacktrace" not in err
    assert main([*argv, "--model", "stand-in"]) == 1  # the tiny model of the model asked for
    err = capsys.readouterr().err.splitlines()[-1]
    assert "hf download Wan-AI/Wan2.1-T2V-14B-Diffusers --local-dir DIR" in err and err.endswith("tiny-stand-in.")
    assert _snapshot(first_hour) == before
