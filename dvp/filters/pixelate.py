"""Coarse mosaic over each face box."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cv2

from dvp.filters.regions import face_regions

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

    from dvp.faces import Face

NAME = "pixelate"
PARAMS = {
    "blocks": (8, 2, 64, "mosaic cells across the face", True),
    "padding": (0.2, 0.0, 1.0, "grow each face box by this fraction on every side"),
}


# Any: `blocks`, an integer parameter, holds an int, which cv2.resize needs.
def apply(image: np.ndarray, faces: list[Face], params: Mapping[str, Any]) -> np.ndarray:
    for x0, y0, x1, y1 in face_regions(image, faces, params["padding"]):
        cells = min(params["blocks"], x1 - x0, y1 - y0)
        small = cv2.resize(image[y0:y1, x0:x1], (cells, cells), interpolation=cv2.INTER_AREA)
        image[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    return image
