"""Faces left unfiltered, per-frame against strict privacy, on ground-truth clips:
a face photo moved along a known path, entering the frame, occluded, motion-blurred
and turned on known frames (tests/ground_truth.py). A frame leaks when a true face
box comes out nearly as it went in. Runs the worker's and the aggregator's real
per-frame code on each frame, without a broker.

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


if __name__ == "__main__":
    main()
