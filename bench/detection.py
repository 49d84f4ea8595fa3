"""Face detection cost per frame size: dvp's detector (both models, tiles)
against one full-range pass over the whole frame, measured in one run.

    python bench/detection.py
"""
from __future__ import annotations

import time

from dvp.faces import FaceDetector
from dvp.sample import astronaut_face, background

SIZES = [(640, 480), (1280, 720), (1920, 1080), (3840, 2160)]
REPEATS = 5


def frame(width: int, height: int):
    image = background(width, height)
    crop = height // 3
    image[height // 3:height // 3 + crop, width // 3:width // 3 + crop] = astronaut_face(crop)
    return image


def per_frame_ms(detector: FaceDetector, image) -> float:
    detector.detect(image)  # warm up
    began = time.perf_counter()
    for _ in range(REPEATS):
        detector.detect(image)
    return (time.perf_counter() - began) / REPEATS * 1000


def main() -> None:
    ours, whole = FaceDetector(), FaceDetector(detector_range="full", tile=10**9)
    print("| frame | dvp (both models, tiles) | one whole-frame pass | ratio |")
    print("|---|---|---|---|")
    for width, height in SIZES:
        image = frame(width, height)
        a, b = per_frame_ms(ours, image), per_frame_ms(whole, image)
        print(f"| {width}x{height} | {a:.0f} ms | {b:.0f} ms | {a / b:.1f} |")


if __name__ == "__main__":
    main()
