"""The order in which live frames are shown: by index, each at most a deadline
after its capture. A frame that has not come back by then is skipped, and one
that comes back after a later frame was shown is dropped, so the view never
runs out of order and never lags more and more. No Kafka, no clock: the
caller says what arrived and what time it is."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Playout(Generic[Item]):
    def __init__(self, deadline_us: int):
        self.deadline_us = deadline_us
        self.next = 0  # the next index to show or skip
        self.late = 0  # frames that came back after their turn
        self._captured: dict[int, int] = {}  # index -> capture time, from `next` on
        self._arrived: dict[int, Item] = {}

    def captured(self, index: int, capture_ts_us: int) -> None:
        self._captured[index] = capture_ts_us

    def arrived(self, index: int, item: Item) -> None:
        if index < self.next or index not in self._captured or index in self._arrived:
            self.late += index < self.next  # its turn is gone; strays and duplicates are ignored
            return
        self._arrived[index] = item

    def due(self, now_us: int) -> Iterator[tuple[int, int, Item | None]]:
        """(index, capture time, frame) in order, the frame None where it is skipped."""
        while self.next in self._captured:
            index = self.next
            if index in self._arrived:
                item: Item | None = self._arrived.pop(index)
            elif now_us > self._captured[index] + self.deadline_us:
                item = None
            else:
                return
            self.next += 1
            yield index, self._captured.pop(index), item

    @property
    def waiting(self) -> int:
        return len(self._captured)
