"""A finished video on its way from the aggregator to its publisher, both halves
of the protocol: the aggregator sends ResultChunk records, then the JobCompleted
that names their count and checksum; the publisher writes them wherever it
runs, under a hidden name, checks them against the JobCompleted's size and
checksum, then renames the file into place."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from dvp.errors import DvpError
from dvp.messages import JobCompleted, ResultChunk

RESULT_CHUNK_BYTES = 512 * 1024  # well under Kafka's default 1 MB record limit


def describe(path: Path) -> tuple[int, int, str]:
    """(size in bytes, number of chunks, sha256 hex) of a finished video."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, -(-size // RESULT_CHUNK_BYTES), digest.hexdigest()


def result_chunks(job_id: str, path: Path) -> Iterator[ResultChunk]:
    with path.open("rb") as f:
        seq = 0
        while data := f.read(RESULT_CHUNK_BYTES):
            yield ResultChunk(job_id, seq, data)
            seq += 1


class ResultFile:
    def __init__(self, path: Path):
        self.path = path
        if not path.parent.is_dir():
            raise DvpError(f"{path}: the folder {path.parent} does not exist")
        if path.is_dir():
            raise DvpError(f"{path}: is a directory; name the output file")
        self._partial = path.with_name(f".{path.name}.partial")
        self._file = self._partial.open("wb")  # noqa: SIM115 - closed in finish() or discard()
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
        self._partial.replace(self.path)

    def discard(self) -> None:
        self._file.close()
        self._partial.unlink(missing_ok=True)
