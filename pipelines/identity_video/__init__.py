"""Identity-preserving text-to-video: a face photo and a prompt become a video of that person (ConsisID)."""

from genface.pipelines.identity_video.pipeline import IdentityVideoPipeline, IdentityVideoPipelineOutput

__all__ = ["IdentityVideoPipeline", "IdentityVideoPipelineOutput"]
