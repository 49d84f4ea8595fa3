"""Every setting, declared once: its type, default, environment variable, flag,
help and check. The CLI's flags and `dvp config` are built from these
declarations, and a value is checked when settings are built, so a bad one is a
one-line error before anything starts.

Precedence: CLI flag > environment variable > default. Kafka client settings
(`--kafka-config KEY=VALUE`, `DVP_KAFKA_CONFIG="k=v,k=v"`) are passed to
confluent-kafka untouched, so security, SASL and TLS work as they do anywhere.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dvp.errors import DvpError
from dvp.faces import DEFAULT_CONFIDENCE, DETECTORS
from dvp.jpeg import EIGHT_K
from dvp.signing import key_file

GUARANTEES = ("at-least-once", "exactly-once")


def _at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be at least {low:g}, got {v:g}"


def _dsn(value: str | None) -> str | None:
    if value is None or value.split("://", 1)[0] in ("http", "https", "chdb"):
        return None
    return f"must start with http://, https:// or chdb://, got {value.split('://', 1)[0]!r}"


def _between(low: int, high: int) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be from {low} to {high}, got {v}"


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}, got {v!r}"


def _replication(v: int) -> str | None:
    return None if v == -1 or v >= 1 else f"must be -1 (the cluster's default) or at least 1, got {v}"


def _split(raw: str | tuple | list) -> tuple:
    return tuple(raw.split(",")) if isinstance(raw, str) else tuple(raw)


def boolean(raw: str | bool) -> bool:
    if isinstance(raw, bool):
        return raw
    word = raw.strip().lower()
    if word not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(raw)
    return word in ("1", "true", "yes", "on")


def _setting(default: Any, env: str, help: str, parse: Callable[[Any], Any], *, flag: str | None = None,
             check: Callable[[Any], str | None] | None = None, choices: tuple[str, ...] | None = None) -> Any:
    if choices is not None:
        check = _one_of(choices)
    return field(default=default, metadata={"env": env, "help": help, "parse": parse, "flag": flag,
                                            "check": check, "choices": choices})


@dataclass(frozen=True)
class Names:
    """Every topic and consumer-group name, made from the one prefix."""
    frames: str          # frames to process, spread over partitions
    processed: str       # processed frames and job records, keyed by job
    jobs: str            # job progress and outcomes
    results: str         # finished videos in pieces, keyed by job, for their publishers
    metrics: str         # one FrameMetrics record per frame
    deadletter: str      # records that are not valid dvp messages, as they came
    attempts: str        # workers' claims of frames partitions, and attempts at frames after a crash
    workers: str         # the workers' consumer group (and transactional id prefix)
    aggregator: str      # the Faust app id: its consumer group and table names
    watch: str           # the group name of job watchers (they commit nothing)
    replay: str          # the group name of the aggregator's replays (they commit nothing)
    sink: str            # the metrics sinks' consumer group
    live: str            # live camera frames (`dvp live`), apart so that file jobs do not delay them
    live_out: str        # live frames filtered, keyed by session, for their viewer
    live_workers: str    # the workers' consumer group for live frames

    @classmethod
    def with_prefix(cls, prefix: str) -> Names:
        return cls(**{f.name: f"{prefix}{f.name}" for f in dataclasses.fields(cls)})


# Partitions of the topics whose size is no setting (frames and processed are):
# enough for their traffic; live frames spread over 8 for up to 8 workers' live threads.
FIXED_PARTITIONS = {"jobs": 4, "results": 4, "metrics": 4, "deadletter": 1, "attempts": 4, "live": 8, "live_out": 4}


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str | None = _setting(
        None, "DVP_BOOTSTRAP_SERVERS",
        "Kafka bootstrap servers; unset: the local broker of `dvp up` (127.0.0.1:9092), "
        "or for `dvp run` a private embedded broker", str, flag="--bootstrap-servers")
    kafka_config: tuple = _setting(
        (), "DVP_KAFKA_CONFIG",
        "extra Kafka client setting KEY=VALUE, passed through untouched, e.g. security.protocol=SASL_SSL "
        "(repeatable flag; comma-separated in the variable)", _split, flag="--kafka-config")
    topic_prefix: str = _setting("dvp.", "DVP_TOPIC_PREFIX", "prefix of every topic and group name", str)
    frames_partitions: int = _setting(
        32, "DVP_FRAMES_PARTITIONS", "partitions of the frames topic (the most workers that can share a job)",
        int, check=_at_least(1))
    processed_partitions: int = _setting(8, "DVP_PROCESSED_PARTITIONS", "partitions of the processed topic",
                                         int, check=_at_least(1))
    replication_factor: int = _setting(
        -1, "DVP_REPLICATION_FACTOR",
        "replication factor of created topics; -1: the cluster's default.replication.factor", int,
        check=_replication)
    jpeg_quality: int = _setting(90, "DVP_JPEG_QUALITY", "JPEG quality of frames on the wire (1-100)", int,
                                 flag="--jpeg-quality", check=_between(1, 100))
    max_pixels: int = _setting(
        EIGHT_K, "DVP_MAX_PIXELS",
        "pixels a frame from a topic may have (its JPEG header is read before decoding); larger frames are "
        "set aside, and their job fails; default: 8K (7680x4320)", int, check=_at_least(1))
    session_timeout_ms: int = _setting(
        6000, "DVP_SESSION_TIMEOUT_MS",
        "consumer group session timeout: how soon a dead worker's partitions move on", int,
        check=_at_least(1000))
    guarantee: str = _setting(
        "at-least-once", "DVP_GUARANTEE",
        "workers' delivery guarantee: exactly-once makes each batch of frames one transaction "
        "(Apache Kafka)", str, flag="--guarantee", choices=GUARANTEES)
    stall_timeout_s: float = _setting(
        120.0, "DVP_STALL_TIMEOUT_S",
        "how long `dvp run` and `dvp publish --wait` wait without news of their job before giving up",
        float, flag="--stall-timeout", check=_at_least(1))
    connect_timeout_s: float = _setting(
        15.0, "DVP_CONNECT_TIMEOUT_S", "how long to wait for an unreachable broker before failing", float,
        check=_at_least(0.1))
    detector: str = _setting(
        "centerface", "DVP_DETECTOR",
        "face detector of the jobs published (dvp run, dvp publish), and the one workers load first: "
        "centerface (finds small and turned faces) or mediapipe (faster, misses faces under about 30 pixels "
        "and most turned ones); landmarks come from MediaPipe's face mesh either way",
        str, flag="--detector", choices=DETECTORS)
    live_detector: str = _setting(
        "mediapipe", "DVP_LIVE_DETECTOR",
        "face detector of the frames dvp live and the Live page send, which must be back within "
        "DVP_LIVE_DEADLINE_MS: mediapipe holds "
        "25 fps at 640x480 on one core; centerface finds more faces at about 4 times the cost",
        str, flag="--live-detector", choices=DETECTORS)
    min_confidence: float | None = _setting(
        None, "DVP_MIN_CONFIDENCE",
        "detections below this score are not faces (lower: fewer misses); unset: the detector's own, "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_CONFIDENCE.items()), float,
        check=lambda v: None if v is None or 0 < v < 1 else f"must be between 0 and 1, got {v:g}")
    detector_threads: int = _setting(
        1, "DVP_DETECTOR_THREADS",
        "threads of one centerface detector (worker processes are the parallelism: two workers of one thread "
        "beat one of two); 0: as many as the machine has cores", int, check=_at_least(0))
    detector_range: str = _setting(
        "both", "DVP_DETECTOR_RANGE",
        "mediapipe detector: models run on each frame: short (close-ups), full (far faces) or both", str,
        choices=("short", "full", "both"))
    tile: int = _setting(
        640, "DVP_TILE",
        "mediapipe detector: frames larger than this are also searched in overlapping tiles of this many pixels "
        "(and twice, ...): smaller finds smaller faces in large frames, and costs more", int, check=_at_least(192))
    crash_retries: int = _setting(
        2, "DVP_CRASH_RETRIES",
        "times a frame whose worker died processing it is tried again before it is set aside", int,
        check=_at_least(0))
    reorder_frames: int = _setting(
        2000, "DVP_REORDER_FRAMES",
        "frames the aggregator holds while they wait for an earlier one; past this the job fails", int,
        check=_at_least(1))
    reorder_mb: int = _setting(
        512, "DVP_REORDER_MB", "megabytes of such frames the aggregator holds for one job", int,
        check=_at_least(1))
    held_mb: int = _setting(
        2048, "DVP_HELD_MB",
        "megabytes of such frames one aggregator holds across its jobs; past this the job holding the most fails",
        int, check=_at_least(1))
    max_open_jobs: int = _setting(
        64, "DVP_MAX_OPEN_JOBS",
        "jobs one aggregator assembles at once (each holds a video encoder); a job started past this fails: "
        "run more aggregators, or raise it", int, check=_at_least(1))
    max_audio_mb: int = _setting(
        1024, "DVP_MAX_AUDIO_MB", "megabytes of sound one job may bring to the aggregator; past this it fails",
        int, check=_at_least(1))
    strict_reach: int = _setting(
        12, "DVP_STRICT_REACH",
        "--privacy strict: frames a face is tracked across; a detector's miss up to this long is covered, "
        "and the aggregator holds this many frames before writing them", int, check=_between(1, 250))
    job_idle_timeout_s: float = _setting(
        900.0, "DVP_JOB_IDLE_TIMEOUT_S",
        "a job with no record for this long fails (its publisher died) and its work files go", float,
        check=_at_least(1))
    home: Path = _setting(Path.home() / ".dvp", "DVP_HOME",
                          "state of the local stack: logs, pids, aggregator work files", Path)
    output_dir: Path | None = _setting(
        None, "DVP_OUTPUT_DIR", "the aggregator's store of finished videos, JOB_ID.mp4 (default HOME/output)",
        Path)
    clickhouse_dsn: str | None = _setting(
        None, "DVP_CLICKHOUSE_DSN",
        "the metrics store, a ClickHouse server, e.g. http://user:password@host:8123/db; "
        "unset: embedded chDB under HOME/store", str, check=_dsn)
    secret: str | None = _setting(
        None, "DVP_SECRET",
        "the secret the aggregator signs finished jobs with, and their publishers check: the same on every "
        "machine of a cluster; unset: the one in HOME/secret, made on first use", str)
    live_deadline_ms: int = _setting(
        150, "DVP_LIVE_DEADLINE_MS",
        "`dvp live`: a frame not shown this long after its capture is skipped (workers drop it too)", int,
        check=_between(10, 10_000))
    live_full_every: int = _setting(
        0, "DVP_LIVE_FULL_EVERY",
        "live frames: a camera's frames per search of the whole frame, the others searched only around the "
        "faces found (a face entering the picture waits for the next whole search); 1: every frame searched "
        "whole; 0: as few as keep the worker up with the camera", int, check=_between(0, 30))
    webrtc_loopback: bool = _setting(
        False, "DVP_WEBRTC_LOOPBACK",
        "the Live page offers the browser only 127.0.0.1 to connect to: for a browser on this machine "
        "where no other address exists (tests in a network namespace with only loopback)", boolean)
    dashboard_port: int = _setting(
        8501, "DVP_DASHBOARD_PORT", "port of `dvp dashboard` (127.0.0.1 unless --address says otherwise)", int,
        flag="--port", check=_between(1, 65535))
    crf: int = _setting(18, "DVP_CRF", "H.264 quality of the output (0-51, lower is better)", int,
                        check=_between(0, 51))
    preset: str = _setting("veryfast", "DVP_PRESET", "x264 speed preset of the output", str, choices=(
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = f.metadata["check"]
            problem = check(getattr(self, f.name)) if check is not None else None
            if problem is not None:
                flag = f" ({f.metadata['flag']})" if f.metadata["flag"] else ""
                raise DvpError(f"{f.metadata['env']}{flag} {problem}")
        parse_kafka_config(self.kafka_config)

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or "127.0.0.1:9092"

    @cached_property
    def names(self) -> Names:
        return Names.with_prefix(self.topic_prefix)

    @property
    def topic_layout(self) -> dict[str, int]:
        """Every topic of the pipeline and its partitions."""
        names = self.names
        sized = {"frames": self.frames_partitions, "processed": self.processed_partitions, **FIXED_PARTITIONS}
        return {getattr(names, topic): parts for topic, parts in sized.items()}

    @property
    def outputs(self) -> Path:
        return self.output_dir or self.home / "output"

    def client_config(self, **ours: Any) -> dict:
        """confluent-kafka config: our defaults, then the user's settings on top."""
        return {"bootstrap.servers": self.bootstrap, **ours, **parse_kafka_config(self.kafka_config)}

    @cached_property
    def signing_key(self) -> bytes:
        return self.secret.encode() if self.secret else key_file(self.home)

    def shown(self) -> dict[str, str]:
        """These settings as `to_env` has them, with every secret masked: for printing."""
        env = self.to_env()
        if self.secret:
            env["DVP_SECRET"] = MASK
        if self.clickhouse_dsn:
            env["DVP_CLICKHOUSE_DSN"] = masked_dsn(self.clickhouse_dsn)
        if self.kafka_config:
            env["DVP_KAFKA_CONFIG"] = ",".join(
                f"{k}={MASK if is_secret(k) else v}" for k, v in parse_kafka_config(self.kafka_config).items())
        return env

    def scrubbed(self, text: str) -> str:
        """`text` with every secret value of these settings masked: for errors and logs."""
        found = [self.secret or ""] + [v for k, v in parse_kafka_config(self.kafka_config).items() if is_secret(k)]
        return _masked(text, found + dsn_secrets(self.clickhouse_dsn or ""))

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, for the processes we start."""
        env = {}
        for f in dataclasses.fields(self):
            value = self.bootstrap if f.name == "bootstrap_servers" else getattr(self, f.name)
            if value not in (None, ()):
                env[f.metadata["env"]] = ",".join(value) if isinstance(value, tuple) else str(value)
        return env

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def load(cls, environ: Mapping[str, str] = os.environ, flags: Mapping[str, Any] | None = None) -> Settings:
        """Defaults, overridden by the environment, overridden by flags (by field name)."""
        flags = flags or {}
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw not in (None, ""):
                values[f.name] = _parse(f, raw, f.metadata["env"])
            if flags.get(f.name) not in (None, (), []):
                values[f.name] = _parse(f, flags[f.name], f.metadata["flag"] or f.name)
        return cls(**values)


def _parse(f: dataclasses.Field, raw: Any, source: str) -> Any:
    parse = f.metadata["parse"]
    try:
        return parse(raw)
    except ValueError:
        raise DvpError(f"{source}: {raw!r} is not a valid {getattr(parse, '__name__', 'value')}") from None


def flag_settings() -> list[dataclasses.Field]:
    """The settings that have a command-line flag."""
    return [f for f in dataclasses.fields(Settings) if f.metadata["flag"]]


def parse_kafka_config(items: Iterable[str]) -> dict:
    conf = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DvpError(f"Kafka setting {item!r} is not KEY=VALUE")
        conf[key.strip()] = value.strip()
    return conf


MASK = "***"
_SECRET_NAME = re.compile(r"password|secret|token|key", re.IGNORECASE)


def is_secret(name: str) -> bool:
    """A client setting whose value is not printed (sasl.password, ssl.key.password, ...)."""
    return bool(_SECRET_NAME.search(name))


def dsn_secrets(dsn: str) -> list[str]:
    """The passwords a DSN holds, in its user-info or its query."""
    parts = urlsplit(dsn)
    found = [parts.password] if parts.password else []
    pairs = (item.partition("=") for item in parts.query.split("&"))  # as written: it is masked as written
    return found + [v for k, _, v in pairs if is_secret(k) and v]


def masked_dsn(dsn: str) -> str:
    return _masked(dsn, dsn_secrets(dsn))


def _masked(text: str, values: list[str]) -> str:
    for value in sorted({v for v in values if v}, key=len, reverse=True):  # longest first: no partial masks
        text = text.replace(value, MASK)
    return text


def describe() -> list[tuple[str, str, str]]:
    """(variable, flag, help) for every setting: what `dvp config` and the README's table show."""
    return [(f.metadata["env"], f.metadata["flag"] or "", f.metadata["help"])
            for f in dataclasses.fields(Settings)]
