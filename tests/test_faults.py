"""Faults on a 3-broker Apache Kafka cluster (replication 3, min.insync.replicas 2,
acks=all, idempotent producers). Each test proves its fault touched the job
(the killed broker led the job's partition, the killed worker had processed
its frames, the aggregator was killed with the job open), compares the output
with the same job run without the fault, and asserts the stall and delay
bounds; the figures go to the report at the end of the run."""
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from dvp.infra.kafka.cluster import KafkaCluster
from dvp.kafka_cluster import Cluster
from dvp.messages import METRICS, now_us
from dvp.producers.publish import publish
from dvp.producers.watch import JobWatcher
from dvp.sample import read_stamp
from tests.conftest import running_services, settings_for
from tests.helpers import Services, psnr, read_topic, read_video, wait_for

pytestmark = pytest.mark.faults

FAULT_REPORT: list[dict] = []


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = KafkaCluster(tmp_path_factory.mktemp("cluster"), brokers=3, with_parent=True).start()
    yield c
    c.stop()


@pytest.fixture
def cluster_settings(cluster, tmp_path):
    return settings_for(cluster.bootstrap, tmp_path / "home", replication_factor=3)


@pytest.fixture
def cluster_services(cluster_settings, tmp_path, request):
    with running_services(cluster_settings, tmp_path / "logs", request) as s:
        yield s


class MetricsTail:
    """The metrics records of a test's topics as they arrive: who processed which frame when."""

    def __init__(self, settings):
        topic = settings.names.metrics
        self.consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "test-tail"})
        parts = AdminClient({"bootstrap.servers": settings.bootstrap}).list_topics(topic, timeout=10)
        self.consumer.assign([TopicPartition(topic, p, 0) for p in parts.topics[topic].partitions])
        self.seen: list = []

    def until(self, enough: int, timeout: float) -> list:
        def more():
            msg = self.consumer.poll(0.1)
            if msg is not None and not msg.error():
                self.seen.append(METRICS.decode(msg.value()))
            return len(self.seen) >= enough
        wait_for(more, timeout, f"{enough} frames processed", interval=0)
        return self.seen

    def close(self):
        self.consumer.close()


@dataclass
class Fault:
    """What a fault needs to know, and when it struck."""
    workers: list
    aggregators: list
    published: object
    seen: list  # metrics of the frames processed before it
    at_us: int = 0


def run(settings, services, clip, out, fault=None, while_waiting=lambda: None, aggregator_homes=(None,)):
    """One job with 2 workers; `fault(Fault)` strikes once a tenth of the frames are
    done, `while_waiting()` runs every half second after that (in this thread:
    processes it starts end with it). Returns the job and the fault as it struck."""
    workers = [services.worker(), services.worker()]
    aggregators = [services.aggregator(home) for home in aggregator_homes]
    cluster = Cluster.reach(settings)
    watcher = JobWatcher(cluster)
    tail = MetricsTail(settings)
    struck = None
    try:
        began = time.monotonic()
        published = publish(cluster, str(clip), "blur", progress=False)
        if fault is not None:
            struck = Fault(workers, aggregators, published, list(tail.until(published.frames // 10, 90)))
            assert len(struck.seen) < published.frames * 0.6, "the job was nearly done before the fault"
            struck.at_us = now_us()
            fault(struck)
        done = watcher.wait(published.start.job_id, published.frames, progress=False, timeout=180,
                            alive=while_waiting, save_to=out)
        return published, done, time.monotonic() - began, struck
    finally:
        watcher.close()
        tail.close()


def processed_after(settings, when_us: int, partitions: set[int] | None = None) -> int:
    """Frames processed after a moment, on the given frames partitions (default all)."""
    return sum(1 for _, _, _, v in read_topic(settings, settings.names.metrics)
               if (m := METRICS.decode(v)).ts_us > when_us and (partitions is None or m.partition in partitions))


def longest_stall(settings) -> float:
    """The longest wait between two frames of one frames partition being processed."""
    times: dict[int, list[int]] = {}
    for _, _, _, value in read_topic(settings, settings.names.metrics):
        m = METRICS.decode(value)
        times.setdefault(m.partition, []).append(m.ts_us)
    gaps = (b - a for ts in map(sorted, times.values()) for a, b in zip(ts, ts[1:], strict=False))
    return max(gaps, default=0) / 1e6


@pytest.fixture(scope="module")
def baseline(cluster, clips, tmp_path_factory):
    home = tmp_path_factory.mktemp("baseline")
    settings = settings_for(cluster.bootstrap, home / "home", replication_factor=3)
    services = Services(settings, home / "logs")
    try:
        _, done, wall, _ = run(settings, services, clips["long"], home / "baseline.mp4")
    finally:
        services.stop()
    FAULT_REPORT.append({"fault": "none (the reference run)", "lost": 0, "duplicates": 0,
                         "stall_s": longest_stall(settings), "delay_s": 0.0, "min_psnr": float("inf")})
    return read_video(done.output), wall


def job_partition(settings) -> int:
    """The processed partition that carries the one job of a test's topics."""
    topic = settings.names.processed
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "test-offsets"})
    try:
        return next(p for p in range(settings.processed_partitions)
                    if consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] > 0)
    finally:
        consumer.close()


def leaders(settings, topic: str) -> dict[int, int]:
    """{partition: id of the broker that leads it} as the cluster says now."""
    md = AdminClient({"bootstrap.servers": settings.bootstrap}).list_topics(topic, timeout=10)
    return {p: meta.leader for p, meta in md.topics[topic].partitions.items()}


def busiest(fault: Fault):
    """The worker process that had processed most of the job's frames, and its partitions."""
    by_pid = Counter(m.pid for m in fault.seen)
    victim = next(w for w in fault.workers if w.pid == by_pid.most_common(1)[0][0])
    return victim, {m.partition for m in fault.seen if m.pid == victim.pid}


def kill_broker(cluster, node_id: int) -> None:
    node = cluster.procs.pop(node_id)
    node.kill()
    node.wait()


def compare(name, baseline, settings, output, wall, max_stall_s, max_delay_s=60.0):
    expected, base_wall = baseline
    video = read_video(output)
    stamps = [read_stamp(f) for f in video.frames]
    n = len(expected.frames)
    report = {"fault": name, "lost": n - len(set(stamps) & set(range(n))),
              "duplicates": len(stamps) - len(set(stamps)), "stall_s": longest_stall(settings),
              "delay_s": wall - base_wall,
              "min_psnr": min(psnr(a, b) for a, b in zip(expected.frames, video.frames, strict=False))}
    FAULT_REPORT.append(report)
    assert report["lost"] == 0 and report["duplicates"] == 0
    assert stamps == list(range(n))
    assert report["min_psnr"] >= 40
    assert video.audio_duration == pytest.approx(expected.audio_duration, abs=1e-3)
    assert report["stall_s"] <= max_stall_s and report["delay_s"] <= max_delay_s, report


def test_broker_killed_mid_job(cluster, cluster_settings, cluster_services, baseline, clips, tmp_path):
    killed: dict[int, float] = {}  # node id: when it was killed

    def kill_leader(fault: Fault):
        victim = leaders(cluster_settings, cluster_settings.names.processed)[job_partition(cluster_settings)]
        assert victim in leaders(cluster_settings, cluster_settings.names.frames).values()
        kill_broker(cluster, victim)
        killed[victim] = time.monotonic()

    def restart_after_5_s():
        for victim, when in list(killed.items()):
            if victim not in cluster.procs and time.monotonic() - when >= 5:
                cluster.start_node(victim, wait=False)

    try:
        _, done, wall, fault = run(cluster_settings, cluster_services, clips["long"], tmp_path / "out.mp4",
                                   kill_leader, restart_after_5_s)
    finally:
        for victim in killed:
            if victim not in cluster.procs:
                cluster.start_node(victim, wait=False)
        cluster.wait_ready(timeout=120)  # whole again for the next test
    assert killed and processed_after(cluster_settings, fault.at_us) > 0  # it struck an open job
    assert not cluster_services.exited()  # a broker's loss kills no worker or aggregator
    compare("the leader of the job's processed partition SIGKILLed (restarted 5 s later)", baseline,
            cluster_settings, done.output, wall, max_stall_s=45)


def test_broker_killed_for_good_on_the_clusters_own_replication(cluster, baseline, clips, tmp_path, request):
    """Default settings on a replicated cluster: the topics dvp creates are replicated
    as the cluster says, so losing a broker for good costs no job."""
    settings = settings_for(cluster.bootstrap, tmp_path / "home")
    assert settings.replication_factor == -1
    killed = []

    def kill_leader(fault: Fault):
        victim = leaders(settings, settings.names.processed)[job_partition(settings)]
        kill_broker(cluster, victim)
        killed.append(victim)

    with running_services(settings, tmp_path / "logs", request) as services:
        try:
            _, done, wall, fault = run(settings, services, clips["long"], tmp_path / "out.mp4", kill_leader)
            topics = AdminClient({"bootstrap.servers": settings.bootstrap}).list_topics(timeout=10).topics
            exited = services.exited()
        finally:
            for victim in killed:
                cluster.start_node(victim, wait=False)
            cluster.wait_ready(timeout=120)
    ours = {name: t for name, t in topics.items() if name.startswith(settings.topic_prefix)}
    assert len(ours) >= 7  # the pipeline's six and the aggregator's changelog
    assert {len(p.replicas) for t in ours.values() for p in t.partitions.values()} == {3}
    assert killed and processed_after(settings, fault.at_us) > 0
    assert not exited
    compare("the leader of the job's processed partition SIGKILLed for good (replication: the cluster's)",
            baseline, settings, done.output, wall, max_stall_s=45)


def test_worker_killed_mid_job(cluster_settings, cluster_services, baseline, clips, tmp_path):
    owned = set()

    def kill_worker(fault: Fault):
        victim, partitions = busiest(fault)
        owned.update(partitions)
        os.kill(victim.pid, signal.SIGKILL)

    _, done, wall, fault = run(cluster_settings, cluster_services, clips["long"], tmp_path / "out.mp4", kill_worker)
    # Its partitions still had frames, which the other worker processed.
    assert processed_after(cluster_settings, fault.at_us, owned) > 0
    compare("one of 2 workers SIGKILLed", baseline, cluster_settings, done.output, wall,
            max_stall_s=cluster_settings.session_timeout_ms / 1000 + 15)


def test_worker_frozen_past_the_session_timeout(cluster_settings, cluster_services, baseline, clips, tmp_path):
    freeze = cluster_settings.session_timeout_ms / 1000 + 3
    owned = set()

    def freeze_worker(fault: Fault):
        victim, partitions = busiest(fault)
        owned.update(partitions)
        os.kill(victim.pid, signal.SIGSTOP)
        threading.Timer(freeze, os.kill, args=(victim.pid, signal.SIGCONT)).start()

    _, done, wall, fault = run(cluster_settings, cluster_services, clips["long"], tmp_path / "out.mp4",
                               freeze_worker)
    assert processed_after(cluster_settings, fault.at_us, owned) > 0
    compare(f"one of 2 workers SIGSTOPped for {freeze:g} s, then SIGCONT", baseline, cluster_settings,
            done.output, wall, max_stall_s=freeze + 15)


def test_aggregator_killed_and_restarted(cluster_settings, cluster_services, baseline, clips, tmp_path):
    def kill_aggregator(fault: Fault):
        work = cluster_settings.home / "aggregator"
        wait_for(lambda: any(work.glob("*.video.mp4")), 60, "the aggregator to start writing")
        os.kill(fault.aggregators[0].pid, signal.SIGKILL)
        fault.aggregators[0].wait()
        assert not (tmp_path / "out.mp4").exists()  # killed with the job open
        cluster_services.aggregator()

    _, done, wall, _ = run(cluster_settings, cluster_services, clips["long"], tmp_path / "out.mp4", kill_aggregator)
    compare("aggregator SIGKILLed, restarted at once", baseline, cluster_settings, done.output, wall,
            max_stall_s=20)


def test_a_partition_without_a_leader_is_named(cluster, tmp_path):
    """Unreplicated topics and a dead broker: what a stalled job's publisher is told."""
    settings = settings_for(cluster.bootstrap, tmp_path / "home", replication_factor=1)
    topics = Cluster.reach(settings)
    topics.ensure_topics()
    orphaned = {p for p, leader in leaders(settings, settings.names.frames).items() if leader == 2}
    assert orphaned
    kill_broker(cluster, 2)
    expected = {f"partition {p} of {settings.names.frames} has no leader" for p in orphaned}
    try:
        wait_for(lambda: expected <= set(topics.diagnose()), 60, "the cluster to notice")
    finally:
        cluster.start_node(2, wait=False)
        cluster.wait_ready(timeout=120)


def test_one_of_two_aggregators_killed(cluster_settings, cluster_services, baseline, clips, tmp_path):
    """Two aggregators in one group, each with its own disk: the one assembling the
    job dies, and the other finishes the job from the journal in Kafka."""
    homes = [tmp_path / "aggregator-a", tmp_path / "aggregator-b"]
    killed = []

    def kill_the_assembling_one(fault: Fault):
        def assembling():
            return [i for i, home in enumerate(homes) if any((home / "aggregator").glob("*.video.mp4"))]
        [owner] = wait_for(assembling, 120, "an aggregator to start writing")
        os.kill(fault.aggregators[owner].pid, signal.SIGKILL)
        fault.aggregators[owner].wait()
        assert not (tmp_path / "out.mp4").exists()  # killed with the job open
        killed.append(owner)

    _, done, wall, _ = run(cluster_settings, cluster_services, clips["long"], tmp_path / "out.mp4",
                           kill_the_assembling_one, aggregator_homes=homes)
    [owner] = killed
    assert done.output.startswith(str(homes[1 - owner]))  # finished in the other one's store
    compare("one of 2 aggregators SIGKILLed, the other takes the job over", baseline, cluster_settings,
            str(tmp_path / "out.mp4"), wall, max_stall_s=20)
