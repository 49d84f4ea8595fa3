"""--guarantee exactly-once: a worker's outputs and its offsets commit in one transaction."""
import os
import signal
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, TopicPartition

from dvp.messages import ASSEMBLY, METRICS, FrameMetrics, ProcessedFrame
from dvp.producers.publish import publish
from dvp.producers.watch import JobWatcher
from tests.helpers import read_topic, read_video, wait_for

pytestmark = pytest.mark.integration


def wait_for_uncommitted(settings, topic, predicate, timeout):
    """Block until a record matching `predicate` is written, committed or not."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "test-peek",
                         "isolation.level": "read_uncommitted", "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is not None and not msg.error() and predicate(METRICS.decode(msg.value())):
                return
        raise AssertionError(f"no matching record on {topic} within {timeout} s")
    finally:
        consumer.close()


def test_worker_killed_mid_transaction_leaves_each_frame_once(broker_kind, settings, services, clips, tmp_path):
    if broker_kind == "tansu":
        pytest.skip("Tansu shows aborted records to read_committed readers: no exactly-once there")
    settings = settings.replace(guarantee="exactly-once")
    services.settings = settings
    victim = services.worker()
    services.worker()
    services.aggregator()
    watcher = JobWatcher(settings)
    try:
        published = publish(settings, str(clips["long"]), "blur",
                            progress=False)
        # Its first output, seen before any commit: the victim is inside a transaction.
        wait_for_uncommitted(settings, settings.names.metrics, lambda m: m.pid == victim.pid, timeout=90)
        os.kill(victim.pid, signal.SIGKILL)
        done = watcher.wait(published.start.job_id, published.frames, progress=False, timeout=180)
    finally:
        watcher.close()
    assert len(read_video(done.output).frames) == published.frames

    # Read with read_committed (librdkafka's default): the aborted frames are invisible.
    # The killed worker's open transaction holds read_committed readers back until
    # the broker aborts it (transaction.timeout.ms): then every frame is there once.
    def committed(topic, decode, kind):
        messages = (decode(v) for _, _, _, v in read_topic(settings, topic))
        return Counter(m.index for m in messages if isinstance(m, kind))

    wait_for(lambda: sum(committed(settings.names.processed, ASSEMBLY.decode, ProcessedFrame).values())
             >= published.frames, 60, "the dead transaction's abort")
    expected = Counter(range(published.frames))
    assert committed(settings.names.processed, ASSEMBLY.decode, ProcessedFrame) == expected
    assert committed(settings.names.metrics, METRICS.decode, FrameMetrics) == expected
