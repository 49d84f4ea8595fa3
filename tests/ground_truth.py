"""Clips whose faces are where the test says they are: the astronaut's photo moved
along a known path over a textured background, with the frames that trouble a
detector (entering the frame, occluded, motion-blurred, turned) at known places.
Outputs are judged against these true boxes, never against the product's detector."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dvp.config import Names
from dvp.consumers.frames import Consumed, FrameProcessor, WorkerIdentity
from dvp.faces import Detectors, Face, FaceDetector
from dvp.jpeg import EIGHT_K
from dvp.messages import ASSEMBLY, FRAMES, Frame, JobCompleted, JobEnd, JobStart
from dvp.sample import astronaut_face, background
from dvp.streams.assembler import AssemblyOptions, JobAssembler
from tests.helpers import read_video

# Where the face is in the astronaut photo: eyebrows to chin, cheek to cheek,
# as fractions of the crop (x, y, w, h).
FACE_IN_CROP = (0.30, 0.28, 0.30, 0.30)
Box = tuple[float, float, float, float]  # x, y, w, h in pixels


@dataclass(frozen=True)
class TruthFrame:
    image: np.ndarray
    faces: tuple[Box, ...]  # the visible part of each face
    trouble: str  # "", "entering", "occluded", "blurred", "turned"


def place(image: np.ndarray, photo: np.ndarray, x: int, y: int) -> None:
    """Paste `photo` with its top-left at (x, y), clipped to the image."""
    h, w = photo.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, image.shape[1]), min(y + h, image.shape[0])
    if x1 > x0 and y1 > y0:
        image[y0:y1, x0:x1] = photo[y0 - y:y1 - y, x0 - x:x1 - x]


def clip_box(box: Box, width: int, height: int) -> Box | None:
    x, y, w, h = box
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    return (x0, y0, x1 - x0, y1 - y0) if x1 - x0 > 2 and y1 - y0 > 2 else None


# What happens to the face, by frame: (first, last, trouble).
TROUBLES = [(14, 16, "occluded"), (24, 25, "blurred"), (33, 35, "turned")]


def trouble_at(index: int) -> str:
    return next((kind for first, last, kind in TROUBLES if first <= index <= last), "")


def moving_face_clip(width: int, height: int, crop: int, frames: int = 44) -> list[TruthFrame]:
    """The face enters from the left edge and glides right; troubles on the way."""
    base = background(width, height)
    photo = astronaut_face(crop)
    fx, fy, fw, fh = FACE_IN_CROP
    out = []
    for i in range(frames):
        image = base.copy()
        x = int(-0.45 * crop + (width - 0.6 * crop) * i / (frames - 1))
        y = int((height - crop) / 2 + 0.1 * crop * np.sin(i / 5))
        face: Box = (x + fx * crop, y + fy * crop, fw * crop, fh * crop)
        kind = trouble_at(i)
        if kind == "turned":  # a head turned away: seen from the side, the face narrows
            narrow = cv2.resize(photo, (int(crop * 0.4), crop), interpolation=cv2.INTER_AREA)
            place(image, narrow, x + int(0.3 * crop), y)
            face = (x + (0.3 + 0.4 * fx) * crop, y + fy * crop, 0.4 * fw * crop, fh * crop)
        elif kind == "blurred":  # fast motion: a streak a quarter of the face long
            length = max(int(fw * crop / 4), 3)
            kernel = np.zeros((length, length), np.float32)
            kernel[length // 2, :] = 1 / length
            place(image, cv2.filter2D(photo, -1, kernel), x, y)
        else:
            place(image, photo, x, y)
        if kind == "occluded":  # a hand or a passer-by: the lower 60% of the face hidden
            fx0, fy0, fw0, fh0 = face
            cut = int(fy0 + 0.4 * fh0)
            image[cut:int(y + crop), int(fx0 - 0.2 * fw0):int(fx0 + 1.2 * fw0)] = (70, 90, 110)
            face = (fx0, fy0, fw0, 0.4 * fh0)
        visible = clip_box(face, width, height)
        out.append(TruthFrame(image, (visible,) if visible else (), "entering" if x < 0 and not kind else kind))
    return out


def detail(image: np.ndarray) -> float:
    """Mean strength of edges: what makes a face recognisable, and what filters take away."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def leaked(source: np.ndarray, output: np.ndarray, box: Box, changed: float = 12.0) -> bool:
    """A face is leaked when its true box comes out nearly as it went in: fewer than
    half its pixels changed by more than `changed` grey levels, and more than half
    its detail left (a blurred face that is blurred again changes little, but loses
    its detail; a pixelated one gains edges, but changes everywhere)."""
    x, y, w, h = (int(round(v)) for v in box)
    a, b = source[y:y + h, x:x + w], output[y:y + h, x:x + w]
    unchanged = float((np.abs(a.astype(np.int16) - b).max(axis=2) > changed).mean()) < 0.5
    return unchanged and detail(b) > 0.5 * detail(a)


def leaked_frames(truth: list[TruthFrame], outputs: list[np.ndarray]) -> list[int]:
    return [i for i, (t, out) in enumerate(zip(truth, outputs, strict=True))
            if any(leaked(t.image, out, box) for box in t.faces)]


class RememberingDetector:
    """The product's detector, asked once per picture: both modes see the same detections."""

    def __init__(self, detector: FaceDetector):
        self.detector = detector
        self.seen: dict[bytes, list[Face]] = {}

    def detect(self, image: np.ndarray, landmarks: bool = False) -> list[Face]:
        key = image.tobytes()
        if key not in self.seen:
            self.seen[key] = self.detector.detect(image)
        return self.seen[key]


def through_the_pipeline(clip: list[TruthFrame], privacy: str, detector, work: Path,
                         filter_spec: str = "blur", reach: int = 12) -> list[np.ndarray]:
    """The clip's frames through a worker's per-frame work and the aggregator's
    assembly, as records: what `dvp run` does, without a broker."""
    names = Names.with_prefix("gt.")
    height, width = clip[0].image.shape[:2]
    worker = FrameProcessor(names, Detectors(lambda _name: detector), WorkerIdentity("w", "host", "127.0.0.1", 1),
                            jpeg_quality=90, max_pixels=EIGHT_K)
    start = JobStart(f"gt-{privacy}", "ground-truth", filter_spec, privacy, width, height, 25, 1, 1, 25, len(clip),
                     False, 0)
    job = JobAssembler(start, work, work, AssemblyOptions(18, "veryfast", 2000, 512_000_000, reach))
    for i, truth in enumerate(clip):
        jpeg = cv2.imencode(".jpg", truth.image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        record = FRAMES.encode(Frame(start.job_id, i, i, filter_spec, privacy, jpeg, 0, 0))
        outcome = worker.process(Consumed(names.frames, 0, i, b"", record))
        job.add(ASSEMBLY.decode(outcome.result.value))
    done = job.add(JobEnd(start.job_id, len(clip), 0))
    if not isinstance(done, JobCompleted):
        raise RuntimeError(f"the ground-truth job did not complete: {done}")
    return read_video(done.output).frames
