"""`dvp publish`: one video becomes one job.

The job's control records (start, audio, end) go straight to the processed
topic, keyed by job id, so the aggregator reads one ordered log per job; only
the frames take the detour through the workers, spread over every partition
of the frames topic so that all workers share one video."""
from __future__ import annotations

import re
import unicodedata
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dvp import kafka
from dvp.config import Settings
from dvp.errors import DvpError, InputError
from dvp.filters import parse_spec, privacy_for
from dvp.history import check_unused
from dvp.jpeg import check_pixels, encode_jpeg_within
from dvp.kafka_cluster import Cluster
from dvp.media import EVERY_TRACK, SourceFrame, SourceOptions, VideoSource
from dvp.messages import ASSEMBLY, FRAMES, AudioChunk, Frame, JobAbort, JobEnd, JobStart, now_us, valid_job_id
from dvp.producers.pacing import Pacing

AUDIO_CHUNK_BYTES = 512 * 1024


@dataclass(frozen=True)
class Published:
    start: JobStart
    frames: int


def new_job_id(path: str) -> str:
    """A new job id from a file name in any script: its ASCII letters and digits
    (accents dropped: 'café' -> 'cafe'), runs of anything else as one '-', and a
    random suffix; the same rule as every job id (`valid_job_id`)."""
    stem = Path(path).name.rsplit(".", 1)[0]
    decomposed = unicodedata.normalize("NFKD", stem)
    ascii_stem = "".join(c if c.isascii() else "" if unicodedata.combining(c) else "-" for c in decomposed)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", ascii_stem).strip("-")[:40].strip("-")
    return f"{slug or 'job'}-{uuid.uuid4().hex[:8]}"


def publish(cluster: Cluster, path: str, filter_spec: str = "blur", job_id: str | None = None,
            progress: bool = True, privacy: str | None = None,
            producer: kafka.ReliableProducer | None = None, alive: Callable[[], None] = lambda: None,
            options: SourceOptions = EVERY_TRACK) -> Published:
    """Publish a video as a job; `job_id` must be new (default: one made from the file name);
    `privacy`: strict or per-frame (default: what the filter suits, see `privacy_for`);
    `producer`: one made earlier, whose producer id is already known (see below);
    `alive`: raises if the job can no longer finish (called while publishing waits for room);
    `options`: which tracks and tags of the source the output keeps. The job is made
    with the settings of the `cluster` handle."""
    settings = cluster.settings
    spec = parse_spec(filter_spec)  # refused here, before anything is sent
    privacy = privacy_for(spec, privacy)
    if job_id is not None:
        if not valid_job_id(job_id):
            raise DvpError(f"job id {job_id!r}: use letters, digits, '.', '_' and '-' (at most 100)")
        check_unused(cluster, job_id)
    # First: an idempotent producer's first send waits for its producer id (half a
    # second or more after it is made), which it asks for in the background meanwhile.
    producer = producer or kafka.ReliableProducer(settings)
    with VideoSource(path, options) as source:
        frames = source.frames()
        first = next(frames, None)
        if first is None:
            raise InputError(f"{path}: has no video frames")
        check_pixels(path, first.image.shape[1], first.image.shape[0], settings.max_pixels)
        cluster.ensure_topics()
        jpeg_limit = cluster.max_record_bytes(producer.max_bytes, settings.names.frames,
                                              settings.names.processed) - kafka.RECORD_OVERHEAD
        fitted = FrameFitter(settings.jpeg_quality, jpeg_limit, first.image.shape[1], first.image.shape[0])
        first_jpeg = fitted.jpeg(first.image)
        partitions = cluster.partition_count(settings.names.frames)
        info, colour = source.info, (source.conversion.output if source.conversion else None)
        start = JobStart(
            job_id=job_id or new_job_id(path), source=str(Path(path).resolve()), filter=str(spec), privacy=privacy,
            width=fitted.width, height=fitted.height,
            fps_num=info.fps.numerator, fps_den=info.fps.denominator,
            time_base_num=info.time_base.numerator, time_base_den=info.time_base.denominator,
            frame_count=info.frame_count, has_audio=info.has_audio, submitted_ts_us=now_us(),
            colour_matrix=colour.matrix if colour else 2, colour_primaries=colour.primaries if colour else 2,
            colour_transfer=colour.transfer if colour else 2, metadata=source.metadata.kept)
        job_key = start.job_id.encode()
        processed = settings.names.processed
        base = zlib.crc32(job_key) % partitions  # jobs start on different partitions
        count = 0
        pacing = Pacing(cluster, start.job_id, len(first_jpeg))  # before the start: all its progress is seen
        bar = tqdm(total=info.frame_count, unit="frame", desc="publish", disable=not progress, leave=False)
        try:
            # The start must precede every processed frame in the log: flush it first.
            producer.send(processed, ASSEMBLY.encode(start), key=job_key)
            producer.flush(settings.connect_timeout_s)
            for frame in _chain(first, frames):
                pacing.wait_for_room(frame.index, alive)
                jpeg = first_jpeg if frame.index == 0 else fitted.jpeg(frame.image)
                record = Frame(start.job_id, frame.index, frame.pts, start.filter, privacy, jpeg, now_us(), now_us(),
                               settings.detector)
                producer.send(settings.names.frames, FRAMES.encode(record), key=job_key,
                              partition=(base + frame.index) % partitions)
                count += 1
                bar.update()
            chunks = 0
            for chunks, data in enumerate(source.audio_chunks(AUDIO_CHUNK_BYTES), start=1):
                producer.send(processed, ASSEMBLY.encode(AudioChunk(start.job_id, chunks - 1, data)), key=job_key)
            producer.send(processed, ASSEMBLY.encode(JobEnd(start.job_id, count, chunks,
                                                            source.notes() + fitted.notes())), key=job_key)
            producer.flush(max(settings.connect_timeout_s, 60))
        except DvpError as exc:
            _abort(producer, processed, start.job_id, str(exc), settings)
            raise
        except BaseException:
            _abort(producer, processed, start.job_id, "publisher interrupted", settings)
            raise
        finally:
            bar.close()
            pacing.close()
    return Published(start, count)


class FrameFitter:
    """Frames as the job sends them: all of the first frame's size (players scale a
    stream whose size changes; the output cannot), and each JPEG within what the
    cluster accepts, at a lower quality where it must be."""

    def __init__(self, quality: int, max_bytes: int, width: int, height: int):
        self.quality, self.max_bytes = quality, max_bytes
        self.width, self.height = width, height
        self.resized = self.lowered = 0
        self.lowest = quality

    def jpeg(self, image: np.ndarray) -> bytes:
        if (image.shape[1], image.shape[0]) != (self.width, self.height):
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
            self.resized += 1
        jpeg, quality = encode_jpeg_within(image, self.quality, self.max_bytes)
        if quality < self.quality:
            self.lowered += 1
            self.lowest = min(self.lowest, quality)
        return jpeg

    def notes(self) -> list[str]:
        notes = []
        if self.resized:
            notes.append(f"frames of another size scaled to {self.width}x{self.height}: {self.resized}")
        if self.lowered:
            notes.append(f"frames sent at a lower JPEG quality (down to {self.lowest}, not {self.quality}) to fit "
                         f"in the {self.max_bytes / 1e6:.1f} MB the cluster accepts: {self.lowered}")
        return notes


def _chain(first: SourceFrame, rest: Iterable[SourceFrame]) -> Iterator[SourceFrame]:
    yield first
    yield from rest


def _abort(producer: kafka.ReliableProducer, topic: str, job_id: str, reason: str, settings: Settings) -> None:
    """Tell the aggregator to drop the job; best effort, the original error wins."""
    try:
        producer.send(topic, ASSEMBLY.encode(JobAbort(job_id, reason)), key=job_id.encode())
        producer.flush(settings.connect_timeout_s)
    except DvpError:
        pass
