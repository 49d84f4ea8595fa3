"""Typed messages and their Avro wire format.

The `.avsc` files in `schemas/` are the single source: each dataclass here is
checked against its schema at import time (same fields, same order, matching
types), so a schema change that the code does not follow fails loudly.
Every record on the wire is MAGIC + Avro (schemaless) of its topic's union.
"""
from __future__ import annotations

import dataclasses
import io
import json
import re
import time
import typing
from dataclasses import dataclass
from typing import Optional

import fastavro

from dvp.errors import MalformedRecord
from schemas import SCHEMA_DIR

MAGIC = b"DVP\x01"
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def now_us() -> int:
    """Wall-clock time as the messages carry it: microseconds since the epoch."""
    return time.time_ns() // 1000


def valid_job_id(job_id: str) -> bool:
    """Job ids name files on the aggregator's disk: letters, digits, '.', '_', '-'."""
    return bool(JOB_ID.fullmatch(job_id))
_PY_TYPES = {"string": str, "bytes": bytes, "long": int, "int": int, "float": float,
             "double": float, "boolean": bool}


def _raw(name: str) -> dict:
    return json.loads(SCHEMA_DIR.joinpath(f"{name.split('.')[-1]}.avsc").read_text())


def _inline(schema, defined: set):
    """Replace references to named types by their definition, first use only,
    so that every topic's schema is self-contained."""
    if isinstance(schema, str) and schema.startswith("dvp."):
        if schema in defined:
            return schema
        defined.add(schema)
        return _inline(_raw(schema), defined)
    if isinstance(schema, list):
        return [_inline(s, defined) for s in schema]
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            defined.add(f"{schema['namespace']}.{schema['name']}")
            return {**schema, "fields": [{**f, "type": _inline(f["type"], defined)}
                                         for f in schema["fields"]]}
        if schema.get("type") == "array":
            return {**schema, "items": _inline(schema["items"], defined)}
    return schema


def _check(cls: type, schema: dict) -> None:
    hints = typing.get_type_hints(cls)
    ours = [f.name for f in dataclasses.fields(cls)]
    theirs = [f["name"] for f in schema["fields"]]
    if ours != theirs:
        raise TypeError(f"{cls.__name__} fields {ours} differ from schema {theirs}")
    for f in schema["fields"]:
        hint, avro = hints[f["name"]], f["type"]
        if isinstance(avro, list):  # ["null", T]
            avro = next(t for t in avro if t != "null")
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if isinstance(avro, dict) and avro.get("type") == "array":
            avro, hint = avro["items"], typing.get_args(hint)[0]
        expected = _PY_TYPES.get(avro) if isinstance(avro, str) else None
        if expected is None:  # a named record
            expected = _REGISTRY[avro.split(".")[-1]] if isinstance(avro, str) else None
        if hint is not expected:
            raise TypeError(f"{cls.__name__}.{f['name']}: {hint} does not match Avro {f['type']}")


_REGISTRY: dict[str, type] = {}


def message(cls):
    """Freeze a dataclass and bind it to `schemas/<ClassName>.avsc`."""
    cls = dataclass(frozen=True, slots=True)(cls)
    _REGISTRY[cls.__name__] = cls
    schema = _raw(cls.__name__)
    _check(cls, schema)
    cls.AVRO_NAME = f"{schema['namespace']}.{schema['name']}"
    return cls


def _to_avro(msg) -> dict:
    return {f.name: _plain(getattr(msg, f.name)) for f in dataclasses.fields(msg)}


def _plain(value):
    if dataclasses.is_dataclass(value):
        return _to_avro(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _from_avro(cls: type, record: dict):
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in record.items():
        hint = hints[name]
        if typing.get_origin(hint) is list and typing.get_args(hint)[0] in _REGISTRY.values():
            value = [_from_avro(typing.get_args(hint)[0], v) for v in value]
        elif hint in _REGISTRY.values():
            value = _from_avro(hint, value)
        values[name] = value
    return cls(**values)


@message
class FaceBox:
    x: float
    y: float
    w: float
    h: float
    score: float


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
    jpeg: bytes
    capture_ts_us: int
    produce_ts_us: int


@message
class ProcessedFrame:
    job_id: str
    index: int
    pts: int
    jpeg: bytes
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
    output: str
    filter: str
    width: int
    height: int
    fps_num: int
    fps_den: int
    time_base_num: int
    time_base_den: int
    frame_count: Optional[int]
    has_audio: bool
    submitted_ts_us: int


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


@message
class JobAbort:
    job_id: str
    reason: str


@message
class JobProgress:
    job_id: str
    frames_written: int
    frame_count: Optional[int]


@message
class JobCompleted:
    job_id: str
    output: str
    frames: int
    faces: int
    duration_s: float
    completed_ts_us: int


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


class Codec:
    """Encodes and decodes the messages of one topic (an Avro union of them)."""

    def __init__(self, *types: type):
        self.types = {t.AVRO_NAME: t for t in types}
        self.schema = fastavro.parse_schema(_inline(list(self.types), set()))

    def encode(self, msg) -> bytes:
        if type(msg).AVRO_NAME not in self.types:
            raise TypeError(f"{type(msg).__name__} does not belong on this topic")
        buf = io.BytesIO()
        buf.write(MAGIC)
        fastavro.schemaless_writer(buf, self.schema, (msg.AVRO_NAME, _to_avro(msg)))
        return buf.getvalue()

    def decode(self, data: Optional[bytes]):
        if not data or not data.startswith(MAGIC):
            raise MalformedRecord("not a dvp record (bad magic bytes)")
        buf = io.BytesIO(data)
        buf.seek(len(MAGIC))
        try:
            name, record = fastavro.schemaless_reader(
                buf, self.schema, return_record_name=True)
            if buf.read(1):
                raise ValueError("trailing bytes after the record")
            message = _from_avro(self.types[name], record)
        except Exception as exc:  # fastavro raises many types on garbage
            raise MalformedRecord(f"undecodable record: {exc}") from exc
        if not valid_job_id(message.job_id):
            raise MalformedRecord(f"invalid job id {message.job_id[:120]!r}")
        return message


FRAMES = Codec(Frame)
ASSEMBLY = Codec(JobStart, ProcessedFrame, FrameFailed, AudioChunk, JobEnd, JobAbort)
JOBS = Codec(JobProgress, JobCompleted, JobFailed)
METRICS = Codec(FrameMetrics)
