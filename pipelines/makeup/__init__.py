"""Makeup transfer: a source face and a reference makeup photo -> the source wearing that makeup (FLUX-Makeup)."""

from genface.pipelines.makeup.pipeline import MakeupPipeline, MakeupPipelineOutput

__all__ = ["MakeupPipeline", "MakeupPipelineOutput"]
