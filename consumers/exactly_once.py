"""The exactly-once consume loop (`--guarantee exactly-once`).

Each batch of frames is one Kafka transaction: the processed frames, their
metrics and the consumed offsets commit together, so a read_committed reader
sees every frame once even when a worker dies mid-batch."""
from __future__ import annotations

import logging
import threading

from confluent_kafka import Consumer, KafkaException, TopicPartition

from dvp.consumers.frames import Consumed, FrameProcessor, log_assignment, send_outcome
from dvp.errors import BrokerError
from dvp.kafka import ReliableProducer

log = logging.getLogger("dvp.worker")
TRANSACTION_FRAMES = 16  # frames per transaction: well under a second of work


class TransactionalLoop:
    def __init__(self, consumer: Consumer, producer: ReliableProducer, processor: FrameProcessor):
        self.consumer = consumer
        self.producer = producer
        self.processor = processor

    def run(self, topic: str, stop: threading.Event) -> None:
        self.consumer.subscribe([topic], on_assign=log_assignment)
        while not stop.is_set():
            self._transaction([m for m in self.consumer.consume(TRANSACTION_FRAMES, 0.2) if not m.error()])

    def _transaction(self, msgs: list) -> None:
        """Process a batch and commit its outputs and its offsets as one transaction."""
        if not msgs:
            return
        first: dict[tuple[str, int], int] = {}
        upto: dict[tuple[str, int], int] = {}
        for m in msgs:
            first.setdefault((m.topic(), m.partition()), m.offset())
            upto[(m.topic(), m.partition())] = m.offset() + 1
        try:
            self.producer.begin()
            for m in msgs:
                record = Consumed(m.topic(), m.partition(), m.offset(), m.key(), m.value())
                send_outcome(self.producer, self.processor.process(record), None)
            self.producer.commit([TopicPartition(t, p, o) for (t, p), o in upto.items()],
                                 self.consumer.consumer_group_metadata())
            return
        except KafkaException as exc:
            err = exc.args[0]
            if not err.txn_requires_abort():
                raise  # fenced or fatal: restart, the group hands the frames to others
            reason = err.str()
        except BrokerError as exc:  # a record of the batch was refused: none of it may count
            reason = str(exc)
        log.warning("transaction aborted (%s); the batch is consumed again", reason)
        self.producer.abort()
        # A rebalance may have taken partitions away meanwhile: their new owner reads them.
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        for (t, p), offset in first.items():
            if (t, p) in assigned:
                self.consumer.seek(TopicPartition(t, p, offset))
