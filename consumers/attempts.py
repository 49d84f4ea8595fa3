"""Frames that kill the worker processing them (poison pills) are tried a
bounded number of times, then set aside.

Each worker says on the attempts topic when it takes a partition (claim) and
when it lets it go (release). A partition whose last claim was never released
belonged to a worker that died: its new owner takes it carefully, up to the
end the log had when it took it: before each frame it records an attempt, and
after it commits the frame's offset at once. A frame whose earlier attempts
(by workers that then died) reached the limit is not tried again: its job
fails with the reason, and the frame goes to the dead letters."""
from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from dvp import kafka
from dvp.consumers.frames import Consumed, FrameProcessor, Outcome
from dvp.errors import BrokerError, MalformedRecord
from dvp.kafka_cluster import Cluster
from dvp.messages import ATTEMPTS, FrameAttempt, now_us

log = logging.getLogger("dvp.worker")
CLAIM, RELEASE, ATTEMPT = "claim", "release", "attempt"


@dataclass(frozen=True)
class Careful:
    """How a partition taken from a dead worker is processed: up to this offset."""
    until: int


class AttemptLog:
    def __init__(self, cluster: Cluster, worker_id: str, retries: int, stop: threading.Event):
        self.settings = settings = cluster.settings
        self.stop = stop
        self.topic = settings.names.attempts
        self.worker_id = worker_id
        self.retries = retries
        # Its own producer: an attempt must be on record even if the worker's
        # transaction that holds the frame's outputs never commits.
        self.producer = kafka.ReliableProducer(settings)
        self.reader = kafka.consumer(settings, **{"group.id": settings.names.replay, "enable.auto.commit": False,
                                                  "enable.partition.eof": True})
        self.partitions = cluster.partition_count(self.topic)
        self.read_to: dict[int, int] = {}  # partition: the next offset to read
        self.owner: dict[tuple[str, int], tuple[str, str]] = {}  # (topic, partition): (kind, worker) last said
        self.tries: Counter[tuple[str, int, int]] = Counter()  # (topic, partition, offset): attempts
        self.careful: dict[tuple[str, int], Careful] = {}

    def _say(self, kind: str, places: list[tuple[str, int, int]]) -> None:
        """Put on record, and wait until it is: (topic, partition, offset) each."""
        for topic, partition, offset in places:
            record = FrameAttempt(topic, partition, offset, kind, self.worker_id, now_us())
            self.producer.send(self.topic, ATTEMPTS.encode(record), key=f"{topic}:{partition}".encode())
        self.producer.flush(self.settings.connect_timeout_s)

    def _catch_up(self) -> None:
        """Read what the attempts topic says, up to its end as it is now. The reader
        is assigned only meanwhile: a fetch held open on an idle partition would hold
        up the next catch-up's offset requests on the same connection."""
        marks = {p: kafka.watermarks(self.reader, self.topic, p, self.settings.connect_timeout_s)
                 for p in range(self.partitions)}
        ends = {p: high for p, (_low, high) in marks.items()}
        start = {p: max(self.read_to.get(p, low), low) for p, (low, _high) in marks.items()}
        waiting = {p for p in marks if start[p] < ends[p]}
        if not waiting:
            return
        self.reader.assign([TopicPartition(self.topic, p, start[p]) for p in waiting])
        try:
            while waiting:
                msg = self.reader.poll(self.settings.connect_timeout_s)
                if msg is None:
                    raise BrokerError(f"reading {self.topic} stalled")
                offset, partition, err = msg.offset(), msg.partition(), msg.error()
                if err is not None and err.code() == kafka.PARTITION_EOF:
                    waiting.discard(partition)
                    continue
                if err is not None or offset is None or partition is None:
                    continue
                self._learn(msg.value())
                self.read_to[partition] = offset + 1
                if offset + 1 >= ends[partition]:
                    waiting.discard(partition)
        finally:
            self.reader.unassign()

    def _learn(self, value: bytes | None) -> None:
        try:
            said = ATTEMPTS.decode(value)
        except MalformedRecord:
            return
        if said.kind == ATTEMPT:
            self.tries[(said.topic, said.partition, said.offset)] += 1
        else:
            self.owner[(said.topic, said.partition)] = (said.kind, said.worker_id)

    def claim(self, consumer: Consumer, partitions: list) -> None:
        """Partitions assigned: take each, carefully where its last owner died.
        Tried until it succeeds or the worker stops: while a broker is replaced the
        attempts topic can be unreadable for a while, and a partition taken without
        its past could crash-loop on a poison pill."""
        while True:
            try:
                return self._take(consumer, partitions)
            except BrokerError as exc:
                if self.stop.is_set():
                    raise
                log.warning("cannot take partitions %s yet (%s); trying again",
                            sorted(tp.partition for tp in partitions), exc)

    def _take(self, consumer: Consumer, partitions: list) -> None:
        self._catch_up()
        for tp in partitions:
            kind, worker = self.owner.get((tp.topic, tp.partition), (RELEASE, ""))
            if kind == CLAIM and worker != self.worker_id:
                _low, high = kafka.watermarks(consumer, tp.topic, tp.partition, self.settings.connect_timeout_s)
                self.careful[(tp.topic, tp.partition)] = Careful(high)
                log.warning("%s[%d]: its last worker (%s) died holding it; taken carefully up to offset %d",
                            tp.topic, tp.partition, worker, high)
        self._say(CLAIM, [(tp.topic, tp.partition, -1) for tp in partitions])

    def release(self, partitions: list) -> None:
        for tp in partitions:
            self.careful.pop((tp.topic, tp.partition), None)
        try:
            self._say(RELEASE, [(tp.topic, tp.partition, -1) for tp in partitions])
        except BrokerError as exc:  # safe: their next owners take them carefully
            log.warning("partitions %s let go without saying so (%s)", sorted(tp.partition for tp in partitions), exc)

    def _is_careful(self, topic: str, partition: int, offset: int) -> bool:
        careful = self.careful.get((topic, partition))
        if careful is not None and offset >= careful.until:
            del self.careful[(topic, partition)]
            return False
        return careful is not None

    def process(self, processor: FrameProcessor, record: Consumed) -> tuple[Outcome, bool]:
        """The record's outcome, and whether it was taken carefully: then its offset
        must be committed before the next frame of its partition is tried."""
        careful = self._is_careful(record.topic, record.partition, record.offset)
        if careful:  # its partition's last worker died: maybe on this frame
            # Earlier attempts were all read at the claim: nobody else held the partition since.
            tried = self.tries[(record.topic, record.partition, record.offset)]
            self._say(ATTEMPT, [(record.topic, record.partition, record.offset)])
            if tried >= self.retries:
                return processor.set_aside(record, f"tried {tried + 1} times, and each time the worker "
                                                   f"processing it died; set aside (DVP_CRASH_RETRIES)"), True
        return processor.process(record), careful

    def close(self) -> None:
        self.reader.close()
