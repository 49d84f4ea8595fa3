"""Consumer groups as dvp's consumers use them, on a real broker."""
import threading
import time

import pytest
from confluent_kafka import KafkaException, Producer, TopicPartition

from dvp import kafka
from dvp.kafka_cluster import Cluster
from tests.helpers import wait_for

pytestmark = pytest.mark.integration
PER_PARTITION = 3


def member(settings, group):
    return kafka.consumer(settings, **{"group.id": group, "auto.offset.reset": "earliest",
                                      "enable.auto.commit": False, "session.timeout.ms": 6000,
                                      "fetch.wait.max.ms": kafka.FETCH_MAX_WAIT_MS})


def test_a_batch_rewound_after_a_rebalance_seeks_only_partitions_still_assigned(settings):
    """A batch consumed again after an aborted transaction (exactly-once loop, sink):
    a rebalance served since it was consumed may have taken some of its partitions
    away, and seeking those would kill the worker."""
    Cluster.reach(settings).ensure_topics()
    topic = settings.names.frames
    partitions = settings.frames_partitions
    producer = Producer({"bootstrap.servers": settings.bootstrap})
    for p in range(partitions):
        for i in range(PER_PARTITION):
            producer.produce(topic, f"{p}-{i}".encode(), partition=p)
    assert producer.flush(30) == 0

    group = f"{settings.topic_prefix}rewind"
    first, second = member(settings, group), member(settings, group)
    try:
        first.subscribe([topic])
        batch: list = []
        deadline = time.monotonic() + 60
        while len(batch) < partitions * PER_PARTITION and time.monotonic() < deadline:
            batch += [m for m in first.consume(100, 0.2) if not m.error()]
        assert len(batch) == partitions * PER_PARTITION

        # A second member joins; the first serves the rebalance in its next consume
        # (what happens when the revoke comes between a batch's consume and its commit).
        second.subscribe([topic])

        def shared() -> bool:
            first.consume(100, 0.1)
            second.consume(100, 0.1)
            return bool(first.assignment()) and bool(second.assignment())

        wait_for(shared, 60, "the partitions to be shared by both members")
        kept = {tp.partition for tp in first.assignment()}
        lost = next(p for p in range(partitions) if p not in kept)
        with pytest.raises(KafkaException):  # what a seek of every partition of the batch would meet
            first.seek(TopicPartition(topic, lost, 0))

        kafka.rewind(first, batch)

        again: dict[int, list] = {}
        deadline = time.monotonic() + 30
        while sum(map(len, again.values())) < len(kept) * PER_PARTITION and time.monotonic() < deadline:
            for m in first.consume(100, 0.2):
                if not m.error():
                    again.setdefault(m.partition(), []).append(m.value())
        assert set(again) == kept
        assert again == {p: [f"{p}-{i}".encode() for i in range(PER_PARTITION)] for p in kept}
    finally:
        first.close()
        second.close()


def test_a_member_with_a_short_session_keeps_its_partitions(broker_kind, settings):
    """`dvp run`'s private stack gives its consumers a 2-s session. librdkafka's
    default heartbeat (every 3 s) missed every session: the live workers were
    rebalanced every 3 s and skipped a third of a camera's frames."""
    if broker_kind != "tansu":
        pytest.skip("heartbeats are the client's, the same on every broker")
    Cluster.reach(settings).ensure_topics()
    assigned = []
    member = kafka.consumer(settings, **{"group.id": f"{settings.topic_prefix}short", "session.timeout.ms": 2000})
    try:
        member.subscribe([settings.names.frames], on_assign=lambda _c, parts: assigned.append(len(parts)))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            member.poll(0.1)
    finally:
        member.close()
    assert assigned == [settings.frames_partitions], f"assigned {len(assigned)} times in 10 s"


def test_the_offsets_of_a_topic_being_created_are_waited_for(settings):
    """A client whose metadata does not know a topic yet says "Unknown partition":
    on a cluster of several brokers, a topic just created reaches the other
    brokers' metadata a moment later, and the job watcher failed at its start."""
    reader = kafka.consumer(settings, **{"group.id": f"{settings.topic_prefix}marks"})
    asked: list = []
    try:
        waiting = threading.Thread(target=lambda: asked.append(
            kafka.watermarks(reader, settings.names.frames, 0, settings.connect_timeout_s)))
        waiting.start()
        time.sleep(1.5)  # asked before the topic exists
        Cluster.reach(settings).ensure_topics()
        waiting.join(settings.connect_timeout_s + 5)
    finally:
        reader.close()
    assert asked == [(0, 0)]
