"""Gaussian blur over each face box."""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2

from dvp.filters.regions import face_regions

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

    from dvp.faces import Face

NAME = "blur"
PARAMS = {
    "strength": (0.5, 0.05, 2.0, "blur kernel size as a fraction of the face size"),
    "padding": (0.2, 0.0, 1.0, "grow each face box by this fraction on every side"),
}


# A Gaussian costs its width per pixel: a 1000-pixel face wants a 500-pixel kernel
# (seconds a frame). Wider than this, the face is blurred at a scale where the
# kernel is this wide and scaled back, which looks the same.
WIDEST_KERNEL = 31


def apply(image: np.ndarray, faces: list[Face], params: Mapping[str, float]) -> np.ndarray:
    for x0, y0, x1, y1 in face_regions(image, faces, params["padding"]):
        width, height = x1 - x0, y1 - y0
        kernel = params["strength"] * max(width, height)
        scale = min(1.0, WIDEST_KERNEL / kernel)
        region = image[y0:y1, x0:x1]
        if scale < 1.0:
            region = cv2.resize(region, (max(round(width * scale), 1), max(round(height * scale), 1)),
                                interpolation=cv2.INTER_AREA)
        odd = int(kernel * scale) | 1  # as OpenCV needs
        region = cv2.GaussianBlur(region, (odd, odd), 0)
        if scale < 1.0:
            region = cv2.resize(region, (width, height), interpolation=cv2.INTER_LINEAR)
        image[y0:y1, x0:x1] = region
    return image
