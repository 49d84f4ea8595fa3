"""Which search finds the faces of a live frame. A full search (the whole frame,
in tiles) costs more than a frame's time at 720p on one core; a search of the
regions around the faces already found costs a few milliseconds. So each
camera session gets a full search every `k` of its frames, and at once when a
face tracked is not found again; region searches in between. `k` adapts to
what the searches cost against the time between the session's frames here, so
that a worker keeps up. Every frame is covered: by its own search, or, for a
face a search lost (turned away, hidden), by its last box, held for a few
frames while the whole frame is searched again. A face that walks into the
picture waits for the next full search: that is the trade (README: leaks per
schedule, with ground truth)."""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dvp.faces import Face, merge, overlap

Detect = Callable[[np.ndarray, bool], list[Face]]  # (image, landmarks) -> faces
REGION_GROW = 1.0  # a region reaches this many face sizes beyond its face on each side
MIN_REGION = 96  # pixels: a smaller region is all face to the detector's eye
BUDGET_SHARE = 0.8  # of the time between a session's frames, spent searching
MAX_EVERY = 8  # the longest a new face may wait: frames between full searches, at most
SMOOTHING = 0.2  # weight of the newest cost in each running figure
SESSIONS = 64  # sessions remembered by one worker; the oldest are forgotten
HOLD = 3  # frames a lost face's box is held while full searches look for it


@dataclass
class _Session:
    faces: list[Face] = field(default_factory=list)  # of the last search
    since_full: int = 0  # frames since the last full search
    lost: list[Face] = field(default_factory=list)  # faces not found again: held, and searched for whole
    hold: int = 0  # frames they are held for yet
    full_ms: float | None = None
    region_ms: float | None = None
    interval_ms: float | None = None  # between this session's frames, as captured
    last_capture_us: int | None = None


def _smoothed(old: float | None, new: float) -> float:
    return new if old is None else (1 - SMOOTHING) * old + SMOOTHING * new


class LiveSchedule:
    """Per session: full or region search, and the faces. `every`: a fixed k (1:
    a full search of every frame), else adapted."""

    def __init__(self, every: int | None = None, clock: Callable[[], float] = time.perf_counter):
        self.every = every
        self.clock = clock
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self.full_searches = self.region_searches = 0

    def k(self, session: str) -> int:
        """Frames per full search, now: 1 while its cost fits the budget."""
        if self.every is not None:
            return self.every
        s = self._sessions.get(session)
        if s is None or s.full_ms is None or s.interval_ms is None:
            return 1
        budget = BUDGET_SHARE * s.interval_ms
        if s.full_ms <= budget:
            return 1
        region = s.region_ms or 0.0
        if budget <= region:
            return MAX_EVERY
        return max(1, min(MAX_EVERY, math.ceil((s.full_ms - region) / (budget - region))))

    def faces(self, session: str, image: np.ndarray, capture_ts_us: int, detect: Detect,
              landmarks: bool = False) -> list[Face]:
        s = self._session(session, capture_ts_us)
        full = bool(s.lost) or s.full_ms is None or s.since_full >= self.k(session)
        began = self.clock()
        if full:
            found = detect(image, landmarks)
            s.full_ms = _smoothed(s.full_ms, (self.clock() - began) * 1000)
            s.since_full = 1
            self.full_searches += 1
            lost = [f for f in s.lost if not any(max(overlap(f, g)) > 0 for g in found)]
        else:
            found, lost = self._around(image, s.faces, detect, landmarks)
            s.region_ms = _smoothed(s.region_ms, (self.clock() - began) * 1000)
            s.since_full += 1
            self.region_searches += 1
            s.hold = HOLD if lost else 0
        if lost and s.hold > 0:  # covered by its last box; the next frame is searched whole
            s.hold -= 1
            s.lost = lost
            found = found + lost
        else:
            s.lost, s.hold = [], 0
        s.faces = found
        return found

    def _session(self, session: str, capture_ts_us: int) -> _Session:
        s = self._sessions.pop(session, None) or _Session()
        self._sessions[session] = s  # the newest last
        while len(self._sessions) > SESSIONS:
            self._sessions.popitem(last=False)
        if s.last_capture_us is not None and capture_ts_us > s.last_capture_us:
            s.interval_ms = _smoothed(s.interval_ms, (capture_ts_us - s.last_capture_us) / 1000)
        s.last_capture_us = max(capture_ts_us, s.last_capture_us or 0)
        return s

    @staticmethod
    def _around(image: np.ndarray, tracked: list[Face], detect: Detect,
                landmarks: bool) -> tuple[list[Face], list[Face]]:
        """The faces found again in the regions around `tracked`, and those not found."""
        height, width = image.shape[:2]
        found: list[Face] = []
        lost: list[Face] = []
        for face in tracked:
            grow = max(REGION_GROW * max(face.w, face.h), (MIN_REGION - max(face.w, face.h)) / 2)
            x0, y0 = int(max(face.x - grow, 0)), int(max(face.y - grow, 0))
            x1, y1 = int(min(face.x + face.w + grow, width)), int(min(face.y + face.h + grow, height))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue  # gone past the edge
            again = [_moved(f, x0, y0) for f in detect(np.ascontiguousarray(image[y0:y1, x0:x1]), landmarks)]
            if again:
                found += again
            else:
                lost.append(face)
        return merge(found) if len(found) > 1 else found, lost


def _moved(face: Face, dx: int, dy: int) -> Face:
    """A face found in a region, in the frame's coordinates."""
    mesh = None if face.landmarks is None else face.landmarks + np.array([dx, dy], np.float32)
    return Face(face.x + dx, face.y + dy, face.w, face.h, face.score, mesh)
