"""What a page takes from its URL (`?page=…&job=…&refresh=…`): a link anyone can
send, so each value is checked and bounded before it is used."""
from __future__ import annotations

import math

REFRESH_S = 2.0
MAX_REFRESH_S = 3600.0  # a page asleep for ever would hold its session


def refresh_s(asked: str | None) -> float:
    """Seconds between redraws of a page while a job runs (0: never): `?refresh`,
    or the default where it is no number of seconds, bounded to an hour."""
    try:
        every = float(asked) if asked is not None else REFRESH_S
    except ValueError:
        return REFRESH_S
    return min(every, MAX_REFRESH_S) if math.isfinite(every) and every >= 0 else REFRESH_S
