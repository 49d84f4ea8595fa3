"""A smiling sticker over each face, turned with the head."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import cv2

from dvp.filters.regions import eyes, face_centre
from dvp.filters.stickers import canvas, paste

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

    from dvp.faces import Face

NAME = "emoji"
NEEDS_LANDMARKS = True  # for the head's roll; upright without them
PARAMS = {
    "size": (1.4, 0.5, 3.0, "sticker width relative to the face box"),
}
BASE = 512  # drawn at this size, scaled to each face


@functools.lru_cache(maxsize=1)
def smiley() -> np.ndarray:
    s = canvas(BASE, BASE)
    middle, radius = (BASE // 2, BASE // 2), BASE // 2 - 8
    cv2.circle(s, middle, radius, (0, 200, 255, 255), -1, cv2.LINE_AA)
    cv2.circle(s, middle, radius, (0, 120, 200, 255), 10, cv2.LINE_AA)
    for x in (BASE * 0.35, BASE * 0.65):
        cv2.ellipse(s, (int(x), int(BASE * 0.38)), (BASE // 18, BASE // 11), 0, 0, 360, (40, 40, 40, 255), -1,
                    cv2.LINE_AA)
    cv2.ellipse(s, (BASE // 2, int(BASE * 0.55)), (int(BASE * 0.28), int(BASE * 0.22)), 0, 15, 165,
                (40, 40, 40, 255), BASE // 22, cv2.LINE_AA)
    return s


def apply(image: np.ndarray, faces: list[Face], params: Mapping[str, float]) -> np.ndarray:
    for face in faces:
        e = eyes(face)
        # The eyes sit above the face's middle: a sticker centred between them
        # would leave the chin out, so it goes halfway to the box's middle.
        centre = (e.centre + face_centre(face)) / 2 if face.landmarks is not None else face_centre(face)
        paste(image, smiley(), centre, params["size"] * max(face.w, face.h), e.roll)
    return image
