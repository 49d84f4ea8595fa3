"""Face detection with MediaPipe (models bundled in the 0.10.21 wheel)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Face:
    """A face in pixel coordinates; `landmarks` (468x2, pixels) only when asked for."""
    x: float
    y: float
    w: float
    h: float
    score: float
    landmarks: np.ndarray | None = None


class FaceDetector:
    """Boxes from MediaPipe face detection (full range model); face-mesh
    landmarks are computed only when a filter needs them."""

    def __init__(self, min_confidence: float = 0.5, max_faces: int = 8):
        import mediapipe as mp  # heavy import, only where detection runs
        self._mp = mp
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_confidence)
        self._mesh: Any = None  # the face-mesh model, loaded when a filter first needs landmarks
        self._max_faces = max_faces
        self._min_confidence = min_confidence

    def detect(self, bgr: np.ndarray, landmarks: bool = False) -> list[Face]:
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        height, width = bgr.shape[:2]
        result = self._detector.process(rgb)
        faces = []
        for det in result.detections or ():
            box = det.location_data.relative_bounding_box
            x, y = max(box.xmin * width, 0.0), max(box.ymin * height, 0.0)
            w = min(box.width * width, width - x)
            h = min(box.height * height, height - y)
            if w > 1 and h > 1:
                faces.append(Face(x, y, w, h, float(det.score[0])))
        if landmarks and faces:
            faces = self._with_landmarks(rgb, faces)
        return faces

    def _with_landmarks(self, rgb: np.ndarray, faces: list[Face]) -> list[Face]:
        if self._mesh is None:
            self._mesh = self._mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=self._max_faces,
                min_detection_confidence=self._min_confidence)
        height, width = rgb.shape[:2]
        meshes = [np.array([(p.x * width, p.y * height) for p in m.landmark], dtype=np.float32)
                  for m in (self._mesh.process(rgb).multi_face_landmarks or ())]
        # Give each detected box the mesh whose centre lies inside it.
        out = []
        for face in faces:
            inside = [m for m in meshes
                      if face.x <= m[:, 0].mean() <= face.x + face.w
                      and face.y <= m[:, 1].mean() <= face.y + face.h]
            out.append(Face(face.x, face.y, face.w, face.h, face.score,
                            inside[0] if inside else None))
        return out

    def close(self) -> None:
        self._detector.close()
        if self._mesh is not None:
            self._mesh.close()
