"""Audio-driven talking faces: a face video or photo and speech -> a lip-synced video (MuseTalk, LatentSync)."""

from genface.pipelines.talking_face.latentsync import LatentSyncPipeline
from genface.pipelines.talking_face.pipeline import TalkingFacePipeline, TalkingFacePipelineOutput
from genface.pipelines.talking_face.prepared import PreparedVideo

__all__ = ["LatentSyncPipeline", "PreparedVideo", "TalkingFacePipeline", "TalkingFacePipelineOutput"]
