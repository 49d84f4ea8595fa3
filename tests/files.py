"""The files people have, written with PyAV the way cameras, phones and editors
write them: colour-tagged, full range, 10-bit HDR, several audio tracks with
languages, subtitles, chapters, location and device tags, damage, cut short."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import skimage.data
from av.video.reformatter import ColorRange, Colorspace

from dvp.colour import BT2020_TO_BT709, HLG_LUMA, HLG_PEAK, REFERENCE_WHITE, TRC_HLG, TRC_PQ

# (matrix, primaries, transfer) as cameras tag them.
BT709 = (1, 1, 1)
BT601 = (6, 6, 6)
BT2020_HLG = (9, 9, TRC_HLG)
BT2020_PQ = (9, 9, TRC_PQ)
_SWSCALE = {1: Colorspace.ITU709, 5: Colorspace.ITU601, 6: Colorspace.ITU601, 9: Colorspace.BT2020}


def scenery(width: int, height: int, frames: int) -> list[np.ndarray]:
    """Real photos without faces (coffee, rocket, chelsea), panning: camera-like colour and detail."""
    photos = [cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR)
              for name in ("coffee", "rocket", "chelsea")]
    photo = np.concatenate([cv2.resize(p, (round(p.shape[1] * height / p.shape[0]), height),
                                       interpolation=cv2.INTER_CUBIC) for p in photos], axis=1)
    step = max((photo.shape[1] - width) // max(frames, 1), 1)
    return [np.ascontiguousarray(photo[:, (i * step) % (photo.shape[1] - width + 1):][:, :width])
            for i in range(frames)]


@dataclass
class Tracks:
    """What besides the picture a file carries."""
    audio: list[tuple[str, int]] = field(default_factory=list)  # (language, tone Hz), in order
    subtitles: bool = False
    chapters: list[tuple[str, float]] = field(default_factory=list)  # (title, start s)
    tags: dict[str, str] = field(default_factory=dict)


def write_tagged(path: Path, images: list[np.ndarray], colour: tuple[int, int, int] | None = BT709,
                 full_range: bool = False, codec: str = "libx264", fmt: str | None = None,
                 tracks: Tracks | None = None, fps: int = 25) -> None:
    """H.264 (or `codec`) of these BGR frames converted with the matrix `colour` names and
    tagged with it (None: converted with BT.601 and untagged, as old encoders write)."""
    tracks = tracks or Tracks()
    height, width = images[0].shape[:2]
    with av.open(str(path), "w", format=fmt) as out:
        out.metadata.update(tracks.tags)
        video = out.add_stream(codec, rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if colour is not None:
            c = video.codec_context
            c.colorspace, c.color_primaries, c.color_trc = colour
            c.color_range = ColorRange.JPEG if full_range else ColorRange.MPEG
        sounds = [out.add_stream("aac", rate=48000, layout="mono") for _ in tracks.audio]
        for sound, (language, _hz) in zip(sounds, tracks.audio, strict=True):
            sound.metadata["language"] = language
        if tracks.chapters:
            ends = [s for _, s in tracks.chapters[1:]] + [len(images) / fps]
            out.set_chapters([{"id": i + 1, "start": round(start * 1000), "end": round(end * 1000),
                               "time_base": Fraction(1, 1000), "metadata": {"title": title}}
                              for i, ((title, start), end) in enumerate(zip(tracks.chapters, ends, strict=True))])
        subtitle = _subtitle_stream(out, path) if tracks.subtitles else None
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(
                format=video.pix_fmt, dst_colorspace=_SWSCALE[colour[0]] if colour else Colorspace.ITU601,
                dst_color_range=ColorRange.JPEG if full_range or codec == "mjpeg" else ColorRange.MPEG)
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        for sound, (_language, hz) in zip(sounds, tracks.audio, strict=True):
            _tone(out, sound, hz, len(images) / fps)
        if subtitle is not None:
            for i, start in enumerate(np.arange(0, len(images) / fps, 1.0)):
                packet = av.Packet(f"line {i}".encode())
                packet.pts = packet.dts = round(start * 1000)
                packet.duration, packet.stream, packet.time_base = 500, subtitle, Fraction(1, 1000)
                out.mux(packet)


def _subtitle_stream(out, path: Path):
    """A SubRip stream (Matroska's usual) from a template: PyAV cannot open a
    subtitle encoder without a style header, but it copies streams."""
    template_path = path.with_name(f".{path.name}.srt")
    template_path.write_text("1\n00:00:00,000 --> 00:00:00,500\nx\n\n")
    template = av.open(str(template_path))
    stream = out.add_stream_from_template(template.streams.subtitles[0])
    stream.metadata["language"] = "deu"
    template.close()
    template_path.unlink()
    return stream


def _tone(out, sound, hz: int, seconds: float) -> None:
    samples = (np.sin(np.arange(int(seconds * 48000)) / 48000 * 2 * np.pi * hz) * 0.3).astype(np.float32)
    for start in range(0, len(samples), 1024):
        frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="flt", layout="mono")
        frame.sample_rate, frame.pts = 48000, start
        out.mux(sound.encode(frame))
    out.mux(sound.encode())


def write_hdr(path: Path, sdr_images: list[np.ndarray], transfer: int, fps: int = 25) -> None:
    """HEVC 10-bit BT.2020 PQ or HLG, as phones record HDR, of SDR pictures placed at
    HDR's reference white (BT.2408): SDR white is 203 cd/m²."""
    height, width = sdr_images[0].shape[:2]
    to_bt2020 = np.linalg.inv(BT2020_TO_BT709).astype(np.float32)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx265", rate=fps, options={"x265-params": "log-level=error"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p10le"
        c = video.codec_context
        c.colorspace, c.color_primaries, c.color_trc, c.color_range = 9, 9, transfer, ColorRange.MPEG
        for i, image in enumerate(sdr_images):
            light = np.power(image[..., ::-1].astype(np.float32) / 255, 2.4) @ to_bt2020.T  # BT.1886, then BT.2020
            nits = np.clip(light, 0, None) * REFERENCE_WHITE
            signal = _pq_signal(nits) if transfer == TRC_PQ else _hlg_signal(nits)
            rgb48 = np.ascontiguousarray((np.clip(signal, 0, 1) * 65535 + 0.5).astype(np.uint16))
            frame = av.VideoFrame.from_ndarray(rgb48, format="rgb48le").reformat(
                format="yuv420p10le", dst_colorspace=Colorspace.BT2020, dst_color_range=ColorRange.MPEG)
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode())


def _pq_signal(nits: np.ndarray) -> np.ndarray:
    """BT.2100 PQ inverse EOTF."""
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    y = np.power(nits / 10000, m1)
    return np.power((c1 + c2 * y) / (1 + c3 * y), m2)


def _hlg_signal(nits: np.ndarray) -> np.ndarray:
    """BT.2100 HLG: display light on a 1000 cd/m² display back to scene light (inverse
    OOTF, system gamma 1.2), then the OETF."""
    display = nits / HLG_PEAK
    luma = np.maximum(display @ HLG_LUMA, 1e-9)[..., None]
    scene = display * np.power(luma, (1 / 1.2) - 1)
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    return np.where(scene <= 1 / 12, np.sqrt(3 * np.clip(scene, 0, None)),
                    a * np.log(np.maximum(12 * scene - b, 1e-9)) + c)


def damage(path: Path, frames: range, size: int = 2048, seed: int = 7) -> None:
    """Overwrite up to `size` bytes of each of these frames' packets (in file order)
    with noise, as a bad sector or a broken transfer leaves them."""
    with av.open(str(path)) as c:
        spans = [(p.pos, p.size) for p in c.demux(video=0) if p.size][frames.start:frames.stop:frames.step]
    data = bytearray(path.read_bytes())
    noise = np.random.default_rng(seed).integers(0, 256, size, np.uint8).tobytes()
    for pos, length in spans:
        data[pos + 16:pos + min(length, size)] = noise[:max(min(length, size) - 16, 0)]
    path.write_bytes(bytes(data))


def cut(path: Path, keep: float) -> None:
    """Keep the first `keep` of the file: a download or a copy that stopped."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def decoded_with_its_tags(path: Path) -> list[np.ndarray]:
    """Frames as a player shows them: converted with the matrix and range the file
    declares, or where it declares none, BT.709 for HD and BT.601 below (mpv's rule)."""
    def matrix(f) -> Colorspace:
        hd = f.width >= 1280 or f.height > 576
        return _SWSCALE.get(f.colorspace, Colorspace.ITU709 if hd else Colorspace.ITU601)

    def picture(f) -> np.ndarray:
        full = f.color_range == ColorRange.JPEG or f.format.name.startswith("yuvj")
        return f.to_ndarray(format="bgr24", src_colorspace=matrix(f),
                            src_color_range=ColorRange.JPEG if full else ColorRange.MPEG)

    pictures = []
    with av.open(str(path)) as c:
        for packet in c.demux(video=0):
            with contextlib.suppress(av.error.InvalidDataError):  # a damaged packet is skipped, as players skip it
                pictures += [picture(f) for f in packet.decode()]
    return pictures
