"""Reading source media with PyAV: video frames as BGR arrays in the colours players
show, the other tracks remuxed as they are, the container's tags by policy, and
damage skipped over as players skip it."""
from __future__ import annotations

import heapq
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from av.stream import Stream

from dvp.colour import Conversion
from dvp.errors import InputError
from dvp.metadata import Metadata
from dvp.subtitles import ASS_HEADER, TEXT_CODECS, cue_text

MIN_SIDE = 2  # pixels: H.264 in 4:2:0 takes even sizes, and a side under 2 rounds down to 0


@dataclass(frozen=True)
class SourceOptions:
    audio_track: int | None = None  # keep only this audio track (1 is the first); None: all of them
    keep_metadata: bool = False  # keep location, device and every other tag too


EVERY_TRACK = SourceOptions()  # the default: every audio track, the tags that describe the video


@dataclass(frozen=True)
class VideoInfo:
    fps: Fraction
    time_base: Fraction
    frame_count: int | None
    has_audio: bool  # audio or subtitle tracks to carry, sent as the side file
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

    def __init__(self, path: str, options: SourceOptions = EVERY_TRACK, timeout_s: float | None = None):
        """`path`: a file, or a stream's URL; `timeout_s`: how long a stream may be silent."""
        if "://" not in path and not Path(path).exists():
            raise InputError(f"{path}: no such file")
        if Path(path).is_dir():
            raise InputError(f"{path}: is a directory, not a video")
        self.path = path
        try:
            self._container = av.open(path, timeout=timeout_s)
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
        self._audio = _chosen_audio(path, list(self._container.streams.audio), options.audio_track)
        self._subtitles = [s for s in self._container.streams.subtitles if s.codec_context.name in TEXT_CODECS]
        fps = self._video.average_rate or self._video.guessed_rate or Fraction(25)
        self.info = VideoInfo(
            fps=Fraction(fps),
            time_base=Fraction(self._video.time_base or Fraction(1, 90000)),
            frame_count=self._video.frames or None,
            has_audio=bool(self._audio or self._subtitles),
            duration_s=self._container.duration / av.time_base if self._container.duration else None,
        )
        self.metadata = Metadata.of(self._container.metadata, keep_all=options.keep_metadata)
        self.conversion: Conversion | None = None  # known once the first frame is decoded
        self.skipped_packets = 0  # packets that did not decode, skipped as players skip them
        self.frames_read = 0
        self.ended_early = False  # the file stops where it should go on (cut short, damaged)
        self._audio_copy: _AudioCopy | None = None

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()
        if self._audio_copy is not None:
            self._audio_copy.close()

    def frames(self) -> Iterator[SourceFrame]:
        """Decode every video frame; audio packets met on the way are kept. Packets
        that do not decode are skipped and counted; a file that stops early ends
        the frames there. Only a file with no decodable frame is refused."""
        info = self.info
        first_pts: int | None = None
        last_pts = -1
        order = _DisplayOrder()
        streams = [self._video, *self._audio, *self._subtitles]
        if self._audio or self._subtitles:
            self._audio_copy = _AudioCopy(self._audio + self._subtitles, info.time_base, self._container.chapters())

        def decoded() -> Iterator[tuple[av.VideoFrame, int]]:
            for count, frame in enumerate(self._pictures(streams, lambda: first_pts)):
                yield from order.push(frame, frame.pts if frame.pts is not None
                                      else round(count / info.fps / info.time_base))
            yield from order.drain()

        for frame, pts in decoded():
            if first_pts is None:
                first_pts = pts
                self.conversion = conversion = Conversion.of(frame)
            # Encoders need strictly increasing timestamps; broken files repeat them.
            last_pts = max(pts - first_pts, last_pts + 1)
            yield SourceFrame(self.frames_read, last_pts, _upright(frame, conversion))
            self.frames_read += 1
        if self.frames_read == 0:
            damaged = self.skipped_packets or self.ended_early
            raise InputError(f"{self.path}: has no video frame{' that decodes' if damaged else 's'}")

    def _pictures(self, streams: list[Stream], video_start: Callable[[], int | None]) -> Iterator[av.VideoFrame]:
        """The video's frames in decode order, the other packets handed to the
        audio copy on the way. A packet that does not decode is skipped; where the
        file is cut short or its container damaged, the frames before the damage."""
        packets = self._container.demux(*streams)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError:
                self.ended_early = True
                packet = None  # no end-of-stream packet will come: flush the decoder now
            if packet is not None and packet.stream is not self._video:
                if self._audio_copy is not None:
                    self._audio_copy.add(packet, video_start())
                continue
            try:
                yield from self._video.decode(packet)
            except av.error.FFmpegError:
                self.skipped_packets += 1
            if packet is None:
                return

    def notes(self) -> list[str]:
        """What the output will lack or change against this source, once frames() is done."""
        notes = []
        # The video's own count or length: a container's duration also spans its other tracks.
        video = self._video
        expected = video.frames or (round(video.duration * self.info.time_base * self.info.fps)
                                    if video.duration else None)
        if self.ended_early or (expected and self.frames_read + self.skipped_packets < expected * 0.98 - 1):
            of = f" of the {expected} it states" if expected else ""
            notes.append(f"the file ends early: {self.frames_read} frames{of} could be read")
        if self.skipped_packets:
            notes.append(f"damaged video packets skipped: {self.skipped_packets}")
        if self.conversion is not None and self.conversion.note:
            notes.append(self.conversion.note)
        if self.metadata.stripped:
            notes.append(f"metadata stripped: {', '.join(self.metadata.stripped)} (--keep-metadata keeps it)")
        notes += [f"{_track_name(s)} not carried: MP4 output carries text subtitles only"
                  for s in self._container.streams.subtitles if s not in self._subtitles]
        # Other tracks are never carried; those without a codec (MP4's chapter track, which is
        # carried as chapters, timecode, telemetry) pass without a word.
        notes += [f"{_track_name(s)} not carried" for s in self._container.streams
                  if s.type not in ("video", "audio", "subtitle") and s.codec_context is not None]
        return notes

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
    """Audio packets of every track kept, remuxed without decoding into a Matroska
    file with their languages, in their order, with the source's chapters; text
    subtitles beside them as SubRip cues; their timestamps shifted like the
    video's so that all start together."""

    def __init__(self, streams: list, video_time_base: Fraction, chapters: list):
        self._video_time_base = video_time_base
        self._file: BinaryIO = tempfile.TemporaryFile(prefix="dvp-audio-")  # noqa: SIM115 - closed in close()
        self._out = av.open(self._file, "w", format="matroska")
        self._out_streams = {}
        for stream in streams:
            if stream.type == "subtitle":
                copy = self._out.add_stream("subrip")
                copy.codec_context.subtitle_header = ASS_HEADER
                copy.time_base = stream.time_base
            else:
                copy = self._out.add_stream_from_template(stream)
            if stream.language:
                copy.metadata["language"] = stream.language
            self._out_streams[stream.index] = copy
        if chapters:
            self._out.set_chapters(chapters)
        self._pending: list = []
        self._shift: int | None = None  # in video time base, known once the first picture is decoded
        self._finished = False

    def add(self, packet: av.Packet, video_start_pts: int | None) -> None:
        if packet.dts is None or packet.size == 0:
            return
        if packet.stream.type == "subtitle":
            packet = _as_subrip(packet)
        if video_start_pts is None:  # audio before the first video frame: hold it until we know the shift
            self._pending.append(packet)
            return
        if self._shift is None:
            self._shift = video_start_pts
            self._flush_pending()
        self._mux(packet)

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, []
        for held in pending:
            self._mux(held)

    def _mux(self, packet: av.Packet) -> None:
        shift = round((self._shift or 0) * self._video_time_base / packet.stream.time_base)
        if packet.pts is not None and packet.pts - shift < 0:
            return  # audio from before the first picture has nothing to sync with
        if packet.pts is not None:
            packet.pts -= shift
        packet.dts = max(packet.dts - shift, 0)
        packet.stream = self._out_streams[packet.stream.index]
        self._out.mux(packet)

    def finish(self) -> BinaryIO:
        """The remuxed file, read from its start."""
        if not self._finished:
            self._flush_pending()
            self._out.close()
            self._finished = True
        self._file.seek(0)
        return self._file

    def close(self) -> None:
        if not self._finished:
            self._out.close()
        self._file.close()


def _as_subrip(packet: av.Packet) -> av.Packet:
    cue = av.Packet(cue_text(packet.stream.codec_context.name, bytes(packet)).encode())
    cue.pts, cue.dts, cue.duration = packet.pts, packet.dts, packet.duration
    cue.time_base, cue.stream = packet.time_base, packet.stream
    return cue


def _chosen_audio(path: str, tracks: list, chosen: int | None) -> list:
    if chosen is None:
        return tracks
    if not 1 <= chosen <= len(tracks):
        listed = "; ".join(f"{i}: {_track_name(t)}" for i, t in enumerate(tracks, start=1)) or "none"
        raise InputError(f"{path}: has no audio track {chosen} (its audio tracks: {listed})")
    return [tracks[chosen - 1]]


def _track_name(stream: Stream) -> str:
    language = f", {stream.language}" if stream.language else ""
    return f"{stream.type} track {stream.index} ({stream.codec_context.name}{language})"


def _upright(frame: av.VideoFrame, conversion: Conversion) -> np.ndarray:
    """The picture as players show it: in the colours its tags say, and upright
    (phones store portrait video sideways with a rotation for display, and a
    sideways face is one the detector misses)."""
    image = conversion.bgr(frame)
    turns = round(frame.rotation / 90) % 4  # counter-clockwise quarter turns
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)
