"""load_image: every input form and the bad inputs it must refuse clearly."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genface.errors import GenfaceError, InvalidImageError, OfflineError
from genface.media import load_image, save_image


@pytest.fixture()
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def test_path_pil_and_array_agree(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    for source in (path, str(path), Image.open(path), rgb):
        out = load_image(source)
        assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
        np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "LA", "I;16", "I", "F"])
def test_modes_become_rgb(tmp_path: Path, rgb: np.ndarray, mode: str) -> None:
    image = Image.fromarray(rgb).convert(mode) if mode not in ("I;16", "I", "F") else None
    if mode == "I;16":
        image = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
        assert image.mode == "I;16"
    elif mode in ("I", "F"):
        image = Image.fromarray(rgb[..., 0].astype(np.int32 if mode == "I" else np.float32))
    out = load_image(image)
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    if mode in ("I;16", "I", "F"):
        np.testing.assert_array_equal(out[..., 0], rgb[..., 0])  # 16-bit scaled, not clipped


def test_transparency_is_flattened_on_white() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 10
    rgba[:2, :, 3] = 255  # top half opaque, bottom half transparent
    out = load_image(rgba)
    assert (out[:2, :, 0] == 10).all() and (out[2:] == 255).all()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    data = np.zeros((10, 20, 3), dtype=np.uint8)
    data[:, :10] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = tmp_path / "rot.jpg"
    Image.fromarray(data).save(path, exif=exif, quality=100)
    out = load_image(path)
    assert out.shape == (20, 10, 3)
    assert out[:10].mean() > 200 and out[10:].mean() < 50  # white half is now on top


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    out = load_image(path)
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 50


def test_uint16_and_float_arrays(rgb: np.ndarray) -> None:
    np.testing.assert_array_equal(load_image(rgb.astype(np.uint16) * 257), rgb)
    np.testing.assert_array_equal(load_image(rgb.astype(np.float32) / 255.0), rgb)
    assert load_image(rgb[..., 0]).shape == (24, 32, 3)


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk)) + end


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jpg", b"", "empty"),
        ("page.jpg", b"<html><body>not an image</body></html>", "not an image"),
        ("big.png", _png_header(9000, 9000), "decompression bombs"),  # over genface's 64 MP
        ("bomb.png", _png_header(20000, 20000), "decompression bombs"),  # over PIL's own limit
    ],
)
def test_bad_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidImageError, match=message):
        load_image(path)


def test_truncated_image(tmp_path: Path, rgb: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.tile(rgb, (8, 8, 1))).save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    with pytest.raises(InvalidImageError, match="truncated or corrupt"):
        load_image(path)


def test_missing_file_and_wrong_types(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "photos.png").mkdir()
    with pytest.raises(InvalidImageError, match=r"not found: .*photos\.png is a folder\.$"):
        load_image(tmp_path / "photos.png")
    with pytest.raises(InvalidImageError, match="pass a path"):
        load_image(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidImageError, match="shape"):
        load_image(np.zeros((4, 4, 5), dtype=np.uint8))
    with pytest.raises(InvalidImageError, match="NaN"):
        load_image(np.full((4, 4, 3), np.nan, dtype=np.float32))
    with pytest.raises(InvalidImageError, match="no pixels"):
        load_image(np.zeros((0, 4, 3), dtype=np.uint8))


def test_max_pixels_guard_on_arrays() -> None:
    with pytest.raises(InvalidImageError, match="max_pixels"):
        load_image(np.zeros((100, 100, 3), dtype=np.uint8), max_pixels=5000)


def test_url_refused_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENFACE_OFFLINE", "1")
    with pytest.raises(OfflineError, match="local path"):
        load_image("https://example.com/face.jpg")
    assert issubclass(OfflineError, GenfaceError)


def test_save_image_is_atomic_and_round_trips(tmp_path: Path, rgb: np.ndarray) -> None:
    out = save_image(rgb, tmp_path / "sub" / "x.png")
    np.testing.assert_array_equal(load_image(out), rgb)
    assert [p.name for p in out.parent.iterdir()] == ["x.png"]  # no temporary file left behind
    with pytest.raises(InvalidImageError, match="extension"):
        save_image(rgb, tmp_path / "x.unknown")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]
