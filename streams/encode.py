"""Writing the output with PyAV: H.264 frames as they come, then the final MP4
with the source's audio (copied when MP4 carries its codec, else AAC)."""
from __future__ import annotations

import heapq
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Audio codecs that MP4 carries and browsers play: copied as they are.
MP4_AUDIO = {"aac", "mp3"}


class VideoEncoder:
    """H.264 (yuv420p) at the source's frame rate and time base."""

    def __init__(self, path: Path, width: int, height: int, fps: Fraction, time_base: Fraction,
                 crf: int, preset: str):
        # yuv420p needs even sizes: an odd last row or column is dropped.
        self.width, self.height = width - width % 2, height - height % 2
        self.time_base = time_base
        self._out = av.open(str(path), "w", format="mp4")
        self._stream = self._out.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": preset})
        self._stream.width, self._stream.height, self._stream.pix_fmt = self.width, self.height, "yuv420p"
        self._stream.time_base = time_base
        self._stream.codec_context.time_base = time_base

    def write(self, bgr: np.ndarray, pts: int) -> None:
        if bgr.shape[0] != self.height or bgr.shape[1] != self.width:
            bgr = np.ascontiguousarray(bgr[: self.height, : self.width])
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
        frame.pts, frame.time_base = pts, self.time_base
        self._out.mux(self._stream.encode(frame))

    def close(self) -> None:
        self._out.mux(self._stream.encode())
        self._out.close()


def mux_output(video: Path, audio: Path | None, output: Path) -> float:
    """Write `output` (MP4, faststart) from the encoded video and the source's
    audio, interleaved by time; atomically, so a half-written file never
    carries the final name. Returns the output's duration in seconds."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    try:
        with av.open(str(video)) as vin, av.open(str(partial), "w", format="mp4",
                                                   options={"movflags": "+faststart"}) as out:
            vsrc = vin.streams.video[0]
            vdst = out.add_stream_from_template(vsrc)
            streams = [_remux(vin.demux(vsrc), vdst)]
            ain = av.open(str(audio)) if audio is not None else None
            try:
                if ain is not None and ain.streams.audio:
                    streams.append(_audio_packets(ain, out))
                out.start_encoding()  # open the AAC encoder before the header is written
                for packet in heapq.merge(*streams, key=_when):
                    out.mux(packet)
            finally:
                if ain is not None:
                    ain.close()
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    with av.open(str(output)) as done:
        return float(done.duration or 0) / av.time_base


def _when(packet) -> Fraction:
    return (packet.dts if packet.dts is not None else packet.pts) * packet.time_base


def _remux(packets, stream) -> Iterator:
    for packet in packets:
        if packet.dts is None and packet.pts is None:
            continue  # the demuxer's end-of-stream marker
        packet.stream = stream
        yield packet


def _audio_packets(ain, out) -> Iterator:
    src = ain.streams.audio[0]
    if src.codec_context.name in MP4_AUDIO:
        return _remux(ain.demux(src), out.add_stream_from_template(src))
    # By channel count: files without a channel map say "1 channels", which AAC refuses.
    channels = src.layout.nb_channels if src.layout else 2
    layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}.get(channels, "stereo")
    return _transcode_aac(ain, src, out.add_stream("aac", rate=src.rate or 48000, layout=layout))


def _transcode_aac(ain, src, dst) -> Iterator:
    for frame in ain.decode(src):
        yield from dst.encode(frame)
    yield from dst.encode()
