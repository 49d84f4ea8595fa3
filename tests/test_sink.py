"""The metrics sink and the store: records in, rows out, each once; what the
dashboard's figures say about a job that really ran."""
import socket
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from confluent_kafka import TopicPartition

from dvp import kafka
from dvp.config import Names
from dvp.dashboard import queries
from dvp.dashboard.sink import MetricsSink, Record, rows_of
from dvp.kafka_cluster import Cluster
from dvp.messages import JOBS, METRICS, FrameMetrics, JobCompleted, JobFailed, JobProgress, StageTimings
from dvp.store import FRAME_COLUMNS, FRAMES_TABLE, JOB_COLUMNS, JOBS_TABLE, Store
from tests.helpers import wait_for
from tests.test_pipeline import run_job

NAMES = Names.with_prefix("t.")
T = StageTimings(1.0, 2.0, 3.0, 4.0, 5.0)
NOW_US = int(datetime(2026, 11, 28, tzinfo=UTC).timestamp() * 1e6)


def metrics(index: int, **changes) -> bytes:
    fields = dict(job_id="job-1", index=index, worker_id="w1", host="h", ip="10.0.0.1", pid=7, partition=2,
                  timings=T, faces=1, ts_us=NOW_US + index * 40_000)
    return METRICS.encode(FrameMetrics(**{**fields, **changes}))


def record(topic: str, offset: int, value: bytes) -> Record:
    return Record(topic, 0, offset, NOW_US // 1000, value)


def test_records_become_rows_and_what_is_not_a_record_is_counted():
    bad_timings = StageTimings(float("nan"), 0.0, 0.0, 0.0, 0.0)
    records = [
        record(NAMES.metrics, 0, metrics(0)),
        record(NAMES.metrics, 1, b"not avro"),
        record(NAMES.metrics, 2, metrics(-1)),
        record(NAMES.metrics, 3, metrics(3, timings=bad_timings)),
        record(NAMES.metrics, 4, metrics(4, pid=-5)),
        record(NAMES.jobs, 0, JOBS.encode(JobProgress("job-1", 0, 75))),
        record(NAMES.jobs, 1, JOBS.encode(JobCompleted("job-1", "/o.mp4", 75, 70, 3.0, 10, 1, "ab" * 32, NOW_US))),
        record(NAMES.jobs, 2, JOBS.encode(JobFailed("job-2", "no frames"))),
        record(NAMES.jobs, 3, JOBS.encode(JobProgress("job-3", -1, None))),
        record(NAMES.frames, 0, metrics(5)),
    ]
    rows = rows_of(NAMES, records)
    assert rows.skipped == 6
    assert [r[FRAME_COLUMNS.index("frame_index")] for r in rows.frames] == [0]
    assert [(r[1], r[2]) for r in rows.jobs] == [("job-1", "progress"), ("job-1", "completed"), ("job-2", "failed")]


@pytest.fixture
def store(tmp_path):
    from tests.conftest import settings_for
    s = Store(settings_for("127.0.0.1:1", tmp_path))
    yield s
    s.close()


def test_a_batch_stored_twice_counts_once(store):
    rows = rows_of(NAMES, [record(NAMES.metrics, i, metrics(i)) for i in range(10)]
                   + [record(NAMES.jobs, 0, JOBS.encode(JobProgress("job-1", 0, 10)))])
    for _ in range(2):  # a sink that died before committing stores its batch again
        store.insert(FRAMES_TABLE, FRAME_COLUMNS, rows.frames)
        store.insert(JOBS_TABLE, JOB_COLUMNS, rows.jobs)
    [worker] = queries.workers(store).itertuples()
    assert worker.frames == 10 and worker.faces == 10 and worker.avg_ms == 14.0
    [job] = queries.jobs(store).itertuples()
    assert (job.state, job.frame_count, job.frames_processed) == ("running", 10, 10)


@pytest.mark.integration
def test_a_real_job_is_stored_once_even_when_replayed(broker_kind, settings, services, clips, tmp_path):
    if broker_kind != "tansu":
        pytest.skip("the store's dedupe, the same on every broker")
    services.worker()
    services.aggregator()
    published, done = run_job(settings, clips["face"], tmp_path)
    producer = kafka.ReliableProducer(settings)
    producer.send(settings.names.metrics, b"garbage from somewhere", key=b"x")
    producer.flush(10)
    store = Store(settings)
    try:
        sink = MetricsSink(Cluster.reach(settings), store)
        try:
            wait_for(lambda: sink.step() >= 0 and sink.caught_up(), 60, "the sink to store every record")
            assert sink.skipped == 1
        finally:
            sink.close()
        # A sink that lost its commits reads everything again: nothing counts twice.
        replay = MetricsSink(Cluster.reach(settings), store, group=f"{settings.names.sink}-replay")
        try:
            wait_for(lambda: replay.step() >= 0 and replay.caught_up(), 60, "the replay")
            assert replay.stored > 0
        finally:
            replay.close()
        [worker] = queries.workers(store).itertuples()
        assert worker.host == socket.gethostname() and worker.frames == published.frames == 75
        [job] = queries.jobs(store).itertuples()
        assert (job.job_id, job.state, job.frames, job.faces) == (done.job_id, "completed", 75, done.faces)
        # Its time runs from its publishing (not from when the aggregator read its start) to its end.
        assert job.wall_s == pytest.approx((done.completed_ts_us - published.start.submitted_ts_us) / 1e6, abs=0.011)
        assert done.faces >= 70  # the sample's face is on every frame
        assert len(queries.job_frames(store, done.job_id)) == 75
        [per_worker] = queries.job_time_per_worker(store).itertuples()
        assert per_worker.jobs == 1 and per_worker.frames == 75 and per_worker.avg_job_wall_s > 0
    finally:
        store.close()


HOLD_THE_STORE = ("import sys, clickhouse_connect; client = clickhouse_connect.get_client(dsn=sys.argv[1]); "
                  "print('held', flush=True); sys.stdin.read()")


@pytest.mark.integration
def test_records_wait_in_kafka_while_the_embedded_store_is_busy(broker_kind, settings, caplog):
    """Another process holds the embedded store (chDB admits one at a time): the
    sink's batch is not committed, so it stays in Kafka, and it is stored once
    the store is free. A page asked meanwhile says the store is busy, in one line."""
    if broker_kind != "tansu":
        pytest.skip("the store's turns are the same on every broker")
    from tests.test_dashboard import page

    Cluster.reach(settings).ensure_topics()
    producer = kafka.ReliableProducer(settings)
    for i in range(20):
        producer.send(settings.names.metrics, metrics(i), key=b"job-1")
    producer.flush(10)
    store = Store(settings, busy_timeout_s=1)  # its tables made while the store is free
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_STORE, store.dsn], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    sink = MetricsSink(Cluster.reach(settings), store)
    try:
        assert holder.stdout.readline().strip() == "held"
        # Read, refused by the busy store, put back (step says 0 records taken), twice.
        wait_for(lambda: sink.step(wait_s=1) == 0 and caplog.text.count("busy in another process") >= 2, 60,
                 "the sink to meet the busy store twice")
        assert sink.stored == 0
        assert committed(settings, sink) == {}, "a batch that is not stored must not be committed"
        shown = page({"env": {**settings.to_env(), "DVP_HOME": str(settings.home)}}, "Workers", check=False)
        assert [e for e in shown["error"] if "has been busy in another process" in e], shown
        holder.stdin.close()
        holder.wait(timeout=30)
        wait_for(lambda: sink.step(wait_s=1) >= 0 and sink.caught_up(), 60, "the sink to store the batch")
        assert sink.stored == 20 and committed(settings, sink)
        [worker] = queries.workers(store).itertuples()
        assert worker.frames == 20
    finally:
        if holder.poll() is None:
            holder.kill()
        sink.close()
        store.close()


def committed(settings, sink) -> dict:
    """The sink group's committed offsets on the metrics topic, where there are any."""
    parts = [TopicPartition(settings.names.metrics, p)
             for p in range(Cluster.reach(settings).partition_count(settings.names.metrics))]
    return {tp.partition: tp.offset for tp in sink.consumer.committed(parts, timeout=10) if tp.offset >= 0}
