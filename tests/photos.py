"""Ground truth from real photos that packages ship: people at known face boxes,
with their hair, shoulders and what they hold, placed at chosen face sizes over a
real photo's background, moving, and troubled on chosen frames (turned, half
hidden by an object, grey, motion-blurred). Outputs are judged against these
true boxes, never against the product's detector.

The people: scikit-image's astronaut (frontal) and cameraman (three-quarter to
profile, grey, the camera at his face), matplotlib's Grace Hopper (frontal, cap
and glasses), and the 100 faces of scikit-image's LFW subset (25x25 grey crops of
real people, frontal to turned: a crowd)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from tests.ground_truth import Box, TruthFrame, clip_box, place


@dataclass(frozen=True)
class Person:
    image: np.ndarray  # BGR: head and shoulders with their context
    face: Box  # eyebrows to chin, cheek to cheek, in `image` pixels


@functools.cache
def people() -> dict[str, Person]:
    from matplotlib import cbook
    from skimage import data
    astronaut = data.astronaut()[0:330, 60:360, ::-1]
    camera = cv2.cvtColor(data.camera()[40:290, 100:360], cv2.COLOR_GRAY2BGR)
    hopper = cv2.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))[20:440, 90:450]
    found = {"astronaut": Person(np.ascontiguousarray(astronaut), (120, 84, 90, 90)),
             "cameraman": Person(np.ascontiguousarray(camera), (80, 60, 72, 100)),
             "hopper": Person(hopper, (80, 130, 195, 185))}
    for i, face in enumerate(data.lfw_subset()[:100]):  # the first 100 are faces
        grey = (face * 255).astype(np.uint8)
        found[f"lfw{i}"] = Person(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), (2, 3, 21, 21))
    return found


@functools.cache
def backdrop(name: str, width: int, height: int) -> np.ndarray:
    """A real photo filling the frame (cropped to its shape, not stretched)."""
    from skimage import data
    photo = {"rocket": data.rocket, "motorcycle": data.stereo_motorcycle, "coffee": data.coffee,
             "chelsea": data.chelsea}[name]()
    photo = photo[0] if isinstance(photo, tuple) else photo
    photo = np.ascontiguousarray(photo[:, :, ::-1])
    h, w = photo.shape[:2]
    scale = max(width / w, height / h)
    big = cv2.resize(photo, (int(np.ceil(w * scale)), int(np.ceil(h * scale))), interpolation=cv2.INTER_CUBIC)
    y, x = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return np.ascontiguousarray(big[y:y + height, x:x + width])


@dataclass(frozen=True)
class Placement:
    """One person in a clip: face `face_px` wide, its centre at (cx, cy) (fractions
    of the frame) on the first frame, moving (dx, dy) pixels a frame; `trouble`
    applies on frames [first, last] of the clip (every frame by default)."""
    who: str
    face_px: int
    cx: float
    cy: float
    dx: float = 0.0
    dy: float = 0.0
    trouble: str = ""  # "", "turned", "occluded", "grey", "blurred", "mirrored"
    first: int = 0
    last: int = 10**9


def _render(person: Person, face_px: int, trouble: str) -> tuple[np.ndarray, Box]:
    """The person scaled so that the face is `face_px` wide, troubled; with the face box."""
    image, (fx, fy, fw, fh) = person.image, person.face
    scale = face_px / fw
    out = cv2.resize(image, (max(int(image.shape[1] * scale), 1), max(int(image.shape[0] * scale), 1)),
                     interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    face = (fx * scale, fy * scale, fw * scale, fh * scale)
    if trouble == "mirrored":
        out = np.ascontiguousarray(out[:, ::-1])
        face = (out.shape[1] - face[0] - face[2], face[1], face[2], face[3])
    elif trouble == "grey":
        out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    elif trouble == "turned":  # a head turning away: the far side foreshortened, the near side kept
        h, w = out.shape[:2]
        x0, y0, x1, y1 = face[0], face[1], face[0] + face[2], face[1] + face[3]
        squeeze = 0.45 * face[2]
        src = np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        dst = np.float32([[x0, y0 + 0.1 * face[3]], [x1 - squeeze, y0], [x1 - squeeze, y1],
                          [x0, y1 - 0.1 * face[3]]])
        out = cv2.warpPerspective(out, cv2.getPerspectiveTransform(src, dst), (w, h),
                                  borderMode=cv2.BORDER_REPLICATE)
        face = (x0, y0, face[2] - squeeze, face[3])
    elif trouble == "blurred":  # fast motion: a streak a quarter of the face long
        length = max(int(face[2] / 4), 3)
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1 / length
        out = cv2.filter2D(out, -1, kernel)
    return out, face


def _occlude(image: np.ndarray, face: Box) -> Box:
    """An object (a coffee cup from a real photo) in front of the lower half of the
    face and beside it; what stays visible of the face."""
    from skimage import data
    x, y, w, h = face
    cup = np.ascontiguousarray(data.coffee()[60:330, 160:430, ::-1])
    top = int(y + 0.5 * h)
    x0, x1 = int(x - 0.3 * w), int(x + 1.3 * w)
    y1 = int(y + 1.4 * h)
    if x1 - x0 > 1 and y1 - top > 1:
        patch = cv2.resize(cup, (x1 - x0, y1 - top), interpolation=cv2.INTER_AREA)
        place(image, patch, x0, top)
    return x, y, w, 0.5 * h


def scene_clip(width: int, height: int, placements: list[Placement], frames: int,
               backdrop_name: str = "rocket", grey: bool = False) -> list[TruthFrame]:
    """Frames of these people over the backdrop, in order of placement (later ones in front)."""
    base = backdrop(backdrop_name, width, height)
    who = people()
    out = []
    for i in range(frames):
        image = base.copy()
        boxes: list[Box] = []
        troubles = set()
        for p in placements:
            trouble = p.trouble if p.first <= i <= p.last else ""
            photo, (fx, fy, fw, fh) = _render(who[p.who], p.face_px, "" if trouble == "occluded" else trouble)
            left = int(p.cx * width + p.dx * i - fx - fw / 2)
            top = int(p.cy * height + p.dy * i - fy - fh / 2)
            place(image, photo, left, top)
            face: Box = (left + fx, top + fy, fw, fh)
            if trouble == "occluded":
                face = _occlude(image, face)
            # A face painted over by a later person is hidden where they overlap: keep what shows.
            boxes = [b for b in boxes if not _covered_by(b, (left, top, photo.shape[1], photo.shape[0]))]
            visible = clip_box(face, width, height)
            if visible is not None:
                boxes.append(visible)
            troubles.add(trouble)
        if grey:
            image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        out.append(TruthFrame(image, tuple(boxes), ",".join(sorted(t for t in troubles if t))))
    return out


def _covered_by(face: Box, photo: Box) -> bool:
    x, y, w, h = face
    px, py, pw, ph = photo
    return px <= x and py <= y and x + w <= px + pw and y + h <= py + ph


def changed_outside(source: np.ndarray, output: np.ndarray, faces: tuple[Box, ...], grow: float = 0.6,
                    changed: float = 20.0) -> float:
    """Share of the picture outside the true faces (each grown by `grow` of its size)
    that the output changed by more than `changed` levels in any channel: what a
    filter costs the picture beyond the faces it is there to hide."""
    outside = np.ones(source.shape[:2], bool)
    for x, y, w, h in faces:
        x0, y0 = int(max(x - grow * w / 2, 0)), int(max(y - grow * h / 2, 0))
        outside[y0:int(np.ceil(y + h * (1 + grow / 2))), x0:int(np.ceil(x + w * (1 + grow / 2)))] = False
    if not outside.any():
        return 0.0
    moved = np.abs(source.astype(np.int16) - output).max(axis=2) > changed
    return float(moved[outside].mean())


# The scenes the tests use. bench/leaks.py has scenes of its own (other places,
# sizes and backdrops), so that no test scene is the benchmark.
def wide_shot(frames: int = 8) -> list[TruthFrame]:
    """1280x720: six people, faces 24-60 px, two turned and one half hidden."""
    return scene_clip(1280, 720, [
        Placement("astronaut", 24, 0.12, 0.30, dx=2),
        Placement("hopper", 32, 0.30, 0.62, dx=-1),
        Placement("cameraman", 40, 0.50, 0.35, dx=1, trouble="mirrored"),
        Placement("astronaut", 48, 0.68, 0.62, trouble="turned"),
        Placement("hopper", 60, 0.86, 0.35, dy=1, trouble="occluded"),
        Placement("cameraman", 36, 0.90, 0.75, dx=-2),
    ], frames, "motorcycle")


def grey_crowd(frames: int = 4) -> list[TruthFrame]:
    """1920x1080 in grey: a crowd of 24 LFW faces, 24 to 40 px."""
    places = [Placement(f"lfw{3 * k + 1}", 24 + (k * 7) % 17, 0.08 + 0.14 * (k % 6) + 0.03 * (k // 6 % 2),
                        0.2 + 0.2 * (k // 6), dx=1) for k in range(24)]
    return scene_clip(1920, 1080, places, frames, "chelsea", grey=True)
