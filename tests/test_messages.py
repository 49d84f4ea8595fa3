import dataclasses

import pytest

from dvp.codec import check_matches, load_schema
from dvp.errors import MalformedRecord
from dvp.messages import (
    ASSEMBLY,
    FRAMES,
    JOBS,
    METRICS,
    FaceBox,
    Frame,
    FrameMetrics,
    JobCompleted,
    JobStart,
    ProcessedFrame,
    StageTimings,
    valid_job_id,
)

TIMINGS = StageTimings(1.0, 2.0, 3.0, 4.0, 5.0)


@pytest.mark.parametrize("codec, msg", [
    (FRAMES, Frame("job-1", 3, 120, "blur", "per-frame", b"\xff\xd8jpeg", 1, 2)),
    (ASSEMBLY, ProcessedFrame("job-1", 3, 120, b"jpeg", True, [FaceBox(1.0, 2.0, 3.0, 4.0, 0.5)], "w", TIMINGS, 1, 2)),
    (ASSEMBLY, JobStart("job-1", "in.mp4", "blur", "strict", 640, 480, 25, 1, 1, 12800, None, True, 5)),
    (JOBS, JobCompleted("job-1", "/out.mp4", 100, 90, 4.0, 123456, 1, "ab" * 32, 7)),
    (METRICS, FrameMetrics("job-1", 3, "w", "h", "127.0.0.1", 1, 2, TIMINGS, 1, 9)),
])
def test_round_trip(codec, msg):
    assert codec.decode(codec.encode(msg)) == msg


@pytest.mark.parametrize("data", [None, b"", b"garbage", b"DVP\x01\xff\xff", b"DVP\x01" + b"\x00" * 3])
def test_garbage_is_malformed(data):
    with pytest.raises(MalformedRecord):
        ASSEMBLY.decode(data)


def test_truncated_record_is_malformed():
    data = FRAMES.encode(Frame("job-1", 3, 120, "blur", "per-frame", b"x" * 100, 1, 2))
    with pytest.raises(MalformedRecord):
        FRAMES.decode(data[:-10])
    with pytest.raises(MalformedRecord):
        FRAMES.decode(data + b"\x00")


def test_job_ids_that_could_name_other_files_are_refused():
    data = ASSEMBLY.encode(JobStart("../../etc", "in", "blur", "strict", 1, 1, 1, 1, 1, 1, None, False, 0))
    with pytest.raises(MalformedRecord, match="invalid job id"):
        ASSEMBLY.decode(data)


def test_a_message_on_the_wrong_topic_is_refused():
    with pytest.raises(TypeError):
        JOBS.encode(Frame("job-1", 3, 120, "blur", "per-frame", b"", 1, 2))


def test_dataclasses_must_match_their_schema():
    @dataclasses.dataclass
    class JobFailed:  # the schema says job_id, reason
        job_id: str
        why: str
    with pytest.raises(TypeError, match="differ from schema"):
        check_matches(JobFailed, load_schema("JobFailed"))

    @dataclasses.dataclass
    class JobAbort:
        job_id: str
        reason: int
    with pytest.raises(TypeError, match="does not match Avro"):
        check_matches(JobAbort, load_schema("JobAbort"))


@pytest.mark.parametrize("name, stem", [
    ("café 東京 (1).mp4", "cafe-1-"), ("_MG_0001.mp4", "MG-0001-"), ("(1) clip.mp4", "1-clip-"),
    ("東京.mp4", "job-"), (".mp4", "job-"), ("Ünïcödé—dash.MOV", "Unicode-dash-"), ("a" * 300 + ".mp4", "a" * 40 + "-"),
])
def test_a_job_id_from_any_file_name_is_a_valid_one(name, stem):
    """The workers refuse ids outside JOB_ID: one made from a name must never be (it hung the publisher)."""
    from dvp.producers.publish import new_job_id
    job_id = new_job_id(f"/videos/{name}")
    assert valid_job_id(job_id) and job_id.startswith(stem) and len(job_id) == len(stem) + 8
