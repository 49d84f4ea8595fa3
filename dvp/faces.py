"""Face detection with MediaPipe (models bundled in the 0.10.21 wheel), at every
face size and every frame size.

MediaPipe sees its input shrunk to 128 or 192 pixels: in a 4K frame a face of
150 pixels becomes 8 and is missed, and the full-range model misses faces that
fill the frame. So a frame is looked at whole by both models (short-range for
close-ups, full-range for the rest) and, where it is larger than `tile`, in
overlapping tiles by the full-range model: tiles of `tile` pixels, then twice
that, and so on up to the frame's size, each overlapping its neighbours by
half, so that a face of a given pixel size is found whatever the frame size.
Boxes from all views are merged; where two overlap, the union is kept (a box
too large costs a little picture, one too small leaks a face)."""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

RANGES = ("short", "full", "both")
MESH_FACES_PER_CROP = 2  # the face and a neighbour showing in its square: the right one is picked by its centre


@dataclass(frozen=True)
class Face:
    """A face in pixel coordinates; `landmarks` (468x2, pixels) only when asked for."""
    x: float
    y: float
    w: float
    h: float
    score: float
    landmarks: np.ndarray | None = None


def tiles(width: int, height: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    """(x, y, w, h) of the tiles a frame is looked at in, smallest first: squares
    of `tile` pixels, then twice that, ..., each level overlapping by half; none
    for a frame that fits in one tile."""
    size = tile
    while size < max(width, height):
        w, h = min(size, width), min(size, height)
        for y in _starts(height, h, size // 2):
            for x in _starts(width, w, size // 2):
                yield x, y, w, h
        size *= 2


def _starts(length: int, span: int, stride: int) -> list[int]:
    """Where windows of `span` start along `length`, `stride` apart, the last flush with the end."""
    if span >= length:
        return [0]
    starts = list(range(0, length - span, stride))
    return starts + [length - span]


def _overlap(a: Face, b: Face) -> tuple[float, float]:
    """(intersection over union, share of the smaller box inside the other)."""
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(x1 - x0, 0) * max(y1 - y0, 0)
    areas = (a.w * a.h, b.w * b.h)
    return inter / (sum(areas) - inter), inter / min(areas)


def merge(faces: list[Face]) -> list[Face]:
    """One box per face: boxes that overlap a third or more (IoU), or one mostly
    inside another (a face seen whole and, cut, at a tile's edge), become their
    union, with the best score."""
    merged: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        for i, kept in enumerate(merged):
            iou, inside = _overlap(face, kept)
            if iou >= 1 / 3 or inside >= 0.6:
                x0, y0 = min(face.x, kept.x), min(face.y, kept.y)
                x1, y1 = max(face.x + face.w, kept.x + kept.w), max(face.y + face.h, kept.y + kept.h)
                merged[i] = Face(x0, y0, x1 - x0, y1 - y0, kept.score)
                break
        else:
            merged.append(face)
    return merged


class FaceDetector:
    """Boxes from MediaPipe face detection over the views above; face-mesh
    landmarks are computed only when a filter needs them."""

    def __init__(self, min_confidence: float = 0.5, detector_range: str = "both", tile: int = 640):
        if detector_range not in RANGES:
            raise ValueError(f"detector range must be one of {', '.join(RANGES)}")
        # MediaPipe's import and models take a while, longer on a busy machine: they load
        # on a thread while the caller goes on (a worker joins its group meanwhile), and
        # the first detection waits for them.
        loader = ThreadPoolExecutor(1, thread_name_prefix="face-models")
        self._loading: Future[_Models] = loader.submit(_Models.load, detector_range, min_confidence)
        loader.shutdown(wait=False)
        self._tile = tile
        self._mesh: Any = None  # the face-mesh model, loaded when a filter first needs landmarks
        self._min_confidence = min_confidence

    def detect(self, bgr: np.ndarray, landmarks: bool = False) -> list[Face]:
        models = self._loading.result()
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        height, width = bgr.shape[:2]
        found = []
        for model in (models.short, models.full):
            if model is not None:
                found += self._run(model, rgb, 0, 0)
        for x, y, w, h in tiles(width, height, self._tile) if models.full is not None else ():
            found += self._run(models.full, np.ascontiguousarray(rgb[y:y + h, x:x + w]), x, y)
        faces = merge(found)
        if landmarks and faces:
            faces = self._with_landmarks(rgb, faces)
        return faces

    @staticmethod
    def _run(model, rgb: np.ndarray, left: int, top: int) -> list[Face]:
        """Faces in a view, in the coordinates of the whole frame."""
        height, width = rgb.shape[:2]
        faces = []
        for det in model.process(rgb).detections or ():
            box = det.location_data.relative_bounding_box
            x, y = max(box.xmin * width, 0.0), max(box.ymin * height, 0.0)
            w = min(box.width * width, width - x)
            h = min(box.height * height, height - y)
            if w > 1 and h > 1:
                faces.append(Face(left + x, top + y, w, h, float(det.score[0])))
        return faces

    def _with_landmarks(self, rgb: np.ndarray, faces: list[Face]) -> list[Face]:
        """Each face's mesh, from a square around it twice its size: over the whole
        frame the mesh model's own detector finds only large faces (not a 60-pixel
        face in 640x480, nor a 150-pixel one in 4K) and at most a few of a crowd."""
        if self._mesh is None:
            self._mesh = self._loading.result().mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=MESH_FACES_PER_CROP,
                min_detection_confidence=self._min_confidence)
        height, width = rgb.shape[:2]
        out = []
        for face in faces:
            side = 2 * max(face.w, face.h)
            cx, cy = face.x + face.w / 2, face.y + face.h / 2
            x0, y0 = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
            x1, y1 = int(min(cx + side / 2, width)), int(min(cy + side / 2, height))
            found = self._mesh.process(np.ascontiguousarray(rgb[y0:y1, x0:x1])).multi_face_landmarks or ()
            meshes = [np.array([(x0 + p.x * (x1 - x0), y0 + p.y * (y1 - y0)) for p in m.landmark], dtype=np.float32)
                      for m in found]
            # The face's own mesh is the one centred in its box (a neighbour may show in the square).
            inside = [m for m in meshes if face.x <= m[:, 0].mean() <= face.x + face.w
                      and face.y <= m[:, 1].mean() <= face.y + face.h]
            out.append(Face(face.x, face.y, face.w, face.h, face.score, inside[0] if inside else None))
        return out

    def close(self) -> None:
        models = self._loading.result()
        for model in (models.short, models.full, self._mesh):
            if model is not None:
                model.close()


@dataclass(frozen=True)
class _Models:
    mp: Any  # the mediapipe module: a heavy import, only where detection runs
    short: Any  # short-range detection (close-ups), or None
    full: Any  # full-range detection, or None

    @staticmethod
    def load(detector_range: str, min_confidence: float) -> _Models:
        import mediapipe as mp
        detection = mp.solutions.face_detection.FaceDetection
        return _Models(mp,
                       detection(model_selection=0, min_detection_confidence=min_confidence)
                       if detector_range in ("short", "both") else None,
                       detection(model_selection=1, min_detection_confidence=min_confidence)
                       if detector_range in ("full", "both") else None)
