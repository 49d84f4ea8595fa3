"""A finished video on its way to the publisher: ResultChunk records, then the
JobCompleted that names their count and checksum, so that the publisher can
write the file wherever it runs, and check it."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from dvp.messages import ResultChunk

RESULT_CHUNK_BYTES = 512 * 1024  # well under Kafka's default 1 MB record limit


def describe(path: Path) -> tuple[int, int, str]:
    """(size in bytes, number of chunks, sha256 hex) of a finished video."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, -(-size // RESULT_CHUNK_BYTES), digest.hexdigest()


def result_chunks(job_id: str, path: Path) -> Iterator[ResultChunk]:
    with open(path, "rb") as f:
        seq = 0
        while data := f.read(RESULT_CHUNK_BYTES):
            yield ResultChunk(job_id, seq, data)
            seq += 1
