"""Solid box over each face."""
from __future__ import annotations

from typing import TYPE_CHECKING

from dvp.filters.regions import face_regions

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

    from dvp.faces import Face

NAME = "blackout"
PARAMS = {
    "gray": (0, 0, 255, "fill level, 0 black to 255 white", True),
    "padding": (0.2, 0.0, 1.0, "grow each face box by this fraction on every side"),
}


def apply(image: np.ndarray, faces: list[Face], params: Mapping[str, float]) -> np.ndarray:
    for x0, y0, x1, y1 in face_regions(image, faces, params["padding"]):
        image[y0:y1, x0:x1] = params["gray"]
    return image
