"""Talking portraits: one photo and speech -> a talking head that moves, blinks and shows expression (Ditto)."""

from genface.pipelines.talking_portrait.pipeline import TalkingPortraitPipeline, TalkingPortraitPipelineOutput

__all__ = ["TalkingPortraitPipeline", "TalkingPortraitPipelineOutput"]
