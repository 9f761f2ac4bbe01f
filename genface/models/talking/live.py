"""Speech arriving in pieces, cut into blocks of video frames for a dubbing model that hears 30 s at a time.

Whisper hears 30 s at once, attending both ways, so a dub made from a whole speech cannot be made while it
arrives. Live, each block of video frames is made from a window of the speech of its own: the 30 s that end a
fixed look-ahead after the block (fewer at the start, zeros past the speech's end), taken once that much speech is
in. A block's window, and so its frames, depend only on where the block is, never on how the speech arrives; they
differ a little from a whole speech's, whose 30 s windows are fixed pieces of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from genface.errors import InvalidMediaError
from genface.models.talking.audio import (
    SAMPLE_RATE,
    WhisperFrameFeatures,
    _gather,
    feature_count,
    frame_count,
    window_positions,
)
from genface.models.talking.metrics import frame_loudness
from genface.models.talking.silence import SilenceGate

#: Samples per Whisper feature (20 ms): windows start on this grid so that features keep their places.
FEATURE_SAMPLES = 320
#: The speech a block's window holds: Whisper's 30 s.
CONTEXT_SAMPLES = 30 * SAMPLE_RATE
#: Speech after a block that its window holds: the audio windows' reach (6 features) and the silence gate's.
LOOKAHEAD_SECONDS = 0.24


def checked_piece(piece: object) -> np.ndarray:
    """One piece of streamed speech as float32 samples, or a one-line refusal."""
    piece = np.asarray(piece)
    if piece.ndim != 1 or not np.issubdtype(piece.dtype, np.floating):
        raise InvalidMediaError(
            f"Streamed audio must come as 1-D float pieces (16 kHz mono, -1 to 1); got {piece.dtype} {piece.shape}. "
            "Mix channels down and scale integer samples first."
        )
    if not np.isfinite(piece).all():
        raise InvalidMediaError("The audio stream holds NaN or infinite samples.")
    return piece.astype(np.float32)


@dataclass
class Block:
    """Video frames ``start`` to ``start + count - 1`` (the first ``kept`` of them shown) and their speech window:
    ``audio`` is samples ``offset`` onwards (zeros past the speech's end); ``total``: the speech's length in samples
    once it has ended (None before); ``weights``: the shown frames' speech weights (with a silence gate)."""

    start: int
    count: int
    kept: int
    audio: np.ndarray
    offset: int
    total: int | None
    weights: np.ndarray | None


def live_blocks(
    pieces: Iterable[object],
    fps: float,
    size: int,
    gate: SilenceGate | None = None,
    last_frame: Callable[[int], int] | None = None,
) -> Iterator[Block]:
    """Blocks of ``size`` frames of speech arriving in ``pieces`` (16 kHz mono float), each as soon as its speech
    and the look-ahead after it are in; at the end the rest, the last block running to ``last_frame(samples)`` (a
    model's own frame count; default: the speech's) and showing the frames the speech covers. Memory holds 30 s."""
    frame_rate = SAMPLE_RATE / fps
    reach = max(LOOKAHEAD_SECONDS, 0 if gate is None else (gate.lookahead + 1) / fps)
    ahead = math.ceil(reach * SAMPLE_RATE / FEATURE_SAMPLES) * FEATURE_SAMPLES
    buffer, offset, heard, start, measured = np.zeros(0, np.float32), 0, 0, 0, 0
    weights = np.zeros(0)

    def block(count: int, kept: int, total: int | None) -> Block:
        end = int((start + count) * frame_rate) + ahead
        first = max(end - CONTEXT_SAMPLES, 0) // FEATURE_SAMPLES * FEATURE_SAMPLES
        audio = np.zeros(end - first, np.float32)
        part = buffer[first - offset : end - offset]
        audio[: part.size] = part
        shown = None if gate is None else weights[start : start + kept]
        return Block(start, count, kept, audio, first, total, shown)

    def measure(ended: bool) -> None:
        nonlocal measured, weights
        if gate is None:
            return
        ready = frame_count(heard, fps)
        gate.push(frame_loudness(buffer, fps, ready - measured, first=measured, offset=offset))
        measured = ready
        weights = np.concatenate([weights, gate.ready(end=ended)])

    for piece in pieces:
        piece = checked_piece(piece)
        buffer, heard = np.concatenate([buffer, piece]), heard + piece.size
        measure(False)
        while int((start + size) * frame_rate) + ahead <= heard:
            yield block(size, size, None)
            start += size
            keep = min(max(int((start + size) * frame_rate) + ahead - CONTEXT_SAMPLES, 0), int(measured * frame_rate))
            keep = keep // FEATURE_SAMPLES * FEATURE_SAMPLES
            buffer, offset = buffer[keep - offset :], keep
    measure(True)
    shown = frame_count(heard, fps)
    end = max(shown, last_frame(heard) if last_frame is not None else shown)
    while start < shown:
        count = min(size, end - start)
        yield block(count, min(count, shown - start), heard)
        start += size


def whisper_windows(encoder: WhisperFrameFeatures, block: Block, fps: float) -> torch.Tensor:
    """MuseTalk's audio windows of a block's frames, from the block's speech window (zeros outside the speech, as
    :func:`~genface.models.talking.audio.window_features`)."""
    hidden = encoder.segment(block.audio, 0)
    positions = window_positions(block.start, block.count, fps, encoder.left, encoder.right)
    total = feature_count(block.total if block.total is not None else block.offset + block.audio.size)
    return _gather(hidden, positions, block.offset // FEATURE_SAMPLES, total)
