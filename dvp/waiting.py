"""Waiting for a condition with a deadline: asked, never slept for blindly."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from dvp.errors import DvpError

T = TypeVar("T")


def wait_until(ready: Callable[[], T | None], timeout: float, failure: str, interval: float = 0.2,
               error: type[Exception] = DvpError) -> T:
    """Call `ready` until it returns something true and return that; raise
    `error(failure)` once `timeout` seconds have passed. `ready` may raise to
    give up early (a process that exited, say)."""
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise error(failure)
        time.sleep(interval)
