"""A mustache under the nose, from face-mesh landmarks, turned with the head."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import cv2
import numpy as np

from dvp.filters.regions import MOUTH_CORNERS, UNDER_NOSE, UPPER_LIP, eyes
from dvp.filters.stickers import canvas, paste

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dvp.faces import Face

NAME = "mustache"
NEEDS_LANDMARKS = True
PARAMS = {
    "size": (1.0, 0.5, 2.5, "width relative to the mouth"),
}
BASE_W, BASE_H = 512, 192
COLOUR = (25, 35, 60, 255)


@functools.lru_cache(maxsize=1)
def mustache() -> np.ndarray:
    s = canvas(BASE_W, BASE_H)
    mid = BASE_W // 2
    for side in (-1, 1):
        cv2.ellipse(s, (mid + side * 120, 100), (125, 48), side * -12, 0, 360, COLOUR, -1, cv2.LINE_AA)
        cv2.ellipse(s, (mid + side * 225, 70), (30, 42), 0, 0, 360, COLOUR, -1, cv2.LINE_AA)  # the curls
    cv2.ellipse(s, (mid, 80), (60, 45), 0, 0, 360, COLOUR, -1, cv2.LINE_AA)
    return s


def place(face: Face) -> tuple[np.ndarray, float]:
    """Where the mustache goes: its middle (x, y) and its width, in pixels."""
    if face.landmarks is not None:
        m = face.landmarks
        # Between the nose and the lip, nearer the nose: it hangs over the lip.
        middle = m[UNDER_NOSE] * 0.6 + m[UPPER_LIP] * 0.4
        return middle, float(np.linalg.norm(m[MOUTH_CORNERS[0]] - m[MOUTH_CORNERS[1]])) * 1.5
    return np.array([face.x + face.w / 2, face.y + face.h * 0.7]), face.w * 0.6


def apply(image: np.ndarray, faces: list[Face], params: Mapping[str, float]) -> np.ndarray:
    for face in faces:
        middle, width = place(face)
        paste(image, mustache(), middle, width * params["size"], eyes(face).roll)
    return image
