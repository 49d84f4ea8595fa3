"""The Faust app: `dvp aggregator` runs it.

One agent reads the processed topic; the assembly work (JPEG decode, H.264
encode, final mux, replays) runs on one worker thread so the event loop keeps
heart-beating. Per-job progress is kept in a Faust table; job events go to
the jobs topic."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust

from dvp import kafka
from dvp.config import Settings, parse_kafka_config
from dvp.errors import BrokerError, MalformedRecord
from dvp.kafka_cluster import Cluster
from dvp.messages import JOBS, RESULTS, JobCompleted, JobFailed, JobProgress
from dvp.results import result_chunks
from dvp.signing import signed
from dvp.streams.aggregator import Aggregator
from dvp.streams.assembler import AssemblyOptions
from dvp.streams.journal import Journal
from dvp.streams.watchdog import Watchdog, start_again

log = logging.getLogger("dvp.aggregator")
WATCH_EVERY_S = 5.0  # how often the watchdog looks
ADOPT_EVERY_S = 2.0  # how often unfinished jobs of held partitions are looked for
PRUNE_EVERY_S = 3600.0  # how often the journal forgets jobs whose records have left the log


def _credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """Map the pass-through librdkafka security settings onto Faust's."""
    conf = parse_kafka_config(settings.kafka_config)
    protocol = conf.get("security.protocol", "PLAINTEXT").upper()
    ssl_context = None
    if protocol in ("SSL", "SASL_SSL"):
        ssl_context = faust.auth.ssl.create_default_context(cafile=conf.get("ssl.ca.location"))
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=conf.get("sasl.username"), password=conf.get("sasl.password"),
            mechanism=conf.get("sasl.mechanism", "PLAIN"), ssl_context=ssl_context)
    return faust.SSLCredentials(ssl_context) if ssl_context else None


def _progress_row(event: JobProgress | JobCompleted | JobFailed) -> dict:
    if isinstance(event, JobProgress):
        return {"status": "running", "written": event.frames_written, "total": event.frame_count}
    if isinstance(event, JobCompleted):
        return {"status": "completed", "written": event.frames, "total": event.frames, "output": event.output}
    return {"status": "failed", "reason": event.reason}


def create_app(cluster: Cluster) -> faust.App:
    """The app, on the cluster's settings; the topics Faust creates are replicated
    as dvp's own (Cluster.replication_factor)."""
    settings = cluster.settings
    work_dir = settings.home / "aggregator"
    signing_key = settings.signing_key  # read (or made) at the start: a bad HOME fails now, not at a job's end
    replication = cluster.replication_factor()
    app = faust.App(
        settings.names.aggregator,
        broker=[f"kafka://{server.strip()}" for server in settings.bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        store="memory://",
        datadir=str(work_dir / "faust"),
        web_enabled=False,
        topic_partitions=settings.processed_partitions,
        topic_replication_factor=replication,
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=kafka.heartbeat_ms(settings.session_timeout_ms) / 1000,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        producer_max_request_size=4 * 1024 * 1024,
    )
    processed = app.topic(settings.names.processed, key_serializer="raw", value_serializer="raw",
                          partitions=settings.processed_partitions)
    jobs = app.topic(settings.names.jobs, key_serializer="raw", value_serializer="raw")
    results = app.topic(settings.names.results, key_serializer="raw", value_serializer="raw")
    dead_letters = app.topic(settings.names.deadletter, key_serializer="raw", value_serializer="raw")
    progress = app.Table("job-progress", default=None, key_type=str, use_partitioner=True,
                         partitions=settings.processed_partitions)
    # Keyed by job id and placed by the key's partitioner, so each entry sits on the
    # partition of its job's records and moves with it.
    journal = Journal(app.Table("job-journal", default=None, key_type=str, use_partitioner=True,
                                partitions=settings.processed_partitions))
    aggregator = Aggregator(
        journal, work_dir, settings.outputs,
        AssemblyOptions(settings.crf, settings.preset, settings.reorder_frames, settings.reorder_mb * 1_000_000,
                        settings.strict_reach, settings.max_pixels, settings.max_audio_mb * 1_000_000),
        replay=lambda partition, offset: ((o, value) for o, _key, value in kafka.read_partition(
            settings, settings.names.processed, partition, offset)),
        idle_timeout_s=settings.job_idle_timeout_s,
        max_open_jobs=settings.max_open_jobs, max_held_bytes=settings.held_mb * 1_000_000)
    # One thread: the assembly is serial, and the event loop stays free.
    assembly = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assembly")
    watchdog = Watchdog()
    offsets_reader = kafka.consumer(settings, **{"group.id": settings.names.replay, "enable.auto.commit": False})

    async def in_assembly(work: Callable[..., Any], *args: Any) -> Any:
        """Run aggregator work on the assembly thread; its journal writes are saved
        here, on the event loop, which alone may write a Faust table."""
        try:
            return await asyncio.get_running_loop().run_in_executor(assembly, work, *args)
        finally:
            journal.save()

    async def deliver(topic: faust.TopicT, key: bytes | None, value: bytes, **extra: Any) -> None:
        """Send a record and wait until Kafka has it: one never delivered is a stall."""
        with watchdog.delivering(f"a record to {topic.get_topic_name()}"):
            try:
                await (await topic.send(key=key, value=value, **extra))
            except Exception as exc:  # the client gave up on it: it is lost unless we start again
                start_again(f"a record to {topic.get_topic_name()} was refused ({exc})")

    async def publish(events: Iterable[JobProgress | JobCompleted | JobFailed]) -> None:
        """Send the job events, a finished video's pieces before its JobCompleted; then
        journal the outcomes as announced."""
        for event in events:
            key = event.job_id.encode()
            if isinstance(event, JobCompleted) and not Path(event.output).is_file():
                # Announced again by an aggregator on another machine than the one that wrote it.
                event = JobFailed(event.job_id, f"its video was written to {event.output} on another "
                                                f"aggregator's disk, which is not here; publish it again")
            if isinstance(event, JobCompleted):
                chunks = result_chunks(event.job_id, Path(event.output))
                while (chunk := await in_assembly(next, chunks, None)) is not None:
                    await deliver(results, key, RESULTS.encode(chunk))
            # A job's first progress goes out with its publishing time as the record's
            # time: its wall time starts there, not when this aggregator first read it.
            first = isinstance(event, JobProgress) and event.frames_written == 0
            when = await in_assembly(aggregator.published_at, event.job_id, time.time()) if first else None
            if isinstance(event, JobCompleted):  # its publisher believes it only with the cluster's secret
                event = signed(signing_key, event)
            await deliver(jobs, key, JOBS.encode(event), timestamp=when)
            if not isinstance(event, JobProgress):
                await in_assembly(aggregator.announced, event.job_id)
            try:
                progress[event.job_id] = _progress_row(event)
            except Exception:  # the table is for watching; it must not stop the assembly
                log.exception("cannot update the progress table for %s", event.job_id)

    @app.agent(processed)
    async def assemble(stream: faust.StreamT) -> None:
        async for event in stream.events():
            with watchdog.handling():
                await handle(event)

    async def handle(event: faust.EventT) -> None:
        msg = event.message
        try:
            out = await in_assembly(aggregator.handle, msg.partition, msg.offset, event.value)
        except MalformedRecord as exc:  # set aside with where it came from, and go on
            log.warning("dead letter %d, %s[%d]@%d: %s", aggregator.malformed, msg.topic, msg.partition,
                        msg.offset, exc)
            await deliver(dead_letters, event.key, event.value or b"", headers=kafka.dead_letter_headers(
                str(exc), msg.topic, msg.partition, msg.offset))
            return
        await publish(out)

    def held_partitions() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == settings.names.processed}

    @app.on_partitions_assigned.connect
    async def keep_held_jobs(_app: faust.App, /, *args: Any, signal: Any, **_kwargs: Any) -> None:
        """Jobs of partitions gone to another aggregator are its to finish, from the journal."""
        assigned = args[0]  # the signal's argument: the topic partitions held now
        await in_assembly(aggregator.keep_only, {tp.partition for tp in assigned
                                                 if tp.topic == settings.names.processed})

    async def records_behind() -> dict[int, int]:
        """{held processed partition: records the broker has past the client's position}."""
        behind = {}
        for tp in app.consumer.assignment():
            if tp.topic != settings.names.processed:
                continue
            try:
                _, end = await asyncio.to_thread(kafka.watermarks, offsets_reader, tp.topic, tp.partition, 5.0)
            except BrokerError:
                continue  # the broker cannot say now: no evidence either way
            try:
                position = await asyncio.wait_for(app.consumer.position(tp), 5.0)
            except TimeoutError:  # the client cannot even say where it is
                behind[tp.partition] = max(end, 1)
                continue
            if position is not None:
                behind[tp.partition] = end - position
        return behind

    @app.timer(interval=WATCH_EVERY_S)
    async def watch_for_stalls() -> None:
        if app.rebalancing or app.in_recovery:
            watchdog.rest()
            return
        why = watchdog.stall(await records_behind() if watchdog.idle_too_long() else {})
        if why is not None:
            start_again(why)

    @app.timer(interval=ADOPT_EVERY_S)
    async def adopt_jobs() -> None:
        """Jobs of partitions this process holds that nobody is finishing (after a start,
        a crash or a rebalance) finish even if no new record of theirs arrives."""
        if app.rebalancing or app.in_recovery:
            return  # the journal is not whole yet
        unfinished = list(journal.unfinished(held_partitions()))
        if unfinished:
            await publish(await in_assembly(aggregator.adopt, unfinished))

    @app.timer(interval=min(settings.job_idle_timeout_s / 4, 30.0))
    async def expire_idle_jobs() -> None:
        await publish(await in_assembly(aggregator.expire))

    @app.timer(interval=PRUNE_EVERY_S)
    async def prune_journal() -> None:
        """A job is journaled until its records have left the processed topic: read again
        before that, they must not start it again. The topic's retention is asked each
        time, as an operator may change it."""
        lifetime = await asyncio.to_thread(cluster.record_lifetime_s, settings.names.processed)
        if lifetime is not None and (pruned := journal.prune(time.time() - lifetime)):
            log.info("journal: %d jobs ended over %.0f s ago forgotten", pruned, lifetime)

    return app


def run_aggregator(settings: Settings, loglevel: str = "warn") -> None:
    cluster = Cluster(settings)
    app = create_app(cluster)
    # Faust would create its tables' changelogs itself, but asynchronously: on a cluster
    # without auto-creation the first table write can race that and crash the agent.
    cluster.ensure_topics(compacted={
        table.changelog_topic.get_topic_name(): table.partitions for table in app.tables.values()})
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
