"""The aggregator's memory across restarts: where each job began in the
processed log, and whether it ended. One small JSON file per job, replaced
atomically; the output it describes lives on the same disk."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"


@dataclass(frozen=True)
class JobEntry:
    job_id: str
    partition: int
    offset: int  # of the job's JobStart
    status: str
    outcome: dict | None = None  # the JobCompleted or JobFailed fields, once the job ended
    announced: bool = False  # its outcome went out; until then a restart sends it again


class Journal:
    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.json"

    def get(self, job_id: str) -> JobEntry | None:
        try:
            return JobEntry(**json.loads(self._path(job_id).read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def put(self, entry: JobEntry) -> None:
        path = self._path(entry.job_id)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(entry), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def unfinished(self) -> Iterator[JobEntry]:
        """Jobs still running, or whose outcome was never announced."""
        for path in sorted(self.directory.glob("*.json")):
            entry = self.get(path.stem)
            if entry is not None and (entry.status == RUNNING or not entry.announced):
                yield entry
