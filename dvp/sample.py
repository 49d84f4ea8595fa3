"""A sample clip with a real face and a sound track, made without downloads:
scikit-image's astronaut photo gliding over a textured background, and a tone."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dvp.errors import DvpError


def astronaut_face(height: int) -> np.ndarray:
    """The astronaut's head and shoulders (BGR), scaled to `height` pixels."""
    try:
        from skimage import data
    except ImportError:
        raise DvpError("the sample clip needs scikit-image: pip install 'dvp[demo]'") from None
    import cv2
    portrait = data.astronaut()[:300, 90:390, ::-1]  # RGB -> BGR
    return cv2.resize(portrait, (height, height), interpolation=cv2.INTER_AREA)


def background(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.dstack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)),
                      ((x // 16 + y // 16) % 2) * 90 + 60]).astype(np.uint8)


def face_scene(width: int = 320, height: int = 280) -> np.ndarray:
    """One still of the sample: the face large in the middle (for filter previews)."""
    image = background(width, height)
    side = min(width, height) * 6 // 7
    x, y = (width - side) // 2, (height - side) // 2
    image[y:y + side, x:x + side] = astronaut_face(side)
    return image


STAMP_BITS, STAMP_CELL = 12, 8


def stamp_index(image: np.ndarray, index: int) -> None:
    """Write `index` as a row of black/white cells along the bottom-left edge,
    so that a test can tell every output frame's source frame."""
    for bit in range(STAMP_BITS):
        x = bit * STAMP_CELL
        image[-STAMP_CELL:, x:x + STAMP_CELL] = 255 if index >> bit & 1 else 0


def read_stamp(image: np.ndarray) -> int:
    cells = [image[-STAMP_CELL + 2:-2, bit * STAMP_CELL + 2:(bit + 1) * STAMP_CELL - 2].mean()
             for bit in range(STAMP_BITS)]
    return sum(1 << bit for bit, level in enumerate(cells) if level > 127)


def write_sample(path: str, seconds: float = 4.0, width: int = 640, height: int = 480,
                 fps: int = 25, tone_hz: float = 440.0, audio: bool = True, stamp: bool = False) -> None:
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise DvpError(f"{path}: the folder {folder} does not exist")
    if width < 64 or height < 64 or width % 2 or height % 2 or not 0 < seconds <= 3600:
        raise DvpError(f"a sample is 64x64 or larger in even sizes, and up to an hour long; "
                       f"got {width}x{height} for {seconds:g} s")
    face = astronaut_face(height // 2)
    base = background(width, height)
    n = int(round(seconds * fps))
    with av.open(path, "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"crf": "16", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if audio:
            sound = out.add_stream("aac", rate=44100, layout="mono")
        top = (height - face.shape[0]) // 2
        for i in range(n):
            image = base.copy()
            left = int((width - face.shape[1]) * i / max(n - 1, 1))
            image[top:top + face.shape[0], left:left + face.shape[1]] = face
            if stamp:
                stamp_index(image, i)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if audio:
            rate, block = 44100, 1024
            t = np.arange(int(seconds * rate)) / rate
            wave = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            for start in range(0, len(wave), block):
                piece = wave[start:start + block]
                if len(piece) < block:
                    piece = np.pad(piece, (0, block - len(piece)))
                samples = av.AudioFrame.from_ndarray(piece[None, :], format="fltp", layout="mono")
                samples.sample_rate, samples.pts = rate, start
                out.mux(sound.encode(samples))
            out.mux(sound.encode())
