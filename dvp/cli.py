"""The `dvp` command. Every DvpError becomes one stderr line and exit status 1."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dvp import __version__
from dvp.config import Settings, describe, flag_settings
from dvp.errors import DvpError
from dvp.messages import PRIVACY_MODES, printable

if TYPE_CHECKING:
    from dvp.infra.processes import Service
    from dvp.media import SourceOptions

# A live worker keeps two threads busy (its frames, and the full searches beside them):
# on 2 cores a second one competes with the first (1920x1080: 121-129 of 150 frames shown,
# against 142-144 with one).
LIVE_WORKERS = 1 if (os.cpu_count() or 1) < 4 else 2


def _setting_flag(parser: argparse.ArgumentParser, setting: dataclasses.Field) -> None:
    """A flag built from the setting's declaration in dvp/config.py."""
    meta = setting.metadata
    repeatable = setting.default == ()
    parser.add_argument(meta["flag"], dest=setting.name, choices=meta["choices"],
                        action="append" if repeatable else "store",
                        help=f"{meta['help']} (env {meta['env']})")


def _common() -> argparse.ArgumentParser:
    """Flags every command that talks to Kafka takes."""
    common = argparse.ArgumentParser(add_help=False)
    for setting in flag_settings():
        if setting.name not in OWN_FLAGS:
            _setting_flag(common, setting)
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    return common


# Settings whose flags only some commands take.
OWN_FLAGS = ("guarantee", "stall_timeout_s", "dashboard_port")
FILTER_HELP = "filter spec, e.g. blur, pixelate:blocks=8, or filters in order: 'pixelate|mesh' (dvp filters)"


def _own_flag(parser: argparse.ArgumentParser, name: str) -> None:
    _setting_flag(parser, next(f for f in flag_settings() if f.name == name))


def _privacy_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--privacy", choices=PRIVACY_MODES,
                        help="strict (default): faces tracked over neighbouring frames, so a frame where the "
                             "detector misses is still covered; per-frame: each frame's own detections only "
                             "(filtered by the workers, no look-ahead)")


def _source_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audio-track", type=int, metavar="N",
                        help="keep only the Nth audio track (1 is the first; default: every track)")
    parser.add_argument("--keep-metadata", action="store_true",
                        help="keep every tag of the source, location and device included (default: title, "
                             "creation time and other tags that describe the video; the rest is stripped)")


def _source_options(args: argparse.Namespace) -> SourceOptions:
    from dvp.media import SourceOptions
    return SourceOptions(audio_track=args.audio_track, keep_metadata=args.keep_metadata)


def _notes(notes: list[str]) -> list[str]:
    """A job's notes as terminal lines; they come from a topic: no control characters."""
    return [f"note      {printable(note)}" for note in notes]


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="dvp", description="Distributed video face filters on Kafka.")
    parser.add_argument("--version", action="version", version=f"dvp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", parents=[common], help="filter one video end to end and wait for it")
    p.set_defaults(handler=_run)
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="output MP4")
    p.add_argument("--filter", default="blur", help=FILTER_HELP)
    _privacy_flag(p)
    _source_flags(p)
    p.add_argument("--workers", type=int, default=2, help="worker processes to start (default 2)")
    _own_flag(p, "guarantee")
    _own_flag(p, "stall_timeout_s")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("publish", parents=[common], help="publish a video as a job")
    p.set_defaults(handler=_publish)
    p.add_argument("input")
    p.add_argument("--filter", required=True, help=FILTER_HELP)
    _privacy_flag(p)
    _source_flags(p)
    p.add_argument("--job-id", help="job id (default: file name plus a random suffix)")
    p.add_argument("--wait", action="store_true", help="wait until the job is done")
    p.add_argument("-o", "--output", help="with --wait: write the filtered video here (without --wait: "
                                          "`dvp fetch JOB -o OUT` later)")
    _own_flag(p, "stall_timeout_s")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("live", parents=[common], help="a camera through the pipeline, shown filtered as it comes")
    p.set_defaults(handler=_live)
    p.add_argument("--camera", required=True, help="a device index (0), a stream URL, or a video file played "
                                                   "at its own frame rate")
    p.add_argument("--filter", default="blur", help=FILTER_HELP)
    p.add_argument("--record", help="also write what is shown to this video file")
    p.add_argument("--view", choices=("window", "mjpeg", "none"),
                   help="a local window (default where a display exists), an MJPEG stream on 127.0.0.1 "
                        "(default elsewhere), or nothing")
    p.add_argument("--port", type=int, default=8090, help="port of the MJPEG stream (default 8090)")
    p.add_argument("--workers", type=int, default=LIVE_WORKERS,
                   help="worker processes of the private stack started where no cluster answers (default: 1 "
                        "on up to 3 cores, else 2)")

    p = sub.add_parser("fetch", parents=[common], help="write a finished job's video, by job id")
    p.set_defaults(handler=_fetch)
    p.add_argument("job_id")
    p.add_argument("-o", "--output", required=True, help="where to write it")

    p = sub.add_parser("worker", parents=[common], help="run frame workers (a consumer group)")
    p.set_defaults(handler=_worker)
    p.add_argument("--processes", type=int, default=1, help="worker processes on this machine")
    p.add_argument("--no-live", action="store_true", help="leave live camera frames to other workers")
    _own_flag(p, "guarantee")

    sub.add_parser("aggregator", parents=[common], help="run the Faust aggregator that writes the videos"
                   ).set_defaults(handler=_aggregator)
    sub.add_parser("sink", parents=[common], help="store the metrics and job events in ClickHouse (a consumer "
                                                  "group: run as many as you like against a server)"
                   ).set_defaults(handler=_sink)

    p = sub.add_parser("dashboard", parents=[common], help="serve the Streamlit dashboard (with a metrics sink)")
    p.set_defaults(handler=_dashboard)
    _own_flag(p, "dashboard_port")
    p.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a name the dashboard answers to besides 127.0.0.1, localhost, ::1 and --address "
                        "(repeatable): the name people reach it by")
    p.add_argument("--no-sink", action="store_true",
                   help="only show the store; let `dvp sink` processes fill it (a ClickHouse server)")

    p = sub.add_parser("up", parents=[common], help="start broker, workers and aggregator in the background")
    p.set_defaults(handler=_up)
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    _own_flag(p, "guarantee")
    sub.add_parser("down", parents=[common], help="stop what `dvp up` started").set_defaults(handler=_down)
    sub.add_parser("status", parents=[common], help="say what `dvp up` runs").set_defaults(handler=_status)
    sub.add_parser("topics", parents=[common], help="create the pipeline's topics on the cluster"
                   ).set_defaults(handler=_topics)

    p = sub.add_parser("kafka", parents=[common], help="Apache Kafka on this machine (KRaft, no Docker)")
    p.set_defaults(handler=_kafka)
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("--brokers", type=int, default=1, help="cluster size (default 1)")
    sub.add_parser("filters", help="list the filters and their parameters").set_defaults(handler=_filters)
    sub.add_parser("config", parents=[common], help="list every setting with its variable and value"
                   ).set_defaults(handler=_config)

    p = sub.add_parser("sample", help="write a sample clip: a real face moving, with a tone")
    p.set_defaults(handler=_sample)
    p.add_argument("output")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    p.add_argument("--no-audio", action="store_true")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.load(flags={f.name: getattr(args, f.name, None) for f in flag_settings()})


def _positive(value: int, what: str) -> int:
    if value < 1:
        raise DvpError(f"{what} must be at least 1, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a command reports when it ends: its lines for stdout, and its exit status
    (1 with an `error`, said after the lines)."""
    lines: list[str] = dataclasses.field(default_factory=list)
    status: int = 0
    error: str | None = None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(getattr(args, "verbose", 0), 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s")
    settings = None
    try:
        settings = _settings(args)
        outcome = args.handler(settings, args)
    except DvpError as exc:
        outcome = Outcome(error=str(exc))
    except KeyboardInterrupt:
        print("dvp: interrupted", file=sys.stderr)
        return 130
    if outcome.lines:
        print("\n".join(outcome.lines))
    if outcome.error is None:
        return outcome.status
    # Errors may quote records (a job's failure reason) and settings (a DSN).
    text = settings.scrubbed(outcome.error) if settings is not None else outcome.error
    print(f"dvp: error: {printable(text)}", file=sys.stderr)
    return 1


def _run(settings: Settings, args: argparse.Namespace) -> Outcome:
    from dvp.run import run_job
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwinds like Ctrl-C: the services stop
    if Path(args.output).is_dir():
        raise DvpError(f"{args.output}: is a directory; name the output file")
    summary = run_job(settings, args.input, args.output, args.filter,
                      _positive(args.workers, "--workers"), progress=not args.quiet, privacy=args.privacy,
                      options=_source_options(args))
    return Outcome(summary.lines() + _notes(summary.notes))


def _fetch(settings: Settings, args: argparse.Namespace) -> Outcome:
    from dvp.history import fetch
    from dvp.kafka_cluster import Cluster
    done = fetch(Cluster(settings), args.job_id, Path(args.output).absolute())
    return Outcome([f"{args.output} ({done.frames} frames, {done.duration_s:.2f} s of video)", *_notes(done.notes)])


def _worker(settings: Settings, args: argparse.Namespace) -> Outcome:
    _quiet_ml_logs()
    from dvp.consumers.pool import run_pool
    return Outcome(status=run_pool(settings, _positive(args.processes, "--processes"), live=not args.no_live))


def _aggregator(settings: Settings, args: argparse.Namespace) -> Outcome:
    from dvp.streams.app import run_aggregator
    run_aggregator(settings, loglevel="info" if args.verbose else "warn")
    return Outcome()


def _dashboard(settings: Settings, args: argparse.Namespace) -> Outcome:
    from dvp.dashboard.serve import serve
    serve(settings, args.address, settings.dashboard_port, sink=not args.no_sink, allow_hosts=tuple(args.allow_host))
    return Outcome()


def _service_lines(services: list[Service], state: Callable[[Service], str]) -> list[str]:
    return [f"{s.name:<12} pid {s.pid:<8} {state(s):<8} log {s.log}" for s in services] or ["nothing runs"]


def _running_or_dead(service: Service) -> str:
    return "running" if service.alive else "dead"


def _up(settings: Settings, args: argparse.Namespace) -> Outcome:
    from dvp.infra import stack
    services = stack.up(settings, _positive(args.workers, "--workers"))
    return Outcome([f"bootstrap servers: {settings.bootstrap}", f"dashboard: http://127.0.0.1:{settings.dashboard_port}",
                    *_service_lines(services, _running_or_dead)])


def _down(settings: Settings, _args: argparse.Namespace) -> Outcome:
    from dvp.infra import stack
    return Outcome(_service_lines(stack.down(settings), lambda _s: "stopped"))


def _status(settings: Settings, _args: argparse.Namespace) -> Outcome:
    from dvp.dashboard.summary import summary_lines
    from dvp.infra import stack
    from dvp.kafka_cluster import Cluster
    lines = _service_lines(stack.status(settings), _running_or_dead)
    return Outcome(lines + [printable(line) for line in summary_lines(Cluster(settings))])  # worker names: from records


def _kafka(settings: Settings, args: argparse.Namespace) -> Outcome:
    from dvp.infra.kafka import cluster as apache
    home = settings.home / "kafka"
    if args.action == "up":
        cluster = apache.up(home, _positive(args.brokers, "--brokers"))
        return Outcome([f"bootstrap servers: {cluster.bootstrap}",
                        f"use it: export DVP_BOOTSTRAP_SERVERS={cluster.bootstrap}"])
    return Outcome([f"{s.name:<12} pid {s.pid:<8} stopped" for s in apache.down(home)])


def _topics(settings: Settings, _args: argparse.Namespace) -> Outcome:
    from dvp.kafka_cluster import Cluster
    Cluster(settings).ensure_topics()
    return Outcome([f"{name:<24} {parts} partitions" for name, parts in settings.topic_layout.items()])


def _filters(_settings: Settings, _args: argparse.Namespace) -> Outcome:
    from dvp.filters import FILTERS, MAX_STEPS
    lines = []
    for f in FILTERS.values():
        lines.append(f"{f.name:<12} {f.summary}")
        lines += [f"    {key}={p.default:g}  ({p.low:g}..{p.high:g}) {p.help}" for key, p in f.params.items()]
    return Outcome([*lines, f"\nA spec is NAME or NAME:key=value,key=value; up to {MAX_STEPS} joined by | are "
                                  "applied in order, e.g. --filter 'pixelate:blocks=12|mesh'."])


def _config(settings: Settings, _args: argparse.Namespace) -> Outcome:
    shown = settings.shown()
    return Outcome([f"{env:<26} {shown.get(env, '')!s:<28} {help_text}" for env, _flag, help_text in describe()])


def _sample(_settings: Settings, args: argparse.Namespace) -> Outcome:
    from dvp.sample import write_sample
    width, _, height = args.size.partition("x")
    try:
        size = (int(width), int(height))
    except ValueError:
        raise DvpError(f"--size must be WIDTHxHEIGHT, got {args.size!r}") from None
    write_sample(args.output, seconds=args.seconds, width=size[0], height=size[1], audio=not args.no_audio)
    return Outcome([args.output])


def _launched() -> float:
    """When this process started, on time.monotonic()'s clock (Linux; else now)."""
    import time
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return time.monotonic()
    return time.monotonic() - max(uptime - ticks / os.sysconf("SC_CLK_TCK"), 0.0)


def _live(settings: Settings, args: argparse.Namespace) -> Outcome:
    import contextlib
    import threading

    from dvp.infra import tansu
    from dvp.infra.stack import LOCAL_PORT, Stack
    from dvp.kafka_cluster import Cluster
    from dvp.producers.live import default_view, run_live
    started = _launched()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    _quiet_ml_logs()
    workers = _positive(args.workers, "--workers")
    with contextlib.ExitStack() as private:
        if settings.bootstrap_servers is None and not tansu.port_open(LOCAL_PORT):
            print(f"no cluster at {settings.bootstrap} (`dvp up` starts one): a private one for this session, "
                  f"{workers} worker{'s' if workers > 1 else ''}, gone when it ends", file=sys.stderr, flush=True)
            cluster = private.enter_context(Stack.running(settings, workers, live=True, files=False)).cluster
        else:
            cluster = Cluster(settings)
        stats = run_live(cluster, args.camera, args.filter, Path(args.record) if args.record else None,
                         args.view or default_view(), _positive(args.port, "--port"), stop, started)
    return Outcome(stats.lines() + ([f"recorded  {args.record}"] if args.record else []), error=stats.error)


def _sink(settings: Settings, _args: argparse.Namespace) -> Outcome:
    import threading

    from dvp.dashboard.sink import MetricsSink
    from dvp.kafka_cluster import Cluster
    from dvp.store import Store
    store = Store(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sink = MetricsSink(Cluster(settings), store)
    print(f"storing {settings.names.metrics} and {settings.names.jobs} in {store.where}", flush=True)
    try:
        sink.run(stop)
    finally:
        sink.close()
        store.close()
    return Outcome()


def _publish(settings: Settings, args: argparse.Namespace) -> Outcome:
    from dvp.kafka_cluster import Cluster
    from dvp.producers.publish import publish
    from dvp.producers.watch import JobWatcher
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwinds like Ctrl-C
    if args.output is not None and not args.wait:
        raise DvpError("-o needs --wait; without it, write the video later with `dvp fetch JOB -o OUT`")
    output = Path(args.output).absolute() if args.output is not None else None
    cluster = Cluster(settings)
    watcher = JobWatcher(cluster) if args.wait else None
    try:
        published = publish(cluster, args.input, args.filter, job_id=args.job_id, progress=not args.quiet,
                            privacy=args.privacy, options=_source_options(args))
        said = f"published {published.frames} frames as job {published.start.job_id}"
        if watcher is None:
            return Outcome([said])
        print(said, flush=True)  # now: the wait may be long
        done = watcher.wait(published.start.job_id, published.frames, progress=not args.quiet,
                            timeout=settings.stall_timeout_s, save_to=output)
        where = output or printable(done.output)
        return Outcome([f"completed: {where} ({done.frames} frames, {done.faces} faces)", *_notes(done.notes)])
    finally:
        if watcher is not None:
            watcher.close()


def _quiet_ml_logs() -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
