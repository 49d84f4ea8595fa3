"""Follow a job until the aggregator says it is done, and receive its video."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from dvp import kafka
from dvp.errors import DvpError, MalformedRecord
from dvp.kafka_cluster import Cluster
from dvp.messages import JOBS, RESULTS, JobCompleted, JobFailed, JobProgress, ResultChunk
from dvp.results import ResultFile
from dvp.signing import verified


class JobWatcher:
    """Open it before publishing: it reads the jobs and results topics from that moment on."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.settings = settings = cluster.settings
        cluster.ensure_topics()
        # A job's last records come in a burst: fetches not held long, so the end is seen soon.
        self._consumer = kafka.consumer(settings, **{"group.id": settings.names.watch, "enable.auto.commit": False,
                                                     "fetch.wait.max.ms": 50})
        self.forged = 0  # completions of the jobs watched whose signature did not verify
        self._consumer.assign(cluster.ends(self._consumer, settings.names.jobs, settings.names.results))

    def wait(self, job_id: str, total: int | None, progress: bool = True, timeout: float | None = None,
             alive: Callable[[], None] = lambda: None, save_to: Path | None = None) -> JobCompleted:
        """Block until the job completes, and write its video to `save_to` if given;
        raise DvpError if it fails, if `alive` raises, or if nothing is heard of the
        job for `timeout` seconds."""
        bar = tqdm(total=total, unit="frame", desc="assemble", disable=not progress, leave=False)
        result = ResultFile(save_to) if save_to is not None else None
        completed: JobCompleted | None = None
        last_news = time.monotonic()
        try:
            while completed is None or (result is not None and not result.complete(completed)):
                alive()
                if timeout is not None and time.monotonic() - last_news > timeout:
                    why = "; ".join(self.cluster.diagnose()) or "the cluster looks fine: see the services' logs"
                    if self.forged:
                        why = (f"{self.forged} completion records did not verify: set the same DVP_SECRET for "
                               f"the aggregator and this command; {why}")
                    raise DvpError(f"job {job_id}: no news from the aggregator for {timeout:g} s ({why})")
                event = self._next(job_id)
                if event is None:
                    continue
                last_news = time.monotonic()
                if isinstance(event, ResultChunk):
                    if result is not None:
                        result.add(event)
                elif isinstance(event, JobProgress):
                    bar.total = event.frame_count or bar.total
                    bar.n = event.frames_written
                    bar.refresh()
                elif isinstance(event, JobFailed):
                    raise DvpError(f"job {job_id} failed: {event.reason}")
                elif isinstance(event, JobCompleted):
                    if verified(self.settings.signing_key, event):
                        completed = event
                    else:  # not from this cluster's aggregator: a forgery, or another secret
                        self.forged += 1
            if result is not None:
                result.finish(completed)
            return completed
        finally:
            bar.close()
            if result is not None:
                result.discard()

    def _next(self, job_id: str) -> ResultChunk | JobProgress | JobCompleted | JobFailed | None:
        """The next record of this job on either topic, or None."""
        msg = self._consumer.poll(0.5)
        if msg is None or msg.error() or msg.key() != job_id.encode():
            return None
        codec = RESULTS if msg.topic() == self.settings.names.results else JOBS
        try:
            event = codec.decode(msg.value())
        except MalformedRecord:
            return None
        return event if event.job_id == job_id else None  # a record keyed for this job, about another

    def close(self) -> None:
        self._consumer.close()
