"""Where live frames come from: a camera by device index (OpenCV), a stream by
URL (RTSP, HTTP, MJPEG: FFmpeg, with its sound), or a video file played at its
own frame rate (a camera's stand-in in tests and demos). Frames come with their
capture time."""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from dvp.errors import InputError
from dvp.media import VideoSource
from dvp.messages import now_us


@dataclass(frozen=True)
class Captured:
    image: np.ndarray
    capture_ts_us: int


class Camera:
    """A device read through OpenCV."""

    def __init__(self, source: str):
        self.name = f"camera {source}"
        # OpenCV and its FFmpeg tell of a missing or vanished camera on stderr in their own
        # words: the errors below say it once.
        cv2.setLogLevel(0)  # silent
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
        self._capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
        if not self._capture.isOpened():
            raise InputError(f"{self.name} cannot be opened")
        self.fps = Fraction(self._capture.get(cv2.CAP_PROP_FPS) or 30).limit_denominator(1001)

    def frames(self) -> Iterator[Captured]:
        count = 0
        while True:
            ok, image = self._capture.read()
            if not ok:
                raise InputError(f"{self.name} stopped delivering frames after {count}")
            count += 1
            yield Captured(image, now_us())

    def audio(self) -> bytes | None:
        return None  # OpenCV reads pictures only

    def close(self) -> None:
        self._capture.release()


STREAM_TIMEOUT_S = 10.0  # a stream silent this long has stopped


class Played:
    """A stream, or a video file delivered in real time: each frame when its
    timestamp comes (a live stream's frames come on time by themselves)."""

    def __init__(self, source: str):
        self.stream = "://" in source
        self.name = f"camera {source}" if self.stream else source
        try:
            self._source = VideoSource(source, timeout_s=STREAM_TIMEOUT_S if self.stream else None)
        except InputError:
            if self.stream:
                raise InputError(f"{self.name} cannot be opened") from None
            raise
        self.fps = self._source.info.fps
        self._time_base = self._source.info.time_base

    def frames(self) -> Iterator[Captured]:
        began = time.monotonic()
        for frame in self._source.frames():
            wait = began + float(frame.pts * self._time_base) - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            yield Captured(frame.image, now_us())
        if self.stream and self._source.ended_early:
            raise InputError(f"{self.name} stopped delivering frames after {self._source.frames_read}")

    def audio(self) -> bytes | None:
        """The sound as far as it was played (Matroska), from the first picture on."""
        return b"".join(self._source.audio_chunks(1 << 20)) or None

    def close(self) -> None:
        self._source.close()


def open_source(source: str) -> Camera | Played:
    """A device index ("0"), a URL, or a file."""
    return Camera(source) if source.isdigit() else Played(source)
