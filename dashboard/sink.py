"""The metrics sink: the metrics and jobs topics into the metrics store, in
batches by size and by time. Offsets are committed after the insert, so a crash
replays at most the batches since the last commit, and the store collapses
those rows (they are keyed by their record's partition and offset). Records
that do not decode, or carry figures no frame can have, are counted and
skipped, never fatal; a store that refuses a batch gets it again, with back-off."""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import Consumer, TopicPartition

from dvp import kafka
from dvp.config import Names
from dvp.errors import BrokerError, DvpError, MalformedRecord
from dvp.kafka_cluster import Cluster
from dvp.messages import JOBS, METRICS, FrameMetrics, JobCompleted, JobFailed, JobProgress
from dvp.store import FRAME_COLUMNS, FRAMES_TABLE, JOB_COLUMNS, JOBS_TABLE, Store, StoreBusy, StoreError

log = logging.getLogger("dvp.sink")
# A batch ends at this many records or after this long. Each batch is a session of the
# store, and the embedded one keeps ~1.5 MB of each (store.py): batches of 1 s grew a
# 10-minute job's `dvp run` by 0.9 GB.
BATCH_RECORDS, BATCH_S = 2000, 5.0
INTERRUPT_S = 0.1  # how soon a step notices it is interrupted
MAX_BACKOFF_S = 30.0
_UINT32, _TEXT = 2**32, 200


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # Kafka's record time
    value: bytes | None


@dataclass
class Rows:
    frames: list[tuple] = field(default_factory=list)
    jobs: list[tuple] = field(default_factory=list)
    skipped: int = 0


_EARLIEST_US, _LATEST_US = 946_684_800_000_000, 4_102_444_800_000_000  # 2000 to 2100


def _when(us: float) -> datetime:
    """A time from a message; out of this century it is no frame's."""
    if not _EARLIEST_US <= us < _LATEST_US:
        raise MalformedRecord(f"a time out of range ({us} microseconds since 1970)")
    return datetime.fromtimestamp(us / 1e6, tz=UTC)


def _frame_row(m: FrameMetrics, r: Record) -> tuple:
    t = m.timings
    times = (t.queue_ms, t.decode_ms, t.detect_ms, t.filter_ms, t.encode_ms)
    if not (0 <= m.index < 2**63 and 0 <= m.pid < _UINT32 and 0 <= m.partition < _UINT32
            and 0 <= m.faces < 2**16 and all(math.isfinite(x) and 0 <= x < 1e9 for x in times)):
        raise MalformedRecord(f"frame metrics with impossible figures (job {m.job_id}, frame {m.index})")
    return (_when(m.ts_us), m.job_id, m.index, m.worker_id[:_TEXT], m.host[:_TEXT], m.ip[:_TEXT], m.pid,
            m.partition, *times, m.faces, r.partition, r.offset)


def _job_row(e: JobProgress | JobCompleted | JobFailed, r: Record) -> tuple:
    when = _when(r.timestamp_ms * 1000)  # a job's first progress: the time it was published (streams/app.py)
    if isinstance(e, JobProgress):
        if e.frames_written < 0 or (e.frame_count is not None and e.frame_count < 0):
            raise MalformedRecord(f"job progress with negative counts (job {e.job_id})")
        return (when, e.job_id, "progress", e.frames_written, e.frame_count, 0, 0.0, "", r.partition, r.offset)
    if isinstance(e, JobCompleted):
        if e.frames < 0 or e.faces < 0 or not math.isfinite(e.duration_s):
            raise MalformedRecord(f"job completion with impossible figures (job {e.job_id})")
        return (_when(e.completed_ts_us), e.job_id, "completed", e.frames, e.frames, e.faces, e.duration_s, "",
                r.partition, r.offset)
    return (when, e.job_id, "failed", 0, None, 0, 0.0, e.reason[:1000], r.partition, r.offset)


def rows_of(names: Names, records: Iterable[Record]) -> Rows:
    """Store rows from records of the metrics and jobs topics; the rest is counted."""
    rows = Rows()
    for r in records:
        try:
            if r.topic == names.metrics:
                m = METRICS.decode(r.value)
                rows.frames.append(_frame_row(m, r))
            elif r.topic == names.jobs:
                rows.jobs.append(_job_row(JOBS.decode(r.value), r))
            else:
                raise MalformedRecord(f"a record from {r.topic}")
        except MalformedRecord as exc:
            rows.skipped += 1
            log.warning("skipped %s[%d]@%d: %s", r.topic, r.partition, r.offset, exc)
    return rows


class MetricsSink:
    """Consumes the metrics and jobs topics into the store: as a member of the
    sink group (several sinks share the partitions), or with `from_now` on every
    partition from its end, alone and committing nothing (`dvp run`'s own job)."""

    def __init__(self, cluster: Cluster, store: Store, group: str | None = None, from_now: bool = False):
        self.settings = settings = cluster.settings
        self.store = store
        self.topics = [settings.names.metrics, settings.names.jobs]
        self.from_now = from_now
        self.consumer: Consumer = kafka.consumer(settings, **{
            "group.id": group or settings.names.sink, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "isolation.level": "read_committed", "session.timeout.ms": settings.session_timeout_ms})
        if from_now:
            self.consumer.assign(cluster.ends(self.consumer, *self.topics))
        else:
            self.consumer.subscribe(self.topics)
        self.stored = self.skipped = 0
        self._failures = 0
        self._unstored = False  # records read but not yet in the store
        self._probe: Consumer | None = None  # asks where the logs end (caught_up)

    def step(self, wait_s: float = BATCH_S, interrupt: threading.Event | None = None) -> int:
        """One batch: read (for up to `wait_s`, or one read once `interrupt` is set),
        insert, commit. Returns the records read."""
        deadline = time.monotonic() + wait_s
        messages: list = []
        while len(messages) < BATCH_RECORDS and (left := deadline - time.monotonic()) > 0:
            got = [m for m in self.consumer.consume(BATCH_RECORDS - len(messages), min(left, INTERRUPT_S))
                   if not m.error()]
            self._unstored = self._unstored or bool(got)
            messages += got
            if interrupt is not None and interrupt.is_set():
                break
        if not messages:
            return 0
        rows = rows_of(self.settings.names, (
            Record(m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.value()) for m in messages))
        try:
            self._insert(rows)
        except StoreError as exc:  # keep the records: read them again after a pause
            self._failures += 1
            log.warning("%s; trying again", exc)
            kafka.rewind(self.consumer, messages)
            self._unstored = False
            time.sleep(min(0.5 * 2 ** min(self._failures, 10), MAX_BACKOFF_S))
            return 0
        self._failures = 0
        self._commit(messages)
        self._unstored = False
        self.stored += len(rows.frames) + len(rows.jobs)
        self.skipped += rows.skipped
        return len(messages)

    def _insert(self, rows: Rows) -> None:
        """The batch; after refusals in a row, row by row, setting aside the rows the
        store refuses, unless it refuses them all (then it is the store that is down)."""
        batches = [(FRAMES_TABLE, FRAME_COLUMNS, rows.frames), (JOBS_TABLE, JOB_COLUMNS, rows.jobs)]
        if self._failures < 3:
            with self.store.held():
                for table, columns, data in batches:
                    self.store.insert(table, columns, data)
            return
        refused: list[str] = []
        total = len(rows.frames) + len(rows.jobs)
        for table, columns, data in batches:
            for row in data:
                try:
                    self.store.insert(table, columns, [row])
                except StoreBusy:  # the store, not the row: the batch waits
                    raise
                except StoreError as exc:
                    refused.append(str(exc))
        if total and len(refused) == total:
            raise StoreError(refused[0])
        for reason in refused:
            log.warning("a row set aside: %s", reason)
        rows.skipped += len(refused)

    def _commit(self, messages: list) -> None:
        if self.from_now:
            return
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        last = {(m.topic(), m.partition()): m.offset() + 1 for m in messages}
        offsets = [TopicPartition(t, p, o) for (t, p), o in last.items() if (t, p) in assigned]
        if not offsets:
            return
        try:
            with kafka.asked("offsets not committed"):
                self.consumer.commit(offsets=offsets, asynchronous=False)
        except BrokerError as exc:  # a rebalance: the next owner stores these rows again, idempotently
            log.warning("%s", exc)

    def caught_up(self) -> bool:
        """Whether this sink holds every partition and has stored every record on them
        now; asked between steps, on the thread that runs them. Positions, not commits,
        are compared with the log's end: a transactional log ends in commit markers,
        which the consumer steps over but never delivers."""
        return not self._unstored and self._at_end()

    def _at_end(self) -> bool:
        # The log's ends are asked on a connection of their own: on the reading one a
        # request waits behind the fetch the broker holds (fetch.wait.max.ms, 0.5 s each).
        if self._probe is None:
            self._probe = kafka.consumer(self.settings, **{"group.id": self.settings.names.sink})
        probe = self._probe
        try:
            with kafka.asked("the log's end"):
                assigned = self.consumer.assignment()
                wanted = sum(len(probe.list_topics(t, timeout=10).topics[t].partitions) for t in self.topics)
                if len(assigned) < wanted:
                    return False
                positions = self.consumer.position(assigned)
                ends = [probe.get_watermark_offsets(tp, timeout=10) for tp in positions]
        except BrokerError:
            return False
        return not any(high > low and tp.offset < high for tp, (low, high) in zip(positions, ends, strict=True))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()

    def close(self) -> None:
        self.consumer.close()
        if self._probe is not None:
            self._probe.close()
        if self.stored or self.skipped:
            log.info("stored %d rows, skipped %d records", self.stored, self.skipped)


class BackgroundSink:
    """A sink on a thread of this process: `dvp run` stores its job's metrics as
    it runs, and the dashboard fills the store it reads. An error stops the
    sink, not the process, and is kept in `error`. With `from_now` (`dvp run`),
    the sink reads from the topics' ends as they are when this returns."""

    def __init__(self, cluster: Cluster, store: Store, from_now: bool = False):
        self.error: str | None = None
        self._stop = threading.Event()
        self._finishing = threading.Event()  # finish() asked: stop once caught up
        self._caught_up = threading.Event()
        self._cluster, self._store = cluster, store
        self._sink: MetricsSink | None = MetricsSink(cluster, store, from_now=True) if from_now else None
        self._thread = threading.Thread(target=self._run, name="metrics-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while self._sink is None and not self._reachable():  # a cluster that is gone: no consumer spinning
                if self._stop.wait(5):
                    return
            if self._sink is None:
                self._sink = MetricsSink(self._cluster, self._store)
            while not self._stop.is_set():
                finishing = self._finishing.is_set()
                self._sink.step(wait_s=INTERRUPT_S if finishing else BATCH_S, interrupt=self._finishing)
                if finishing and self._sink.caught_up():
                    self._caught_up.set()
                    return
        except Exception as exc:  # the rest of the process goes on
            log.exception("the metrics sink stopped")
            self.error = str(exc) if isinstance(exc, DvpError) else f"{type(exc).__name__}: {exc}"
        finally:
            if self._sink is not None:
                self._sink.close()

    def _reachable(self) -> bool:
        try:
            self._cluster.wait_reachable(min(self._cluster.settings.connect_timeout_s, 5))
            return True
        except BrokerError:
            return False

    def finish(self, timeout: float) -> bool:
        """Store what the topics hold now (up to `timeout`), then stop. Whether all was stored."""
        self._finishing.set()
        self._thread.join(timeout)
        self.stop()
        return self._caught_up.is_set() and self.error is None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
