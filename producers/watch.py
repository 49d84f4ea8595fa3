"""Follow a job on the jobs topic until the aggregator says it is done."""
from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import OFFSET_END, TopicPartition
from tqdm import tqdm

from dvp import kafka
from dvp.config import Settings
from dvp.errors import DvpError, MalformedRecord
from dvp.messages import JOBS, JobCompleted, JobFailed, JobProgress


class JobWatcher:
    """Open it before publishing: it reads only what comes after that moment."""

    def __init__(self, settings: Settings):
        self.settings = settings
        topic = settings.names.jobs
        kafka.ensure_topics(settings)
        parts = kafka.partition_count(settings, topic)
        self._consumer = kafka.consumer(settings, **{
            "group.id": settings.names.watch, "enable.auto.commit": False})
        self._consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in range(parts)])
        # Resolve OFFSET_END to real positions now, not at the first poll.
        for p in range(parts):
            _low, high = kafka.watermarks(self._consumer, topic, p, settings.connect_timeout_s)
            self._consumer.seek(TopicPartition(topic, p, high))

    def wait(self, job_id: str, total: int | None, progress: bool = True,
             timeout: float | None = None, alive: Callable[[], None] = lambda: None) -> JobCompleted:
        """Block until the job completes; raise DvpError if it fails, if `alive`
        raises, or if nothing is heard of the job for `timeout` seconds."""
        bar = tqdm(total=total, unit="frame", desc="assemble", disable=not progress, leave=False)
        last_news = time.monotonic()
        try:
            while True:
                alive()
                msg = self._consumer.poll(0.5)
                if timeout is not None and time.monotonic() - last_news > timeout:
                    raise DvpError(f"job {job_id}: no news from the aggregator for {timeout:g} s")
                if msg is None or msg.error():
                    continue
                try:
                    event = JOBS.decode(msg.value())
                except MalformedRecord:
                    continue
                if event.job_id != job_id:
                    continue
                last_news = time.monotonic()
                if isinstance(event, JobProgress):
                    bar.total = event.frame_count or bar.total
                    bar.n = event.frames_written
                    bar.refresh()
                elif isinstance(event, JobFailed):
                    raise DvpError(f"job {job_id} failed: {event.reason}")
                elif isinstance(event, JobCompleted):
                    return event
        finally:
            bar.close()

    def close(self) -> None:
        self._consumer.close()
