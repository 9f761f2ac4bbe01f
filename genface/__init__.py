"""genface: Diffusers-style pipelines for generative face video and face editing, on one identity stack.

Importing ``genface`` is cheap: heavy modules (torch models, face engines) load on first use.

Packages: ``identity`` (the shared identity stack), ``media`` (images, video, audio), ``models`` (torch modules
diffusers and transformers lack), ``eval`` (the papers' metrics), ``training`` (pieces the training scripts share),
``pipelines`` (one folder per pipeline) and ``cli`` (the command line); beside them ``errors``, ``arguments``,
``hub``, ``provenance``, ``forensics``, ``resources``, ``samples`` and ``web``. docs/architecture.md shows their
modules and what each may import.

May import: genface._lazy.
"""

from __future__ import annotations

from genface._lazy import lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    "FaceAnalyzer": "genface.identity",
    "FaceIdentity": "genface.identity",
    "FaceParser": "genface.identity",
    "IdentityEncoder": "genface.identity",
    "face_similarity": "genface.identity",
    "load_image": "genface.media",
    "load_audio": "genface.media",
    "read_video": "genface.media",
    "write_video": "genface.media",
}
__all__ = ["__version__", *sorted(_EXPORTS)]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
