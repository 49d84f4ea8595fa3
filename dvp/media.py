"""Reading source media with PyAV: video frames as BGR arrays, audio remuxed as-is."""
from __future__ import annotations

import heapq
import os
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, cast

import av
import cv2
import numpy as np

from dvp.errors import InputError

MIN_SIDE = 2  # pixels: H.264 in 4:2:0 takes even sizes, and a side under 2 rounds down to 0


@dataclass(frozen=True)
class VideoInfo:
    fps: Fraction
    time_base: Fraction
    frame_count: int | None
    has_audio: bool
    duration_s: float | None = None  # as the container states it

    @property
    def expected_frames(self) -> int | None:
        """The frame count the container states, or else its duration times the frame rate."""
        if self.frame_count:
            return self.frame_count
        return round(self.duration_s * self.fps) if self.duration_s else None


@dataclass(frozen=True)
class SourceFrame:
    index: int
    pts: int  # in VideoInfo.time_base, rebased so that the first frame is at 0
    image: np.ndarray  # BGR, HxWx3 uint8, upright as players show it


class VideoSource:
    """One pass over a media file: yields its video frames and, on the side,
    copies its audio packets (timestamps rebased like the video's) into a
    Matroska file, which carries any codec without re-encoding."""

    def __init__(self, path: str):
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file")
        if os.path.isdir(path):
            raise InputError(f"{path}: is a directory, not a video")
        self.path = path
        try:
            self._container = av.open(path)
        except (av.error.FFmpegError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not a video FFmpeg can read ({_reason(exc)})") from None
        if not self._container.streams.video:
            self._container.close()
            raise InputError(f"{path}: has no video stream")
        self._video = self._container.streams.video[0]
        width, height = self._video.width, self._video.height
        if width < MIN_SIDE or height < MIN_SIDE:  # the output's even sizes would round it to nothing
            self._container.close()
            raise InputError(f"{path}: is {width}x{height} pixels, too small to filter "
                             f"(at least {MIN_SIDE}x{MIN_SIDE})")
        self._video.thread_type = "AUTO"
        self._audio = self._container.streams.audio[0] if self._container.streams.audio else None
        fps = self._video.average_rate or self._video.guessed_rate or Fraction(25)
        self.info = VideoInfo(
            fps=Fraction(fps),
            time_base=Fraction(self._video.time_base or Fraction(1, 90000)),
            frame_count=self._video.frames or None,
            has_audio=self._audio is not None,
            duration_s=self._container.duration / av.time_base if self._container.duration else None,
        )
        self._audio_copy: _AudioCopy | None = None

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()
        if self._audio_copy is not None:
            self._audio_copy.close()

    def frames(self) -> Iterator[SourceFrame]:
        """Decode every video frame; audio packets met on the way are kept."""
        info, index = self.info, 0
        first_pts: int | None = None
        last_pts = -1
        order = _DisplayOrder()
        streams = [self._video] + ([self._audio] if self._audio is not None else [])
        if self._audio is not None:
            self._audio_copy = _AudioCopy(self._audio, info.time_base)

        def decoded() -> Iterator[tuple[av.VideoFrame, int]]:
            count = 0
            for packet in self._container.demux(*streams):
                if self._audio_copy is not None and packet.stream is self._audio:
                    self._audio_copy.add(packet, first_pts)
                    continue
                for frame in cast(list[av.VideoFrame], packet.decode()):
                    yield from order.push(frame, frame.pts if frame.pts is not None
                                          else round(count / info.fps / info.time_base))
                    count += 1
            yield from order.drain()

        try:
            for frame, pts in decoded():
                if first_pts is None:
                    first_pts = pts
                # Encoders need strictly increasing timestamps; broken files repeat them.
                last_pts = max(pts - first_pts, last_pts + 1)
                yield SourceFrame(index, last_pts, _upright(frame))
                index += 1
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.path}: corrupt video at frame {index} ({_reason(exc)})") from None

    def audio_chunks(self, size: int) -> Iterator[bytes]:
        """The audio track as Matroska bytes, in pieces; call after frames()."""
        if self._audio_copy is None:
            return
        remuxed = self._audio_copy.finish()
        while chunk := remuxed.read(size):
            yield chunk


class _DisplayOrder:
    """Display times for decoded frames. Decoders hand frames out in display
    order, but where the container has no presentation times (AVI) a frame can
    carry the decode-order time of its packet: 1, 2, 4, 3, 6, 5 with B-frames.
    Holding a few frames and giving each the smallest time seen so far puts
    the times back in display order; in-order times pass through unchanged."""

    DEPTH = 4  # frames held: more than B-frames displace a timestamp

    def __init__(self) -> None:
        self._frames: deque[av.VideoFrame] = deque()
        self._times: list[int] = []

    def push(self, frame: av.VideoFrame, pts: int) -> Iterator[tuple[av.VideoFrame, int]]:
        self._frames.append(frame)
        heapq.heappush(self._times, pts)
        if len(self._frames) > self.DEPTH:
            yield self._frames.popleft(), heapq.heappop(self._times)

    def drain(self) -> Iterator[tuple[av.VideoFrame, int]]:
        while self._frames:
            yield self._frames.popleft(), heapq.heappop(self._times)


class _AudioCopy:
    """Audio packets remuxed without decoding into a Matroska file, their
    timestamps shifted like the video's so that both start together."""

    def __init__(self, stream, video_time_base: Fraction):
        self._stream = stream
        self._video_time_base = video_time_base
        self._file: BinaryIO = tempfile.TemporaryFile(prefix="dvp-audio-")
        self._out = av.open(self._file, "w", format="matroska")
        self._out_stream = self._out.add_stream_from_template(stream)
        self._pending: list = []
        self._shift: int | None = None  # known once the first picture is decoded
        self._finished = False

    def add(self, packet, video_start_pts: int | None) -> None:
        if packet.dts is None or packet.size == 0:
            return
        if video_start_pts is None:  # audio before the first video frame: hold it until we know the shift
            self._pending.append(packet)
            return
        if self._shift is None:
            self._shift = round(video_start_pts * self._video_time_base / self._stream.time_base)
            self._flush_pending(self._shift)
        self._mux(packet, self._shift)

    def _flush_pending(self, shift: int) -> None:
        pending, self._pending = self._pending, []
        for held in pending:
            self._mux(held, shift)

    def _mux(self, packet, shift: int) -> None:
        if packet.pts is not None and packet.pts - shift < 0:
            return  # audio from before the first picture has nothing to sync with
        if packet.pts is not None:
            packet.pts -= shift
        packet.dts = max(packet.dts - shift, 0)
        packet.stream = self._out_stream
        self._out.mux(packet)

    def finish(self) -> BinaryIO:
        """The remuxed file, read from its start."""
        if not self._finished:
            self._flush_pending(self._shift or 0)
            self._out.close()
            self._finished = True
        self._file.seek(0)
        return self._file

    def close(self) -> None:
        if not self._finished:
            self._out.close()
        self._file.close()


def _upright(frame) -> np.ndarray:
    """The picture as players show it: phones store portrait video sideways with
    a rotation for display, and a sideways face is one the detector misses."""
    image = frame.to_ndarray(format="bgr24")
    turns = round(frame.rotation / 90) % 4  # counter-clockwise quarter turns
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """A frame as every stage puts it on the wire: JPEG at `quality` (1-100)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InputError(f"cannot encode a {image.shape[1]}x{image.shape[0]} frame as JPEG")
    return buf.tobytes()
