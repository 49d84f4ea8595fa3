"""How far a publisher runs ahead of its job's assembly.

Workers take frames from fixed partitions, so a worker slower than the others
(a busy or smaller machine) falls behind on its share, and the aggregator holds
the frames after the first one it lacks. Published all at once, a long video
lets that gap grow with its length until the aggregator's reorder limits fail
the job. Paced, a frame is published only while the job's assembly is within
half those limits of it: a slow worker slows the job, never fails it."""
from __future__ import annotations

import time
from collections.abc import Callable

from dvp import kafka
from dvp.errors import DvpError, MalformedRecord
from dvp.kafka_cluster import Cluster
from dvp.messages import JOBS, PROGRESS_EVERY, JobFailed, JobProgress


class Pacing:
    """Open it before the job starts: it reads the job's progress from then on."""

    def __init__(self, cluster: Cluster, job_id: str, frame_bytes: int):
        settings = cluster.settings
        self.job_id = job_id.encode()
        self.stall_timeout_s = settings.stall_timeout_s
        by_bytes = settings.reorder_mb * 1_000_000 // max(frame_bytes, 1)
        # Progress is heard of every PROGRESS_EVERY frames: less room than twice that would stall.
        self.ahead = max(min(settings.reorder_frames, by_bytes) // 2, 2 * PROGRESS_EVERY)
        self.written = 0
        self._consumer = kafka.consumer(settings, **{"group.id": settings.names.watch, "enable.auto.commit": False,
                                                     "fetch.wait.max.ms": kafka.FETCH_MAX_WAIT_MS})
        self._consumer.assign(cluster.ends(self._consumer, settings.names.jobs))

    def wait_for_room(self, index: int, alive: Callable[[], None] = lambda: None) -> None:
        """Return once frame `index` may be published; DvpError if the job failed, if
        `alive` raises, or if its assembly made no progress for the stall timeout."""
        self._read(0)
        since = time.monotonic()
        while index - self.written >= self.ahead:
            alive()
            if time.monotonic() - since > self.stall_timeout_s:
                raise DvpError(f"the aggregator wrote no frame of this job for {self.stall_timeout_s:g} s "
                               f"(it holds {self.written}; frame {index} waits to be published)")
            self._read(0.1)

    def _read(self, timeout: float) -> None:
        """Take in what the jobs topic says of this job (everything there, waiting
        up to `timeout` for the first record)."""
        while (msg := self._consumer.poll(timeout)) is not None:
            timeout = 0
            if msg.error() or msg.key() != self.job_id:
                continue
            try:
                event = JOBS.decode(msg.value())
            except MalformedRecord:
                continue
            if isinstance(event, JobProgress):
                self.written = max(self.written, event.frames_written)
            elif isinstance(event, JobFailed):
                raise DvpError(f"job {event.job_id} failed: {event.reason}")

    def close(self) -> None:
        self._consumer.close()
