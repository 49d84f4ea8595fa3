"""The typed messages: one frozen dataclass per `.avsc` in `schemas/`, and the
codec of each topic (wire format and schema checks live in `codec.py`)."""
from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

from dvp.codec import Codec, message
from dvp.errors import MalformedRecord
from dvp.faces import DETECTORS

JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Where a job's faces are filtered: by each worker on its frame alone, or by the
# aggregator once the faces are tracked over neighbouring frames.
PER_FRAME, STRICT = "per-frame", "strict"
PRIVACY_MODES = (STRICT, PER_FRAME)


def now_us() -> int:
    """Wall-clock time as the messages carry it: microseconds since the epoch."""
    return time.time_ns() // 1000


def printable(text: str) -> str:
    """A string from a message, safe for a terminal: control characters (escape
    sequences, carriage returns, bidi overrides) are written as escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def valid_job_id(job_id: str) -> bool:
    """Job ids name files on the aggregator's disk: letters, digits, '.', '_', '-'."""
    return bool(JOB_ID.fullmatch(job_id))
@message
class FaceBox:
    x: float
    y: float
    w: float
    h: float
    score: float
    landmarks: list[float] = dataclasses.field(default_factory=list)


@message
class StageTimings:
    queue_ms: float
    decode_ms: float
    detect_ms: float
    filter_ms: float
    encode_ms: float


@message
class Frame:
    job_id: str
    index: int
    pts: int
    filter: str
    privacy: str
    jpeg: bytes
    capture_ts_us: int
    produce_ts_us: int
    detector: str = DETECTORS[0]


@message
class ProcessedFrame:
    job_id: str
    index: int
    pts: int
    jpeg: bytes
    filtered: bool
    faces: list[FaceBox]
    worker_id: str
    timings: StageTimings
    capture_ts_us: int
    processed_ts_us: int


@message
class FrameFailed:
    job_id: str
    index: int
    worker_id: str
    reason: str


@message
class JobStart:
    job_id: str
    source: str
    filter: str
    privacy: str
    width: int
    height: int
    fps_num: int
    fps_den: int
    time_base_num: int
    time_base_den: int
    frame_count: int | None
    has_audio: bool
    submitted_ts_us: int
    colour_matrix: int = 2
    colour_primaries: int = 2
    colour_transfer: int = 2
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


@message
class AudioChunk:
    job_id: str
    seq: int
    data: bytes


@message
class JobEnd:
    job_id: str
    frame_count: int
    audio_chunks: int
    notes: list[str] = dataclasses.field(default_factory=list)


@message
class JobAbort:
    job_id: str
    reason: str


# The aggregator says how far a job is every this many frames written; publishers
# pace themselves by it (producers/pacing.py).
PROGRESS_EVERY = 25


@message
class JobProgress:
    job_id: str
    frames_written: int
    frame_count: int | None


@message
class JobCompleted:
    job_id: str
    output: str
    frames: int
    faces: int
    duration_s: float
    size: int
    chunks: int
    sha256: str
    completed_ts_us: int
    notes: list[str] = dataclasses.field(default_factory=list)
    mac: str = ""  # dvp/signing.py


@message
class ResultChunk:
    job_id: str
    seq: int
    data: bytes


@message
class FrameAttempt:
    topic: str
    partition: int
    offset: int
    kind: str
    worker_id: str
    ts_us: int


@message
class JobFailed:
    job_id: str
    reason: str


@message
class FrameMetrics:
    job_id: str
    index: int
    worker_id: str
    host: str
    ip: str
    pid: int
    partition: int
    timings: StageTimings
    faces: int
    ts_us: int


def _check_job_id(msg: Any) -> None:
    if not valid_job_id(msg.job_id):
        raise MalformedRecord(f"invalid job id {msg.job_id[:120]!r}")


def _check_job(msg: Any) -> None:
    _check_job_id(msg)
    if isinstance(msg, Frame | JobStart) and msg.privacy not in PRIVACY_MODES:
        raise MalformedRecord(f"unknown privacy mode {msg.privacy[:40]!r} (job {msg.job_id})")


FRAMES = Codec(Frame, validate=_check_job)
ASSEMBLY = Codec(JobStart, ProcessedFrame, FrameFailed, AudioChunk, JobEnd, JobAbort, validate=_check_job)
JOBS = Codec(JobProgress, JobCompleted, JobFailed, validate=_check_job_id)
METRICS = Codec(FrameMetrics, validate=_check_job_id)
RESULTS = Codec(ResultChunk, validate=_check_job_id)
ATTEMPTS = Codec(FrameAttempt)
