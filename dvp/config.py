"""The one settings object: every knob, its environment variable and its help.

Precedence: CLI flag > environment variable > default. Kafka client settings
(`--kafka-config KEY=VALUE`, `DVP_KAFKA_CONFIG="k=v,k=v"`) are passed to
confluent-kafka untouched, so security, SASL and TLS work as they do anywhere.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from dvp.errors import DvpError


GUARANTEES = ("at-least-once", "exactly-once")


def _setting(default, env: str, help: str, flag: Optional[str] = None):
    return field(default=default, metadata={"env": env, "help": help, "flag": flag})


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: Optional[str] = _setting(
        None, "DVP_BOOTSTRAP_SERVERS",
        "Kafka bootstrap servers; unset: the local broker of `dvp up` (127.0.0.1:9092), "
        "or for `dvp run` a private embedded broker", "--bootstrap-servers")
    kafka_config: tuple = _setting(
        (), "DVP_KAFKA_CONFIG",
        "extra Kafka client settings KEY=VALUE, passed through untouched (repeatable flag; "
        "comma-separated in the variable)", "--kafka-config")
    topic_prefix: str = _setting("dvp.", "DVP_TOPIC_PREFIX", "prefix of every topic name")
    frames_partitions: int = _setting(
        32, "DVP_FRAMES_PARTITIONS", "partitions of the frames topic (the most workers that can share a job)")
    processed_partitions: int = _setting(8, "DVP_PROCESSED_PARTITIONS", "partitions of the processed topic")
    replication_factor: int = _setting(1, "DVP_REPLICATION_FACTOR", "replication factor of created topics")
    jpeg_quality: int = _setting(90, "DVP_JPEG_QUALITY", "JPEG quality of frames on the wire (1-100)",
                                 "--jpeg-quality")
    session_timeout_ms: int = _setting(
        6000, "DVP_SESSION_TIMEOUT_MS",
        "consumer group session timeout: how soon a dead worker's partitions move on")
    guarantee: str = _setting(
        "at-least-once", "DVP_GUARANTEE",
        "workers' delivery guarantee: at-least-once, or exactly-once (transactions; Apache Kafka)",
        "--guarantee")
    connect_timeout_s: float = _setting(
        15.0, "DVP_CONNECT_TIMEOUT_S", "how long to wait for an unreachable broker before failing")
    home: Path = _setting(Path.home() / ".dvp", "DVP_HOME",
                          "state of the local stack: logs, pids, aggregator work files")
    output_dir: Optional[Path] = _setting(
        None, "DVP_OUTPUT_DIR", "where the aggregator writes jobs that name no output (default HOME/output)")
    crf: int = _setting(18, "DVP_CRF", "H.264 quality of the output (0-51, lower is better)")
    preset: str = _setting("veryfast", "DVP_PRESET", "x264 speed preset of the output")

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or "127.0.0.1:9092"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def outputs(self) -> Path:
        return self.output_dir or self.home / "output"

    def client_config(self, **ours) -> dict:
        """confluent-kafka config: our defaults, then the user's settings on top."""
        conf = {"bootstrap.servers": self.bootstrap, **ours}
        conf.update(parse_kafka_config(self.kafka_config))
        return conf

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, for the processes we start."""
        env = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "bootstrap_servers":
                value = self.bootstrap
            if value not in (None, ()):
                env[f.metadata["env"]] = ",".join(value) if isinstance(value, tuple) else str(value)
        return env

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def load(cls, environ=os.environ, **flags) -> "Settings":
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw not in (None, ""):
                values[f.name] = _convert(f, raw)
            if flags.get(f.name) not in (None, ()):
                values[f.name] = _convert(f, flags[f.name])
        settings = cls(**values)
        if settings.guarantee not in GUARANTEES:
            raise DvpError(f"guarantee must be one of {', '.join(GUARANTEES)}, got {settings.guarantee!r}")
        return settings


def _convert(f: dataclasses.Field, raw):
    if f.name == "kafka_config":
        return tuple(raw.split(",")) if isinstance(raw, str) else tuple(raw)
    kind = type(f.default) if f.default is not None else str
    if f.name == "output_dir":
        kind = Path
    try:
        return kind(raw)
    except ValueError:
        raise DvpError(f"{f.metadata['env']}: {raw!r} is not a valid {kind.__name__}") from None


def parse_kafka_config(items) -> dict:
    conf = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DvpError(f"Kafka setting {item!r} is not KEY=VALUE")
        conf[key.strip()] = value.strip()
    return conf


def describe() -> list[tuple[str, str, str]]:
    """(variable, flag, help) for every setting: what the README's table shows."""
    return [(f.metadata["env"], f.metadata["flag"] or "", f.metadata["help"])
            for f in dataclasses.fields(Settings)]
