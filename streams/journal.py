"""Each job's place in the processed log and how it ended: what lets any
aggregator finish a job after a crash, or after the job's partition moved to
it. The app keeps it in a Faust table, partitioned like the processed topic,
replicated through its changelog and restored wherever the partition goes;
tests give it a plain dict.

Writes are held until `save()` moves them into the table, which is called
from the thread that may write it (Faust's event loop); the assembly thread
only reads."""
from __future__ import annotations

import threading
from collections.abc import Iterable, MutableMapping
from dataclasses import asdict, dataclass

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"


@dataclass(frozen=True)
class JobEntry:
    job_id: str
    partition: int  # of the processed topic, where the job's records are
    offset: int  # of the job's JobStart
    status: str
    outcome: dict | None = None  # the JobCompleted or JobFailed fields, once the job ended
    announced: bool = False  # its outcome went out; until then a new owner sends it again
    ended_s: float | None = None  # when it ended (seconds since 1970)


class Journal:
    def __init__(self, store: MutableMapping[str, dict]):
        self._store = store
        self._unsaved: dict[str, dict] = {}
        self._lock = threading.Lock()  # the assembly thread and the event loop both use it

    def get(self, job_id: str) -> JobEntry | None:
        with self._lock:
            raw = self._unsaved.get(job_id) or self._store.get(job_id)
        return JobEntry(**raw) if raw else None

    def put(self, entry: JobEntry) -> None:
        with self._lock:
            self._unsaved[entry.job_id] = asdict(entry)

    def save(self) -> None:
        with self._lock:
            unsaved, self._unsaved = self._unsaved, {}
            for job_id, raw in unsaved.items():
                self._store[job_id] = raw

    def prune(self, ended_before_s: float) -> int:
        """Forget the jobs announced and ended before this time (when their records
        have left the log, nothing can start them again); returns how many. From
        the thread that may write the store, as `save`."""
        with self._lock:
            gone = [job_id for job_id, raw in self._store.items()
                    if job_id not in self._unsaved and raw and raw.get("announced")
                    and (raw.get("ended_s") or ended_before_s) < ended_before_s]
            for job_id in gone:
                del self._store[job_id]
        return len(gone)

    def unfinished(self, partitions: Iterable[int]) -> list[JobEntry]:
        """Jobs on these partitions still running, or whose outcome was never announced."""
        wanted = set(partitions)
        with self._lock:
            raws = list({**dict(self._store.items()), **self._unsaved}.values())
        return [entry for entry in map(lambda raw: JobEntry(**raw), raws)
                if entry.partition in wanted and (entry.status == RUNNING or not entry.announced)]
