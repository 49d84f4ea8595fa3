"""The aggregator's logic without a broker: records in, job events and files out."""
import random

import cv2
import pytest

from dvp.messages import ASSEMBLY, FaceBox, JobCompleted, JobEnd, JobFailed, JobStart, ProcessedFrame, StageTimings
from dvp.sample import read_stamp
from dvp.streams.aggregator import Aggregator
from dvp.streams.assembler import EncodeOptions
from tests.helpers import read_video

T = StageTimings(0.0, 0.0, 0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def job_records(clips):
    """A job's records as they sit on the processed topic: (offset, bytes)."""
    frames = read_video(clips["face"]).frames[:20]
    start = JobStart("job-1", "face.mp4", "blur", 480, 360, 25, 1, 1, 25, 20, False, 0)
    records = [start] + [
        ProcessedFrame("job-1", i, i, cv2.imencode(".jpg", f)[1].tobytes(), [FaceBox(1.0, 1.0, 5.0, 5.0, 0.9)],
                       "w", T, 0, 0)
        for i, f in enumerate(frames)] + [JobEnd("job-1", 20, 0)]
    return [(offset, ASSEMBLY.encode(r)) for offset, r in enumerate(records)]


def aggregator(tmp_path, log=()):
    return Aggregator(tmp_path / "work", tmp_path / "out", EncodeOptions(18, "veryfast"),
                      replay=lambda partition, offset: iter([r for r in log if r[0] >= offset]))


def feed(agg, records):
    events = []
    for offset, value in records:
        events += agg.handle(0, offset, value)
    return events


def test_frames_in_any_order_and_twice_give_each_frame_once(tmp_path, job_records):
    start, frames, end = job_records[0], job_records[1:-1], job_records[-1]
    shuffled = frames + random.Random(7).sample(frames, 8)
    random.Random(3).shuffle(shuffled)
    events = feed(aggregator(tmp_path), [start] + shuffled + [end])
    done = events[-1]
    assert isinstance(done, JobCompleted) and done.frames == 20 and done.faces == 20
    assert [read_stamp(f) for f in read_video(done.output).frames] == list(range(20))
    assert not list((tmp_path / "work").glob("job-1.*"))


def test_a_corrupt_frame_fails_the_job_and_leaves_no_files(tmp_path, job_records):
    bad = ProcessedFrame("job-1", 0, 0, b"not a jpeg", [], "w", T, 0, 0)
    events = feed(aggregator(tmp_path), [job_records[0], (1, ASSEMBLY.encode(bad))])
    assert isinstance(events[-1], JobFailed) and "JPEG" in events[-1].reason
    assert not list((tmp_path / "out").glob("*")) and not list((tmp_path / "work").glob("job-1.*"))


def test_a_restarted_aggregator_rebuilds_the_job_from_its_start(tmp_path, job_records):
    first = aggregator(tmp_path, job_records)
    feed(first, job_records[:12])  # then it dies: work files half written
    second = aggregator(tmp_path, job_records[:15])  # the log as it stands at the restart
    events = second.recover_all() + feed(second, job_records[15:])
    done = events[-1]
    assert isinstance(done, JobCompleted) and done.frames == 20 and done.faces == 20
    assert [read_stamp(f) for f in read_video(done.output).frames] == list(range(20))
    # A replay of a finished job's records changes nothing.
    assert feed(aggregator(tmp_path, job_records), job_records) == []


def test_an_outcome_lost_to_a_crash_is_announced_again_after_the_restart(tmp_path, job_records):
    """The journal says completed, but the process died before JobCompleted went out."""
    first = aggregator(tmp_path, job_records)
    done = feed(first, job_records)[-1]
    assert isinstance(done, JobCompleted)
    again = aggregator(tmp_path, job_records).recover_all()
    assert again == [done]  # the same outcome, the video still in the store
    first.announced("job-1")
    assert aggregator(tmp_path, job_records).recover_all() == []


def test_a_job_failed_by_an_error_stays_failed_after_a_restart(tmp_path, job_records):
    bad = ProcessedFrame("job-1", 2, 2, b"not a jpeg", [], "w", T, 0, 0)
    log = job_records[:3] + [(3, ASSEMBLY.encode(bad))] + [(o + 1, v) for o, v in job_records[3:]]
    first = aggregator(tmp_path, log)
    failed = feed(first, log[:4])[-1]
    assert isinstance(failed, JobFailed)
    first.announced("job-1")
    # A restart re-reads the log: the failed job neither resumes nor completes.
    second = aggregator(tmp_path, log)
    assert second.recover_all() + feed(second, log) == []
