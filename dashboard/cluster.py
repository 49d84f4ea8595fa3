"""What the cluster says about the workers now: the frames waiting for each,
the consumer group's lag on the partitions assigned to it (Kafka's admin API)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from dvp import kafka
from dvp.config import Settings
from dvp.errors import BrokerError


@dataclass(frozen=True)
class GroupLag:
    """The workers' group as the cluster describes it now."""
    lag: dict[int, int]  # frames partition -> frames not yet processed
    owner: dict[int, str]  # frames partition -> the worker assigned it, where the broker says


@dataclass(frozen=True)
class Waiting:
    by_worker: dict[str, int]  # worker id -> frames not yet processed on its partitions
    unassigned: int  # frames on partitions no worker holds
    total: int
    how: str  # where the assignment came from, said on the page


def group_lag(settings: Settings) -> GroupLag:
    """Ask the cluster for the workers' lag and assignment (a few seconds at most).
    Kept apart from the store: the embedded one is not held while the cluster answers."""
    topic, group = settings.names.frames, settings.names.workers
    client = kafka.wait_reachable(settings, timeout=min(settings.connect_timeout_s, 2))
    try:
        with kafka.asked("cannot read the workers' group from the cluster"):
            parts = client.list_topics(topic, timeout=5).topics[topic].partitions
            committed_future = client.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in parts])])[group]
            committed = {tp.partition: tp.offset for tp in committed_future.result(timeout=5).topic_partitions}
            described = client.describe_consumer_groups([group])[group].result(timeout=5)
    except (TimeoutError, KeyError) as exc:
        raise BrokerError(f"cannot read the workers' group from the cluster: {exc}") from None
    reader = kafka.consumer(settings, **{"group.id": settings.names.replay})
    try:
        lag = {}
        for p in parts:
            low, high = kafka.watermarks(reader, topic, p, 5)
            done = committed.get(p, -1)
            lag[p] = max(high - (done if done >= 0 else low), 0)
    finally:
        reader.close()
    owner = {tp.partition: m.client_id for m in described.members
             for tp in (m.assignment.topic_partitions if m.assignment else []) if tp.topic == topic}
    return GroupLag(lag, owner)


def waiting_frames(group: GroupLag, recent_partitions: Mapping[str, set[int]]) -> Waiting:
    """The frames waiting for each worker: the lag on the partitions assigned to it.
    Where the cluster describes no assignment (the embedded broker), a worker's
    partitions are those it processed last (`recent_partitions`)."""
    owner = dict(group.owner)
    how = "the group's assignment"
    if not owner:  # no member reported an assignment (the embedded broker reports no members at all)
        how = "the partitions each worker processed last (no member of the group reports an assignment)"
        for worker, partitions in recent_partitions.items():
            for p in partitions:
                owner.setdefault(p, worker)
    by_worker: dict[str, int] = {}
    for p, n in group.lag.items():
        if p in owner:
            by_worker[owner[p]] = by_worker.get(owner[p], 0) + n
    total = sum(group.lag.values())
    return Waiting(by_worker, total - sum(by_worker.values()), total, how)
