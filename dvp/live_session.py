"""One camera's frames to the workers and back: published on the live topic as
they are captured, read back filtered from the live output topic, and handed
out in order, each at most DVP_LIVE_DEADLINE_MS after its capture (playout.py).
The terminal (`dvp live`) and the browser (the dashboard's Live page) both
drive one; what they show it on is theirs."""
from __future__ import annotations

import functools
import math
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from confluent_kafka import TopicPartition

from dvp import kafka
from dvp.errors import BrokerError, DvpError, MalformedRecord
from dvp.filters import parse_spec
from dvp.jpeg import decode_jpeg, encode_jpeg, jpeg_size
from dvp.kafka_cluster import Cluster
from dvp.messages import ASSEMBLY, FRAMES, PER_FRAME, Frame, ProcessedFrame, now_us
from dvp.playout import Playout

READY_TIMEOUT_S = 60.0  # for workers to take the live partitions (a private stack loads models meanwhile)
PROBE_EVERY_S = 0.25  # a probe is sent again this often until its partition answers
FIRST_SECOND_US = 1_000_000


@dataclass
class LiveStats:
    captured: int = 0
    shown: int = 0
    skipped: int = 0
    first_second_skipped: int = 0  # of the frames captured in the session's first second
    first_shown_s: float | None = None  # from the launch (`started`) to the first frame shown
    latencies_ms: list[float] = field(default_factory=list)
    error: str | None = None  # the camera failed mid-stream

    def percentile(self, p: float) -> float:
        return float(np.percentile(self.latencies_ms, p)) if self.latencies_ms else float("nan")

    def lines(self) -> list[str]:
        first = f"{self.first_shown_s:.1f} s after the start" if self.first_shown_s is not None else "never"
        return [f"captured  {self.captured}", f"shown     {self.shown}",
                f"skipped   {self.skipped} ({self.first_second_skipped} in the first second)",
                f"first     {first}",
                f"latency   p50 {self.percentile(50):.0f} ms, p95 {self.percentile(95):.0f} ms, "
                f"p99 {self.percentile(99):.0f} ms (capture to shown)"]


@dataclass(frozen=True)
class Shown:
    """A frame whose turn has come: filtered, as JPEG of the size the session sent,
    or None where it is skipped. Decoded only where asked (`image`): a view that
    shows the JPEG as it came (MJPEG) never pays for it."""
    index: int
    captured_at_us: int
    jpeg: bytes | None
    size: tuple[int, int] = (0, 0)

    @functools.cached_property
    def image(self) -> np.ndarray | None:
        if self.jpeg is None:
            return None
        try:
            return decode_jpeg(self.jpeg, self.size[0] * self.size[1], self.size)
        except MalformedRecord:
            return None


class LiveSession:
    """`started`: when the user started it (time.monotonic()), for the time to the first frame shown."""

    def __init__(self, cluster: Cluster, filter_spec: str, started: float | None = None):
        self.spec = str(parse_spec(filter_spec))  # refused before anything is sent
        cluster.ensure_topics()
        self.settings = settings = cluster.settings
        self.started = time.monotonic() if started is None else started
        self.id = f"live-{uuid.uuid4().hex[:8]}"
        self._key = self.id.encode()
        names = settings.names
        self._reader = kafka.consumer(settings, **{"group.id": f"{names.live_out}-viewer",
                                                   "enable.auto.commit": False, "fetch.wait.max.ms": 5})
        try:
            out_partitions = cluster.partition_count(names.live_out)
            out_partition = kafka.key_partition(self._key, out_partitions)
            # Probes of the live path come back on the session's partition, under a job id of their own.
            self._probe_id = next(probe for n in range(1000) if kafka.key_partition(
                (probe := f"{self.id}.ready{n}").encode(), out_partitions) == out_partition)
            _low, high = kafka.watermarks(self._reader, names.live_out, out_partition, settings.connect_timeout_s)
            self._reader.assign([TopicPartition(names.live_out, out_partition, high)])
            self._partitions = cluster.partition_count(names.live)
        except DvpError:
            self._reader.close()
            raise
        self._producer = kafka.ReliableProducer(settings, **kafka.LIVE_PRODUCER)
        self._closed = False
        self._playout: Playout[ProcessedFrame] = Playout(settings.live_deadline_ms * 1000)
        self._lock = threading.Lock()  # send() and receive() may run on different threads
        self._next_index = 0
        # Of each frame in flight: a camera may change its resolution (a browser's does
        # with the bandwidth), and a frame comes back at the size it was sent.
        self._sizes: dict[int, tuple[int, int]] = {}
        self.first_capture_us: int | None = None  # the session's time zero
        self.stats = LiveStats()

    def send(self, image: np.ndarray, capture_ts_us: int) -> None:
        jpeg = encode_jpeg(image, self.settings.jpeg_quality)
        with self._lock:
            index = self._next_index
            self._next_index += 1
            self._playout.captured(index, capture_ts_us)
            self._sizes[index] = (image.shape[1], image.shape[0])
            if self.first_capture_us is None:
                self.first_capture_us = capture_ts_us
            self.stats.captured += 1
        frame = Frame(self.id, index, index, self.spec, PER_FRAME, jpeg, capture_ts_us, now_us(),
                      self.settings.live_detector)
        self._producer.send(self.settings.names.live, FRAMES.encode(frame), key=self._key,
                            partition=index % self._partitions)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until a probe sent to each partition of the live topic has come back filtered:
        workers hold every partition and have loaded the models of the session's filter
        (the face mesh too, where it draws on landmarks), so the first frames are not
        skipped. A probe sent before its partition had a worker is never read (workers
        start at the end): each is sent again until it answers."""
        probe = encode_jpeg(np.full((48, 64, 3), 128, np.uint8), self.settings.jpeg_quality)
        waiting = set(range(self._partitions))
        deadline = time.monotonic() + timeout_s
        sent_at = -math.inf
        while waiting:
            now = time.monotonic()
            if now > deadline:
                raise BrokerError(f"no worker took live frames within {timeout_s:g} s (partitions "
                                  f"{sorted(waiting)} of {self.settings.names.live}): are workers running, "
                                  f"without --no-live?")
            if now - sent_at >= PROBE_EVERY_S:
                for partition in waiting:
                    frame = Frame(self._probe_id, partition, partition, self.spec, PER_FRAME, probe, now_us(),
                                  now_us(), self.settings.live_detector)
                    self._producer.send(self.settings.names.live, FRAMES.encode(frame), key=self._key,
                                        partition=partition)
                self._producer.poll(0)
                sent_at = now
            waiting -= {back.index for back in self._arrivals(0.02) if back.job_id == self._probe_id}

    def set_filter(self, filter_spec: str) -> None:
        """The filter of the frames sent from now on."""
        self.spec = str(parse_spec(filter_spec))

    def receive(self, timeout: float) -> list[Shown]:
        """The frames whose turn has come, in order, after waiting up to `timeout`
        seconds for the first record and taking what else has arrived."""
        for result in self._arrivals(timeout):
            if result.job_id == self.id and result.filtered:
                with self._lock:
                    self._playout.arrived(result.index, result)
        self._producer.poll(0)
        with self._lock:
            due = [(index, captured_at, result, self._sizes.pop(index))
                   for index, captured_at, result in self._playout.due(now_us())]
        return [Shown(index, captured_at, self._jpeg(result, size), size) for index, captured_at, result, size in due]

    def _arrivals(self, timeout: float) -> Iterator[ProcessedFrame]:
        """The frames come back: the first waited for up to `timeout` seconds, then
        those already here. What is not a processed frame is passed over."""
        msg = self._reader.poll(timeout)
        while msg is not None:
            if not msg.error():
                try:
                    result = ASSEMBLY.decode(msg.value())
                except DvpError:
                    result = None
                if isinstance(result, ProcessedFrame):
                    yield result
            msg = self._reader.poll(0)

    def _jpeg(self, result: ProcessedFrame | None, size: tuple[int, int]) -> bytes | None:
        """A filtered frame from the topic, if its header says it is of the size this
        session sent it at, within DVP_MAX_PIXELS (else it is skipped)."""
        if result is None:
            return None
        try:
            width, height = jpeg_size(result.jpeg)
        except MalformedRecord:
            return None
        return result.jpeg if (width, height) == size and width * height <= self.settings.max_pixels else None

    def counted(self, shown: Shown, on_screen: bool = True) -> None:
        """Count a frame whose turn came: shown (its latency taken now) or skipped."""
        stats = self.stats
        if shown.jpeg is not None and on_screen:
            stats.shown += 1
            stats.latencies_ms.append((now_us() - shown.captured_at_us) / 1000)
            if stats.first_shown_s is None:
                stats.first_shown_s = time.monotonic() - self.started
        else:
            stats.skipped += 1
            stats.first_second_skipped += shown.captured_at_us - (self.first_capture_us or 0) < FIRST_SECOND_US

    @property
    def waiting(self) -> int:
        with self._lock:
            return self._playout.waiting

    def close(self, flush_s: float = 5) -> None:
        """Once; frames still unsent after `flush_s` are lost (live frames are for now)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._reader.close()
        finally:
            self._producer.flush(flush_s)
