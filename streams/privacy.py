"""`--privacy strict`: faces made consistent over time before frames are written.

Workers see one frame each, so a frame where the detector misses (a face entering
the picture, a hand in front of it, motion blur) would show the face in clear. In
strict mode workers only detect; the aggregator, which sees the frames in order,
links each face's boxes into a track and covers every frame of the track:

- a miss between two detections gets the box interpolated between them;
- before a face's first detection and after its last, its box is held (moved on
  with the face's speed) for `reach` frames;
- boxes are smoothed over neighbouring frames (centre averaged, size the largest),
  never smaller than the detection itself, so the filter does not jitter;
- boxes away from a detection grow (a tenth a frame, up to 1.5 times) as the face
  may move; twice that while a track has one detection and no speed.

A cover costs picture, so it grows only as far as the face can have moved: the
speed is the median over several detections (one jittery box does not fling the
cover across the frame), capped at half the face's size a frame, and a held box
moves on by at most one face size. A track of one detection is a stray as often
as a face: it is held for `LONE_REACH` frames, not `reach`.

A frame is final once `reach` later frames are known: the look-ahead costs
`reach` frames of latency and holds `reach` frames in memory, no more.
No Kafka here: boxes and frames go in, in order; frames and their faces come out."""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

import numpy as np

from dvp.faces import Face

Item = TypeVar("Item")
SMOOTH = 2  # detections each side that a box is smoothed over
# A box's growth per frame away from a detection, and its cap: each edge moves a
# twentieth of the face a frame, what a walking face does in a 25 fps video.
GROWTH, MAX_GROWTH = 0.1, 0.5
SPEED_FROM = 5  # detections at a track's end that its speed is the median over
MAX_SPEED = 0.5  # face sizes a frame: faster is a detector's jitter, not a face
MAX_TRAVEL = 1.0  # face sizes a held box moves on, at most
LONE_REACH = 2  # frames a track of one detection is held


@dataclass(frozen=True)
class Box:
    cx: float  # centre
    cy: float
    w: float
    h: float
    # A detection's face mesh, for the landmark filters: only on the frame it was found on.
    landmarks: np.ndarray | None = field(default=None, compare=False)

    @staticmethod
    def of(face: Face) -> Box:
        return Box(face.x + face.w / 2, face.y + face.h / 2, face.w, face.h, face.landmarks)

    def face(self) -> Face:
        return Face(self.cx - self.w / 2, self.cy - self.h / 2, self.w, self.h, 1.0, self.landmarks)

    def moved(self, dx: float, dy: float) -> Box:
        return Box(self.cx + dx, self.cy + dy, self.w, self.h)

    def grown(self, frames: int, speed_known: bool = True) -> Box:
        k = 1 + (min(GROWTH * frames, MAX_GROWTH) if speed_known else min(2 * GROWTH * frames, 2 * MAX_GROWTH))
        return Box(self.cx, self.cy, self.w * k, self.h * k)

    def union(self, other: Box) -> Box:
        x0 = min(self.cx - self.w / 2, other.cx - other.w / 2)
        y0 = min(self.cy - self.h / 2, other.cy - other.h / 2)
        x1 = max(self.cx + self.w / 2, other.cx + other.w / 2)
        y1 = max(self.cy + self.h / 2, other.cy + other.h / 2)
        return Box((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)


def lerp(a: Box, b: Box, t: float) -> Box:
    return Box(a.cx + (b.cx - a.cx) * t, a.cy + (b.cy - a.cy) * t, a.w + (b.w - a.w) * t, a.h + (b.h - a.h) * t)


@dataclass
class Track:
    """One face's detections, by frame index, in order."""
    seen: list[tuple[int, Box]] = field(default_factory=list)

    def velocity(self, at_end: bool) -> tuple[float, float]:
        """Pixels per frame: the median step between the detections at one end of
        the track, capped at MAX_SPEED face sizes."""
        if len(self.seen) < 2:
            return 0.0, 0.0
        ends = self.seen[-SPEED_FROM:] if at_end else self.seen[:SPEED_FROM]
        steps = [((b.cx - a.cx) / (j - i), (b.cy - a.cy) / (j - i))
                 for (i, a), (j, b) in zip(ends, ends[1:], strict=False)]
        vx, vy = float(np.median([v[0] for v in steps])), float(np.median([v[1] for v in steps]))
        cap = MAX_SPEED * max(ends[-1][1].w, ends[-1][1].h)
        speed = (vx * vx + vy * vy) ** 0.5
        return (vx * cap / speed, vy * cap / speed) if speed > cap else (vx, vy)

    def predict(self, index: int) -> Box:
        last_index, last = self.seen[-1]
        return self._travelled(last, index - last_index, at_end=True)

    def _travelled(self, box: Box, frames: int, at_end: bool) -> Box:
        """`box` moved on with the track's speed for `frames` (negative: back), at most MAX_TRAVEL face sizes."""
        vx, vy = self.velocity(at_end)
        dx, dy = vx * frames, vy * frames
        cap = MAX_TRAVEL * max(box.w, box.h)
        travel = (dx * dx + dy * dy) ** 0.5
        return box.moved(dx * cap / travel, dy * cap / travel) if travel > cap else box.moved(dx, dy)

    def cover(self, index: int, reach: int, newest: int) -> Box | None:
        """This face's box on frame `index`, or None when the track is too far away;
        `newest` is the last frame whose detections are known."""
        before = [(i, b) for i, b in self.seen if i <= index]
        after = [(i, b) for i, b in self.seen if i > index]
        if before and before[-1][0] == index:
            return self._smoothed(len(before) - 1)
        if before and after:  # a miss inside the track
            (i, a), (j, b) = before[-1], after[0]
            return lerp(a, b, (index - i) / (j - i)).grown(min(index - i, j - index))
        if len(self.seen) == 1 and newest - self.seen[0][0] >= LONE_REACH:  # no second detection came
            reach = min(reach, LONE_REACH)
        if before and index - before[-1][0] <= reach:  # gone, or lost: held, moving on
            i, a = before[-1]
            return self._travelled(a, index - i, at_end=True).grown(index - i, len(self.seen) > 1)
        if after and after[0][0] - index <= reach:  # not found yet: held, moving back
            j, b = after[0]
            return self._travelled(b, index - j, at_end=False).grown(j - index, len(self.seen) > 1)
        return None

    def _smoothed(self, k: int) -> Box:
        index, raw = self.seen[k]
        near = [b for i, b in self.seen[max(k - SMOOTH, 0):k + SMOOTH + 1] if abs(i - index) <= SMOOTH]
        smooth = Box(sum(b.cx for b in near) / len(near), sum(b.cy for b in near) / len(near),
                     max(b.w for b in near), max(b.h for b in near))
        return replace(smooth.union(raw), landmarks=raw.landmarks)


def _distance(predicted: Box, found: Box) -> float:
    """How far a detection is from where a track expects its face, in face sizes;
    infinite when the sizes differ too much to be the same face. Sizes are the
    longer side: a face turning away narrows, but stays as tall."""
    ratio = max(found.w, found.h) / max(predicted.w, predicted.h)
    if not 0.5 <= ratio <= 2.0:
        return float("inf")
    return ((found.cx - predicted.cx) ** 2 + (found.cy - predicted.cy) ** 2) ** 0.5 / max(predicted.w, predicted.h)


class TemporalCover(Generic[Item]):
    """Frames in (in index order, each with the faces found on it); frames out,
    `reach` frames later, each with every face it should have filtered."""

    def __init__(self, reach: int):
        if reach < 1:
            raise ValueError("reach must be at least one frame")
        self.reach = reach
        self._waiting: deque[tuple[int, Item]] = deque()
        self._tracks: list[Track] = []
        self._newest = -1

    def push(self, index: int, item: Item, faces: list[Face]) -> Iterator[tuple[Item, list[Face]]]:
        """Take the next frame; yield the frames that are now final."""
        if self._waiting and index != self._waiting[-1][0] + 1:
            raise ValueError(f"frame {index} after frame {self._waiting[-1][0]}: frames must come in order")
        self._link(index, [Box.of(f) for f in faces if f.w > 0 and f.h > 0])
        self._newest = index
        self._waiting.append((index, item))
        while self._waiting and self._waiting[0][0] + self.reach <= index:
            yield self._final(*self._waiting.popleft())

    def drain(self) -> Iterator[tuple[Item, list[Face]]]:
        """The last frames, once no more will come."""
        while self._waiting:
            yield self._final(*self._waiting.popleft())

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _link(self, index: int, boxes: list[Box]) -> None:
        """Give each detection to the nearest live track (greedy), or a new one."""
        live = [t for t in self._tracks if index - t.seen[-1][0] <= self.reach + 1]
        pairs = sorted((_distance(t.predict(index), b), n, m)
                       for n, t in enumerate(live) for m, b in enumerate(boxes))
        taken_tracks: set[int] = set()
        taken_boxes: set[int] = set()
        for distance, n, m in pairs:
            if distance < 1.0 and n not in taken_tracks and m not in taken_boxes:
                live[n].seen.append((index, boxes[m]))
                taken_tracks.add(n)
                taken_boxes.add(m)
        self._tracks = [t for t in self._tracks if index - t.seen[-1][0] <= 2 * self.reach + 1]
        self._tracks += [Track([(index, b)]) for m, b in enumerate(boxes) if m not in taken_boxes]

    def _final(self, index: int, item: Item) -> tuple[Item, list[Face]]:
        for track in self._tracks:  # forget detections no frame from here on needs
            while len(track.seen) > SPEED_FROM and track.seen[1][0] <= index - SMOOTH:
                track.seen.pop(0)
        covers = (t.cover(index, self.reach, self._newest) for t in self._tracks)
        return item, [c.face() for c in covers if c is not None]
