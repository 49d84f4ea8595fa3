"""The metrics store: ClickHouse through clickhouse-connect, a server by DSN
(`DVP_CLICKHOUSE_DSN=http://…`) or, by default, embedded chDB under DVP_HOME.
The same code serves both. Every table's DDL is here and nowhere else.

Rows are keyed by where their record sat in Kafka (topic partition and offset):
a batch inserted twice (a sink that crashed before committing its offsets)
collapses into one row in the ReplacingMergeTree, and queries read with FINAL.
chDB admits one process per data path at a time: processes take turns."""
from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dvp.config import Settings, masked_dsn
from dvp.errors import DvpError


class StoreError(DvpError):
    """The metrics store cannot be reached or refused a statement."""


class StoreBusy(StoreError):
    """The embedded store stayed open in another process for too long."""


FRAMES_TABLE, JOBS_TABLE, OUTPUTS_TABLE = "dvp_frames", "dvp_job_events", "dvp_outputs"
FRAME_COLUMNS = ("ts", "job_id", "frame_index", "worker_id", "host", "ip", "pid", "partition",
                 "queue_ms", "decode_ms", "detect_ms", "filter_ms", "encode_ms", "faces",
                 "src_partition", "src_offset")
JOB_COLUMNS = ("ts", "job_id", "kind", "frames_written", "frame_count", "faces", "duration_s",
               "reason", "src_partition", "src_offset")
OUTPUT_COLUMNS = ("job_id", "host", "path")

DDL = (
    # One row per processed frame (a frame processed twice, after a worker died,
    # is two rows: two workers did the work). Queries go by time, job and worker.
    f"""CREATE TABLE IF NOT EXISTS {FRAMES_TABLE} (
        ts DateTime64(6, 'UTC'), job_id String, frame_index UInt64,
        worker_id LowCardinality(String), host LowCardinality(String), ip LowCardinality(String),
        pid UInt32, partition UInt32,
        queue_ms Float32, decode_ms Float32, detect_ms Float32, filter_ms Float32, encode_ms Float32,
        faces UInt16, src_partition UInt32, src_offset UInt64
    ) ENGINE = ReplacingMergeTree
    PARTITION BY toYYYYMM(ts)
    ORDER BY (job_id, src_partition, src_offset)""",
    # One row per job event: progress, completed or failed.
    f"""CREATE TABLE IF NOT EXISTS {JOBS_TABLE} (
        ts DateTime64(6, 'UTC'), job_id String, kind LowCardinality(String),
        frames_written UInt64, frame_count Nullable(UInt64), faces UInt64, duration_s Float64,
        reason String, src_partition UInt32, src_offset UInt64
    ) ENGINE = ReplacingMergeTree
    PARTITION BY toYYYYMM(ts)
    ORDER BY (job_id, src_partition, src_offset)""",
    # Where `dvp run` wrote a job's video: the dashboard plays it from there.
    f"""CREATE TABLE IF NOT EXISTS {OUTPUTS_TABLE} (job_id String, host String, path String)
    ENGINE = ReplacingMergeTree ORDER BY (job_id, host)""",
)


def dsn_of(settings: Settings) -> str:
    return settings.clickhouse_dsn or f"chdb://{settings.home.absolute() / 'store'}"


class Store:
    """The store, safe to share between threads. An embedded store is opened for
    each statement and closed after it (tens of milliseconds), so that processes
    take turns: `dvp run`'s sink, a dashboard's sink and its pages, `dvp status`.
    A process that finds it open elsewhere waits up to `busy_timeout_s`."""

    def __init__(self, settings: Settings, busy_timeout_s: float = 10.0):
        self.dsn = dsn_of(settings)
        self.where = masked_dsn(self.dsn)
        self._scrubbed = settings.scrubbed  # the driver's errors may quote the DSN
        self.embedded = self.dsn.startswith("chdb:")
        self.busy_timeout_s = busy_timeout_s
        if self.embedded:
            (settings.home / "store").mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._client: Any = None
        self._held = 0  # nested held() blocks open now
        for statement in DDL:
            self.command(statement)

    def _connect(self) -> Any:
        import clickhouse_connect  # heavy: only for the commands that use the store

        deadline = time.monotonic() + self.busy_timeout_s
        tries_after_release = 1  # the other process may close the store between our try and the lock's probe
        while True:
            try:
                return clickhouse_connect.get_client(dsn=self.dsn)
            except Exception as exc:  # the driver's errors differ by backend
                text = str(exc)
                if "Cannot lock file" not in text and not self._locked_elsewhere():
                    if self.embedded and tries_after_release:
                        tries_after_release -= 1
                        continue
                    raise StoreError(f"cannot reach the metrics store {self.where}: "
                                     f"{self._scrubbed(text.splitlines()[0])[:200]}") from None
                if time.monotonic() >= deadline:
                    raise StoreBusy(f"the embedded metrics store {self.where[len('chdb://'):]} has been busy in "
                                    f"another process for {self.busy_timeout_s:g} s") from None
                time.sleep(0.05)

    def _locked_elsewhere(self) -> bool:
        """Whether another process has the embedded store open. chDB says "Cannot lock
        file" only in a process's first open; later ones fail with "Error initializing
        EmbeddedServer", so ask the lock itself (ClickHouse flocks its status file)."""
        if not self.embedded:
            return False
        try:
            fd = os.open(Path(self.dsn[len("chdb://"):]) / "status", os.O_RDONLY)
        except OSError:  # removed by the process that closes the store, or not ours to read
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    @contextmanager
    def _session(self, what: str) -> Iterator[Any]:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            try:
                yield self._client
            except StoreError:
                raise
            except Exception as exc:
                raise StoreError(f"the metrics store refused {what}: "
                                 f"{self._scrubbed(str(exc).splitlines()[0])[:200]}") from None
            finally:
                if self.embedded and not self._held:  # let the other processes in
                    self._release()

    def _release(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """The statements inside share one session of the embedded store. chDB 4.4
        keeps about 1.5 MB of every session it closes (chdb-io/chdb#298): a
        10-minute job's sink, a session per statement, grew by 0.9 GB. Other
        processes wait meanwhile: hold it for a burst of statements, no longer."""
        with self._lock:
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
                if self.embedded and not self._held:
                    self._release()

    def command(self, sql: str, parameters: dict | None = None) -> Any:
        with self._session("a statement") as client:
            return client.command(sql, parameters=parameters)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence]) -> None:
        if rows:
            with self._session(f"rows for {table}") as client:
                client.insert(table, list(rows), column_names=list(columns))

    def query(self, sql: str, parameters: dict | None = None) -> Any:
        """A pandas DataFrame."""
        with self._session("a query") as client:
            return client.query_df(sql, parameters=parameters)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
