"""Identity-preserving text-to-video: a face photo and a prompt become a video of that person (ConsisID; Stand-In and
VACE on diffusers' Wan)."""

from genface.pipelines.identity_video.pipeline import IdentityVideoPipeline, IdentityVideoPipelineOutput
from genface.pipelines.identity_video.stand_in import StandInPipeline
from genface.pipelines.identity_video.vace import VacePipeline
from genface.pipelines.identity_video.wan import WanIdentityVideoOutput

__all__ = [
    "IdentityVideoPipeline",
    "IdentityVideoPipelineOutput",
    "StandInPipeline",
    "VacePipeline",
    "WanIdentityVideoOutput",
]
