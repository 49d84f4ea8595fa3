"""Each face's box and detection score, to see what the detector found."""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

    from dvp.faces import Face

NAME = "outline"
PARAMS = {
    "thickness": (2, 1, 12, "line width in pixels", True),
}
COLOUR = (0, 220, 255)


def apply(image: np.ndarray, faces: list[Face], params: Mapping[str, float]) -> np.ndarray:
    thickness = int(params["thickness"])
    for face in faces:
        x0, y0 = int(face.x), int(face.y)
        x1, y1 = int(face.x + face.w), int(face.y + face.h)
        cv2.rectangle(image, (x0, y0), (x1, y1), COLOUR, thickness, cv2.LINE_AA)
        scale = max(face.w / 250, 0.4)
        label = f"{face.score:.2f}"
        (_w, text_h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        below = y0 - text_h - 2 * thickness < 0  # no room above the box
        origin = (x0, y0 + text_h + 2 * thickness if below else y0 - 2 * thickness)
        cv2.putText(image, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, COLOUR, thickness, cv2.LINE_AA)
    return image
