"""The privacy benchmark: faces left in clear, and picture changed beyond the
faces, on scenes of real photos with known face boxes (tests/photos.py), for
each of dvp's detectors in both privacy modes, beside deface (1.5, its defaults)
in the same run. Then each detector's cost per frame at four frame sizes.

Each scene is written as a near-lossless H.264 file; deface runs as its own
command on it, and dvp's side runs the worker's and the aggregator's real
per-frame code on its frames, without a broker. A face-frame leaks when under half of its true box
changed and over half its detail is left (tests/ground_truth.py); the picture
changed is the share outside the true faces (grown by 60%) that changed by more
than 20 levels. These scenes are the benchmark's own: no test uses them.

    python bench/leaks.py [--frames 40]
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: tests.*

from dvp.faces import DETECTORS, FaceDetector  # noqa: E402
from dvp.messages import PER_FRAME, STRICT  # noqa: E402
from tests.ground_truth import RememberingDetector, TruthFrame, leaked, moving_face_clip, through_the_pipeline  # noqa: E402,E501
from tests.helpers import read_video, write_clip  # noqa: E402
from tests.photos import Placement, changed_outside, scene_clip  # noqa: E402

P = Placement


def scenes(frames: int) -> dict[str, list[TruthFrame]]:
    crowd = [P(f"lfw{2 * k}", 24 + (k * 5) % 21, 0.06 + 0.128 * (k % 7) + 0.04 * (k // 7 % 2),
               0.18 + 0.21 * (k // 7), dx=-1, dy=0.5) for k in range(28)]
    return {
        "1280x720 wide shot: 6 people, faces 24-60 px, 2 turned, 1 half hidden": scene_clip(1280, 720, [
            P("hopper", 24, 0.10, 0.55, dx=1.5), P("astronaut", 30, 0.28, 0.30, dx=1),
            P("cameraman", 36, 0.45, 0.60, trouble="turned"), P("astronaut", 44, 0.62, 0.35, dx=-1,
                                                                   trouble="occluded", first=frames // 3),
            P("cameraman", 52, 0.78, 0.62, dx=-1.5, trouble="mirrored"), P("hopper", 60, 0.90, 0.30, dy=1)],
            frames, "rocket"),
        "1280x720: large, small (38-50 px) and grey faces, one turned": scene_clip(1280, 720, [
            P("astronaut", 220, 0.22, 0.45, dx=2), P("hopper", 38, 0.55, 0.25, trouble="grey"),
            P("cameraman", 50, 0.70, 0.70, dx=-1), P("hopper", 44, 0.88, 0.40, trouble="turned"),
            P("astronaut", 46, 0.45, 0.78, trouble="grey", dy=-1)], frames, "coffee"),
        "1920x1080 grey crowd: 28 faces, 24-44 px": scene_clip(1920, 1080, crowd, frames, "motorcycle", grey=True),
        "3840x2160: 5 people, faces 30-150 px, one turned": scene_clip(3840, 2160, [
            P("astronaut", 30, 0.15, 0.40, dx=3), P("hopper", 60, 0.35, 0.65), P("cameraman", 90, 0.55, 0.35),
            P("astronaut", 150, 0.75, 0.60, trouble="turned"), P("hopper", 40, 0.92, 0.20, dx=-2)],
            max(frames // 4, 4), "chelsea"),
        "640x480: one face moving, entering, hidden, blurred, turned": moving_face_clip(640, 480, 240,
                                                                                       max(frames, 44)),
    }


def judge(clip: list[TruthFrame], outputs: list[np.ndarray]) -> tuple[int, list[float]]:
    leaks = sum(leaked(t.image, out, box) for t, out in zip(clip, outputs, strict=True) for box in t.faces)
    changed = [changed_outside(t.image, out, t.faces) for t, out in zip(clip, outputs, strict=True)]
    return leaks, changed


def as_file(clip: list[TruthFrame], path: Path) -> list[TruthFrame]:
    """The clip written as a near-lossless H.264 file, and read back: what both tools
    are given (its 4:2:0 colour is the input's, not a change either tool made)."""
    write_clip(path, [t.image for t in clip], options={"crf": "4", "preset": "veryfast"})
    return [dataclasses.replace(t, image=image) for t, image in zip(clip, read_video(path).frames, strict=True)]


def run_deface(source: Path, work: Path, width: int, height: int) -> list[np.ndarray]:
    """deface's output, at the input's size: its writer scales frames to a multiple
    of 16 (1920x1080 comes out 1920x1088), scaled back here to be compared."""
    out = work / "deface-out.mp4"
    subprocess.run(["deface", str(source), "-o", str(out)], check=True, capture_output=True)
    return [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) if f.shape[:2] != (height, width) else f
            for f in read_video(out).frames]


def cell(leaks: int, changed: list[float]) -> str:
    return f"{leaks} / {np.median(changed):.1%} / {max(changed):.1%}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()
    deface = shutil.which("deface")
    detectors = {name: RememberingDetector(FaceDetector(name)) for name in DETECTORS}
    columns = ([("deface", None)] if deface else []) + [(d, m) for d in DETECTORS for m in (STRICT, PER_FRAME)]
    print("Leaked face-frames / picture changed outside the faces, median / worst frame\n")
    print("| scene | face-frames | " + " | ".join(f"{d} {m}" if m else d for d, m in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, made in scenes(args.frames).items():
            source = work / "scene.mp4"
            clip = as_file(made, source)
            cells = []
            for detector, mode in columns:
                height, width = clip[0].image.shape[:2]
                outputs = run_deface(source, work, width, height) if mode is None else \
                    through_the_pipeline(clip, mode, detectors[detector], work)
                cells.append(cell(*judge(clip, outputs)))
            print(f"| {name} | {sum(len(t.faces) for t in clip)} | " + " | ".join(cells) + " |", flush=True)
    for d in detectors.values():
        d.detector.close()
    costs(deface is not None)


SIZES = [(640, 480), (1280, 720), (1920, 1080), (3840, 2160)]


def costs(with_deface: bool) -> None:
    """Milliseconds a frame to find faces, each detector on one thread and on all,
    beside deface's own CenterFace call (onnxruntime, all threads), on a real scene."""
    import os

    runs = {f"dvp {d}, 1 thread": FaceDetector(d, threads=1) for d in DETECTORS}
    runs.update({f"dvp centerface, {os.cpu_count()} threads": FaceDetector("centerface", threads=0)})
    if with_deface:
        from deface.centerface import CenterFace
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the provider it runs on
            cf = CenterFace(backend="onnxrt", override_execution_provider="CPUExecutionProvider")
        runs["deface"] = type("Deface", (), {"detect": staticmethod(lambda bgr: cf(bgr[:, :, ::-1], threshold=0.2))})
    print("\n| frame | " + " | ".join(runs) + " |")
    print("|---|" + "---|" * len(runs))
    for width, height in SIZES:
        image = scene_clip(width, height, [P("astronaut", 60, 0.4, 0.4), P("hopper", 30, 0.7, 0.6)], 1)[0].image
        cells = []
        for detector in runs.values():
            detector.detect(image)  # warm up
            repeats = 2 if width > 2000 else 5
            began = time.perf_counter()
            for _ in range(repeats):
                detector.detect(image)
            cells.append(f"{(time.perf_counter() - began) / repeats * 1000:.0f} ms")
        print(f"| {width}x{height} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
