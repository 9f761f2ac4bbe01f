"""Diffusers-style pipelines, installed as ``genface.pipelines`` (one folder per pipeline).

Names are imported lazily: ``import genface.pipelines`` does not import diffusers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "IdentityVideoPipeline": "genface.pipelines.identity_video",
    "IdentityVideoPipelineOutput": "genface.pipelines.identity_video",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'genface.pipelines' has no attribute {name!r}")
