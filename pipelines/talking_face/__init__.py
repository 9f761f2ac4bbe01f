"""Audio-driven talking faces: a face video or photo and speech -> a lip-synced video (MuseTalk v1.5)."""

from genface.pipelines.talking_face.pipeline import TalkingFacePipeline, TalkingFacePipelineOutput
from genface.pipelines.talking_face.prepared import PreparedVideo

__all__ = ["PreparedVideo", "TalkingFacePipeline", "TalkingFacePipelineOutput"]
