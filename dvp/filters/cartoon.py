"""Each face as a cartoon: smoothed, with flat colours and inked edges."""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2

from dvp.filters.regions import face_regions

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

    from dvp.faces import Face

NAME = "cartoon"
PARAMS = {
    "levels": (6, 2, 16, "colour levels per channel", True),
    "padding": (0.1, 0.0, 1.0, "grow each face box by this fraction on every side"),
}
# Smoothing costs grow with the face: larger ones are drawn at this size and scaled back.
LARGEST = 320


def apply(image: np.ndarray, faces: list[Face], params: Mapping[str, float]) -> np.ndarray:
    step = 256 // int(params["levels"])
    for x0, y0, x1, y1 in face_regions(image, faces, params["padding"]):
        region = image[y0:y1, x0:x1]
        height, width = region.shape[:2]
        scale = min(1.0, LARGEST / max(width, height))
        small = cv2.resize(region, (max(round(width * scale), 2), max(round(height * scale), 2)),
                           interpolation=cv2.INTER_AREA) if scale < 1 else region
        smooth = cv2.bilateralFilter(cv2.bilateralFilter(small, 9, 60, 7), 9, 60, 7)
        flat = (smooth // step) * step + step // 2
        grey = cv2.medianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), 5)
        ink = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 8)
        drawn = cv2.bitwise_and(flat, flat, mask=ink)
        if scale < 1:
            drawn = cv2.resize(drawn, (width, height), interpolation=cv2.INTER_LINEAR)
        image[y0:y1, x0:x1] = drawn
    return image
