"""`dvp worker --processes N`: N worker processes, one consumer-group member each
(MediaPipe and OpenCV run one frame at a time, so processes give the parallelism).
A process that dies is started again, after a back-off that grows while it
keeps dying; each ends with the pool, however the pool ends."""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from types import FrameType

from dvp.config import Settings
from dvp.consumers.worker import run_worker
from dvp.errors import DvpError
from dvp.parent import die_with_parent

log = logging.getLogger("dvp.worker")
BACKOFF_S = (1, 2, 4, 8, 16, 30, 60)  # waits before restarting a process that keeps dying
STEADY_S = 60  # a process that ran this long starts the back-off afresh when it dies


def _child(settings: Settings, live: bool, level: int, parent: int) -> None:
    die_with_parent(parent)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s[%(process)d] %(message)s")
    try:
        run_worker(settings, live)
    except DvpError as exc:
        log.error("%s", exc)
        sys.exit(1)


class _Slot:
    """One of the N processes, as it is now."""

    def __init__(self) -> None:
        self.process: multiprocessing.process.BaseProcess | None = None
        self.started = 0.0
        self.failures = 0
        self.restart_at = 0.0


def run_pool(settings: Settings, processes: int, live: bool = True) -> int:
    if processes == 1:
        run_worker(settings, live)
        return 0
    ctx = multiprocessing.get_context("spawn")
    args = (settings, live, logging.getLogger().level, os.getpid())
    slots = [_Slot() for _ in range(processes)]
    stopping = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        for slot in slots:
            if slot.process is not None and slot.process.is_alive():
                slot.process.terminate()  # SIGTERM: each finishes its in-flight frames

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        now = time.monotonic()
        for slot in slots:
            if slot.process is not None and not slot.process.is_alive() and not stopping:
                ran = now - slot.started
                slot.failures = 0 if ran >= STEADY_S else slot.failures + 1
                delay = BACKOFF_S[min(slot.failures, len(BACKOFF_S) - 1)]
                log.warning("worker process %d exited (%s) after %.0f s; starting another in %d s",
                            slot.process.pid, slot.process.exitcode, ran, delay)
                slot.process, slot.restart_at = None, now + delay
            if slot.process is None and now >= slot.restart_at and not stopping:
                slot.process = ctx.Process(target=_child, args=args, daemon=False)
                slot.process.start()
                slot.started = now
        time.sleep(0.2)
    for slot in slots:  # also any started while the signal came
        if slot.process is not None:
            if slot.process.is_alive():
                slot.process.terminate()
            slot.process.join()
    return 0
