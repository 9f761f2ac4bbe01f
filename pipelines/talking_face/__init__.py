"""Audio-driven talking faces: a face video or photo and speech -> a lip-synced video (MuseTalk v1.5)."""

from genface.pipelines.talking_face.pipeline import TalkingFacePipeline, TalkingFacePipelineOutput

__all__ = ["TalkingFacePipeline", "TalkingFacePipelineOutput"]
