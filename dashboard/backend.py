"""What a dashboard process holds: the store and, unless told otherwise, a
metrics sink on a thread that fills it."""
from __future__ import annotations

import socket
from pathlib import Path

from dvp.config import Settings
from dvp.dashboard import queries
from dvp.dashboard.sink import BackgroundSink
from dvp.history import fetch
from dvp.kafka_cluster import Cluster
from dvp.messages import valid_job_id
from dvp.store import Store


class Backend:
    def __init__(self, settings: Settings, with_sink: bool):
        self.settings = settings
        self.cluster = Cluster(settings)  # reached when asked: the dashboard may start before the broker
        self.store = Store(settings)  # StoreBusy / StoreError: the page says why
        self.sink = BackgroundSink(self.cluster, self.store) if with_sink else None

    @property
    def sink_error(self) -> str | None:
        return self.sink.error if self.sink is not None else None

    def video(self, job_id: str) -> Path | None:
        """A finished job's video: from the aggregator's store when it is on this
        machine, else fetched once from the results topic."""
        if not valid_job_id(job_id):
            return None
        local = self.settings.outputs / f"{job_id}.mp4"
        if local.is_file():
            return local
        written = queries.output_paths(self.store, job_id, socket.gethostname())  # by `dvp run -o`
        for path in map(Path, written):
            if path.is_file():
                return path
        cached = self.settings.home / "dashboard" / f"{job_id}.mp4"
        if not cached.is_file():
            cached.parent.mkdir(parents=True, exist_ok=True)
            fetch(self.cluster.wait_reachable(), job_id, cached)
        return cached


_SHARED: list[Backend] = []  # one per process: `dvp dashboard` makes it, the pages use it


def shared(settings: Settings, with_sink: bool) -> Backend:
    """This process's backend, made on first use."""
    if not _SHARED:
        _SHARED.append(Backend(settings, with_sink))
    return _SHARED[0]
