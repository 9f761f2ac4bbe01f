"""The shared identity stack: detection, keypoints, alignment, face choice, parsing, embeddings, FaceSim.

Names are imported lazily so that ``import genface.identity`` stays cheap.

May import: genface._lazy, genface.errors, genface.hub, genface.media.
"""

from __future__ import annotations

from genface._lazy import lazy_getattr

_EXPORTS = {
    "Face": "genface.identity.types",
    "FaceIdentity": "genface.identity.types",
    "KPS_NAMES": "genface.identity.types",
    "FaceAnalyzer": "genface.identity.detect",
    "choose_face": "genface.identity.detect",
    "align_face": "genface.identity.align",
    "paste_back": "genface.identity.align",
    "Recognizer": "genface.identity.embed",
    "ArcFaceRecognizer": "genface.identity.embed",
    "FaceParser": "genface.identity.parsing",
    "BiSeNet": "genface.identity.parsing",
    "Parsing": "genface.identity.parsing",
    "ClipVisionEncoder": "genface.identity.eva_clip",
    "EvaClipVisionModel": "genface.identity.eva_clip",
    "IdentityEncoder": "genface.identity.encoder",
    "face_similarity": "genface.identity.similarity",
    "FaceSimResult": "genface.identity.similarity",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
