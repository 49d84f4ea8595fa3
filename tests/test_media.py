"""Reading sources: display times frame for frame, whatever the container."""
from fractions import Fraction

import av
import numpy as np
import pytest

from dvp.media import VideoSource


def write_clip(path, codec: str, fmt: str, frames: int = 40, fps: int = 25, b_frames: int = 2) -> None:
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps, options={"bf": str(b_frames)})
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(frames):
            image = np.full((120, 160, 3), 40, np.uint8)
            image[:, (i * 3) % 140:(i * 3) % 140 + 20] = 250  # motion, so B-frames are used
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


@pytest.mark.parametrize("codec, fmt", [("libx264", "avi"), ("mpeg4", "avi"), ("libx264", "matroska"),
                                        ("libx264", "mp4"), ("mpeg4", "mov")])
def test_frames_get_their_display_times(tmp_path, codec, fmt):
    path = tmp_path / f"clip.{fmt}"
    write_clip(path, codec, fmt)
    with VideoSource(str(path)) as source:
        times = [frame.pts * source.info.time_base for frame in source.frames()]
    assert times == [Fraction(i, 25) for i in range(40)]


def test_avi_with_b_frames_hands_out_decode_order_times(tmp_path):
    """The case the reorder exists for: without it, the times above would be out of order."""
    path = tmp_path / "clip.avi"
    write_clip(path, "libx264", "avi")
    with av.open(str(path)) as container:
        raw = [frame.pts for frame in container.decode(video=0)]
    assert raw != sorted(raw) and sorted(raw) == list(range(raw[0], raw[0] + 40))
