"""Image loading with the checks a face pipeline needs, and atomic saving."""

from __future__ import annotations

import io
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from genface.errors import InvalidImageError, OfflineError
from genface.media._files import atomic_path, not_found

#: The image files genface reads and writes, by suffix.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

ImageInput = str | os.PathLike | Image.Image | np.ndarray

#: Largest image accepted by default (64 megapixels); guards against decompression bombs.
DEFAULT_MAX_PIXELS = 64_000_000
_URL_TIMEOUT_S = 30


def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("GENFACE_OFFLINE", "HF_HUB_OFFLINE"))


def _fetch_url(url: str) -> bytes:
    advice = "download the image and pass its local path instead"
    if _offline():
        raise OfflineError(f"Cannot fetch {url}: offline mode is on (GENFACE_OFFLINE/HF_HUB_OFFLINE); {advice}.")
    try:
        with urllib.request.urlopen(url, timeout=_URL_TIMEOUT_S) as response:  # noqa: S310 (http/https only)
            return response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise OfflineError(f"Cannot fetch {url} ({exc}); {advice}.") from exc


def _open(source: str | os.PathLike) -> Image.Image:
    text = os.fspath(source)
    if text.startswith(("http://", "https://")):
        return Image.open(io.BytesIO(_fetch_url(text)))
    path = Path(text).expanduser()
    if not path.is_file():
        raise InvalidImageError(not_found("Image", path))
    if path.stat().st_size == 0:
        raise InvalidImageError(f"Image file is empty: {path}")
    return Image.open(path)


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode to HxWx3 uint8 RGB, scaling 16/32-bit data and flattening alpha on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        data = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or data.max(initial=0) > 255 else 255.0
        if img.mode == "F" and data.max(initial=0) <= 1.0:
            peak = 1.0
        gray = np.clip(data / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InvalidImageError(
            f"Image array must be HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA); got shape {array.shape}."
        )
    if array.dtype == np.uint8:
        data = array
    elif array.dtype == np.uint16:
        data = (array.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InvalidImageError("Image array contains NaN or infinite values.")
        data = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise InvalidImageError(
            f"Image array dtype {array.dtype} is not supported; use uint8, uint16 or float in [0, 1]."
        )
    if data.shape[2] == 1:
        data = np.repeat(data, 3, axis=2)
    elif data.shape[2] == 4:
        alpha = data[..., 3:4].astype(np.float32) / 255.0
        data = (data[..., :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(data)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] (as diffusers' ``output_type="np"`` gives them) -> rounded uint8."""
    return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _check_size(width: int, height: int, max_pixels: int, what: str) -> None:
    if width < 1 or height < 1:
        raise InvalidImageError(f"{what} has no pixels ({width}x{height}).")
    if width * height > max_pixels:
        raise InvalidImageError(
            f"{what} is {width}x{height} ({width * height / 1e6:.1f} MP), over the limit of "
            f"{max_pixels / 1e6:.0f} MP that guards against decompression bombs. Resize it, or pass a "
            "larger max_pixels if you trust the file."
        )


def load_image(image: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load an image as an HxWx3 uint8 RGB array.

    ``image`` may be a path, an http(s) URL (refused in offline mode), a PIL image or a numpy array
    (HxW, HxWx3 RGB or HxWx4 RGBA; uint8, uint16 or float in [0, 1]). EXIF orientation is applied,
    grayscale/CMYK/palette/16-bit images are converted, transparency is flattened onto white, and an
    animated image yields its first frame.
    """
    if isinstance(image, np.ndarray):
        height, width = image.shape[:2] if image.ndim >= 2 else (0, 0)
        _check_size(width, height, max_pixels, "Image array")
        return _array_to_rgb(image)
    if isinstance(image, Image.Image):
        _check_size(image.width, image.height, max_pixels, "Image")
        return _to_rgb_array(ImageOps.exif_transpose(image))
    if not isinstance(image, (str, os.PathLike)):
        raise InvalidImageError(f"Cannot read an image from {type(image).__name__}; pass a path, PIL image or array.")
    name = os.fspath(image)
    try:
        img = _open(image)
        _check_size(img.width, img.height, max_pixels, f"Image {name}")
        img.load()
        return _to_rgb_array(ImageOps.exif_transpose(img))
    except UnidentifiedImageError as exc:
        raise InvalidImageError(f"{name} is not an image file PIL can decode (corrupt, or another file type).") from exc
    except Image.DecompressionBombError as exc:
        raise InvalidImageError(
            f"{name} is too large to decode safely ({exc}); refused by the limit that guards against "
            "decompression bombs. Resize it before use."
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, (InvalidImageError, OfflineError)):
            raise
        raise InvalidImageError(f"{name} could not be decoded (truncated or corrupt file?): {exc}") from exc


#: EXIF tag holding text metadata in JPEG/WebP (ImageDescription).
EXIF_DESCRIPTION = 0x010E


def save_image(
    image: ImageInput, path: str | os.PathLike, *, quality: int = 95, metadata: dict[str, str] | None = None
) -> Path:
    """Save an image atomically (a temporary file renamed into place); returns the path.

    ``metadata`` goes into PNG text chunks, or (JPEG/WebP, one value only) the EXIF ImageDescription.
    """
    rgb = load_image(image)
    out = Path(path)
    fmt = Image.registered_extensions().get(out.suffix.lower())
    if fmt is None:
        raise InvalidImageError(f"Unknown image extension {out.suffix!r}; use .png, .jpg or .webp.")
    options: dict[str, object] = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if metadata and fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in metadata.items():
            info.add_text(key, value)
        options["pnginfo"] = info
    elif metadata:
        exif = Image.Exif()
        exif[EXIF_DESCRIPTION] = "\n".join(metadata.values())
        options["exif"] = exif
    with atomic_path(out) as tmp:
        Image.fromarray(rgb).save(tmp, format=fmt, **options)
    return out
