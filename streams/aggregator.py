"""The aggregator's logic, free of Faust: records of the processed topic in,
job events out. Work files live under `work_dir`, outputs in `output_dir`.

Recovery: the journal (journal.py) says where each job began and how it ended.
Whichever process holds a job's partition, after a restart or a rebalance,
re-reads each running job from that offset (kafka.read_partition) before
taking any newer record of it, and the assembler drops what it has already
seen; outcomes that never went out are sent again."""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from dvp.errors import DvpError, JobError, MalformedRecord
from dvp.messages import ASSEMBLY, PROGRESS_EVERY, JobCompleted, JobFailed, JobProgress, JobStart, ProcessedFrame
from dvp.streams.assembler import AssemblyOptions, JobAssembler, Outcome
from dvp.streams.journal import COMPLETED, FAILED, RUNNING, JobEntry, Journal

if TYPE_CHECKING:
    from dvp.messages import AudioChunk, FrameFailed, JobAbort, JobEnd

log = logging.getLogger("dvp.aggregator")

Replayer = Callable[[int, int], Iterator[tuple[int, bytes]]]  # (partition, offset) -> records
PUBLISHED_WITHIN_S = 86_400  # a job's publishing time older than this is no clock's: not used


class Aggregator:
    def __init__(self, journal: Journal, work_dir: Path, output_dir: Path, options: AssemblyOptions,
                 replay: Replayer, idle_timeout_s: float, clock: Callable[[], float] = time.monotonic,
                 max_open_jobs: int | None = None, max_held_bytes: int | None = None):
        self.journal = journal
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        self.output_dir = output_dir
        self.options = options
        self.replay = replay
        self.idle_timeout_s = idle_timeout_s
        self.clock = clock
        # Bounds across jobs (the app passes DVP_MAX_OPEN_JOBS, DVP_HELD_MB); None: none.
        self.max_open_jobs = max_open_jobs
        self.max_held_bytes = max_held_bytes
        self.jobs: dict[str, JobAssembler] = {}
        self.last_seen: dict[str, float] = {}  # job id: when its last record came
        self.announcing: set[str] = set()  # ended jobs whose outcome this process is sending
        self.malformed = 0
        self.orphans = 0

    def handle(self, partition: int, offset: int, value: bytes) -> list:
        """Take one record; return the events to publish (progress, completed, failed)."""
        try:
            record = ASSEMBLY.decode(value)
        except MalformedRecord:
            self.malformed += 1
            raise
        try:
            return self._handle(record, partition, offset)
        except MalformedRecord:  # set aside by the caller; the job goes on
            self.malformed += 1
            raise
        except Exception as exc:  # one broken job must neither stop the others nor go unreported
            log.exception("job %s: record at %d@%d", record.job_id, partition, offset)
            self._drop(record.job_id)
            reason = f"aggregator error: {type(exc).__name__}: {exc}"
            return [self._end(record.job_id, JobFailed(record.job_id, reason))]

    def _handle(self, record: JobStart | ProcessedFrame | FrameFailed | AudioChunk | JobEnd | JobAbort,
                partition: int, offset: int) -> list:
        job_id = record.job_id
        events: list = []
        entry = self.journal.get(job_id)
        if job_id not in self.jobs and entry is not None and entry.status == RUNNING:
            # A running job this process does not hold: it restarted, or the partition moved here.
            events += self.recover(entry)
            entry = self.journal.get(job_id)
        if isinstance(record, JobStart) and job_id not in self.jobs:
            if entry is not None:
                return events  # a start read again, of a job that ended
            if self.max_open_jobs is not None and len(self.jobs) >= self.max_open_jobs:
                self.journal.put(JobEntry(job_id, partition, offset, RUNNING))
                return events + [self._end(job_id, JobFailed(
                    job_id, f"this aggregator assembles {len(self.jobs)} jobs already, its limit "
                            f"(DVP_MAX_OPEN_JOBS): publish it again later, or run more aggregators"))]
            self._open(record, partition, offset)
            return events + [JobProgress(job_id, 0, record.frame_count)]
        job = self.jobs.get(job_id)
        if job is None:
            if entry is None:
                self.orphans += 1
                log.warning("record for unknown job %s at %d@%d (%d such records)",
                            job_id, partition, offset, self.orphans)
            return events
        self.last_seen[job_id] = self.clock()
        return events + self._add(job, record)

    def adopt(self, entries: list[JobEntry]) -> list:
        """Take over the unfinished jobs of partitions this process now holds (after a
        start, a crash or a rebalance): rebuild the running ones from the log, and
        send again the outcomes that never went out."""
        events: list = []
        for listed in entries:
            entry = self.journal.get(listed.job_id)  # as it is now, not when it was listed
            if entry is None or entry.job_id in self.jobs or entry.job_id in self.announcing:
                continue
            if entry.status == RUNNING:
                events += self.recover(entry)
            elif entry.outcome is not None and not entry.announced:
                self.announcing.add(entry.job_id)
                events.append((JobCompleted if entry.status == COMPLETED else JobFailed)(**entry.outcome))
        return events

    def keep_only(self, partitions: set[int]) -> None:
        """After a rebalance: forget the jobs of partitions this process no longer
        holds; whoever holds them now finishes them from the journal."""
        for job_id in list(self.jobs):
            entry = self.journal.get(job_id)
            if entry is not None and entry.partition not in partitions:
                log.info("job %s moves on with partition %d", job_id, entry.partition)
                self._drop(job_id)

    def recover(self, entry: JobEntry) -> list:
        """Rebuild a running job from its start in the log."""
        job_id = entry.job_id
        log.warning("recovering job %s from %d@%d", job_id, entry.partition, entry.offset)
        self._drop(job_id)
        events: list = []
        try:
            for record in self._records_of(job_id, entry):
                if isinstance(record, JobStart):
                    if job_id not in self.jobs:
                        self.jobs[job_id] = JobAssembler(record, self.work_dir, self.output_dir, self.options)
                        self.last_seen[job_id] = self.clock()
                elif job_id in self.jobs:
                    try:
                        events += self._add(self.jobs[job_id], record)
                    except MalformedRecord:  # set aside when it first came; skipped again
                        continue
                    if job_id not in self.jobs:
                        break  # finished
        except DvpError as exc:
            self._drop(job_id)
            return events + [self._end(job_id, JobFailed(job_id, f"cannot recover: {exc}"))]
        if job_id not in self.jobs and (self.journal.get(job_id) or entry).status == RUNNING:
            events.append(self._end(job_id, JobFailed(job_id, "job start lost from the log")))
        return events

    def _records_of(self, job_id: str, entry: JobEntry) -> Iterator:
        for _offset, value in self.replay(entry.partition, entry.offset):
            try:
                record = ASSEMBLY.decode(value)
            except MalformedRecord:
                continue
            if record.job_id == job_id:
                yield record

    def expire(self) -> list:
        """Fail the jobs that have had no record for the idle timeout: their
        publisher stopped before the end, and nothing else will finish them."""
        now, events = self.clock(), []
        for job_id in [j for j in self.jobs if now - self.last_seen.get(j, now) > self.idle_timeout_s]:
            self._drop(job_id)
            events.append(self._end(job_id, JobFailed(
                job_id, f"no record of the job for {self.idle_timeout_s:g} s: its publisher stopped "
                        f"before the end (DVP_JOB_IDLE_TIMEOUT_S)")))
        return events

    def _drop(self, job_id: str) -> None:
        """Forget a job that cannot go on, with its work files."""
        self.last_seen.pop(job_id, None)
        job = self.jobs.pop(job_id, None)
        if job is not None:
            job.discard()

    def _open(self, start: JobStart, partition: int, offset: int) -> None:
        self.journal.put(JobEntry(start.job_id, partition, offset, RUNNING))
        self.jobs[start.job_id] = JobAssembler(start, self.work_dir, self.output_dir, self.options)
        self.last_seen[start.job_id] = self.clock()

    def _add(self, job: JobAssembler,
             record: JobStart | ProcessedFrame | FrameFailed | AudioChunk | JobEnd | JobAbort) -> list:
        before = job.written
        try:
            outcome = job.add(record)
        except MalformedRecord:
            raise
        except JobError as exc:
            outcome = job.fail(str(exc))
        except Exception as exc:  # one broken job must not stop the others
            log.exception("job %s failed", job.start.job_id)
            outcome = job.fail(f"{type(exc).__name__}: {exc}")
        if outcome is not None:
            return [self._finish(job, outcome)]
        if not isinstance(record, ProcessedFrame):
            return []
        events = self._over_held_bytes()
        if job.start.job_id in self.jobs and job.written // PROGRESS_EVERY > before // PROGRESS_EVERY:
            events.append(JobProgress(job.start.job_id, job.written, job.total))
        return events

    def _over_held_bytes(self) -> list:
        """Past the bound on frames held across jobs, fail the jobs holding the most
        until it holds: a few jobs far out of order cannot starve the others."""
        events: list = []
        while self.max_held_bytes is not None and self.jobs:
            held = sum(j.held_bytes for j in self.jobs.values())
            if held <= self.max_held_bytes:
                break
            most = max(self.jobs.values(), key=lambda j: j.held_bytes)
            events.append(self._finish(most, most.fail(
                f"the aggregator holds {held / 1e6:.0f} MB of frames across {len(self.jobs)} jobs, over "
                f"DVP_HELD_MB={self.max_held_bytes // 1_000_000}; this job held the most, "
                f"{most.held_bytes / 1e6:.0f} MB, its frames far out of order")))
        return events

    def _finish(self, job: JobAssembler, outcome: Outcome) -> Outcome:
        self.jobs.pop(job.start.job_id, None)
        self.last_seen.pop(job.start.job_id, None)
        return self._end(job.start.job_id, outcome)

    def _end(self, job_id: str, outcome: Outcome) -> Outcome:
        """Journal the job's end and its outcome: a restart does not recover the job,
        but announces the outcome again until `announced` is called."""
        status = FAILED if isinstance(outcome, JobFailed) else COMPLETED
        self.announcing.add(job_id)
        entry = self.journal.get(job_id)
        if entry is not None:
            self.journal.put(dataclasses.replace(entry, status=status, outcome=dataclasses.asdict(outcome),
                                                 announced=False, ended_s=time.time()))
        log.info("job %s %s", job_id, status)
        return outcome

    def published_at(self, job_id: str, now_s: float) -> float | None:
        """When the job's publisher sent it (seconds), where its wall time starts; None
        if unknown or not plausible (the publisher's clock: at most a day old, not
        ahead of ours)."""
        job = self.jobs.get(job_id)
        if job is None:
            return None
        sent = job.start.submitted_ts_us / 1e6
        return sent if now_s - PUBLISHED_WITHIN_S <= sent <= now_s else None

    def announced(self, job_id: str) -> None:
        """The job's outcome is out: a restart need not send it again."""
        self.announcing.discard(job_id)
        entry = self.journal.get(job_id)
        if entry is not None and entry.status != RUNNING:
            self.journal.put(dataclasses.replace(entry, announced=True))
