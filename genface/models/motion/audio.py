"""Speech (16 kHz mono float) -> HuBERT features at 25 frames per second, cut and pooled as Ditto does.

Ditto runs a streaming export of HuBERT-large (``hubert_streaming_fix_kv.onnx``) on overlapping chunks: with
``chunk = (past, present, future) = (3, 5, 2)`` video frames (40 ms = 640 samples each), a chunk is
``10 * 640 + 80 = 6480`` samples, for which HuBERT gives 20 frames at 50 Hz; the 10 frames of the ``present``
part (``[-14:-4]``) are averaged in pairs into 5 feature frames of 1024. Chunks advance by ``present`` frames.
For a whole speech (``wav2feat``), ``past * 640 + 80`` zeros go in front and a chunk of zeros after, and the
speech gives ``ceil(samples / 640)`` frames. Ditto's online path (``inference.py``) puts ``past * 640`` zeros in
front instead: its windows sit 80 samples later on the speech. genface runs transformers' ``HubertModel`` with
the public ``facebook/hubert-large-ls960-ft`` weights on the same chunks (the raw samples, not normalised, as
Ditto feeds its export) and takes its last hidden state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from genface.errors import InvalidArgumentError
from genface.models.talking.audio import SAMPLE_RATE, _checked
from genface.models.talking.live import checked_piece

#: Audio samples per 25 fps video frame.
SAMPLES_PER_FRAME = SAMPLE_RATE // 25
#: Ditto's chunk (past, present, future) in video frames.
CHUNK = (3, 5, 2)
HUBERT_REPO = "facebook/hubert-large-ls960-ft"


class HubertFeatures:
    """HuBERT features at 25 fps for Ditto's LMDM, from a transformers ``HubertModel``.

    ``batch_size`` chunks run at once. ``online``: the windows of Ditto's online path (``past * 640`` samples of
    silence in front, ``inference.py``) rather than of its offline ``wav2feat`` (``past * 640 + 80``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        chunk: tuple[int, int, int] = CHUNK,
        batch_size: int = 16,
        online: bool = False,
    ) -> None:
        if len(chunk) != 3 or min(chunk) < 0 or chunk[1] < 1:
            raise InvalidArgumentError(f"chunk must be (past, present, future) frames with present >= 1, got {chunk}.")
        if batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be at least 1, got {batch_size}.")
        self.model, self.chunk, self.batch_size, self.online = model.eval(), tuple(chunk), batch_size, online
        self.speech_frames: int | None = None

    @classmethod
    def from_pretrained(cls, path_or_repo: str = HUBERT_REPO, **kwargs: object) -> HubertFeatures:
        """From a HuBERT checkpoint folder or Hub id (default: HuBERT-large fine-tuned on LibriSpeech 960 h)."""
        from transformers import HubertModel

        from genface.hub import load_or_explain

        return cls(load_or_explain(HubertModel.from_pretrained, path_or_repo), **kwargs)

    @property
    def chunk_samples(self) -> int:
        """Samples of one chunk (6480 for Ditto's (3, 5, 2))."""
        return sum(self.chunk) * SAMPLES_PER_FRAME + 80

    @property
    def lead(self) -> int:
        """Samples of silence in front of the speech: ``past * 640``, plus 80 offline."""
        return self.chunk[0] * SAMPLES_PER_FRAME + (0 if self.online else 80)

    @property
    def width(self) -> int:
        return self.model.config.hidden_size

    @torch.no_grad()
    def encode_chunks(self, chunks: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Features (batch * present, width) of chunks (batch, chunk_samples), e.g. live audio: each chunk covers
        ``past`` frames already heard, ``present`` new frames and ``future`` frames of look-ahead (+ 80 samples)."""
        chunks = torch.as_tensor(chunks, dtype=torch.float32)
        if chunks.ndim != 2 or chunks.shape[1] != self.chunk_samples:
            raise InvalidArgumentError(
                f"Chunks must be (batch, {self.chunk_samples}) samples, got {tuple(chunks.shape)}."
            )
        param = next(self.model.parameters())
        hidden = self.model(chunks.to(param.device, param.dtype)).last_hidden_state
        past, present, _ = self.chunk
        frames = hidden[:, 2 * past : 2 * (past + present)]
        return frames.reshape(-1, present, 2, frames.shape[-1]).mean(dim=2).flatten(0, 1).float()

    @staticmethod
    def frame_count(num_samples: int) -> int:
        """Feature frames (25 per second) of a speech of ``num_samples``: ``ceil(num_samples / 640)``."""
        return math.ceil(num_samples / SAMPLES_PER_FRAME)

    def stream(self, audio: np.ndarray) -> Iterator[torch.Tensor]:
        """The features of a whole speech in order, ``batch_size * present`` frames at a time (memory bounded)."""
        yield from self.live([_checked(audio)])

    def live(self, pieces: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
        """The features of speech arriving in pieces of any length (1-D float, 16 kHz mono), in order: each chunk
        is encoded (up to ``batch_size`` at once) as soon as its samples, look-ahead included, are in; the end is
        padded with silence. The features do not depend on how the speech is cut, within float rounding (exactly
        with ``batch_size=1``, which runs a chunk a call).

        Offline they stop at the speech's last frame; online they go on, as Ditto's ``inference.py`` does, to the
        end of the chunk that holds the last sample (``present * ceil((samples + lead) / (present * 640))``
        frames, up to 7 past the speech). Once the pieces have ended, :attr:`speech_frames` holds the speech's own
        frame count."""
        present, lead = self.chunk[1], self.lead
        self.speech_frames = None
        buffer = np.zeros(lead, np.float32)  # the silence in front of the speech
        offset = -lead  # the sample index of buffer[0]
        heard = frame = 0  # samples in; the next feature frame to encode
        for piece in pieces:
            piece = checked_piece(piece)
            buffer, heard = np.concatenate([buffer, piece]), heard + piece.size
            starts = range(frame, (heard + lead - self.chunk_samples) // SAMPLES_PER_FRAME + 1, present)
            yield from self._encode(buffer, offset, starts, None)
            frame += len(starts) * present
            drop = frame * SAMPLES_PER_FRAME - lead - offset
            buffer, offset = buffer[drop:], offset + drop
        self.speech_frames = total = self.frame_count(heard)
        if self.online:
            total = present * math.ceil((heard + lead) / (present * SAMPLES_PER_FRAME))
        yield from self._encode(buffer, offset, range(frame, total, present), total)

    def _encode(self, buffer: np.ndarray, offset: int, starts: range, total: int | None) -> Iterator[torch.Tensor]:
        """Features of the chunks starting at feature frames ``starts`` (``buffer[0]`` is sample ``offset``;
        zeros past its end), ``batch_size`` chunks per call, cut at frame ``total``."""
        lead = self.lead
        for first in range(0, len(starts), self.batch_size):
            batch = starts[first : first + self.batch_size]
            chunks = np.zeros((len(batch), self.chunk_samples), np.float32)
            for row, start in zip(chunks, batch, strict=True):
                part = buffer[start * SAMPLES_PER_FRAME - lead - offset :][: self.chunk_samples]
                row[: part.size] = part
            yield self.encode_chunks(chunks)[: None if total is None else total - batch[0]]

    def __call__(self, audio: np.ndarray) -> torch.Tensor:
        """Features (ceil(samples / 640), width) of a whole speech (16 kHz mono float)."""
        return torch.cat(list(self.stream(audio)))
