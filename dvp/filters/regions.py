"""Where on the image a face is: shared geometry for the filters."""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from dvp.faces import Face

# MediaPipe face-mesh indices: eye corners (outer, inner), the face's sides,
# under the nose, the top of the upper lip, the mouth's corners.
RIGHT_EYE, LEFT_EYE = (33, 133), (263, 362)
RIGHT_TEMPLE, LEFT_TEMPLE = 127, 356
UNDER_NOSE, UPPER_LIP = 2, 0
MOUTH_CORNERS = (61, 291)


def padded_box(face: Face, padding: float, shape: tuple) -> tuple[int, int, int, int]:
    """The face box grown by `padding` (a fraction of its size) on each side,
    clipped to the image: (x0, y0, x1, y1) integer pixels."""
    height, width = shape[:2]
    px, py = face.w * padding, face.h * padding
    x0, y0 = int(max(face.x - px, 0)), int(max(face.y - py, 0))
    x1 = int(min(face.x + face.w + px, width))
    y1 = int(min(face.y + face.h + py, height))
    return x0, y0, x1, y1


def face_regions(image: np.ndarray, faces: Iterable[Face], padding: float) -> Iterator[tuple[int, int, int, int]]:
    """Yield each face's padded box (x0, y0, x1, y1), skipping slivers under 2 pixels."""
    for face in faces:
        x0, y0, x1, y1 = padded_box(face, padding, image.shape)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            yield x0, y0, x1, y1


@dataclass(frozen=True)
class Eyes:
    """Eye centres, an eye's width and the temples, in pixels."""
    right: np.ndarray  # the person's right eye: on the image's left
    left: np.ndarray
    width: float
    right_temple: np.ndarray
    left_temple: np.ndarray

    @property
    def roll(self) -> float:
        """The head's roll: the angle of the line between the eyes, in degrees,
        clockwise on the image (its y axis points down)."""
        dx, dy = self.left - self.right
        return math.degrees(math.atan2(dy, dx))

    @property
    def centre(self) -> np.ndarray:
        return (self.right + self.left) / 2


def eyes(face: Face) -> Eyes:
    """From landmarks, else guessed from the box (an upright face)."""
    if face.landmarks is not None:
        m = face.landmarks
        return Eyes(m[list(RIGHT_EYE)].mean(axis=0), m[list(LEFT_EYE)].mean(axis=0),
                    float(np.linalg.norm(m[RIGHT_EYE[0]] - m[RIGHT_EYE[1]])), m[RIGHT_TEMPLE], m[LEFT_TEMPLE])
    cy = face.y + face.h * 0.38
    return Eyes(np.array([face.x + face.w * 0.3, cy]), np.array([face.x + face.w * 0.7, cy]), face.w * 0.22,
                np.array([face.x, cy]), np.array([face.x + face.w, cy]))


def face_centre(face: Face) -> np.ndarray:
    return np.array([face.x + face.w / 2, face.y + face.h / 2])
