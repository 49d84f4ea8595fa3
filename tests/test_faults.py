"""Faults on a 3-broker Apache Kafka cluster (replication 3, min.insync.replicas 2,
acks=all, idempotent producers). Each job's output is compared with the same
job run without the fault; the figures go to the report at the end of the run."""
import os
import signal
import threading
import time

import pytest

from dvp.infra.kafka.cluster import KafkaCluster
from dvp.messages import METRICS
from dvp.producers.publish import publish
from dvp.producers.watch import JobWatcher
from dvp.sample import read_stamp
from tests.conftest import running_services, settings_for
from tests.helpers import Services, psnr, read_topic, read_video, wait_for

pytestmark = pytest.mark.faults

FAULT_REPORT: list[dict] = []


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = KafkaCluster(tmp_path_factory.mktemp("cluster"), brokers=3).start()
    yield c
    c.stop()


@pytest.fixture
def cluster_settings(cluster, tmp_path):
    return settings_for(cluster.bootstrap, tmp_path / "home", replication_factor=3)


@pytest.fixture
def cluster_services(cluster_settings, tmp_path, request):
    with running_services(cluster_settings, tmp_path / "logs", request) as s:
        yield s


def run(settings, services, clip, out, fault=None):
    """One job with 2 workers; `fault(workers, aggregator)` runs once a tenth of the frames are done."""
    workers = [services.worker(), services.worker()]
    aggregator = services.aggregator()
    watcher = JobWatcher(settings)
    try:
        began = time.monotonic()
        published = publish(settings, str(clip), "blur", output=str(out), progress=False)
        if fault is not None:
            wait_for(lambda: len(read_topic(settings, settings.names.metrics, timeout=2)) >= published.frames // 10,
                     90, "a tenth of the frames")
            fault(workers, aggregator)
        done = watcher.wait(published.start.job_id, published.frames, progress=False, timeout=180)
        return published, done, time.monotonic() - began
    finally:
        watcher.close()


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
        _, done, wall = run(settings, services, clips["long"], home / "baseline.mp4")
    finally:
        services.stop()
    FAULT_REPORT.append({"fault": "none (the reference run)", "lost": 0, "duplicates": 0,
                         "stall_s": longest_stall(settings), "delay_s": 0.0, "min_psnr": float("inf")})
    return read_video(done.output), wall


def compare(name, baseline, settings, output, wall):
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


def test_broker_killed_mid_job(cluster, cluster_settings, cluster_services, baseline, clips, tmp_path):
    restart = threading.Timer(5.0, cluster.start_node, args=(1,), kwargs={"wait": False})

    def kill_broker(workers, aggregator):
        node = cluster.procs.pop(1)
        node.kill()
        node.wait()
        restart.start()

    try:
        _, done, wall = run(cluster_settings, cluster_services, clips["long"], tmp_path / "out.mp4", kill_broker)
    finally:
        restart.join()
        cluster.wait_ready(timeout=120)  # whole again for the next test
    compare("one of 3 brokers SIGKILLed (restarted 5 s later)", baseline, cluster_settings, done.output, wall)


def test_worker_killed_mid_job(cluster_settings, cluster_services, baseline, clips, tmp_path):
    def kill_worker(workers, aggregator):
        os.kill(workers[0].pid, signal.SIGKILL)

    _, done, wall = run(cluster_settings, cluster_services, clips["long"], tmp_path / "out.mp4", kill_worker)
    compare("one of 2 workers SIGKILLed", baseline, cluster_settings, done.output, wall)


def test_worker_frozen_past_the_session_timeout(cluster_settings, cluster_services, baseline, clips, tmp_path):
    freeze = cluster_settings.session_timeout_ms / 1000 + 3

    def freeze_worker(workers, aggregator):
        os.kill(workers[0].pid, signal.SIGSTOP)
        threading.Timer(freeze, os.kill, args=(workers[0].pid, signal.SIGCONT)).start()

    _, done, wall = run(cluster_settings, cluster_services, clips["long"], tmp_path / "out.mp4", freeze_worker)
    compare(f"one of 2 workers SIGSTOPped for {freeze:g} s, then SIGCONT", baseline, cluster_settings,
            done.output, wall)


def test_aggregator_killed_and_restarted(cluster_settings, cluster_services, baseline, clips, tmp_path):
    def kill_aggregator(workers, aggregator):
        work = cluster_settings.home / "aggregator"
        wait_for(lambda: any(work.glob("*.video.mp4")), 60, "the aggregator to start writing")
        os.kill(aggregator.pid, signal.SIGKILL)
        aggregator.wait()
        cluster_services.aggregator()

    _, done, wall = run(cluster_settings, cluster_services, clips["long"], tmp_path / "out.mp4", kill_aggregator)
    compare("aggregator SIGKILLed, restarted at once", baseline, cluster_settings, done.output, wall)
