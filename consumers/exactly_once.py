"""The exactly-once consume loop (`--guarantee exactly-once`).

Each batch of frames is one Kafka transaction: the processed frames, their
metrics and the consumed offsets commit together, so a read_committed reader
sees every frame once even when a worker dies mid-batch. Frames that kill
their worker are bounded as in the at-least-once loop (attempts.py)."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from dvp import kafka
from dvp.consumers.attempts import AttemptLog
from dvp.consumers.frames import Consumed, FrameProcessor, log_assignment, send_outcome
from dvp.errors import BrokerError
from dvp.kafka import ReliableProducer, rewind

log = logging.getLogger("dvp.worker")
TRANSACTION_FRAMES = 16  # frames per transaction: well under a second of work
MAX_BACKOFF_S = 5.0  # longest wait after aborted transactions, well inside max.poll.interval.ms


class TransactionalLoop:
    def __init__(self, consumer: Consumer, new_producer: Callable[[], ReliableProducer], processor: FrameProcessor,
                 attempts: AttemptLog):
        self.consumer = consumer
        self.new_producer = new_producer
        self.producer = new_producer()
        self.processor = processor
        self.attempts = attempts
        self.aborted = 0  # transactions aborted in a row

    def run(self, topic: str, stop: threading.Event) -> None:
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        while not stop.is_set():
            if self.aborted:  # a refusal that lasts (a topic's limits) is not retried in a tight loop
                stop.wait(min(0.1 * 2 ** min(self.aborted, 10), MAX_BACKOFF_S))
            self._transaction([m for m in self.consumer.consume(TRANSACTION_FRAMES, 0.2) if not m.error()])

    def _on_assign(self, consumer: Consumer, partitions: list) -> None:
        log_assignment(consumer, partitions)
        self.attempts.claim(consumer, partitions)

    def _on_revoke(self, _consumer: Consumer, partitions: list) -> None:
        self.attempts.release(partitions)

    def _transaction(self, batch: list) -> None:
        """Process a batch and commit its outputs and its offsets as one transaction.
        A frame taken carefully (attempts.py) ends the transaction early: the rest of
        the batch is consumed again."""
        if not batch:
            return
        done: list = []
        try:
            self.producer.begin()
            for m in batch:
                record = Consumed.of(m)
                outcome, careful = self.attempts.process(self.processor, record)
                send_outcome(self.producer, outcome, None)
                done.append(m)
                if careful:
                    break
            upto = {(m.topic(), m.partition()): m.offset() + 1 for m in done}  # the last of each partition wins
            with kafka.asked("cannot read the group's metadata"):
                metadata = self.consumer.consumer_group_metadata()
            self.producer.commit([TopicPartition(t, p, o) for (t, p), o in upto.items()], metadata)
        except BrokerError as exc:  # a record of the batch refused, or the transaction: none of it may count
            if not (exc.abortable or exc.fatal):
                raise
            reason, fenced = str(exc), exc.fatal
        else:
            self.aborted = 0
            rewind(self.consumer, batch[len(done):])
            return
        self.aborted += 1
        self._abort(reason, fenced)
        rewind(self.consumer, batch)

    def _abort(self, reason: str, fenced: bool) -> None:
        log.warning("transaction aborted (%s); the batch is consumed again", reason)
        if not fenced:
            try:
                self.producer.abort()
                return
            except BrokerError as exc:
                if not exc.fatal:
                    raise
                reason = str(exc)
        # Fenced. Each worker has a transactional id of its own, so this is never a
        # second instance: the broker gave up on a transaction left open past
        # transaction.timeout.ms (a paused process, a suspended VM). Nothing of the
        # fenced producer is asked again (an abort can find its timed-out commit
        # still "in progress" and refuse): a new one takes over.
        log.warning("producer fenced (%s); a new one takes over", reason)
        self.producer = self.new_producer()

