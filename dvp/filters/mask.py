"""A masquerade mask over the eyes, from face-mesh landmarks, turned with the head."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import cv2
import numpy as np

from dvp.filters.regions import eyes
from dvp.filters.stickers import canvas, paste

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dvp.faces import Face

NAME = "mask"
NEEDS_LANDMARKS = True
PARAMS = {
    "size": (1.0, 0.5, 2.0, "width relative to the distance between the eyes"),
}
BASE_W, BASE_H = 512, 224
HOLES = (BASE_W * 0.3, BASE_W * 0.7)  # where the eyes go across the mask
HOLE_SPAN = HOLES[1] - HOLES[0]


@functools.lru_cache(maxsize=1)
def masquerade() -> np.ndarray:
    s = canvas(BASE_W, BASE_H)
    middle = (BASE_W // 2, BASE_H // 2)
    cv2.ellipse(s, middle, (BASE_W // 2 - 6, BASE_H // 2 - 6), 0, 0, 360, (90, 20, 110, 255), -1, cv2.LINE_AA)
    cv2.ellipse(s, middle, (BASE_W // 2 - 6, BASE_H // 2 - 6), 0, 0, 360, (40, 200, 230, 255), 8, cv2.LINE_AA)
    for x in HOLES:
        cv2.ellipse(s, (int(x), BASE_H // 2 - 8), (62, 38), 0, 0, 360, (0, 0, 0, 0), -1, cv2.LINE_AA)
    return s


def apply(image: np.ndarray, faces: list[Face], params: Mapping[str, float]) -> np.ndarray:
    for face in faces:
        e = eyes(face)
        between = float(np.linalg.norm(e.left - e.right))
        width = between / HOLE_SPAN * BASE_W * params["size"]
        paste(image, masquerade(), e.centre, width, e.roll)
    return image
