"""The papers' evaluation metrics, reproduced from their published scripts (see docs/evaluation.md).

ConsisID's identity-video protocol (FaceSim-Arc, FaceSim-Cur, its per-frame FID, CLIPScore), OpenS2V-Eval's
FaceSim, the standard set-level FID, Sync-C / Sync-D with syncnet_python's SyncNet, and the batch runner behind
``genface eval`` (:mod:`genface.eval.runner`). Names are imported lazily.

May import: genface._lazy, genface.errors, genface.hub, genface.media, genface.identity, genface.models.
"""

from __future__ import annotations

from genface._lazy import lazy_getattr

_EXPORTS = {
    "even_indices": "genface.eval.frames",
    "stride_indices": "genface.eval.frames",
    "ConsisIDFaces": "genface.eval.facesim",
    "FrameScores": "genface.eval.facesim",
    "consisid_analyzer": "genface.eval.facesim",
    "consisid_faces": "genface.eval.facesim",
    "facesim_arc": "genface.eval.facesim",
    "facesim_cur": "genface.eval.facesim",
    "load_curricularface": "genface.eval.facesim",
    "OpenS2VFaceSim": "genface.eval.opens2v",
    "OpenS2VJudge": "genface.eval.opens2v",
    "load_opens2v_curricularface": "genface.eval.opens2v",
    "opens2v_analyzer": "genface.eval.opens2v",
    "opens2v_facesim": "genface.eval.opens2v",
    "consisid_frame_fid": "genface.eval.fid",
    "consisid_frechet_distance": "genface.eval.fid",
    "frechet_distance": "genface.eval.fid",
    "fid_features": "genface.eval.fid",
    "fid_statistics": "genface.eval.fid",
    "set_fid": "genface.eval.fid",
    "load_inception": "genface.eval.fid",
    "clip_score": "genface.eval.clipscore",
    "load_clip": "genface.eval.clipscore",
    "LatentSyncResult": "genface.eval.sync",
    "SyncResult": "genface.eval.sync",
    "latentsync_crops": "genface.eval.sync",
    "latentsync_scores": "genface.eval.sync",
    "load_latentsync_syncnet": "genface.eval.sync",
    "load_syncnet": "genface.eval.sync",
    "sync_offset": "genface.eval.sync",
    "sync_scores": "genface.eval.sync",
    "syncnet_mfcc": "genface.eval.sync",
    "syncnet_crop": "genface.eval.sync",
    "syncnet_crops": "genface.eval.sync",
    "FIDFeatures": "genface.eval.runner",
    "Item": "genface.eval.runner",
    "TalkJudge": "genface.eval.runner",
    "VIDEO_PROTOCOLS": "genface.eval.runner",
    "VideoJudge": "genface.eval.runner",
    "evaluate": "genface.eval.runner",
    "forgery_judge": "genface.eval.runner",
    "read_items": "genface.eval.runner",
    "real_features": "genface.eval.runner",
    "summarize": "genface.eval.runner",
    "summary_markdown": "genface.eval.runner",
    "video_judge": "genface.eval.runner",
    "write_summary": "genface.eval.runner",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
