"""Sunglasses drawn over the eyes from face-mesh landmarks."""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from dvp.filters.regions import eyes

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dvp.faces import Face

NAME = "sunglasses"
NEEDS_LANDMARKS = True
PARAMS = {
    "size": (1.0, 0.5, 2.0, "lens size relative to the eye"),
    "opacity": (0.9, 0.1, 1.0, "how dark the lenses are"),
}


def apply(image: np.ndarray, faces: list[Face], params: Mapping[str, float]) -> np.ndarray:
    overlay = image.copy()
    for face in faces:
        e = eyes(face)
        axes = (max(int(e.width * 1.0 * params["size"]), 2), max(int(e.width * 0.75 * params["size"]), 2))
        thickness = max(int(e.width * 0.12), 1)
        for centre in (e.right, e.left):
            cv2.ellipse(overlay, tuple(int(v) for v in centre), axes, e.roll, 0, 360, (20, 20, 20), -1)
        inner = (e.left - e.right) * (axes[0] / max(float(np.linalg.norm(e.left - e.right)), 1.0))
        r_in, l_in = e.right + inner, e.left - inner
        for a, b in ((r_in, l_in), (e.right_temple, e.right), (e.left_temple, e.left)):
            cv2.line(overlay, tuple(int(v) for v in a), tuple(int(v) for v in b), (20, 20, 20), thickness)
    alpha = params["opacity"]
    return cv2.addWeighted(overlay, alpha, image, 1 - alpha, 0) if faces else image
