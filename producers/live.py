"""`dvp live`: a camera through the pipeline, shown filtered as it comes back.

Frames are published as they are captured on the live topic (workers take them
before file jobs' frames, each on its own thread); the filtered frames come
back on the live output topic and are shown in order, each at most
DVP_LIVE_DEADLINE_MS after its capture (playout.py), in a window where a
display exists, else as an MJPEG stream on 127.0.0.1; `record` writes what is
shown to a video file."""
from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from confluent_kafka import TopicPartition

from dvp import kafka
from dvp.config import Settings
from dvp.errors import DvpError
from dvp.filters import parse_spec
from dvp.messages import ASSEMBLY, FRAMES, PER_FRAME, Frame, ProcessedFrame, now_us
from dvp.producers.camera import open_source
from dvp.producers.mjpeg import MjpegServer
from dvp.producers.playout import Playout
from dvp.streams.encode import VideoEncoder

MS = Fraction(1, 1000)  # the recording's time base: capture times in milliseconds


@dataclass
class LiveStats:
    captured: int = 0
    shown: int = 0
    skipped: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    error: str | None = None  # the camera failed mid-stream

    def percentile(self, p: float) -> float:
        return float(np.percentile(self.latencies_ms, p)) if self.latencies_ms else float("nan")

    def lines(self) -> list[str]:
        return [f"captured  {self.captured}", f"shown     {self.shown}", f"skipped   {self.skipped}",
                f"latency   p50 {self.percentile(50):.0f} ms, p95 {self.percentile(95):.0f} ms, "
                f"p99 {self.percentile(99):.0f} ms (capture to shown)"]


class _Window:
    def __init__(self, title: str):
        self.title = title

    def show(self, image: np.ndarray, _jpeg: bytes) -> None:
        cv2.imshow(self.title, image)
        cv2.waitKey(1)

    def close(self) -> None:
        cv2.destroyAllWindows()


class _Stream:
    def __init__(self, port: int):
        self.server = MjpegServer("127.0.0.1", port)
        print(f"live view: {self.server.url}", flush=True)

    def show(self, _image: np.ndarray, jpeg: bytes) -> None:
        self.server.show(jpeg)

    def close(self) -> None:
        self.server.close()


def run_live(settings: Settings, source: str, filter_spec: str, record: Path | None, view: str,
             port: int, stop: threading.Event | None = None) -> LiveStats:
    """Until the source ends, fails or `stop` is set."""
    spec = parse_spec(filter_spec)  # refused before the camera opens
    stop = stop or threading.Event()
    camera = open_source(source)
    kafka.ensure_topics(settings)
    session = f"live-{uuid.uuid4().hex[:8]}"
    key = session.encode()
    names = settings.names
    reader = kafka.consumer(settings, **{"group.id": f"{names.live_out}-viewer", "enable.auto.commit": False,
                                         "fetch.wait.max.ms": 5})
    out_partition = kafka.key_partition(key, kafka.partition_count(settings, names.live_out))
    _low, high = kafka.watermarks(reader, names.live_out, out_partition, settings.connect_timeout_s)
    reader.assign([TopicPartition(names.live_out, out_partition, high)])
    parts = kafka.partition_count(settings, names.live)
    producer = kafka.ReliableProducer(settings, **kafka.LIVE_PRODUCER)
    playout: Playout[ProcessedFrame] = Playout(settings.live_deadline_ms * 1000)
    stats = LiveStats()
    lock = threading.Lock()
    finished = threading.Event()

    def capture() -> None:
        try:
            for index, shot in enumerate(camera.frames()):
                if stop.is_set():
                    break
                jpeg = cv2.imencode(".jpg", shot.image, [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality])[1]
                with lock:
                    playout.captured(index, shot.capture_ts_us)
                    stats.captured += 1
                frame = Frame(session, index, index, str(spec), PER_FRAME, jpeg.tobytes(), shot.capture_ts_us,
                              now_us())
                producer.send(names.live, FRAMES.encode(frame), key=key, partition=index % parts)
        except DvpError as exc:
            stats.error = str(exc)
        finally:
            finished.set()

    shown_on = (_Window(f"dvp live: {camera.name}") if view == "window"
                else _Stream(port) if view == "mjpeg" else None)
    recorder: VideoEncoder | None = None
    first_capture: int | None = None
    last_pts = -1
    thread = threading.Thread(target=capture, name="capture", daemon=True)
    thread.start()
    try:
        while True:
            msg = reader.poll(0.01)
            if msg is not None and not msg.error():
                try:
                    result = ASSEMBLY.decode(msg.value())
                except DvpError:
                    result = None
                if isinstance(result, ProcessedFrame) and result.job_id == session and result.filtered:
                    with lock:
                        playout.arrived(result.index, result)
            with lock:
                due = list(playout.due(now_us()))
                done = finished.is_set() and playout.waiting == 0
            for _index, captured_at, result in due:
                if result is None:
                    stats.skipped += 1
                    continue
                image = cv2.imdecode(np.frombuffer(result.jpeg, np.uint8), cv2.IMREAD_COLOR)
                if image is None:
                    stats.skipped += 1
                    continue
                stats.shown += 1
                stats.latencies_ms.append((now_us() - captured_at) / 1000)
                if shown_on is not None:
                    shown_on.show(image, result.jpeg)
                if record is not None:
                    if recorder is None:
                        first_capture = captured_at
                        recorder = VideoEncoder(record, image.shape[1], image.shape[0], camera.fps, MS,
                                                settings.crf, settings.preset)
                    pts = max(round((captured_at - (first_capture or captured_at)) / 1000), last_pts + 1)
                    recorder.write(image, pts)
                    last_pts = pts
            if done:
                break
            producer.poll(0)
    finally:
        stop.set()
        thread.join(timeout=10)
        if recorder is not None:
            recorder.close()  # a recording cut short is still a playable file
        if shown_on is not None:
            shown_on.close()
        reader.close()
        producer.flush(5)
        camera.close()
    return stats


def default_view() -> str:
    return "window" if os.environ.get("DISPLAY") else "mjpeg"

