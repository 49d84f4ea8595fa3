"""The face mesh drawn over each face: its triangles, or its contours."""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dvp.faces import Face

NAME = "mesh"
NEEDS_LANDMARKS = True
PARAMS = {
    "contours": (0, 0, 1, "1: only the contours (face, eyes, brows, lips) instead of every triangle", True),
    "thickness": (1, 1, 8, "line width in pixels", True),
}
COLOUR = (80, 255, 120)


def _edges(contours: bool) -> np.ndarray:
    # Only workers draw meshes, and they have MediaPipe loaded already.
    from mediapipe.python.solutions import face_mesh_connections as connections
    return np.array(sorted(connections.FACEMESH_CONTOURS if contours else connections.FACEMESH_TESSELATION))


def apply(image: np.ndarray, faces: list[Face], params: Mapping[str, float]) -> np.ndarray:
    meshes = [f.landmarks for f in faces if f.landmarks is not None]
    if not meshes:
        return image
    edges = _edges(bool(params["contours"]))
    for points in meshes:
        lines = np.round(points[edges]).astype(np.int32)  # (edges, 2 ends, xy)
        cv2.polylines(image, list(lines), False, COLOUR, int(params["thickness"]), cv2.LINE_AA)
    return image
