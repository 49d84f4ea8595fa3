"""MediaPipe face detection (models bundled in the 0.10.21 wheel), at every face
size and every frame size: the fast backend.

MediaPipe sees its input shrunk to 128 or 192 pixels: in a 4K frame a face of
150 pixels becomes 8 and is missed, and the full-range model misses faces that
fill the frame. So a frame is looked at whole by both models (short-range for
close-ups, full-range for the rest) and, where it is larger than `tile`, in
overlapping tiles by the full-range model: tiles of `tile` pixels, then twice
that, and so on up to the frame's size, each overlapping its neighbours by
half, so that a face of a given pixel size is found whatever the frame size.
Even so, faces under about 30 pixels and faces turned past three-quarters are
mostly missed (the centerface backend finds them)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from dvp.faces import Face, merge

RANGES = ("short", "full", "both")


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


class MediaPipe:
    def __init__(self, min_confidence: float, detector_range: str = "both", tile: int = 640):
        if detector_range not in RANGES:
            raise ValueError(f"detector range must be one of {', '.join(RANGES)}")
        import mediapipe as mp
        detection = mp.solutions.face_detection.FaceDetection
        self._short = detection(model_selection=0, min_detection_confidence=min_confidence) \
            if detector_range in ("short", "both") else None
        self._full = detection(model_selection=1, min_detection_confidence=min_confidence) \
            if detector_range in ("full", "both") else None
        self._tile = tile

    def find(self, rgb: np.ndarray) -> list[Face]:
        height, width = rgb.shape[:2]
        found = []
        for model in (self._short, self._full):
            if model is not None:
                found += _run(model, rgb, 0, 0)
        for x, y, w, h in tiles(width, height, self._tile) if self._full is not None else ():
            found += _run(self._full, np.ascontiguousarray(rgb[y:y + h, x:x + w]), x, y)
        return merge(found)

    def find_near(self, rgb: np.ndarray) -> list[Face]:
        """A face a third of the picture is what the short-range model is made for
        (a third of the full-range model's cost, and it finds the face as well)."""
        return _run(self._short or self._full, rgb, 0, 0)

    def close(self) -> None:
        for model in (self._short, self._full):
            if model is not None:
                model.close()


def _run(model: Any, rgb: np.ndarray, left: int, top: int) -> list[Face]:
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
