"""Read one partition of a topic from an offset to its current end, outside
any consumer group: how a restarted aggregator recovers a job's records."""
from __future__ import annotations

from collections.abc import Iterator

from confluent_kafka import KafkaError, TopicPartition

from dvp import kafka
from dvp.config import Settings
from dvp.errors import BrokerError


def read_partition(settings: Settings, topic: str, partition: int, start: int) -> Iterator[tuple[int, bytes]]:
    consumer = kafka.consumer(settings, **{
        "group.id": settings.names.replay, "enable.auto.commit": False,
        "enable.partition.eof": True})
    try:
        _low, end = kafka.watermarks(consumer, topic, partition, settings.connect_timeout_s)
        if start >= end:
            return
        consumer.assign([TopicPartition(topic, partition, start)])
        while True:
            msg = consumer.poll(settings.connect_timeout_s)
            if msg is None:
                raise BrokerError(f"replay of {topic}[{partition}] from {start} stalled")
            err, offset, value = msg.error(), msg.offset(), msg.value()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    return
                raise BrokerError(f"replay of {topic}[{partition}]: {err.str()}")
            if offset is None or value is None:
                raise BrokerError(f"replay of {topic}[{partition}]: a record without offset or value")
            yield offset, value
            if offset + 1 >= end:
                return
    finally:
        consumer.close()
