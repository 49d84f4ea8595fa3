"""Which consumed offsets are safe to commit.

A frame's offset may be stored only once its output is acknowledged by the
broker, and only when every earlier frame of the same partition is too:
deliveries complete out of order across output partitions."""
from __future__ import annotations

from collections import defaultdict


class OffsetTracker:
    def __init__(self) -> None:
        self._pending: dict[tuple[str, int], dict[int, bool]] = defaultdict(dict)

    def started(self, topic: str, partition: int, offset: int) -> None:
        self._pending[(topic, partition)][offset] = False

    def done(self, topic: str, partition: int, offset: int) -> None:
        pending = self._pending.get((topic, partition))
        if pending is not None and offset in pending:
            pending[offset] = True

    def committable(self) -> dict[tuple[str, int], int]:
        """{(topic, partition): next offset to consume} for each partition that
        advanced; the acknowledged prefix is forgotten."""
        ready = {}
        for tp, pending in self._pending.items():
            last = None
            for offset in sorted(pending):  # insertion order is offset order, but be sure
                if not pending[offset]:
                    break
                last = offset
                del pending[offset]
            if last is not None:
                ready[tp] = last + 1
        return ready

    def forget(self, topic: str, partition: int) -> None:
        self._pending.pop((topic, partition), None)
