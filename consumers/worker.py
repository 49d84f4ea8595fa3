"""`dvp worker`: one consumer-group member in this process. Builds the
clients, hands them to the loop of the chosen guarantee, and closes them."""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid

from confluent_kafka import Consumer

from dvp import kafka
from dvp.config import Settings
from dvp.consumers.at_least_once import AtLeastOnceLoop
from dvp.consumers.attempts import AttemptLog
from dvp.consumers.exactly_once import TransactionalLoop
from dvp.consumers.frames import FrameProcessor, WorkerIdentity
from dvp.consumers.live import LiveLoop
from dvp.faces import Detectors
from dvp.kafka_cluster import Cluster

log = logging.getLogger("dvp.worker")


def _local_ip(bootstrap: str) -> str:
    """The address this host uses to reach the cluster (no packet is sent)."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host.strip("[]") or "127.0.0.1", int(port or 9092)))
            return s.getsockname()[0]
    except (OSError, ValueError):
        return "127.0.0.1"


def _producer(settings: Settings, worker_id: str, exactly_once: bool) -> kafka.ReliableProducer:
    if not exactly_once:
        return kafka.ReliableProducer(settings)
    # A dead worker's open transaction blocks its partitions until it times out:
    # keep that short (a transaction is one batch of frames, well under a second).
    return kafka.ReliableProducer(settings, transactional_id=f"{settings.names.workers}-{worker_id}",
                                  **{"transaction.timeout.ms": 10000})


def _consumer(settings: Settings, worker_id: str, exactly_once: bool) -> Consumer:
    return kafka.consumer(settings, **{
        "group.id": settings.names.workers,
        # At-least-once: offsets stored after delivery, committed in the background.
        # Exactly-once: offsets committed inside each transaction, nowhere else.
        "enable.auto.offset.store": False,
        "enable.auto.commit": not exactly_once,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "fetch.wait.max.ms": kafka.FETCH_MAX_WAIT_MS,
        "client.id": worker_id})


def run_worker(settings: Settings, live: bool = True) -> None:
    """One worker in this process, until SIGTERM or SIGINT; with `live`, it also
    takes live camera frames on a thread of its own."""
    host, pid = socket.gethostname(), os.getpid()
    # The suffix tells apart two lives of a container, which keep its host name and often its pid.
    identity = WorkerIdentity(f"{host}-{pid}-{uuid.uuid4().hex[:4]}", host, _local_ip(settings.bootstrap), pid)
    exactly_once = settings.guarantee == "exactly-once"
    cluster = Cluster.reach(settings)
    cluster.ensure_topics()
    consumer = _consumer(settings, identity.id, exactly_once)
    detectors = Detectors.of(settings, ready=(settings.detector,))
    processor = FrameProcessor(settings.names, detectors, identity, settings.jpeg_quality, settings.max_pixels)
    stop = threading.Event()
    attempts = AttemptLog(cluster, identity.id, settings.crash_retries, stop)
    loop: TransactionalLoop | AtLeastOnceLoop
    if exactly_once:  # a fenced producer is replaced: the loop makes its own
        loop = TransactionalLoop(consumer, lambda: _producer(settings, identity.id, True), processor, attempts)
    else:
        loop = AtLeastOnceLoop(consumer, _producer(settings, identity.id, False), processor, attempts)
    log.info("worker %s consuming %s (%s)", identity.id, settings.names.frames, settings.guarantee)
    # Until here a signal ends the process at once; from here on the loop
    # finishes its in-flight frames first.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    live_loop = LiveLoop(settings, identity, stop) if live else None
    if live_loop is not None:
        live_loop.start()
    try:
        loop.run(settings.names.frames, stop)
    finally:
        stop.set()
        if live_loop is not None:
            live_loop.join(timeout=15)
        consumer.close()  # commits what was stored, leaves the group at once
        attempts.close()
        detectors.close()
        log.info("worker %s stopped after %d frames (%d dead letters)",
                 identity.id, processor.processed, processor.dead_letters)
