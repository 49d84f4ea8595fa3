"""The metrics store: ClickHouse through clickhouse-connect, a server by DSN
(`DVP_CLICKHOUSE_DSN=http://…`) or, by default, embedded chDB under DVP_HOME.
The same code serves both. Every table's DDL is here and nowhere else.

Rows are keyed by where their record sat in Kafka (topic partition and offset):
a batch inserted twice (a sink that crashed before committing its offsets)
collapses into one row in the ReplacingMergeTree, and queries read with FINAL.
chDB admits one process per data path: a second one gets StoreBusy."""
from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from dvp.config import Settings
from dvp.errors import DvpError


class StoreError(DvpError):
    """The metrics store cannot be reached or refused a statement."""


class StoreBusy(StoreError):
    """The embedded store is open in another process."""


FRAMES_TABLE, JOBS_TABLE = "dvp_frames", "dvp_job_events"
FRAME_COLUMNS = ("ts", "job_id", "frame_index", "worker_id", "host", "ip", "pid", "partition",
                 "queue_ms", "decode_ms", "detect_ms", "filter_ms", "encode_ms", "faces",
                 "src_partition", "src_offset")
JOB_COLUMNS = ("ts", "job_id", "kind", "frames_written", "frame_count", "faces", "duration_s",
               "reason", "src_partition", "src_offset")

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
)


def dsn_of(settings: Settings) -> str:
    return settings.clickhouse_dsn or f"chdb://{settings.home.absolute() / 'store'}"


def redacted(dsn: str) -> str:
    """The DSN without its password, for messages."""
    scheme, _, rest = dsn.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}://{credentials.split(':')[0]}:***@{host}" if at else dsn


class Store:
    """One connection to the store, safe to share between threads."""

    def __init__(self, settings: Settings):
        import clickhouse_connect  # heavy: only for the commands that use the store

        self.dsn = dsn_of(settings)
        self.where = redacted(self.dsn)
        self.embedded = self.dsn.startswith("chdb:")
        if self.embedded:
            (settings.home / "store").mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._client = clickhouse_connect.get_client(dsn=self.dsn)
        except Exception as exc:  # the driver's errors differ by backend
            text = str(exc)
            if "Cannot lock file" in text:
                raise StoreBusy(f"the embedded metrics store {self.where[len('chdb://'):]} is open in another "
                                f"process (a running `dvp up` stack or dashboard); one process owns it at a "
                                f"time") from None
            raise StoreError(f"cannot reach the metrics store {self.where}: {text.splitlines()[0][:200]}") from None
        for statement in DDL:
            self.command(statement)

    def command(self, sql: str, parameters: dict | None = None) -> Any:
        with self._lock:
            try:
                return self._client.command(sql, parameters=parameters)
            except Exception as exc:
                raise StoreError(f"the metrics store refused a statement: {str(exc).splitlines()[0][:200]}") from None

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence]) -> None:
        if not rows:
            return
        with self._lock:
            try:
                self._client.insert(table, list(rows), column_names=list(columns))
            except Exception as exc:
                raise StoreError(f"cannot insert into {table}: {str(exc).splitlines()[0][:200]}") from None

    def query(self, sql: str, parameters: dict | None = None):
        """A pandas DataFrame."""
        with self._lock:
            try:
                return self._client.query_df(sql, parameters=parameters)
            except Exception as exc:
                raise StoreError(f"the metrics store refused a query: {str(exc).splitlines()[0][:200]}") from None

    def close(self) -> None:
        with self._lock:
            self._client.close()
