"""The "synthetic" marks genface puts on everything it generates, and reads back.

Two marks, so that one survives what removes the other:

- **Metadata**: a JSON document in the container's ``comment`` tag (mp4), a PNG text chunk or the EXIF
  description (JPEG/WebP): ``{"synthetic": true, "generator": "genface <version>", "pipeline": ...,
  "model": ..., "created": ...}``. Exact and descriptive; lost when a file is re-saved by other tools.
- **Invisible watermark**: a fixed 32-bit genface signature embedded in the pixels with invisible-watermark's
  DWT-DCT-SVD method (vectorised here; the library's own decoder reads it). It survives JPEG at quality 75 and
  H.264 re-encoding (tested). Frames smaller than 256x256 pixels are too small to carry it.

  The mark is the library's (the same change to the Haar approximation of the U plane), written more gently:
  the library hands the inverse transform its detail bands swapped, which redraws the U plane along every edge,
  and round-trips the frame through 8-bit YUV, truncating U (wrapping it below 0 and above 255) and clipping
  saturated colours; on real photos that moved pixels by up to 101-176 levels (254 on a dubbed frame). genface
  adds the change of U the mark needs to the pixels directly, as the R, G, B change it implies (blue
  +2.032 dU, green -0.395 dU, red and luminance unchanged), rounded: at most 9 levels (blue), about 1 on
  average, PSNR about 42 dB, on the sample photos.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from typing import Any

import numpy as np

from genface import __version__
from genface.media.image import IMAGE_SUFFIXES

MARK_KEY = "comment"
#: genface's watermark signature (32 bits) and how many must match for a detection: at 30 of 32 an
#: unmarked image passes by chance with probability about 1e-7.
SIGNATURE = [int(bit) for bit in format(0x67660E1D, "032b")]
MIN_MATCHING_BITS = 30
MIN_WATERMARK_PIXELS = 256 * 256
#: invisible-watermark's dwtDctSvd settings: 4x4 blocks of the Haar approximation of the U channel, whose
#: largest DCT singular value is quantised in steps of 36 (a quarter step for a 0 bit, three quarters for 1).
_BLOCK, _STEP = 4, 36.0
#: How R, G and B change with U in OpenCV's YUV (``COLOR_YUV2RGB``: B = Y + 2.032 U', G = Y - 0.395 U' - 0.581 V').
_RGB_PER_U = np.array([0.0, -0.395, 2.032])


def _dct_matrix(size: int = _BLOCK) -> np.ndarray:
    """Orthonormal DCT-II matrix (OpenCV's ``cv2.dct`` of a block is ``C @ block @ C.T``)."""
    k, i = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    matrix = np.sqrt(2 / size) * np.cos(np.pi * (2 * i + 1) * k / (2 * size))
    matrix[0] /= np.sqrt(2)
    return matrix


_DCT = _dct_matrix()


class _WatermarkPlane:
    """The U plane of a batch of RGB frames, its Haar approximation, and that cut into 4x4 DCT blocks, as
    invisible-watermark's dwtDctSvd method reads and writes them, for all frames and blocks at once."""

    def __init__(self, batch: np.ndarray) -> None:
        import cv2
        import pywt

        count, height, width = batch.shape[:3]
        self.rgb = batch
        self.yuv = cv2.cvtColor(batch.reshape(count * height, width, 3), cv2.COLOR_RGB2YUV).reshape(batch.shape)
        self.rows, self.cols = height // 4 * 4, width // 4 * 4
        self.approx, _ = pywt.dwt2(self.yuv[:, : self.rows, : self.cols, 1], "haar", axes=(-2, -1))
        self.grid = (self.approx.shape[1] // _BLOCK, self.approx.shape[2] // _BLOCK)
        blocks = self.approx[:, : self.grid[0] * _BLOCK, : self.grid[1] * _BLOCK]
        blocks = blocks.reshape(count, self.grid[0], _BLOCK, self.grid[1], _BLOCK).transpose(0, 1, 3, 2, 4)
        self.u, self.s, self.vh = np.linalg.svd(_DCT @ blocks @ _DCT.T)

    def bit_of_block(self) -> np.ndarray:
        """Which signature bit each block carries (blocks in row-major order cycle through the bits)."""
        return np.arange(self.grid[0] * self.grid[1]).reshape(self.grid) % len(SIGNATURE)

    def embed(self) -> np.ndarray:
        """RGB frames with the signature written into every block: each block's largest singular value moved to
        its bit's quarter of a step (the library's change), the U plane changed by the inverse Haar transform of
        that change alone, and the pixels by the R, G, B change it implies, rounded."""
        bits = np.asarray(SIGNATURE, dtype=np.float64)[self.bit_of_block()]
        largest = self.s[..., 0]
        moved = (largest // _STEP + 0.25 + 0.5 * bits) * _STEP - largest
        change = _DCT.T @ (moved[..., None, None] * self.u[..., :, :1] @ self.vh[..., :1, :]) @ _DCT
        count, grid = len(self.yuv), self.grid
        approx = np.zeros_like(self.approx)
        approx[:, : grid[0] * _BLOCK, : grid[1] * _BLOCK] = change.transpose(0, 1, 3, 2, 4).reshape(
            count, grid[0] * _BLOCK, grid[1] * _BLOCK
        )
        u_change = approx.repeat(2, axis=1).repeat(2, axis=2) / 2  # the inverse Haar transform of the approximation
        pixels = self.rgb.astype(np.float64)
        pixels[:, : self.rows, : self.cols] += u_change[..., None] * _RGB_PER_U
        return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)

    def read(self) -> np.ndarray:
        """Per frame, the signature bits the blocks vote for: (frames, 32) of 0/1."""
        votes = (self.s[..., 0] % _STEP > _STEP / 2).reshape(len(self.yuv), -1)
        which = self.bit_of_block().reshape(-1)
        means = np.stack([votes[:, which == bit].mean(axis=1) for bit in range(len(SIGNATURE))], axis=1)
        return (means * 255 > 127).astype(int)


def _frames_of(frames: np.ndarray) -> np.ndarray | None:
    batch = np.asarray(frames)
    batch = batch[None] if batch.ndim == 3 else batch
    return None if batch.shape[1] * batch.shape[2] < MIN_WATERMARK_PIXELS else np.ascontiguousarray(batch)


def watermark(frames: np.ndarray) -> np.ndarray:
    """Embed the signature in RGB uint8 frames (HxWx3 or TxHxWx3); frames too small are returned as they are.

    invisible-watermark's dwtDctSvd mark, computed for every block of every frame at once (its own encoder loops
    over 4x4 blocks in Python) and written as the pixel change it needs (see the module's notes); the library's
    decoder reads the result.
    """
    batch = _frames_of(frames)
    if batch is None:
        return frames
    marked = _WatermarkPlane(batch).embed()
    return marked[0] if np.asarray(frames).ndim == 3 else marked


def watermark_bits(frames: np.ndarray) -> int | None:
    """How many signature bits the frames carry (majority over frames); None if they are too small."""
    batch = _frames_of(frames)
    if batch is None:
        return None
    votes = _WatermarkPlane(batch).read().mean(axis=0)
    return int(((votes > 0.5).astype(int) == SIGNATURE).sum())


def synthetic_mark(pipeline: str, model: str | None = None, **extra: Any) -> dict[str, str]:
    """Container metadata declaring a file as generated by genface."""
    document = {
        "synthetic": True,
        "generator": f"genface {__version__}",
        "pipeline": pipeline,
        "model": model,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    return {MARK_KEY: json.dumps(document, sort_keys=True)}


def read_mark(path: str | os.PathLike) -> dict[str, Any] | None:
    """The synthetic mark of an image or video written by genface, or None if it carries none."""
    if os.fspath(path).lower().endswith(IMAGE_SUFFIXES):
        from PIL import Image

        from genface.media.image import EXIF_DESCRIPTION

        with Image.open(path) as image:
            text = image.info.get(MARK_KEY) or image.getexif().get(EXIF_DESCRIPTION)
    else:
        import av

        with av.open(os.fspath(path)) as container:
            text = container.metadata.get(MARK_KEY)
    try:
        document = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return document if isinstance(document, dict) and document.get("synthetic") is True else None


def verify(path: str | os.PathLike) -> dict[str, Any]:
    """Both marks of a file: ``metadata`` (the JSON mark or None) and ``watermark`` (matching bits,
    detected or not; None when the pixels are too small); ``synthetic`` if either is found."""
    from genface.media import load_image, read_video

    is_image = os.fspath(path).lower().endswith(IMAGE_SUFFIXES)
    pixels = load_image(path) if is_image else read_video(path, max_frames=16)[0]
    bits = watermark_bits(pixels)
    metadata = read_mark(path)
    detected = bits is not None and bits >= MIN_MATCHING_BITS
    return {
        "file": os.fspath(path),
        "synthetic": metadata is not None or detected,
        "metadata": metadata,
        "watermark": None if bits is None else {"matching_bits": bits, "of": len(SIGNATURE), "detected": detected},
    }


def marked_video_writer(
    path: str | os.PathLike,
    fps: float,
    pipeline: str,
    model: str | None,
    *,
    audio: np.ndarray | str | os.PathLike | None = None,
    audio_rate: int = 16000,
    **extra: Any,
):
    """A :class:`~genface.media.video.VideoWriter` that marks what it writes (watermark in every frame's
    pixels, JSON in the container); use it as a context manager and ``write`` frames in chunks."""
    from genface.media.video import VideoWriter

    class _MarkedVideoWriter(VideoWriter):
        def write(self, frames: np.ndarray) -> None:
            super().write(watermark(frames))

    return _MarkedVideoWriter(
        path, fps, audio=audio, audio_rate=audio_rate, metadata=synthetic_mark(pipeline, model, **extra)
    )


def write_marked_video(
    path: str | os.PathLike, frames: np.ndarray, fps: float, pipeline: str, model: str | None, **extra: Any
):
    """Write generated frames with both marks (watermark in the pixels, JSON in the container)."""
    with marked_video_writer(path, fps, pipeline, model, **extra) as writer:
        writer.write(frames)
    return writer.path


def save_marked_image(path: str | os.PathLike, image: np.ndarray, pipeline: str, model: str | None, **extra: Any):
    """Save a generated image with both marks."""
    from genface.media import save_image

    return save_image(watermark(image), path, metadata=synthetic_mark(pipeline, model, **extra))
