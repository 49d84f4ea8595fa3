"""Sunglasses drawn over the eyes from face-mesh landmarks."""
import math

import cv2
import numpy as np

NAME = "sunglasses"
NEEDS_LANDMARKS = True
PARAMS = {
    "size": (1.0, 0.5, 2.0, "lens size relative to the eye"),
    "opacity": (0.9, 0.1, 1.0, "how dark the lenses are"),
}

# MediaPipe face-mesh indices: eye corners (outer, inner) and the face's sides.
RIGHT_EYE, LEFT_EYE = (33, 133), (263, 362)
RIGHT_TEMPLE, LEFT_TEMPLE = 127, 356


def _eyes(face):
    """Eye centres, eye width and the temples: from landmarks, else guessed from the box."""
    if face.landmarks is not None:
        m = face.landmarks
        right, left = m[list(RIGHT_EYE)].mean(axis=0), m[list(LEFT_EYE)].mean(axis=0)
        eye = float(np.linalg.norm(m[RIGHT_EYE[0]] - m[RIGHT_EYE[1]]))
        return right, left, eye, m[RIGHT_TEMPLE], m[LEFT_TEMPLE]
    cy = face.y + face.h * 0.38
    right = np.array([face.x + face.w * 0.3, cy])
    left = np.array([face.x + face.w * 0.7, cy])
    return right, left, face.w * 0.22, np.array([face.x, cy]), np.array([face.x + face.w, cy])


def apply(image, faces, params):
    overlay = image.copy()
    for face in faces:
        right, left, eye, right_temple, left_temple = _eyes(face)
        angle = math.degrees(math.atan2(left[1] - right[1], left[0] - right[0]))
        axes = (max(int(eye * 1.0 * params["size"]), 2), max(int(eye * 0.75 * params["size"]), 2))
        thickness = max(int(eye * 0.12), 1)
        for centre in (right, left):
            cv2.ellipse(overlay, tuple(int(v) for v in centre), axes, angle, 0, 360, (20, 20, 20), -1)
        inner = (left - right) * (axes[0] / max(float(np.linalg.norm(left - right)), 1.0))
        r_in, l_in = right + inner, left - inner
        for a, b in ((r_in, l_in), (right_temple, right), (left_temple, left)):
            cv2.line(overlay, tuple(int(v) for v in a), tuple(int(v) for v in b), (20, 20, 20), thickness)
    alpha = params["opacity"]
    return cv2.addWeighted(overlay, alpha, image, 1 - alpha, 0) if faces else image
