"""A prepared face video (MuseTalk's "avatar"): everything a dub needs from the video that does not depend on
the speech, made once by :meth:`TalkingFacePipeline.prepare` and kept in memory or in a folder.

It holds the tracked face (smoothed crop boxes, which frames had it, the first face found), each frame's blend
weights (uint8, over its crop box) and the UNet's image latents of its crop (masked and whole, N x 8 x 32 x 32).
A folder holds ``prepared.json`` (the key, boxes, face) and ``prepared.safetensors`` (latents, weights); it is
keyed on the video's content (SHA-256) and every setting that changes what is stored (face choice, smoothing,
blend, face engine and threshold, face parser and VAE weights, dtype, device type), and refused when any differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from genface.errors import InvalidArgumentError
from genface.identity import Face

#: Version of the folder layout and of how its contents are computed (part of the key). 2: MuseTalk's resizes
#: of the parsing patch and mask (PIL), integer crop boxes, and the blend in the key.
FORMAT = 2
JSON_NAME = "prepared.json"
TENSORS_NAME = "prepared.safetensors"


class Frames(Protocol):
    """Frames by index: a list, a :class:`VideoReader` (decoded as needed) or a photo animated by a hook."""

    def __getitem__(self, index: int) -> np.ndarray: ...


Box = tuple[int, int, int, int]


@dataclass
class FaceTrackBoxes:
    """The face followed through a video: each frame's crop box (smoothed, lost frames held), whether the face
    was found there, and the first face found (``first`` is its frame)."""

    boxes: list[Box]
    found: np.ndarray
    first: int
    face: Face

    @property
    def lost(self) -> list[int]:
        return np.flatnonzero(~self.found).tolist()

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass
class PreparedVideo:
    """A face video (or photo) ready to dub: its frames, frame rate and tracked face, and each frame's UNet image
    latents (``latents``, on the CPU) and blend weights (``alphas``, uint8 over its box), with the ``key`` they
    were made under. Pass it to the pipeline instead of the video; :meth:`save` writes it to a folder that
    ``pipe.prepare(video, cache=folder)`` reads back."""

    frames: Frames
    fps: float
    track: FaceTrackBoxes
    latents: torch.Tensor
    alphas: list[np.ndarray]
    key: dict[str, Any]
    is_photo: bool = False

    def __len__(self) -> int:
        return len(self.track)

    @property
    def blend(self) -> str:
        """Whose blend its weights reproduce (``"inference"`` or ``"realtime"``, see the pipeline's ``blend``)."""
        return self.key["blend"]

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``prepared.json`` + ``prepared.safetensors`` into a new (or empty) ``folder``, whole or not at
        all."""
        from safetensors.torch import save_file

        from genface.media._files import atomic_folder

        folder = Path(folder).expanduser()
        if folder.exists() and any(folder.iterdir()):
            raise InvalidArgumentError(f"{folder} is not empty; save a prepared video into a new or empty folder.")
        face = self.track.face
        document = {
            "key": self.key,
            "is_photo": self.is_photo,
            "boxes": [list(box) for box in self.track.boxes],
            "found": self.track.found.tolist(),
            "first": self.track.first,
            "face": {
                "bbox": face.bbox.tolist(),
                "score": face.score,
                "kps": face.kps.tolist(),
                "landmarks": None if face.landmarks is None else face.landmarks.tolist(),
            },
        }
        flat = np.concatenate([a.reshape(-1) for a in self.alphas])
        with atomic_folder(folder) as tmp:
            (tmp / JSON_NAME).write_text(json.dumps(document) + "\n")
            save_file({"latents": self.latents.contiguous(), "alphas": torch.from_numpy(flat)}, tmp / TENSORS_NAME)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, frames: Frames, fps: float, key: dict[str, Any]) -> PreparedVideo:
        """Read a folder written by :meth:`save` for ``frames`` at ``fps``, refusing it unless it was made under
        ``key``."""
        from safetensors.torch import load_file

        folder = Path(folder).expanduser()
        try:
            document = json.loads((folder / JSON_NAME).read_text())
            tensors = load_file(folder / TENSORS_NAME)
        except (OSError, ValueError) as exc:
            raise InvalidArgumentError(
                f"{folder} is not a prepared video ({JSON_NAME} + {TENSORS_NAME}): {exc}"
            ) from exc
        if document.get("key") != key:
            stored = document.get("key") or {}
            changed = sorted(name for name in key.keys() | stored.keys() if key.get(name) != stored.get(name))
            raise InvalidArgumentError(
                f"{folder} was prepared for another video or other settings (changed: {', '.join(changed)}); "
                "prepare again into a new folder, or delete it."
            )
        boxes = [tuple(int(v) for v in box) for box in document["boxes"]]
        sizes = [(y2 - y1, x2 - x1) for x1, y1, x2, y2 in boxes]
        ends = np.cumsum([h * w for h, w in sizes])
        flat = tensors["alphas"].numpy()
        alphas = [part.reshape(size) for part, size in zip(np.split(flat, ends[:-1]), sizes, strict=True)]
        face = document["face"]
        track = FaceTrackBoxes(
            boxes,  # type: ignore[arg-type]
            np.asarray(document["found"], dtype=bool),
            int(document["first"]),
            Face(np.asarray(face["bbox"]), face["score"], np.asarray(face["kps"]), face["landmarks"]),
        )
        return cls(frames, fps, track, tensors["latents"], alphas, key, document["is_photo"])


def content_hash(face: Any, frames: Sequence[np.ndarray] | np.ndarray | None) -> str:
    """SHA-256 of a video file's bytes (``face`` a path), else of the decoded ``frames``' pixels and shape."""
    digest = hashlib.sha256()
    if frames is None:
        with open(face, "rb") as file:
            while block := file.read(2**20):
                digest.update(block)
    else:
        array = np.ascontiguousarray(np.asarray(frames))
        digest.update(repr(array.shape).encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def weights_hash(*modules: torch.nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of the modules' parameters and buffers, names included."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
