"""A worker's per-frame work, without a broker: one consumed record in, the
records to publish out. Decode, detect, filter, encode, time each stage; under
`--privacy strict` only detect, and pass the frame on as it came with its faces
(and their landmarks, where the job's filters draw on them): the aggregator
filters it once the faces are tracked over frames. A record that is not a
frame, or a frame that breaks a stage, becomes data (a dead letter, a
FrameFailed for its job), never an exception that stops the loop."""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from confluent_kafka import Consumer, Message

from dvp.config import Names
from dvp.consumers.live_schedule import LiveSchedule
from dvp.errors import BrokerError, DvpError, InputError, MalformedRecord
from dvp.faces import Detectors
from dvp.filters import FilterSpec, parse_spec
from dvp.jpeg import decode_jpeg, encode_jpeg_within
from dvp.kafka import KAFKA_DEFAULT_MAX_BYTES, RECORD_OVERHEAD, Delivered, ReliableProducer, dead_letter_headers
from dvp.messages import (
    ASSEMBLY,
    FRAMES,
    METRICS,
    STRICT,
    FaceBox,
    Frame,
    FrameFailed,
    FrameMetrics,
    ProcessedFrame,
    StageTimings,
    now_us,
)

log = logging.getLogger("dvp.worker")


@dataclass(frozen=True)
class Consumed:
    """A record as it was consumed."""
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @staticmethod
    def of(message: Message) -> Consumed:
        """A message a consumer delivered (not an error: those have no offset)."""
        return Consumed(message.topic() or "", message.partition() or 0, message.offset() or 0,
                        message.key(), message.value())


@dataclass(frozen=True)
class Outgoing:
    """A record to publish."""
    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What one consumed record becomes. Once `result` is acknowledged the
    consumed offset may be committed; `also` goes out beside it (metrics, a dead
    letter). If the broker refuses `result` (a filtered frame over Kafka's size
    limit), `if_refused(why)` takes its place: the frame fails its job instead."""
    result: Outgoing
    also: tuple[Outgoing, ...] = ()
    if_refused: Callable[[str], Outgoing] | None = None


@dataclass(frozen=True)
class WorkerIdentity:
    """Who did the work, as metrics and dead letters name it."""
    id: str
    host: str
    ip: str
    pid: int


@functools.lru_cache(maxsize=64)
def _spec(text: str) -> FilterSpec:
    return parse_spec(text)


class FrameProcessor:
    def __init__(self, names: Names, detectors: Detectors, identity: WorkerIdentity, jpeg_quality: int,
                 max_pixels: int, results_topic: str | None = None, schedule: LiveSchedule | None = None):
        self.names = names
        self.schedule = schedule  # live frames: which search each frame gets (live_schedule.py)
        self.results_topic = results_topic or names.processed  # live frames go to names.live_out
        self.detectors = detectors  # each frame names the one its job asks for
        self.identity = identity
        self.jpeg_quality = jpeg_quality
        self.max_pixels = max_pixels
        self.processed = 0
        self.dead_letters = 0

    def process(self, record: Consumed) -> Outcome:
        try:
            frame = FRAMES.decode(record.value)
        except MalformedRecord as exc:
            return Outcome(self._dead_letter(record, str(exc)))
        try:
            result, metrics = self._filter(frame, record.partition)
        except Exception as exc:  # a frame that breaks a stage must not break the loop
            reason = str(exc) if isinstance(exc, DvpError) else f"{type(exc).__name__}: {exc}"
            return Outcome(self._failed(frame, reason), also=(self._dead_letter(record, reason),))
        self.processed += 1
        key = frame.job_id.encode()
        return Outcome(Outgoing(self.results_topic, ASSEMBLY.encode(result), key),
                       also=(Outgoing(self.names.metrics, METRICS.encode(metrics), key),),
                       if_refused=functools.partial(self._failed, frame))

    def set_aside(self, record: Consumed, reason: str) -> Outcome:
        """Do not process this record: fail its frame's job with the reason, keep it as a dead letter."""
        letter = self._dead_letter(record, reason)
        try:
            frame = FRAMES.decode(record.value)
        except MalformedRecord:
            return Outcome(letter)
        return Outcome(self._failed(frame, reason), also=(letter,))

    def _filter(self, frame: Frame, partition: int) -> tuple[ProcessedFrame, FrameMetrics]:
        start = now_us()
        spec = _spec(frame.filter)
        t0 = time.perf_counter()
        try:
            image = decode_jpeg(frame.jpeg, self.max_pixels)
        except MalformedRecord as exc:
            raise MalformedRecord(f"frame {frame.index} of job {frame.job_id}: {exc}") from None
        t1 = time.perf_counter()
        strict = frame.privacy == STRICT
        detector = self.detectors.get(frame.detector)
        if self.schedule is None:
            faces = detector.detect(image, spec.needs_landmarks)
        else:
            faces = self.schedule.faces(frame.job_id, image, frame.capture_ts_us, detector.detect,
                                        spec.needs_landmarks, frame.detector, detector.detect_near)
        t2 = time.perf_counter()
        if strict:
            jpeg, t3 = frame.jpeg, t2
        else:
            image = spec.apply(image, faces)
            t3 = time.perf_counter()
            try:
                # No larger than the frame as it came: the publisher fitted that to the cluster.
                jpeg, _quality = encode_jpeg_within(image, self.jpeg_quality, max(
                    len(frame.jpeg), KAFKA_DEFAULT_MAX_BYTES - RECORD_OVERHEAD))
            except InputError as exc:
                raise DvpError(f"frame {frame.index} of job {frame.job_id}: {exc}") from None
        t4 = time.perf_counter()
        timings = StageTimings(queue_ms=max(start - frame.produce_ts_us, 0) / 1000,
                               decode_ms=(t1 - t0) * 1000, detect_ms=(t2 - t1) * 1000,
                               filter_ms=(t3 - t2) * 1000, encode_ms=(t4 - t3) * 1000)
        boxes = [FaceBox(f.x, f.y, f.w, f.h, f.score, _flat(f.landmarks) if strict else []) for f in faces]
        done = now_us()
        me = self.identity
        result = ProcessedFrame(frame.job_id, frame.index, frame.pts, jpeg, not strict, boxes,
                                me.id, timings, frame.capture_ts_us, done)
        metrics = FrameMetrics(frame.job_id, frame.index, me.id, me.host, me.ip, me.pid,
                               partition, timings, len(faces), done)
        return result, metrics

    def _failed(self, frame: Frame, reason: str) -> Outgoing:
        failed = FrameFailed(frame.job_id, frame.index, self.identity.id, reason)
        return Outgoing(self.results_topic, ASSEMBLY.encode(failed), frame.job_id.encode())

    def _dead_letter(self, record: Consumed, reason: str) -> Outgoing:
        """The original record set aside, with where it came from and why."""
        self.dead_letters += 1
        log.warning("dead letter %d, %s[%d]@%d: %s", self.dead_letters, record.topic, record.partition,
                    record.offset, reason)
        headers = dead_letter_headers(reason, record.topic, record.partition, record.offset,
                                      worker=self.identity.id)
        return Outgoing(self.names.deadletter, record.value or b"", record.key, tuple(headers))


def _flat(landmarks: np.ndarray | None) -> list[float]:
    """A mesh as the wire carries it (x, y pairs), for the aggregator's landmark filters."""
    return [] if landmarks is None else landmarks.reshape(-1).tolist()


def log_assignment(_consumer: Consumer, partitions: list) -> None:
    log.info("partitions assigned: %s", sorted(tp.partition for tp in partitions))


def send_outcome(producer: ReliableProducer, outcome: Outcome, delivered: Delivered | None) -> None:
    """Publish an outcome; `delivered` hears when its result is acknowledged."""
    def send(record: Outgoing, on_delivery: Delivered | None = None) -> None:
        producer.send(record.topic, record.value, key=record.key, headers=list(record.headers) or None,
                      on_delivery=on_delivery)

    try:
        send(outcome.result, delivered)
    except BrokerError as exc:
        if outcome.if_refused is None:
            raise
        send(outcome.if_refused(str(exc)), delivered)
        return
    for record in outcome.also:
        send(record)
