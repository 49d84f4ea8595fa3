"""Records, requests and disks that try to crash, fool or exhaust the pipeline:
each test reproduces a finding of the audit (issue 19) against the real component."""
import struct
import time

import cv2
import numpy as np
import pytest

from dvp.config import Names
from dvp.consumers.frames import Consumed, FrameProcessor, WorkerIdentity
from dvp.errors import JobError, MalformedRecord
from dvp.faces import Detectors, FaceDetector
from dvp.jpeg import EIGHT_K, decode_jpeg, jpeg_size
from dvp.messages import ASSEMBLY, FRAMES, Frame, FrameFailed, JobStart, ProcessedFrame, StageTimings
from dvp.streams.assembler import AssemblyOptions, JobAssembler

NAMES = Names.with_prefix("h.")
T = StageTimings(0.0, 0.0, 0.0, 0.0, 0.0)


def small_jpeg(width: int = 64, height: int = 48) -> bytes:
    return cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8))[1].tobytes()


def declaring(width: int, height: int) -> bytes:
    """A real, tiny JPEG whose frame header claims another size: OpenCV decodes it
    at the claimed size (30000x30000: 5.2 GB in 22 s)."""
    data = bytearray(small_jpeg())
    at = data.index(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_the_bomb_is_tiny_and_its_header_declares_what_opencv_would_allocate():
    bomb = declaring(30000, 30000)
    assert len(bomb) < 1000 and jpeg_size(bomb) == (30000, 30000)
    assert jpeg_size(small_jpeg(64, 48)) == (64, 48)
    assert decode_jpeg(small_jpeg(64, 48), EIGHT_K, (64, 48)).shape == (48, 64, 3)


@pytest.mark.parametrize("data, reason", [
    (declaring(30000, 30000), "over the limit of"),
    (cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), "not a JPEG"),
    (cv2.imencode(".bmp", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), "not a JPEG"),
    (small_jpeg()[:20], "no frame header"),
    (b"", "not a JPEG"),
])
def test_a_hostile_jpeg_is_refused_before_it_is_decoded(data, reason):
    with pytest.raises(MalformedRecord, match=reason):
        decode_jpeg(data, EIGHT_K)


def test_a_worker_sets_the_bomb_aside_and_fails_its_job_without_decoding_it():
    """Was: OpenCV decoded it into 5.2 GB, then MediaPipe segfaulted the worker."""
    detectors = Detectors(FaceDetector)
    processor = FrameProcessor(NAMES, detectors, WorkerIdentity("w", "h", "127.0.0.1", 1), 90, EIGHT_K)
    try:
        record = FRAMES.encode(Frame("job-1", 3, 3, "blur", "per-frame", declaring(30000, 30000), 1, 2, "mediapipe"))
        started = time.monotonic()
        outcome = processor.process(Consumed(NAMES.frames, 0, 5, b"job-1", record))
        assert time.monotonic() - started < 5  # decoding it took 22 s
    finally:
        detectors.close()
    failed = ASSEMBLY.decode(outcome.result.value)
    assert isinstance(failed, FrameFailed) and "30000x30000" in failed.reason and "DVP_MAX_PIXELS" in failed.reason
    [letter] = outcome.also
    assert letter.topic == NAMES.deadletter and letter.value == record


def test_the_aggregator_fails_a_job_whose_frame_declares_another_size(tmp_path):
    start = JobStart("job-1", "x.mp4", "blur", "per-frame", 64, 48, 25, 1, 1, 25, 2, False, 0)
    job = JobAssembler(start, tmp_path, tmp_path, AssemblyOptions(30, "ultrafast", 100, 10**8))
    assert job.add(ProcessedFrame("job-1", 0, 0, small_jpeg(), True, [], "w", T, 0, 0)) is None
    with pytest.raises(JobError, match="frame 1: a 128x96 JPEG where the job's frames are 64x48"):
        job.add(ProcessedFrame("job-1", 1, 1, declaring(128, 96), True, [], "w", T, 0, 0))
    with pytest.raises(JobError, match="frame 2: a 30000x30000 JPEG, over the limit"):
        job.add(ProcessedFrame("job-1", 2, 2, declaring(30000, 30000), True, [], "w", T, 0, 0))
