"""What the jobs and results topics remember of a job id: whether it is taken,
and its finished video, for `dvp fetch` long after the job ran."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from dvp import kafka
from dvp.codec import Codec
from dvp.errors import DvpError, MalformedRecord
from dvp.kafka_cluster import Cluster
from dvp.messages import JOBS, RESULTS, JobCompleted, JobFailed, JobProgress
from dvp.results import ResultFile
from dvp.signing import verified


def _records_of(cluster: Cluster, topic: str, codec: Codec, job_id: str) -> Iterator:
    """Every record of a job on a topic keyed by job id, oldest first."""
    key = job_id.encode()
    partitions = cluster.partitions_now(topic)
    if partitions is None:
        return  # no job ever ran on this cluster
    for _offset, record_key, value in kafka.read_partition(cluster.settings, topic,
                                                           kafka.key_partition(key, partitions)):
        if record_key == key:
            try:
                record = codec.decode(value)
            except MalformedRecord:
                continue
            if record.job_id == job_id:  # keyed for this job and about it
                yield record


def last_event(cluster: Cluster, job_id: str) -> JobProgress | JobCompleted | JobFailed | None:
    """The latest news of a job id, or None if no job ever had it."""
    last = None
    for last in _records_of(cluster, cluster.settings.names.jobs, JOBS, job_id):  # noqa: B007
        pass
    return last


def check_unused(cluster: Cluster, job_id: str) -> None:
    event = last_event(cluster, job_id)
    if event is not None:
        state = ("completed" if isinstance(event, JobCompleted) else
                 "failed" if isinstance(event, JobFailed) else "running")
        raise DvpError(f"job id {job_id} is already in use ({state}); choose another or leave --job-id out")


def fetch(cluster: Cluster, job_id: str, output: Path) -> JobCompleted:
    """Write a finished job's video to `output`, from the results topic."""
    settings = cluster.settings
    event = last_event(cluster, job_id)
    if not isinstance(event, JobCompleted):
        raise DvpError(f"job {job_id}: " + ("no such job" if event is None else
                                              f"failed: {event.reason}" if isinstance(event, JobFailed) else
                                              "not finished yet"))
    if not verified(settings.signing_key, event):
        raise DvpError(f"job {job_id}: its completion record does not verify (forged, or signed with another "
                       f"secret: set the aggregator's DVP_SECRET)")
    result = ResultFile(output)
    try:
        for chunk in _records_of(cluster, settings.names.results, RESULTS, job_id):
            result.add(chunk)
        if not result.complete(event):
            raise DvpError(f"job {job_id}: its video is no longer on {settings.names.results} "
                           f"({result.received} of {event.chunks} pieces kept)")
        result.finish(event)
    finally:
        result.discard()
    return event
