"""Faces left unfiltered, per-frame against strict privacy, on ground-truth clips:
a face photo moved along a known path, entering the frame, occluded, motion-blurred
and turned on known frames (tests/ground_truth.py). A frame leaks when a true face
box comes out nearly as it went in. Runs the worker's and the aggregator's real
per-frame code on each frame, without a broker. Then the detector alone at
several minimum confidences: its misses and its boxes where no face is.

    python bench/leaks.py
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: tests.ground_truth

from dvp.faces import FaceDetector  # noqa: E402
from dvp.messages import PER_FRAME, STRICT  # noqa: E402
from tests.ground_truth import RememberingDetector, leaked_frames, moving_face_clip, through_the_pipeline  # noqa: E402

CLIPS = [  # name, width, height, crop (the face is 0.3 of the crop)
    ("640x480, 72-pixel face", 640, 480, 240),
    ("640x480, close-up (face half the frame high)", 640, 480, 800),
    ("3840x2160, 150-pixel face", 3840, 2160, 500),
]

CONFIDENCES = [0.3, 0.5, 0.7]  # DVP_MIN_CONFIDENCE: 0.5 by default


def main() -> None:
    detector = FaceDetector()
    print("| clip | frames | leaked, per-frame | leaked, strict | per-frame misses on |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for name, width, height, crop in CLIPS:
            clip = moving_face_clip(width, height, crop)
            remembering = RememberingDetector(detector)
            per_frame = leaked_frames(clip, through_the_pipeline(clip, PER_FRAME, remembering, Path(work)))
            strict = leaked_frames(clip, through_the_pipeline(clip, STRICT, remembering, Path(work)))
            kinds = sorted({clip[i].trouble or "plain" for i in per_frame})
            print(f"| {name} | {len(clip)} | {len(per_frame)} ({len(per_frame) / len(clip):.0%}) "
                  f"| {len(strict)} ({len(strict) / len(clip):.0%}) | {', '.join(kinds) or '-'} |", flush=True)
    detector.close()
    thresholds()


def overlaps(face, box) -> bool:
    x, y, w, h = box
    return face.x < x + w and x < face.x + face.w and face.y < y + h and y < face.y + face.h


def thresholds() -> None:
    """The detector alone at several minimum confidences: frames where it misses a
    true face, and boxes it finds where no face is (a filter on the background:
    a picture cost, not a privacy one)."""
    print("\n| clip | min confidence | frames missing a face | boxes where no face is |")
    print("|---|---|---|---|")
    for name, width, height, crop in CLIPS:
        clip = moving_face_clip(width, height, crop)
        for confidence in CONFIDENCES:
            detector = FaceDetector(min_confidence=confidence)
            found = [detector.detect(frame.image) for frame in clip]
            detector.close()
            missing = sum(1 for frame, faces in zip(clip, found, strict=True)
                          if any(not any(overlaps(f, box) for f in faces) for box in frame.faces))
            stray = sum(1 for frame, faces in zip(clip, found, strict=True)
                        for f in faces if not any(overlaps(f, box) for box in frame.faces))
            print(f"| {name} | {confidence} | {missing} of {len(clip)} | {stray} |", flush=True)


if __name__ == "__main__":
    main()
