"""`dvp live`: a camera through the pipeline, shown filtered as it comes back.

Frames are published as they are captured on the live topic (workers take them
before file jobs' frames, each on its own thread); the filtered frames come
back on the live output topic and are shown in order, each at most
DVP_LIVE_DEADLINE_MS after its capture (playout.py), in a window where a
display exists, else as an MJPEG stream on 127.0.0.1; `record` writes what is
shown to a video file (recording.py)."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np

from dvp.errors import DvpError
from dvp.filters import parse_spec
from dvp.kafka_cluster import Cluster
from dvp.live_session import LiveSession, LiveStats
from dvp.producers.camera import open_source
from dvp.producers.mjpeg import MjpegServer
from dvp.producers.recording import Recording


class _Window:
    def __init__(self, title: str):
        self.title = title

    def show(self, image: np.ndarray | None, _jpeg: bytes) -> None:
        if image is not None:
            cv2.imshow(self.title, image)
        cv2.waitKey(1)

    def close(self) -> None:
        cv2.destroyAllWindows()


class _Stream:
    def __init__(self, port: int):
        self.server = MjpegServer("127.0.0.1", port)
        print(f"live view: {self.server.url}", flush=True)

    def show(self, _image: np.ndarray | None, jpeg: bytes) -> None:
        self.server.show(jpeg)

    def close(self) -> None:
        self.server.close()


def run_live(cluster: Cluster, source: str, filter_spec: str, record: Path | None, view: str,
             port: int, stop: threading.Event | None = None, started: float | None = None) -> LiveStats:
    """Until the source ends, fails or `stop` is set. Capture begins once the live
    path is ready (a probe came back through every live partition). `started`:
    when the user started it (time.monotonic()), for the time to the first frame."""
    stop = stop or threading.Event()
    parse_spec(filter_spec)  # refused before the camera opens
    camera = open_source(source)
    try:
        session = LiveSession(cluster, filter_spec, started)
    except DvpError:
        camera.close()
        raise
    try:
        session.wait_ready()
    except DvpError:
        session.close()
        camera.close()
        raise
    finished = threading.Event()

    def capture() -> None:
        try:
            for shot in camera.frames():
                if stop.is_set():
                    break
                session.send(shot.image, shot.capture_ts_us)
        except DvpError as exc:
            session.stats.error = str(exc)
        finally:
            finished.set()

    shown_on = (_Window(f"dvp live: {camera.name}") if view == "window"
                else _Stream(port) if view == "mjpeg" else None)
    recording = Recording(record, camera.fps, cluster.settings) if record is not None else None
    thread = threading.Thread(target=capture, name="capture", daemon=True)
    thread.start()
    decoded = recording is not None or isinstance(shown_on, _Window)  # else the JPEG goes as it came
    try:
        while not (finished.is_set() and session.waiting == 0):
            for frame in session.receive(0.01):
                image = frame.image if decoded else None
                session.counted(frame, on_screen=image is not None or not decoded)
                if frame.jpeg is None or (decoded and image is None):
                    continue
                if shown_on is not None:
                    shown_on.show(image, frame.jpeg)
                if recording is not None and image is not None:
                    recording.write(image, frame.captured_at_us, session.first_capture_us or 0)
    finally:
        stop.set()
        thread.join(timeout=10)
        try:
            if recording is not None:  # a recording cut short is still a playable file
                # The sound read so far, unless the capture thread still reads the file.
                recording.close(camera.audio if not thread.is_alive() else lambda: None)
        finally:
            if shown_on is not None:
                shown_on.close()
            session.close()
            camera.close()
    return session.stats


def default_view() -> str:
    return "window" if os.environ.get("DISPLAY") else "mjpeg"

