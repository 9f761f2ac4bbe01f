"""Diffusers-style pipelines, installed as ``genface.pipelines`` (one folder per pipeline).

Names are imported lazily: ``import genface.pipelines`` does not import diffusers.

May import: genface._lazy, genface.errors, genface.arguments, genface.resources, genface.hub, genface.media,
genface.provenance, genface.identity, genface.models, genface.eval.
"""

from __future__ import annotations

from genface._lazy import lazy_getattr

_EXPORTS = {
    "IdentityVideoPipeline": "genface.pipelines.identity_video",
    "IdentityVideoPipelineOutput": "genface.pipelines.identity_video",
    "StandInPipeline": "genface.pipelines.identity_video",
    "VacePipeline": "genface.pipelines.identity_video",
    "WanIdentityVideoOutput": "genface.pipelines.identity_video",
    "MakeupPipeline": "genface.pipelines.makeup",
    "MakeupPipelineOutput": "genface.pipelines.makeup",
    "LatentSyncPipeline": "genface.pipelines.talking_face",
    "TalkingFacePipeline": "genface.pipelines.talking_face",
    "TalkingFacePipelineOutput": "genface.pipelines.talking_face",
    "TalkingPortraitPipeline": "genface.pipelines.talking_portrait",
    "TalkingPortraitPipelineOutput": "genface.pipelines.talking_portrait",
    "load_pipeline": "genface.pipelines._load",
    "default_size": "genface.pipelines._load",
    "call_defaults": "genface.pipelines._load",
    "model_name": "genface.pipelines._load",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
