"""Kafka clients as every stage makes them: consumers, a careful producer, reading partitions;
the cluster and its topics are asked through `dvp.kafka_cluster`."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from aiokafka.partitioner import murmur2
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from dvp.config import Settings
from dvp.errors import BrokerError
from dvp.waiting import wait_until

# librdkafka's own log lines go through Python logging (quiet unless -v).
RDKAFKA_LOGS: dict[str, Any] = {"logger": logging.getLogger("dvp.rdkafka")}
# How long a fetch may wait for records (librdkafka's default is 0.5 s). The embedded
# broker answers a waiting fetch only at about half its wait, even when records came
# sooner: a frame would reach its worker that late.
FETCH_MAX_WAIT_MS = 100
# Live frames are for now: sent at once, acknowledged by the leader alone, without the
# idempotent producer's start-up handshake; a lost one is a skipped frame, no more.
LIVE_PRODUCER: dict[str, Any] = {"linger.ms": 0, "enable.idempotence": False, "acks": 1}
# The largest record dvp sends, and asks the topics it creates to take: an 8K frame
# with camera detail is about 20 MB as JPEG. Kafka's own default is 1 MB.
RECORD_MAX_BYTES = 32 * 1024 * 1024
KAFKA_DEFAULT_MAX_BYTES = 1_000_000
# Room in a record for what travels beside a frame's JPEG (ids, times, faces).
RECORD_OVERHEAD = 64 * 1024


T = TypeVar("T")


PARTITION_EOF = KafkaError._PARTITION_EOF  # a consumer's "no more records here, now"


def refused(exc: KafkaException | KafkaError, what: str) -> BrokerError:
    """Kafka's error as a BrokerError that says what was asked, and carries the code
    and what the error allows (retry, abort, nothing more)."""
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    if not isinstance(err, KafkaError):
        return BrokerError(f"{what}: {err}")
    return BrokerError(f"{what}: {err.str()}", code=err.code(), retriable=err.retriable(), fatal=err.fatal(),
                       abortable=err.txn_requires_abort())


@contextmanager
def asked(what: str) -> Iterator[None]:
    """Calls to a confluent-kafka client inside raise BrokerError, never KafkaException:
    past this module no code needs confluent-kafka's exception types."""
    try:
        yield
    except KafkaException as exc:
        raise refused(exc, what) from None


def _client(factory: Callable[[dict], T], conf: dict) -> T:
    """A confluent-kafka client; settings it refuses are the user's to fix, in one line."""
    try:
        return factory(conf)
    except KafkaException as exc:
        raise BrokerError(f"Kafka client settings refused: {exc.args[0].str()}") from None


def admin(settings: Settings) -> AdminClient:
    return _client(AdminClient, settings.client_config(**RDKAFKA_LOGS))


def heartbeat_ms(session_ms: int) -> int:
    """A group member heartbeats six times a session: librdkafka's fixed 3 s would
    miss a short session entirely (a 2-s one was lost, and rebalanced, every 3 s)."""
    return max(session_ms // 6, 100)


def consumer(settings: Settings, **conf: Any) -> Consumer:
    """A consumer with our settings and the user's pass-through ones on top."""
    config = settings.client_config(**conf, **RDKAFKA_LOGS)
    session = str(config.get("session.timeout.ms", ""))  # as it will be, the user's included
    if session.isdigit() and "heartbeat.interval.ms" not in config:  # else librdkafka says what is wrong
        config["heartbeat.interval.ms"] = heartbeat_ms(int(session))
    return _client(Consumer, config)


def rewind(consumer: Consumer, messages: list) -> None:
    """Consume these messages again, from the first of each partition; a rebalance
    may have taken partitions away meanwhile: their new owner reads them."""
    first: dict[tuple[str, int], int] = {}
    for m in messages:
        first.setdefault((m.topic(), m.partition()), m.offset())
    assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
    for (t, p), offset in first.items():
        if (t, p) in assigned:
            consumer.seek(TopicPartition(t, p, offset))


def key_partition(key: bytes, partitions: int) -> int:
    """The partition of a keyed record: murmur2, as Java clients, Faust (aiokafka)
    and our producers (murmur2_random) all place keys."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def read_partition(settings: Settings, topic: str, partition: int, start: int | None = None) -> Iterator:
    """The records of one partition from `start` (default: the oldest kept) to its
    end as it is now, outside any consumer group: (offset, key, value)."""
    # To the EOF, not the high watermark: the last offsets of a transactional log are commit
    # markers, never delivered; and Tansu's watermark counts a batch of records as one.
    reader = consumer(settings, **{"group.id": settings.names.replay, "enable.auto.commit": False,
                                   "enable.partition.eof": True})
    try:
        low, end = watermarks(reader, topic, partition, settings.connect_timeout_s)
        start = low if start is None else max(start, low)
        if start >= end:
            return
        reader.assign([TopicPartition(topic, partition, start)])
        while True:
            msg = reader.poll(settings.connect_timeout_s)
            if msg is None:
                raise BrokerError(f"reading {topic}[{partition}] from {start} stalled")
            err, offset = msg.error(), msg.offset()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                return
            if err is not None:
                raise BrokerError(f"reading {topic}[{partition}]: {err.str()}")
            if offset is None:
                raise BrokerError(f"reading {topic}[{partition}]: a record without an offset")
            yield offset, msg.key(), msg.value()
    finally:
        reader.close()


def watermarks(consumer: Consumer, topic: str, partition: int, timeout: float) -> tuple[int, int]:
    """(low, high) offsets of a partition, asked in short tries while its leader
    settles: a request queued for a leader that died waits out its whole timeout,
    and the next try goes to the new leader. A topic just created is unknown to
    this client's metadata for a moment, on a cluster of several brokers."""
    unknown = (KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)
    settling = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError._TIMED_OUT, *unknown)

    def offsets() -> tuple[int, int] | None:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=min(timeout, 2.0))
        except KafkaException as exc:
            err = exc.args[0]
            if not err.retriable() and err.code() not in settling:
                raise BrokerError(f"cannot read the offsets of {topic}[{partition}]: {err.str()}") from None
            if err.code() in unknown:
                with suppress(KafkaException):  # the client answers from its metadata: have it asked again
                    consumer.list_topics(topic, timeout=min(timeout, 2.0))
            return None

    return wait_until(offsets, timeout, f"cannot read the offsets of {topic}[{partition}] within {timeout:g} s",
                      error=BrokerError)


def dead_letter_headers(reason: str, topic: str, partition: int, offset: int,
                        **context: str) -> list[tuple[str, bytes]]:
    """Headers of a record set aside on the dead-letter topic: why, and where it came from."""
    fields = {"error": reason, "topic": topic, "partition": str(partition), "offset": str(offset), **context}
    return [(f"dvp.{name}", value.encode()) for name, value in fields.items()]


Delivered = Callable[[KafkaError | None, object], None]


class ReliableProducer:
    """confluent-kafka's producer used the way its examples teach: idempotent,
    acks=all, a delivery callback for every record, poll(0) after each send,
    back-off when the local queue is full, and delivery errors kept, not lost."""

    def __init__(self, settings: Settings, transactional_id: str | None = None, **extra: Any) -> None:
        conf = settings.client_config(**{
            "enable.idempotence": True, "acks": "all", "linger.ms": 5,
            "message.max.bytes": RECORD_MAX_BYTES + RECORD_OVERHEAD,
            # Java-compatible key hashing: every client puts a job on the same partition.
            "partitioner": "murmur2_random", **RDKAFKA_LOGS, **extra})
        if transactional_id is not None:
            conf["transactional.id"] = transactional_id
        self._producer = _client(Producer, conf)
        self.max_bytes = int(conf["message.max.bytes"])
        self.errors: list[str] = []
        self.timeout = settings.connect_timeout_s
        if transactional_id is not None:
            try:
                self._producer.init_transactions(self.timeout)
            except KafkaException as exc:
                raise BrokerError(f"cannot start transactions on {settings.bootstrap}: "
                                  f"{exc.args[0].str()}") from None

    # -- transactions (exactly-once mode): a BrokerError reaches the caller, which
    #    aborts or gives up as the error says (abortable, fatal) -----------------------
    def begin(self) -> None:
        with asked("cannot begin a transaction"):
            self._producer.begin_transaction()

    def commit(self, offsets: list[TopicPartition], group_metadata: Any) -> None:
        """Commit the records sent since begin() together with the consumer's offsets.
        A retriable error is retried, as librdkafka asks: e.g. a process paused past
        the call's timeout finds it expired the moment it resumes. Offsets that
        cannot be added make the transaction one to abort; a commit that cannot
        finish cannot be aborted either (it goes on in the background): it is
        retried for longer, and then reaches the caller as it is."""
        try:
            self._retried(lambda t: self._producer.send_offsets_to_transaction(offsets, group_metadata, t))
        except KafkaException as exc:
            error = refused(exc, "cannot add the offsets to the transaction")
            if error.retriable:  # retried long enough: the transaction is to be aborted
                error.abortable = True
            raise error from None
        with asked("cannot commit the transaction"):
            self._retried(self._producer.commit_transaction, patience=2)

    def abort(self) -> None:
        """Abort the open transaction. librdkafka first waits for the delivery reports
        of its records, which only polling serves: poll between short tries."""
        with asked("cannot abort the transaction"):
            self._retried(self._producer.abort_transaction)
        self.errors.clear()  # refusals of aborted records: nothing of them counts

    def _retried(self, call: Callable[[float], None], patience: float = 1) -> None:
        """A transactional call in short tries, polling between them, for up to
        `patience` connect timeouts; its last retriable error, or any other, reaches
        the caller."""
        deadline = time.monotonic() + patience * self.timeout
        while True:
            try:
                call(1.0)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or time.monotonic() > deadline:
                    raise
                self._producer.poll(0.1)

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             partition: int | None = None, on_delivery: Delivered | None = None,
             headers: list | None = None) -> None:
        def delivered(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                self.errors.append(f"{topic}: {err.str()}")
            if on_delivery is not None:
                on_delivery(err, msg)

        kwargs: dict[str, Any] = {"key": key, "on_delivery": delivered, "headers": headers}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, value, **kwargs)
                break
            except BufferError:  # local queue full: serve callbacks, then retry
                self._producer.poll(0.1)
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    raise BrokerError(
                        f"a {len(value) / 1e6:.1f} MB record is larger than Kafka accepts "
                        f"(message.max.bytes={self.max_bytes}); lower --jpeg-quality or "
                        f"raise message.max.bytes on the broker and client", code=err.code(), abortable=True) from None
                raise BrokerError(f"cannot produce to {topic}: {err.str()}", code=err.code(),
                                  retriable=err.retriable(), abortable=True) from None
        self._producer.poll(0)

    def poll(self, timeout: float = 0) -> None:
        self._producer.poll(timeout)

    def flush(self, timeout: float) -> None:
        """Wait for every record to be acknowledged; fail if any was not."""
        left = self._producer.flush(timeout)
        if left:
            raise BrokerError(f"{left} records not acknowledged by Kafka within {timeout:g} s", retriable=True,
                              abortable=True)
        errors, self.errors = self.errors, []  # each refusal is reported once
        if errors:
            raise BrokerError(f"Kafka refused records: {errors[0]}", abortable=True)
