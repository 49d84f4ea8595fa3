"""`dvp live --record OUT`: the frames shown, written as they are shown at their
capture times, and at the end the source's audio (a file played as a camera)
muxed in beside them. OUT appears only when complete, and a session cut short
still leaves a playable file."""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dvp.config import Settings
from dvp.encode import VideoEncoder, mux_output
from dvp.errors import DvpError

MS = Fraction(1, 1000)  # the recording's time base: capture times in milliseconds


class Recording:
    def __init__(self, path: Path, fps: Fraction, settings: Settings):
        self.path = path
        self.fps = fps
        self.settings = settings
        self._video = path.with_name(f".{path.name}.video.mp4")
        self._encoder: VideoEncoder | None = None
        self._last_pts = -1

    def write(self, image: np.ndarray, captured_at_us: int, session_start_us: int) -> None:
        """A frame shown, at its time since the session's first capture (the audio's start too)."""
        if self._encoder is None:
            self._encoder = VideoEncoder(self._video, image.shape[1], image.shape[0], self.fps, MS,
                                         self.settings.crf, self.settings.preset)
        pts = max(round((captured_at_us - session_start_us) / 1000), self._last_pts + 1)
        self._encoder.write(image, pts)
        self._last_pts = pts

    def close(self, audio: Callable[[], bytes | None]) -> None:
        """Finish the file, with the sound `audio()` gives (Matroska bytes, from the
        session's start), if any. Sound that cannot be added leaves the pictures
        alone in the file, and says so."""
        if self._encoder is None:
            return  # nothing was shown: no file
        try:
            self._encoder.close()
            try:
                with tempfile.NamedTemporaryFile(suffix=".mka", dir=self.path.parent) as sound:
                    track = audio()
                    if track:
                        sound.write(track)
                        sound.flush()
                    mux_output(self._video, Path(sound.name) if track else None, self.path)
            except (av.error.FFmpegError, DvpError) as exc:
                mux_output(self._video, None, self.path)
                raise DvpError(f"{self.path} was recorded without sound: {exc}") from None
        finally:
            self._video.unlink(missing_ok=True)
