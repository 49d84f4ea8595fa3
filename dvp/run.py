"""`dvp run`: the main job in one command, leaving no process behind."""
from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dvp.config import Settings
from dvp.dashboard.sink import BackgroundSink
from dvp.errors import DvpError, InputError
from dvp.filters import parse_spec, privacy_for
from dvp.infra.stack import Stack
from dvp.jpeg import check_pixels, encode_jpeg
from dvp.kafka import ReliableProducer
from dvp.media import EVERY_TRACK, SourceOptions, VideoSource
from dvp.producers.publish import publish
from dvp.producers.watch import JobWatcher
from dvp.store import OUTPUT_COLUMNS, OUTPUTS_TABLE, Store, StoreError

# The embedded broker's memory per byte of a frame's JPEG: the frame as sent and as
# filtered, and what holding a record costs (bench/memory.py: 1.78 GB for 15 000
# frames of 47 kB, 2.5 bytes a byte).
BROKER_BYTES_PER_FRAME_BYTE = 2.6


@dataclass(frozen=True)
class Summary:
    job_id: str
    frames: int
    faces: int
    wall_s: float
    output: str
    duration_s: float
    metrics: str
    notes: list[str]  # what the output lacks or changes against the source

    def lines(self) -> list[str]:
        return [f"job       {self.job_id}",
                f"frames    {self.frames} ({self.frames / self.wall_s:.1f} fps)",
                f"faces     {self.faces}",
                f"wall time {self.wall_s:.1f} s",
                f"output    {self.output} ({self.duration_s:.2f} s of video)",
                f"metrics   {self.metrics}"]


def precheck(settings: Settings, path: str, filter_spec: str, privacy: str | None,
             options: SourceOptions = EVERY_TRACK) -> None:
    """Refuse bad input before starting anything."""
    privacy_for(parse_spec(filter_spec), privacy)
    with VideoSource(path, options) as source:
        first = next(source.frames(), None)
        if first is None:
            raise InputError(f"{path}: has no video frames")
        check_pixels(path, first.image.shape[1], first.image.shape[0], settings.max_pixels)
        frames = source.info.expected_frames
    if settings.bootstrap_servers is None and frames is not None:
        check_broker_memory(path, frames, len(encode_jpeg(first.image, settings.jpeg_quality)), available_memory())


def check_broker_memory(path: str, frames: int, frame_bytes: int, available: int | None) -> None:
    """Refuse a video whose frames would not fit in the memory of the embedded broker,
    which keeps every record until it stops: each frame twice (as sent, as filtered)."""
    needed = BROKER_BYTES_PER_FRAME_BYTE * frames * frame_bytes
    if available is not None and needed > available:
        raise InputError(
            f"{path}: its {frames} frames would take about {needed / 1e9:.1f} GB in the embedded broker, which "
            f"keeps every frame in memory, and {available / 1e9:.1f} GB is available; run it on Kafka "
            f"(`dvp kafka up`, then --bootstrap-servers), or lower --jpeg-quality")


def available_memory() -> int | None:
    """Bytes of memory available to a new process (Linux), or None where unknown."""
    try:
        with Path("/proc/meminfo").open() as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_job(settings: Settings, path: str, output: str, filter_spec: str = "blur",
            workers: int = 2, progress: bool = True, privacy: str | None = None,
            options: SourceOptions = EVERY_TRACK) -> Summary:
    precheck(settings, path, filter_spec, privacy, options)
    began = time.monotonic()
    store: Store | None = None
    try:
        with Stack.running(settings, workers) as stack:
            producer = ReliableProducer(stack.settings)  # made now: its producer id comes meanwhile
            try:  # in the user's home, not the stack's: the dashboard shows the job afterwards
                store = Store(settings)
            except StoreError as exc:
                stored = f"not stored: {exc}"
                print(f"warning: this job's metrics are {stored}", file=sys.stderr)
            sink = BackgroundSink(stack.cluster, store, from_now=True) if store is not None else None
            watcher = JobWatcher(stack.cluster)
            try:
                try:
                    published = publish(stack.cluster, path, filter_spec, progress=progress, privacy=privacy,
                                        producer=producer, alive=stack.check_alive, options=options)
                    done = watcher.wait(published.start.job_id, published.frames, progress=progress,
                                        timeout=settings.stall_timeout_s, alive=stack.check_alive,
                                        save_to=Path(output).absolute())
                except InputError:
                    raise
                except DvpError as exc:
                    raise DvpError(f"{exc}; logs: {stack.keep_logs()}") from None
                if store is not None and sink is not None:
                    store.insert(OUTPUTS_TABLE, OUTPUT_COLUMNS,
                                 [(done.job_id, socket.gethostname(), str(Path(output).absolute()))])
                    complete = sink.finish(timeout=30)
                    stored = (f"stored in {store.where} (`dvp dashboard` shows them)" if complete
                              else f"partly stored in {store.where}: {sink.error or 'the sink fell behind'}")
            finally:
                watcher.close()
                if sink is not None:
                    sink.stop()  # already stopped, unless the job failed
    finally:
        if store is not None:
            store.close()
    return Summary(done.job_id, done.frames, done.faces, time.monotonic() - began,
                   str(Path(output).absolute()), done.duration_s, stored, done.notes)
