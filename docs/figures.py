"""Draws the README's pictures from the real code: `python docs/figures.py`."""
from pathlib import Path

import cv2
import numpy as np

from dvp.faces import FaceDetector
from dvp.filters import FILTERS, parse_spec
from dvp.sample import astronaut_face, background


def filters_figure(path: Path) -> None:
    image = background(360, 300)
    image[40:280, 60:300] = astronaut_face(240)
    faces = FaceDetector().detect(image, landmarks=True)
    tiles = [image] + [parse_spec(name).apply(image.copy(), faces) for name in FILTERS]
    labels = ["original", *FILTERS]
    for tile, label in zip(tiles, labels, strict=False):
        cv2.putText(tile, label, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.imwrite(str(path), np.hstack(tiles), [cv2.IMWRITE_PNG_COMPRESSION, 9])


if __name__ == "__main__":
    filters_figure(Path(__file__).parent / "filters.png")
