"""The at-least-once consume loop (the default).

A frame's offset is stored for commit only after its result is acknowledged by
the broker, and only in order (`offsets.py`), so a worker that dies loses no
frame: another worker processes its in-flight frames again and the aggregator
drops the duplicates. Offsets are committed in the background and on revoke."""
from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from dvp import kafka
from dvp.consumers.attempts import AttemptLog
from dvp.consumers.frames import Consumed, FrameProcessor, log_assignment, send_outcome
from dvp.consumers.offsets import OffsetTracker
from dvp.errors import BrokerError
from dvp.kafka import ReliableProducer

log = logging.getLogger("dvp.worker")
# How long a stopping worker waits for its in-flight frames to be acknowledged;
# frames not acknowledged by then are processed again by another worker.
DRAIN_S = 10


class AtLeastOnceLoop:
    def __init__(self, consumer: Consumer, producer: ReliableProducer, processor: FrameProcessor,
                 attempts: AttemptLog):
        self.consumer = consumer
        self.producer = producer
        self.processor = processor
        self.attempts = attempts
        self.tracker = OffsetTracker()

    def run(self, topic: str, stop: threading.Event) -> None:
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not stop.is_set():
                msg = self.consumer.poll(0.2)
                if msg is not None and msg.error():
                    log.warning("consumer error: %s", msg.error())
                elif msg is not None:
                    self._handle(msg)
                self.producer.poll(0)
                self._store_offsets()
        finally:
            self._drain()

    def _handle(self, msg: Message) -> None:
        record = Consumed.of(msg)
        outcome, careful = self.attempts.process(self.processor, record)
        self.tracker.started(record.topic, record.partition, record.offset)
        send_outcome(self.producer, outcome,
                     functools.partial(self._delivered, record.topic, record.partition, record.offset))
        if careful:  # its offset is committed before the next frame is tried
            self.producer.flush(self.producer.timeout)
            self._store_offsets()
            try:
                with kafka.asked("careful commit"):
                    self.consumer.commit(asynchronous=False)
            except BrokerError as exc:  # e.g. nothing new: the background commit was first
                log.debug("%s", exc)

    def _delivered(self, topic: str, partition: int, offset: int, err: Any, _msg: object) -> None:  # err: a KafkaError
        if err is not None:
            # Not stored, so the frame is consumed again after the restart this forces.
            raise kafka.refused(err, f"frame {topic}[{partition}]@{offset} not delivered")
        self.tracker.done(topic, partition, offset)

    def _store_offsets(self) -> None:
        ready = self.tracker.committable()
        if ready:
            self.consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in ready.items()])

    def _drain(self) -> None:
        """Finish in-flight frames: wait for their deliveries, store their offsets."""
        try:
            self.producer.flush(DRAIN_S)
        except BrokerError as exc:
            log.error("%s", exc)
        self._store_offsets()

    def _on_assign(self, consumer: Consumer, partitions: list) -> None:
        log_assignment(consumer, partitions)
        self.attempts.claim(consumer, partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list) -> None:
        log.info("partitions revoked: %s", sorted(tp.partition for tp in partitions))
        self._drain()
        try:
            with kafka.asked("commit on revoke"):
                consumer.commit(asynchronous=False)
        except BrokerError as exc:
            log.debug("%s", exc)
        for tp in partitions:
            self.tracker.forget(tp.topic, tp.partition)
        self.attempts.release(partitions)
