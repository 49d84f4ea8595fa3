"""Where on the image a face is: shared geometry for the filters."""
from __future__ import annotations

from dvp.faces import Face


def padded_box(face: Face, padding: float, shape: tuple) -> tuple[int, int, int, int]:
    """The face box grown by `padding` (a fraction of its size) on each side,
    clipped to the image: (x0, y0, x1, y1) integer pixels."""
    height, width = shape[:2]
    px, py = face.w * padding, face.h * padding
    x0, y0 = int(max(face.x - px, 0)), int(max(face.y - py, 0))
    x1 = int(min(face.x + face.w + px, width))
    y1 = int(min(face.y + face.h + py, height))
    return x0, y0, x1, y1


def face_regions(image, faces, padding: float):
    """Yield each face's padded box (x0, y0, x1, y1), skipping slivers under 2 pixels."""
    for face in faces:
        x0, y0, x1, y1 = padded_box(face, padding, image.shape)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            yield x0, y0, x1, y1
