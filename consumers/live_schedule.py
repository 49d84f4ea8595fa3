"""Which search finds the faces of a live frame. A full search (the whole frame,
in tiles) costs more than a frame's time at 720p on one core, and at 1080p more
than the live deadline; a search of the regions around the faces already found
costs a few milliseconds. So:

- where a full search fits in the time between a session's frames here (640x480),
  every frame gets one;
- where it does not, each frame gets a region search around the faces tracked,
  and full searches run beside, on a thread of lower priority with a detector
  of its own, one after another on the newest frame, as often as the machine
  allows: the faces one finds join the tracks, and the next frames' region
  searches follow them;
- `every=k` instead fixes a full search on every k-th frame, in line.

Every frame is covered: by its own search, or, for a face a search lost (turned
away, hidden), by its last box, held for a few frames while the whole frame is
searched again. A face that walks into the picture waits for the next full
search to end: that is the trade (README: leaks per schedule, with ground
truth)."""
from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from dvp.faces import Face, merge, overlap

Detect = Callable[[np.ndarray, bool], list[Face]]  # (image, landmarks) -> faces
REGION_GROW = 1.0  # a region reaches this many face sizes beyond its face on each side
MIN_REGION = 96  # pixels: a smaller region is all face to the detector's eye
MAX_REGION = 320  # pixels: a larger region is searched shrunk to this or under (its face a third of it, still large)
BUDGET_SHARE = 0.6  # of the time between a session's frames, spent searching (decode, filter, encode: the rest)
MAX_EVERY = 8  # in line, the most frames between full searches
SMOOTHING = 0.2  # weight of the newest cost in each running figure
SESSIONS = 64  # sessions remembered by one worker; the oldest are forgotten
HOLD = 3  # frames a lost face's box is held while full searches look for it
BESIDE_NICE = 10  # the full searches' thread yields the CPU to the frames in line


@dataclass
class _Session:
    faces: list[Face] = field(default_factory=list)  # of the last search
    since_full: int = 0  # frames since the last full search in line
    lost: list[Face] = field(default_factory=list)  # faces not found again: held, and searched for whole
    hold: int = 0  # frames they are held for yet
    full_ms: float | None = None
    region_ms: float | None = None
    interval_ms: float | None = None  # between this session's frames, as captured
    last_capture_us: int | None = None
    wanted: tuple[np.ndarray, Detect] | None = None  # the frame for the next full search beside
    searching: bool = False  # a full search beside runs now
    found_beside: list[Face] | None = None  # its faces, not yet joined to the tracks


def _smoothed(old: float | None, new: float) -> float:
    return new if old is None else (1 - SMOOTHING) * old + SMOOTHING * new


class LiveSchedule:
    """Per session: the searches of each frame, and its faces. `every`: a full
    search every k-th frame, in line (1: every frame); else adapted, with full
    searches beside where `beside` (detector name -> a detector of its own) is
    given. `close()` ends the thread beside."""

    def __init__(self, every: int | None = None, beside: Callable[[str], Detect] | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.every = every
        self.clock = clock
        self._beside = beside if every is None else None
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._lock = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.full_searches = self.region_searches = self.beside_searches = 0

    def k(self, session: str) -> int:
        """Frames per full search in line, now: 1 while its cost fits the budget."""
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
              landmarks: bool = False, detector: str = "", near: Detect | None = None) -> list[Face]:
        """The faces of this frame; `detector`: the name of `detect`'s, for the one beside;
        `near`: the search of a region around a face (FaceDetector.detect_near), else `detect`."""
        with self._lock:
            s = self._session(session, capture_ts_us)
            joined = self._join_beside(s)
            k = self.k(session)
        beside = self._beside is not None and k > 1
        full = s.full_ms is None or (not beside and (bool(s.lost) or s.since_full >= k))
        began = self.clock()
        if full:
            found = detect(image, landmarks)
            with self._lock:
                s.full_ms = _smoothed(s.full_ms, (self.clock() - began) * 1000)
            s.since_full = 1
            self.full_searches += 1
            lost = _apart(s.lost, found)
        else:
            found, lost = self._around(image, merge(s.faces + joined) if joined else s.faces, near or detect,
                                       landmarks)
            with self._lock:
                s.region_ms = _smoothed(s.region_ms, (self.clock() - began) * 1000)
            s.since_full += 1
            self.region_searches += 1
            if lost and not s.lost:
                s.hold = HOLD
        if lost and s.hold > 0:  # covered by its last box while it is searched for whole
            s.hold -= 1
            s.lost = lost
            found = found + lost
        else:
            s.lost, s.hold = [], 0
        s.faces = found
        if beside and self._beside is not None:
            self._want_beside(s, image, self._beside(detector))
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
    def _join_beside(s: _Session) -> list[Face]:
        """The faces a full search beside found that the tracks do not have yet."""
        found, s.found_beside = s.found_beside or [], None
        return _apart(found, s.faces)

    def _want_beside(self, s: _Session, image: np.ndarray, detect: Detect) -> None:
        with self._lock:
            if self._closed:
                return
            # The newest frame (an older one waiting is replaced), copied: the filter draws on it next.
            s.wanted = (image.copy(), detect)
            if self._thread is None:
                self._thread = threading.Thread(target=self._search_beside, name="live-full-search", daemon=True)
                self._thread.start()
            self._lock.notify()

    def _search_beside(self) -> None:
        with contextlib.suppress(AttributeError, OSError):  # not Linux: the same priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BESIDE_NICE)
        while True:
            with self._lock:
                while not self._closed and not any(s.wanted for s in self._sessions.values()):
                    self._lock.wait()
                if self._closed:
                    return
                s, (image, detect) = next((s, w) for s in self._sessions.values() if (w := s.wanted) is not None)
                s.wanted, s.searching = None, True
            began = self.clock()
            try:
                found = detect(image, False)
            except Exception:  # a frame a detector cannot take: its session goes on with region searches
                found = []
            with self._lock:
                s.full_ms = _smoothed(s.full_ms, (self.clock() - began) * 1000)
                s.found_beside = found if s.found_beside is None else s.found_beside + found
                s.searching = False
                self.beside_searches += 1
                self._lock.notify_all()

    def settle(self, timeout: float = 30.0) -> None:
        """Until no full search beside runs or waits (tests: results in a known order)."""
        with self._lock:
            self._lock.wait_for(lambda: not any(s.wanted or s.searching for s in self._sessions.values()),
                                timeout)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

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
            # Shrunk by a whole factor, the region cut to a multiple of it: OpenCV's area
            # resize by a whole factor is 3 times faster than by any other.
            shrink = math.ceil(max(x1 - x0, y1 - y0) / MAX_REGION)
            x1, y1 = x0 + (x1 - x0) // shrink * shrink, y0 + (y1 - y0) // shrink * shrink
            region = image[y0:y1, x0:x1]
            if shrink > 1:
                region = cv2.resize(region, ((x1 - x0) // shrink, (y1 - y0) // shrink), interpolation=cv2.INTER_AREA)
            again = [_moved(f, x0, y0, 1 / shrink) for f in detect(np.ascontiguousarray(region), landmarks)]
            if again:
                found += again
            else:
                lost.append(face)
        return merge(found) if len(found) > 1 else found, lost


def _apart(faces: list[Face], others: list[Face]) -> list[Face]:
    """The faces that overlap none of the others."""
    return [f for f in faces if not any(max(overlap(f, g)) > 0 for g in others)]


def _moved(face: Face, dx: int, dy: int, scale: float) -> Face:
    """A face found in a region (shrunk by `scale`), in the frame's coordinates."""
    mesh = None if face.landmarks is None else face.landmarks / scale + np.array([dx, dy], np.float32)
    return Face(face.x / scale + dx, face.y / scale + dy, face.w / scale, face.h / scale, face.score, mesh)
