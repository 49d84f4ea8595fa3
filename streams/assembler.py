"""One job's output, assembled from its records in any order, any number of times.

No Kafka here: records go in, outcomes come out. Frames are deduplicated by
index and written as soon as they are next in order, so memory holds only
the frames that arrived early, never the whole video. Under `--privacy strict`
frames come unfiltered with their faces; they are filtered here, `strict_reach`
frames later, once their faces are tracked over neighbouring frames (privacy.py)."""
from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from dvp.colour import Colour
from dvp.encode import VideoEncoder, mux_output
from dvp.errors import JobError, MalformedRecord
from dvp.faces import MESH_POINTS, Face
from dvp.filters import FilterSpec, parse_spec
from dvp.jpeg import EIGHT_K, decode_jpeg
from dvp.messages import (
    STRICT,
    AudioChunk,
    FaceBox,
    FrameFailed,
    JobAbort,
    JobCompleted,
    JobEnd,
    JobFailed,
    JobStart,
    ProcessedFrame,
    now_us,
)
from dvp.metadata import checked
from dvp.results import describe
from dvp.streams.privacy import TemporalCover


@dataclass(frozen=True)
class AssemblyOptions:
    crf: int  # H.264 quality
    preset: str  # x264 speed
    reorder_frames: int  # frames that may wait for an earlier one
    reorder_bytes: int  # and their size
    strict_reach: int = 12  # strict privacy: frames a face is tracked across (look-ahead and hold)
    max_pixels: int = EIGHT_K  # the most a frame from the topic may declare
    max_audio_bytes: int | None = None  # sound one job may bring (the app: DVP_MAX_AUDIO_MB); None: no bound


Outcome = JobCompleted | JobFailed
MAX_FACES = 256  # faces one frame may carry: more is no detector's output
_FAR = 1e6  # pixels: no frame is this large
MAX_NOTES, MAX_NOTE = 20, 300  # notes on a job, characters in one


def _plausible(box: FaceBox) -> bool:
    """Boxes come from a topic: finite ones with a size are used (filters clip them
    to the picture; one larger than the picture blurs all of it, which leaks nothing)."""
    return all(math.isfinite(v) and abs(v) < _FAR for v in (box.x, box.y, box.w, box.h)) and box.w > 0 and box.h > 0


def _face(box: FaceBox) -> Face:
    """A face from the wire; its landmarks only where they are a whole, finite mesh
    (else the landmark filters fall back to the box, as for a face without one)."""
    mesh = np.asarray(box.landmarks, np.float32)
    whole = mesh.size == 2 * MESH_POINTS and bool(np.isfinite(mesh).all()) and bool((np.abs(mesh) < _FAR).all())
    return Face(box.x, box.y, box.w, box.h, box.score, mesh.reshape(-1, 2) if whole else None)


class JobAssembler:
    def __init__(self, start: JobStart, work_dir: Path, output_dir: Path, options: AssemblyOptions):
        self.start = start
        self.options = options
        # Only ever inside the aggregator's own store, under a name from the (checked) job id.
        self.output = output_dir / f"{start.job_id}.mp4"
        self._video_path = work_dir / f"{start.job_id}.video.mp4"
        self._audio_path = work_dir / f"{start.job_id}.audio.mka"
        self.discard()  # a restarted job starts from scratch
        self._encoder: VideoEncoder | None = None
        self._early: dict[int, ProcessedFrame] = {}
        self._early_bytes = 0
        self._strict_bytes = 0  # of the frames in the strict look-ahead
        self._audio_chunks = 0
        self._audio_bytes = 0
        self._end: JobEnd | None = None
        self._strict = TemporalCover[ProcessedFrame](options.strict_reach) if start.privacy == STRICT else None
        self._taken = 0  # frames taken in order: written, or waiting in the strict look-ahead
        self.written = 0
        self.faces = 0
        self.outcome: Outcome | None = None

    @functools.cached_property
    def _spec(self) -> FilterSpec:
        return parse_spec(self.start.filter)  # from a topic: a bad spec fails this job only

    @property
    def held(self) -> int:
        """Frames in memory: arrived early, or in the strict look-ahead."""
        return len(self._early) + (self._strict.waiting if self._strict is not None else 0)

    @property
    def held_bytes(self) -> int:
        """The size of the frames in memory."""
        return self._early_bytes + self._strict_bytes

    @property
    def total(self) -> int | None:
        return self._end.frame_count if self._end else self.start.frame_count

    def add(self, record: JobStart | ProcessedFrame | FrameFailed | AudioChunk | JobEnd | JobAbort) -> Outcome | None:
        """Take one record of this job; return the outcome once the job ends."""
        if self.outcome is not None:
            return None
        if isinstance(record, ProcessedFrame):
            self._check_index(record.index)
            if record.index >= self._taken and record.index not in self._early:
                if self._over_limits(len(record.jpeg)):
                    return self.fail(
                        f"frames arrive too far out of order: {len(self._early)} frames "
                        f"({self._early_bytes / 1e6:.0f} MB) wait for frame {self._taken}, over the limits "
                        f"DVP_REORDER_FRAMES={self.options.reorder_frames}, "
                        f"DVP_REORDER_MB={self.options.reorder_bytes // 1_000_000}")
                self._early[record.index] = record
                self._early_bytes += len(record.jpeg)
                self._write_ready()
        elif isinstance(record, AudioChunk):
            if record.seq == self._audio_chunks:  # duplicates and strays are ignored
                bound = self.options.max_audio_bytes
                if bound is not None and self._audio_bytes + len(record.data) > bound:
                    return self.fail(f"more than {bound // 1_000_000} MB of sound, over DVP_MAX_AUDIO_MB")
                with self._audio_path.open("ab") as f:
                    f.write(record.data)
                self._audio_chunks += 1
                self._audio_bytes += len(record.data)
        elif isinstance(record, JobEnd):
            self._end = record
            for index in [i for i in self._early if i >= record.frame_count]:  # strays past the end
                self._early_bytes -= len(self._early.pop(index).jpeg)
        elif isinstance(record, FrameFailed):
            return self.fail(f"frame {record.index}: {record.reason}")
        elif isinstance(record, JobAbort):
            return self.fail(f"aborted by the producer: {record.reason}")
        if self._end is not None and self._taken >= self._end.frame_count \
                and self._audio_chunks >= self._end.audio_chunks:
            return self._finish()
        return None

    def _check_index(self, index: int) -> None:
        """Frame indices come from a topic: one outside the job is set aside, not used."""
        if index < 0 or (self._end is not None and index >= self._end.frame_count):
            count = f"its {self._end.frame_count} frames" if self._end is not None else "it"
            raise MalformedRecord(f"frame index {index} is outside {count} (job {self.start.job_id})")

    def _over_limits(self, size: int) -> bool:
        return (len(self._early) + 1 > self.options.reorder_frames
                or self._early_bytes + size > self.options.reorder_bytes)

    def _write_ready(self) -> None:
        while self._taken in self._early:
            frame = self._early.pop(self._taken)
            self._early_bytes -= len(frame.jpeg)
            self._taken += 1
            self.faces += len(frame.faces)
            if len(frame.faces) > MAX_FACES:
                raise JobError(f"frame {frame.index}: {len(frame.faces)} faces, more than the {MAX_FACES} "
                               f"a frame may carry")
            faces = [_face(b) for b in frame.faces if _plausible(b)]
            if self._strict is not None:
                self._strict_bytes += len(frame.jpeg)
                for final, cover in self._strict.push(frame.index, frame, faces):
                    self._write(final, cover)
            else:  # a frame that comes unfiltered to a per-frame job is filtered here, never written as it is
                self._write(frame, None if frame.filtered else faces)

    def _write(self, frame: ProcessedFrame, faces: list[Face] | None) -> None:
        """Encode the next frame; with `faces`, filter them first (strict mode)."""
        s = self.start
        if self._strict is not None:  # out of the look-ahead
            self._strict_bytes -= len(frame.jpeg)
        try:
            image = decode_jpeg(frame.jpeg, self.options.max_pixels, (s.width, s.height))
        except MalformedRecord as exc:
            raise JobError(f"frame {frame.index}: {exc}") from None
        if faces is not None:
            image = self._spec.apply(image, faces)
        if self._encoder is None:
            self._encoder = VideoEncoder(
                self._video_path, s.width, s.height, Fraction(s.fps_num, s.fps_den),
                Fraction(s.time_base_num, s.time_base_den), self.options.crf, self.options.preset,
                Colour.checked(s.colour_matrix, s.colour_primaries, s.colour_transfer, s.width, s.height))
        self._encoder.write(image, frame.pts)
        self.written += 1

    def _finish(self) -> Outcome:
        if self._strict is not None:
            for final, cover in self._strict.drain():
                self._write(final, cover)
        if self.written == 0 or self._encoder is None:
            return self.fail("the job has no frames")
        self._encoder.close()
        self._encoder = None
        audio = self._audio_path if self._audio_chunks else None
        try:
            duration = mux_output(self._video_path, audio, self.output, checked(self.start.metadata))
        except OSError as exc:
            return self.fail(f"cannot write {self.output}: {exc}")
        self.discard()
        size, chunks, sha256 = describe(self.output)
        self.outcome = JobCompleted(self.start.job_id, str(self.output), self.written, self.faces,
                                    duration, size, chunks, sha256, now_us(), self._notes())
        return self.outcome

    def _notes(self) -> list[str]:
        """The publisher's notes on the source, bounded: they come from a topic."""
        return [note[:MAX_NOTE] for note in (self._end.notes if self._end else [])[:MAX_NOTES]]

    def fail(self, reason: str) -> Outcome:
        self.discard()
        self.outcome = JobFailed(self.start.job_id, reason)
        return self.outcome

    def discard(self) -> None:
        """Drop the work files; the output is never left half-written."""
        encoder = getattr(self, "_encoder", None)
        if encoder is not None:
            with contextlib.suppress(Exception):  # closing a broken encoder: the file goes anyway
                encoder.close()
            self._encoder = None
        self._video_path.unlink(missing_ok=True)
        self._audio_path.unlink(missing_ok=True)
