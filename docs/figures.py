"""Draws the README's pictures from the real code: `python docs/figures.py`."""
from pathlib import Path

import cv2
import numpy as np

from dvp.faces import FaceDetector
from dvp.filters import FILTERS, parse_spec
from dvp.sample import face_scene

# Shown after the catalogue: filters chained, and a face turned 25 degrees.
CHAIN = "pixelate:blocks=12|mesh:contours=1"
ROLLED = ("mustache", "mask", "emoji")
PER_ROW = 5


def labelled(tile: np.ndarray, label: str) -> np.ndarray:
    cv2.putText(tile, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(tile, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def filters_figure(path: Path) -> None:
    detector = FaceDetector()
    image = face_scene()
    faces = detector.detect(image, landmarks=True)
    height, width = image.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), -25, 1.0)
    rolled = cv2.warpAffine(image, turn, (width, height), borderMode=cv2.BORDER_REFLECT)
    rolled_faces = detector.detect(rolled, landmarks=True)
    detector.close()
    tiles = [labelled(image.copy(), "original")]
    tiles += [labelled(parse_spec(name).apply(image.copy(), faces), name) for name in FILTERS]
    tiles.append(labelled(parse_spec(CHAIN).apply(image.copy(), faces), "pixelate|mesh"))
    tiles += [labelled(parse_spec(name).apply(rolled.copy(), rolled_faces), f"{name}, turned")
              for name in ROLLED]
    while len(tiles) % PER_ROW:
        tiles.append(np.full_like(image, 255))
    rows = [np.hstack(tiles[i:i + PER_ROW]) for i in range(0, len(tiles), PER_ROW)]
    cv2.imwrite(str(path), np.vstack(rows), [cv2.IMWRITE_PNG_COMPRESSION, 9])


if __name__ == "__main__":
    filters_figure(Path(__file__).parent / "filters.png")
