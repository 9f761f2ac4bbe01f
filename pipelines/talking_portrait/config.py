"""Ditto's run configuration (``ditto_cfg/v0.4_hubert_cfg_pytorch.pkl``): the defaults its inference takes
(``default_kwargs``) that genface's pipeline exposes, read without running anything from the file.

Ditto's configuration is a pickle of dictionaries, lists, numbers, strings and NumPy arrays. It is read with an
unpickler that builds only those (NumPy arrays and Python's plain data types); anything else in the file (a
function, a class, an object with code) is refused in one line. The values genface uses are then checked and
kept as plain JSON in the pipeline's configuration, so a saved pipeline carries them without the pickle.
"""

from __future__ import annotations

import builtins
import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy._core import multiarray

from genface.errors import InvalidArgumentError, UnsafeWeightsError
from genface.models.motion.lmdm import motion_bounds

from .controls import CONTROLS, FADE_TYPES, PortraitControls

logger = logging.getLogger(__name__)

#: Ditto's configuration for its PyTorch models, beside ``ditto_pytorch/`` in its Hub repository.
CONFIG_FILE = "ditto_cfg/v0.4_hubert_cfg_pytorch.pkl"
#: ``default_kwargs`` entries genface takes (Ditto's names); the others keep Ditto's code defaults or are
#: genface's own (see the pipeline's docs).
KEYS = ("v_min_max_for_clip", "max_size", "smo_k_s", "fade_type", "fade_out_keys", "overall_ctrl_info")
#: Longest side genface resizes to (Ditto's ``max_size``; -1 or 0 keeps the size).
MAX_SIZE_LIMIT = 16384
#: Widest moving average over a video source's frames (Ditto's ``smo_k_s``).
MAX_SMOOTHING = 101
MOTION_KEYS = ("scale", "pitch", "yaw", "roll", "t", "exp")

_PLAIN = ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str", "bytes", "bytearray")
_NUMPY = {"ndarray": np.ndarray, "dtype": np.dtype}
_MULTIARRAY = {"_reconstruct": multiarray._reconstruct, "scalar": multiarray.scalar}


class _DataUnpickler(pickle.Unpickler):
    """Builds Python's plain data types and NumPy arrays only."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _PLAIN:
            return getattr(builtins, name)
        if module == "numpy" and name in _NUMPY:
            return _NUMPY[name]
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in _MULTIARRAY:
            return _MULTIARRAY[name]
        raise UnsafeWeightsError(
            f"The Ditto configuration refers to {module}.{name}; genface reads only NumPy arrays and plain data from "
            "it, so that no code inside it can run. Use the publisher's original file."
        )


def load_data_pickle(path: str | os.PathLike) -> Any:
    """A pickle of plain data and NumPy arrays (Ditto's configuration), refusing anything else."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            return _DataUnpickler(file).load()
    except UnsafeWeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise InvalidArgumentError(f"{path} is not a readable Ditto configuration pickle ({exc}).") from exc


def read_default_kwargs(path: str | os.PathLike, motion_dim: int) -> dict[str, Any]:
    """The ``default_kwargs`` of Ditto's configuration that genface takes, checked, as JSON data."""
    config = load_data_pickle(path)
    values = config.get("default_kwargs") if isinstance(config, Mapping) else None
    if not isinstance(values, Mapping):
        raise InvalidArgumentError(f"{path} has no default_kwargs: it is not one of Ditto's configurations.")
    taken = {k: values[k] for k in KEYS if k in values}
    controls = dict(taken.get("overall_ctrl_info") or {})
    taken["overall_ctrl_info"] = {k: v for k, v in controls.items() if k in CONTROLS}
    left = [k for k in values if k not in KEYS] + [f"overall_ctrl_info.{k}" for k in controls if k not in CONTROLS]
    if left:
        logger.info("Ditto's configuration also sets %s; genface keeps its own values there.", ", ".join(sorted(left)))
    return check_default_kwargs(taken, motion_dim)


def check_default_kwargs(values: Mapping[str, Any] | None, motion_dim: int) -> dict[str, Any]:
    """Ditto's defaults (the keys of :data:`KEYS`) checked and made JSON data, or a one-line error."""
    values = dict(values or {})
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise InvalidArgumentError(f"Unknown Ditto defaults {', '.join(unknown)}; known: {', '.join(KEYS)}.")
    out: dict[str, Any] = {}
    if values.get("v_min_max_for_clip") is not None:
        out["v_min_max_for_clip"] = motion_bounds(values["v_min_max_for_clip"], motion_dim).tolist()
    if "max_size" in values:
        out["max_size"] = check_max_size(values["max_size"])
    if "smo_k_s" in values:
        out["smo_k_s"] = check_smoothing(values["smo_k_s"])
    if "fade_type" in values:
        if values["fade_type"] not in FADE_TYPES:
            raise InvalidArgumentError(f"fade_type must be '', 'd0' or 's'; got {values['fade_type']!r}.")
        out["fade_type"] = values["fade_type"]
    if "fade_out_keys" in values:
        keys = values["fade_out_keys"]
        if isinstance(keys, str) or not all(k in MOTION_KEYS for k in keys):
            raise InvalidArgumentError(f"fade_out_keys must name motion keys ({', '.join(MOTION_KEYS)}).")
        out["fade_out_keys"] = list(keys)
    controls = dict(values.get("overall_ctrl_info") or {})
    if controls:
        PortraitControls.build(controls)  # checks names and values
        out["overall_ctrl_info"] = {k: np.asarray(v, dtype=np.float64).tolist() for k, v in controls.items()}
    return out


def check_max_size(value: Any) -> int:
    """Ditto's ``max_size``: the longest side in pixels (-1 or 0: any)."""
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and -1 <= value <= MAX_SIZE_LIMIT):
        raise InvalidArgumentError(f"max_size must be a whole number of pixels up to {MAX_SIZE_LIMIT} (-1: any size).")
    return int(value)


def check_smoothing(value: Any) -> int:
    """Ditto's ``smo_k_s``: frames of the moving average over a video source's motion (1: none)."""
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 1 <= value <= MAX_SMOOTHING):
        raise InvalidArgumentError(f"smo_k_s must be a whole number of frames from 1 (none) to {MAX_SMOOTHING}.")
    return int(value)
