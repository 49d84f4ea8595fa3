"""Writing a finished video where the publisher wants it, from the ResultChunk
records the aggregator sends: under a hidden name, checked against the
JobCompleted's size and checksum, then renamed into place."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dvp.errors import DvpError
from dvp.messages import JobCompleted, ResultChunk


class ResultFile:
    def __init__(self, path: Path):
        self.path = path
        if not path.parent.is_dir():
            raise DvpError(f"{path}: the folder {path.parent} does not exist")
        if path.is_dir():
            raise DvpError(f"{path}: is a directory; name the output file")
        self._partial = path.with_name(f".{path.name}.partial")
        self._file = open(self._partial, "wb")
        self._digest = hashlib.sha256()
        self.received = 0  # chunks written, in order

    def add(self, chunk: ResultChunk) -> None:
        if chunk.seq == 0 and self.received:  # sent again (the aggregator restarted): start over
            self._file.seek(0)
            self._file.truncate()
            self._digest, self.received = hashlib.sha256(), 0
        if chunk.seq == self.received:
            self._file.write(chunk.data)
            self._digest.update(chunk.data)
            self.received += 1

    def complete(self, done: JobCompleted) -> bool:
        return self.received >= done.chunks

    def finish(self, done: JobCompleted) -> None:
        """Check the file against what the aggregator wrote, and put it in place."""
        self._file.close()
        size = self._partial.stat().st_size
        if size != done.size or self._digest.hexdigest() != done.sha256:
            self.discard()
            raise DvpError(f"job {done.job_id}: the video arrived damaged ({size} of {done.size} bytes, "
                           f"checksum {'matches' if self._digest.hexdigest() == done.sha256 else 'differs'})")
        os.replace(self._partial, self.path)

    def discard(self) -> None:
        self._file.close()
        self._partial.unlink(missing_ok=True)
