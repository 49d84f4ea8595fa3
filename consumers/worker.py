"""The frame worker: consume a frame, detect faces, filter, publish the result.

At-least-once: a frame's offset is stored for commit only after its processed
record is acknowledged, so a crash never loses a frame (the aggregator drops
the duplicates a crash may cause). Bad records never stop the loop: they go to
the dead-letter topic with the original bytes, and the job is told."""
from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import time

import cv2
import numpy as np
from confluent_kafka import Consumer, KafkaException, TopicPartition

from dvp import kafka
from dvp.config import Settings
from dvp.errors import BrokerError, DvpError, MalformedRecord
from dvp.faces import FaceDetector
from dvp.filters import parse_spec
from dvp.messages import (ASSEMBLY, FRAMES, METRICS, FaceBox, Frame, FrameFailed,
                          FrameMetrics, ProcessedFrame, StageTimings, now_us)
from consumers.offsets import OffsetTracker

log = logging.getLogger("dvp.worker")
TRANSACTION_FRAMES = 16  # frames per transaction in exactly-once mode


def _local_ip(bootstrap: str) -> str:
    """The address this host uses to reach the cluster (no packet is sent)."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host.strip("[]") or "127.0.0.1", int(port or 9092)))
            return s.getsockname()[0]
    except (OSError, ValueError):
        return "127.0.0.1"


@functools.lru_cache(maxsize=64)
def _spec(text: str):
    return parse_spec(text)


class Worker:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.id = f"{self.host}-{self.pid}"
        self.ip = _local_ip(settings.bootstrap)
        self.frames_topic = settings.topic("frames")
        self.processed_topic = settings.topic("processed")
        self.stopping = False
        self.processed = 0
        self.dead_letters = 0

    def stop(self, *_args) -> None:
        self.stopping = True

    def run(self) -> None:
        settings = self.settings
        exactly_once = settings.guarantee == "exactly-once"
        kafka.ensure_topics(settings)
        # A dead worker's open transaction blocks its partitions until it times out:
        # keep that short (a transaction is one batch of frames, well under a second).
        self.producer = kafka.ReliableProducer(
            settings, **({"transactional_id": f"{settings.topic('worker')}-{self.id}",
                          "transaction.timeout.ms": 10000} if exactly_once else {}))
        self.tracker = OffsetTracker()
        self.detector = FaceDetector()
        self.consumer = Consumer(settings.client_config(**{
            "group.id": settings.topic("workers"),
            # At-least-once: offsets stored after delivery, committed in the background.
            # Exactly-once: offsets committed inside each transaction, nowhere else.
            "enable.auto.offset.store": False,
            "enable.auto.commit": not exactly_once,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": max(settings.session_timeout_ms // 6, 500),
            "client.id": self.id,
            **kafka.RDKAFKA_LOGS}))
        try:
            if exactly_once:
                self.consumer.subscribe([self.frames_topic])
            else:
                self.consumer.subscribe([self.frames_topic], on_revoke=self._on_revoke)
            log.info("worker %s consuming %s (%s)", self.id, self.frames_topic, settings.guarantee)
            while not self.stopping:
                if exactly_once:
                    self._transaction(self.consumer.consume(TRANSACTION_FRAMES, 0.2))
                else:
                    self._at_least_once(self.consumer.poll(0.2))
        finally:
            if not exactly_once:
                self._drain()
            self.consumer.close()  # commits what was stored, leaves the group at once
            self.detector.close()
            log.info("worker %s stopped after %d frames (%d dead letters)",
                     self.id, self.processed, self.dead_letters)

    def _at_least_once(self, msg) -> None:
        if msg is not None:
            if msg.error():
                log.warning("consumer error: %s", msg.error())
            else:
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                self.tracker.started(topic, partition, offset)
                self._handle(msg, functools.partial(self._delivered, topic, partition, offset))
        self.producer.poll(0)
        self._store_offsets()

    def _transaction(self, msgs: list) -> None:
        """Process a batch and commit its outputs and its offsets as one transaction."""
        msgs = [m for m in msgs if not m.error()]
        if not msgs:
            return
        first: dict[tuple[str, int], int] = {}
        upto: dict[tuple[str, int], int] = {}
        for m in msgs:
            first.setdefault((m.topic(), m.partition()), m.offset())
            upto[(m.topic(), m.partition())] = m.offset() + 1
        try:
            self.producer.begin()
            for msg in msgs:
                self._handle(msg, None)
            self.producer.commit([TopicPartition(t, p, o) for (t, p), o in upto.items()],
                                 self.consumer.consumer_group_metadata())
        except KafkaException as exc:
            err = exc.args[0]
            if not err.txn_requires_abort():
                raise  # fenced or fatal: restart, the group hands the frames to others
            log.warning("transaction aborted (%s); the batch is consumed again", err.str())
            self.producer.abort()
            for (t, p), offset in first.items():
                self.consumer.seek(TopicPartition(t, p, offset))

    # -- one record -----------------------------------------------------------------------
    def _handle(self, msg, delivered) -> None:
        """Process one record; `delivered` (at-least-once) hears when its output is stored."""
        try:
            frame = FRAMES.decode(msg.value())
        except MalformedRecord as exc:
            self._dead_letter(msg, str(exc), delivered)
            return
        try:
            result, metrics = self._process(frame, msg.partition())
        except Exception as exc:  # a frame that breaks a stage must not break the loop
            reason = str(exc) if isinstance(exc, DvpError) else f"{type(exc).__name__}: {exc}"
            self._dead_letter(msg, reason, None)
            self._send_processed(FrameFailed(frame.job_id, frame.index, self.id, reason), delivered)
            return
        try:
            self._send_processed(result, delivered)
        except BrokerError as exc:  # e.g. the filtered frame is over the size limit
            self._send_processed(FrameFailed(frame.job_id, frame.index, self.id, str(exc)), delivered)
            return
        self.producer.send(self.settings.topic("metrics"), METRICS.encode(metrics),
                           key=frame.job_id.encode())
        self.processed += 1

    def _process(self, frame: Frame, partition: int) -> tuple[ProcessedFrame, FrameMetrics]:
        start = now_us()
        spec = _spec(frame.filter)
        t0 = time.perf_counter()
        image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise MalformedRecord(f"frame {frame.index} of job {frame.job_id}: undecodable JPEG")
        t1 = time.perf_counter()
        faces = self.detector.detect(image, landmarks=spec.filter.needs_landmarks)
        t2 = time.perf_counter()
        image = spec.apply(image, faces)
        t3 = time.perf_counter()
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.settings.jpeg_quality])
        t4 = time.perf_counter()
        timings = StageTimings(queue_ms=max(start - frame.produce_ts_us, 0) / 1000,
                               decode_ms=(t1 - t0) * 1000, detect_ms=(t2 - t1) * 1000,
                               filter_ms=(t3 - t2) * 1000, encode_ms=(t4 - t3) * 1000)
        boxes = [FaceBox(f.x, f.y, f.w, f.h, f.score) for f in faces]
        done = now_us()
        result = ProcessedFrame(frame.job_id, frame.index, frame.pts, jpeg.tobytes(), boxes,
                                self.id, timings, frame.capture_ts_us, done)
        metrics = FrameMetrics(frame.job_id, frame.index, self.id, self.host, self.ip, self.pid,
                               partition, timings, len(faces), done)
        return result, metrics

    def _send_processed(self, message, delivered) -> None:
        self.producer.send(self.processed_topic, ASSEMBLY.encode(message),
                           key=message.job_id.encode(), on_delivery=delivered)

    def _dead_letter(self, msg, reason: str, delivered) -> None:
        """Set the original record aside, with where it came from and why."""
        self.dead_letters += 1
        log.warning("dead letter %d, %s[%d]@%d: %s", self.dead_letters, msg.topic(), msg.partition(),
                    msg.offset(), reason)
        headers = [("dvp.error", reason.encode()), ("dvp.topic", msg.topic().encode()),
                   ("dvp.partition", str(msg.partition()).encode()),
                   ("dvp.offset", str(msg.offset()).encode()), ("dvp.worker", self.id.encode())]
        self.producer.send(self.settings.topic("deadletter"), msg.value() or b"", key=msg.key(),
                           headers=headers, on_delivery=delivered)

    # -- offsets --------------------------------------------------------------------------
    def _delivered(self, topic, partition, offset, err, _msg) -> None:
        if err is not None:
            # Not stored, so the frame is consumed again after the restart this forces.
            raise KafkaException(err)
        self.tracker.done(topic, partition, offset)

    def _store_offsets(self) -> None:
        ready = self.tracker.committable()
        if ready:
            self.consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in ready.items()])

    def _drain(self) -> None:
        """Finish in-flight frames: wait for their deliveries, store their offsets."""
        try:
            self.producer.flush(30)
        except BrokerError as exc:
            log.error("%s", exc)
        self._store_offsets()

    def _on_revoke(self, consumer, partitions) -> None:
        self._drain()
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            log.debug("commit on revoke: %s", exc)
        for tp in partitions:
            self.tracker.forget(tp.topic, tp.partition)


def run_worker(settings: Settings) -> None:
    """One worker in this process, until SIGTERM or SIGINT."""
    worker = Worker(settings)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.run()
