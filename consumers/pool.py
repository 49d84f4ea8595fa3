"""`dvp worker --processes N`: N worker processes, one consumer-group member each
(MediaPipe and OpenCV run one frame at a time, so processes give the parallelism)."""
from __future__ import annotations

import logging
import multiprocessing
import signal

from dvp.config import Settings
from dvp.consumers.worker import run_worker


def _child(settings: Settings, level: int) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(name)s[%(process)d] %(message)s")
    run_worker(settings)


def run_pool(settings: Settings, processes: int) -> int:
    if processes == 1:
        run_worker(settings)
        return 0
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_child, args=(settings, logging.getLogger().level), daemon=False)
                for _ in range(processes)]
    for child in children:
        child.start()

    def forward(signum, _frame):
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: each finishes its in-flight frames

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    failed = [c.exitcode for c in children if c.exitcode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0
