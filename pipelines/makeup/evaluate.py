"""Makeup results judged with the figures :class:`MakeupPipeline` reports for its own, for ``genface eval makeup``:
FaceSim of the result's face against the source's, and per region (lips, skin, brows) the makeup similarity of the
result's face to the reference (1 - ΔE76 / 100 of their mean CIELAB colours; 1 = the same colour).

The pipeline measures its raw face crop before pasting it back; here the same square (2 face boxes wide, around the
face found in the result) is cut from the written result, and the reference is framed as the pipeline frames it
(the whole photo resized, its face regions kept), so results of any tool and size can be compared.
"""

from __future__ import annotations

import cv2
import numpy as np
import PIL.Image

from genface.eval.runner import Item
from genface.identity import FaceAnalyzer, FaceParser
from genface.media import load_image
from genface.pipelines.makeup.pipeline import makeup_similarity, mask_reference, source_facesim, square_crop_matrix


class MakeupJudge:
    """``facesim`` (with a recognizer in ``analyzer``) and ``makeup_<region>`` (with ``parser``) of an item's
    ``image`` (the result) against its ``source`` and ``reference``, at ``size`` pixels per face crop."""

    def __init__(self, analyzer: FaceAnalyzer, parser: FaceParser | None, size: int = 512) -> None:
        self.analyzer, self.parser, self.size = analyzer, parser, size

    def __call__(self, item: Item) -> dict[str, float]:
        source, result, reference = (load_image(item.fields[k]) for k in ("source", "image", "reference"))
        size = self.size
        scores: dict[str, float] = {}
        facesim = source_facesim(self.analyzer, source, result, self.analyzer.get(source, what="the source"))
        if facesim is not None:
            scores["facesim"] = facesim
        if self.parser is None:
            return scores
        matrix = square_crop_matrix(self.analyzer.get(result, what="the result"), result.shape, size)
        crop = cv2.warpAffine(result, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        framed = np.array(PIL.Image.fromarray(reference).resize((size, size)))
        masked, parsing = mask_reference(self.parser, framed)
        similarity = makeup_similarity(self.parser, crop, masked, parsing)
        return scores | {f"makeup_{region}": value for region, value in similarity.items()}
