"""Writing the output with PyAV: H.264 frames as they come, in the colours the
job declares and tagged with them, then the final MP4 with the source's audio
tracks (copied when MP4 carries their codec, else AAC), text subtitles, chapters
and tags."""
from __future__ import annotations

import contextlib
import heapq
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from av.video.reformatter import ColorRange

from dvp.colour import Colour, assumed
from dvp.subtitles import ASS_HEADER, cue_text, mov_text

if TYPE_CHECKING:
    from collections.abc import Iterable

    from av.audio.stream import AudioStream
    from av.container import OutputContainer
    from av.stream import Stream

# Audio codecs that MP4 carries and browsers play: copied as they are.
MP4_AUDIO = {"aac", "mp3"}


class VideoEncoder:
    """H.264 (yuv420p, limited range) at the source's frame rate and time base, of
    frames of one size, converted with the matrix of `colour` and tagged with it
    (default: what players assume for the size)."""

    def __init__(self, path: Path, width: int, height: int, fps: Fraction, time_base: Fraction,
                 crf: int, preset: str, colour: Colour | None = None):
        self.size = (width, height)
        # yuv420p needs even sizes: an odd last row or column is dropped.
        self.width, self.height = width - width % 2, height - height % 2
        self.time_base = time_base
        self.colour = colour or assumed(width, height)
        # Our own handle: PyAV keeps its file open after a failed write (a full disk whose
        # space never comes back while the aggregator runs).
        self._file = path.open("wb")  # noqa: SIM115 - closed in close()
        self._broken = False  # a write failed: flushing the encoder then crashes PyAV
        self._out = av.open(self._file, "w", format="mp4")
        self._stream = self._out.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": preset})
        self._stream.width, self._stream.height, self._stream.pix_fmt = self.width, self.height, "yuv420p"
        self._stream.time_base = time_base
        codec = self._stream.codec_context
        codec.time_base = time_base
        codec.colorspace, codec.color_primaries = self.colour.matrix, self.colour.primaries
        codec.color_trc, codec.color_range = self.colour.transfer, ColorRange.MPEG

    def write(self, bgr: np.ndarray, pts: int) -> None:
        if (bgr.shape[1], bgr.shape[0]) != self.size:
            raise ValueError(f"a {bgr.shape[1]}x{bgr.shape[0]} frame in a {self.size[0]}x{self.size[1]} video")
        if self.size != (self.width, self.height):
            bgr = np.ascontiguousarray(bgr[: self.height, : self.width])
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(
            format="yuv420p", dst_colorspace=self.colour.swscale, dst_color_range=ColorRange.MPEG)
        frame.pts, frame.time_base = pts, self.time_base
        try:
            self._out.mux(self._stream.encode(frame))
        except BaseException:
            self._broken = True
            raise

    def close(self) -> None:
        """Finish the file; its handle is let go on every path, a failed write's too."""
        try:
            if not self._broken:
                self._out.mux(self._stream.encode())
        finally:
            try:
                if not self._broken:
                    self._out.close()
            finally:
                self._file.close()


def mux_output(video: Path, audio: Path | None, output: Path, metadata: dict[str, str] | None = None) -> float:
    """Write `output` (MP4, faststart) from the encoded video, the side file of
    the source's audio tracks (in their order, with their languages) and
    chapters, and the container tags given, interleaved by time; atomically, so a
    half-written file never carries the final name. Returns the output's
    duration in seconds."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    try:
        with contextlib.ExitStack() as opened:
            vin = opened.enter_context(av.open(str(video)))
            out = opened.enter_context(av.open(str(partial), "w", format="mp4",
                                               options={"movflags": "+faststart"}))
            out.metadata.update(metadata or {})
            vsrc = vin.streams.video[0]
            streams = [_remux(vin.demux(vsrc), out.add_stream_from_template(vsrc))]
            if audio is not None:
                with av.open(str(audio)) as side:
                    tracks, chapters = len(side.streams.audio), side.chapters()
                    texts = len(side.streams.subtitles)
                # Each track read by a demuxer of its own: tracks are merged by time below.
                streams += [_audio_packets(opened.enter_context(av.open(str(audio))).streams.audio[i], out)
                            for i in range(tracks)]
                streams += [_subtitle_packets(opened.enter_context(av.open(str(audio))).streams.subtitles[i], out)
                            for i in range(texts)]
                if chapters:
                    out.set_chapters(chapters)
            out.start_encoding()  # open the AAC encoders before the header is written
            for packet in heapq.merge(*streams, key=_when):
                out.mux(packet)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    with av.open(str(output)) as done:
        return float(done.duration or 0) / av.time_base


# Any: an av.Packet with a dts or a pts, as every packet merged has; its stubs allow it neither.
def _when(packet: Any) -> Fraction:
    return (packet.dts if packet.dts is not None else packet.pts) * packet.time_base


def _remux(packets: Iterable[av.Packet], stream: Stream) -> Iterator:
    for packet in packets:
        if packet.dts is None and packet.pts is None:
            continue  # the demuxer's end-of-stream marker
        packet.stream = stream
        yield packet


# `src`, Any here and below: a stream of an input container; PyAV's stubs give a stream a plain
# Container, without demux and decode.
def _audio_packets(src: Any, out: OutputContainer) -> Iterator:
    if src.codec_context.name in MP4_AUDIO:
        dst = out.add_stream_from_template(src)
        packets = _remux(src.container.demux(src), dst)
    else:
        # By channel count: files without a channel map say "1 channels", which AAC refuses.
        channels = src.layout.nb_channels if src.layout else 2
        layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}.get(channels, "stereo")
        dst = out.add_stream("aac", rate=src.rate or 48000, layout=layout)
        packets = _transcode_aac(src, dst)
    if src.language:
        dst.metadata["language"] = src.language
    return packets


def _subtitle_packets(src: Any, out: OutputContainer) -> Iterator:
    """SubRip cues of the side file as MP4's mov_text (the stream added now, before the header)."""
    dst = out.add_stream("mov_text")
    dst.codec_context.subtitle_header = ASS_HEADER
    dst.time_base = src.time_base
    if src.language:
        dst.metadata["language"] = src.language

    def cues() -> Iterator:
        for packet in src.container.demux(src):
            if packet.size == 0 or packet.pts is None:
                continue
            cue = av.Packet(mov_text(cue_text("subrip", bytes(packet))))
            cue.pts, cue.dts, cue.duration = packet.pts, packet.dts, packet.duration
            cue.time_base, cue.stream = packet.time_base, dst
            yield cue

    return cues()


def _transcode_aac(src: Any, dst: AudioStream) -> Iterator:
    for frame in src.container.decode(src):
        yield from dst.encode(frame)
    yield from dst.encode()
