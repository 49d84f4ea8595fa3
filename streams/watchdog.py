"""The aggregator's watchdog. Faust's Kafka client (aiokafka) now and then stops
for good after a broker's loss: it fetches nothing more though records wait, or
a record given to it is never delivered (aiokafka issues 399, 517, 642; Faust's
107: "make the app crash instead of stalling"). Nothing is lost by starting
again, as the journal in Kafka holds each open job: a stalled aggregator starts
itself again in place, and says why."""
from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

log = logging.getLogger("dvp.aggregator")
STALL_S = 30.0  # a broker's failover takes seconds; this long without progress is a stuck client


class Watchdog:
    """What the agent is doing, and whether it has been stuck too long. The agent
    marks each event it handles and each delivery it waits for; work on the
    assembly thread (a long final mux) is progress, never a stall."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, stall_s: float = STALL_S):
        self._clock, self.stall_s = clock, stall_s
        self._last_progress = clock()
        self._handling = False
        self._deliveries: dict[int, tuple[str, float]] = {}  # (what, since when) of each waited for
        self._keys = itertools.count()

    @contextmanager
    def handling(self) -> Iterator[None]:
        """While the agent handles one event."""
        self._handling = True
        try:
            yield
        finally:
            self._handling = False
            self._last_progress = self._clock()

    @contextmanager
    def delivering(self, what: str) -> Iterator[None]:
        """While a record is on its way to Kafka."""
        key = next(self._keys)
        self._deliveries[key] = (what, self._clock())
        try:
            yield
        finally:
            del self._deliveries[key]

    def rest(self) -> None:
        """Time that does not count (a rebalance, the tables' recovery) ends now."""
        self._last_progress = self._clock()

    def idle_too_long(self) -> bool:
        """Waiting for the next event past the limit: whether records wait is worth asking."""
        return not self._handling and self._clock() - self._last_progress > self.stall_s

    def stall(self, behind: Mapping[int, int]) -> str | None:
        """Why the agent is stuck, or None. `behind`: {held partition: records the
        client has not fetched yet, as the broker counts them}."""
        now = self._clock()
        for what, since in self._deliveries.values():
            if now - since > self.stall_s:
                return f"{what} not delivered within {self.stall_s:g} s"
        lagging = sorted(p for p, n in behind.items() if n > 0)
        if lagging and self.idle_too_long():
            return f"nothing fetched for {now - self._last_progress:.0f} s while records wait on partitions {lagging}"
        return None


def start_again(reason: str) -> None:
    """Replace this process with a fresh run of the same command: the same pid, so
    its parent (dvp up, dvp run) still holds it."""
    log.error("aggregator stalled: %s; starting again", reason)
    logging.shutdown()
    os.execv(sys.executable, sys.orig_argv)
