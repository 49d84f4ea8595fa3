"""What the cluster says about the workers now: the frames waiting for each,
the consumer group's lag on the partitions assigned to it (Kafka's admin API)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dvp import kafka
from dvp.kafka_cluster import Cluster


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


def group_lag(cluster: Cluster) -> GroupLag:
    """Ask the cluster for the workers' lag and assignment (a few seconds at most).
    Kept apart from the store: the embedded one is not held while the cluster answers."""
    settings = cluster.settings
    topic = settings.names.frames
    committed, owner = cluster.wait_reachable(min(settings.connect_timeout_s, 2)).group_on(
        settings.names.workers, topic)
    reader = kafka.consumer(settings, **{"group.id": settings.names.replay})
    try:
        lag = {}
        for p, done in committed.items():
            low, high = kafka.watermarks(reader, topic, p, 5)
            lag[p] = max(high - (done if done >= 0 else low), 0)
    finally:
        reader.close()
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
