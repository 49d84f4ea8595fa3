"""The aggregator's logic without a broker: records in, job events and files out."""
import dataclasses
import random
import time
import tracemalloc

import cv2
import numpy as np
import pytest

from dvp.errors import MalformedRecord
from dvp.messages import (
    ASSEMBLY,
    AudioChunk,
    FaceBox,
    JobCompleted,
    JobEnd,
    JobFailed,
    JobStart,
    ProcessedFrame,
    StageTimings,
)
from dvp.sample import read_stamp
from dvp.streams.aggregator import Aggregator
from dvp.streams.assembler import AssemblyOptions, JobAssembler
from dvp.streams.journal import COMPLETED, RUNNING, JobEntry, Journal
from tests.helpers import read_video

T = StageTimings(0.0, 0.0, 0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def job_records(clips):
    """A job's records as they sit on the processed topic: (offset, bytes)."""
    frames = read_video(clips["face"]).frames[:20]
    start = JobStart("job-1", "face.mp4", "blur", "per-frame", 480, 360, 25, 1, 1, 25, 20, False, 0)
    records = [start] + [
        ProcessedFrame("job-1", i, i, cv2.imencode(".jpg", f)[1].tobytes(), True, [FaceBox(1.0, 1.0, 5.0, 5.0, 0.9)],
                       "w", T, 0, 0)
        for i, f in enumerate(frames)] + [JobEnd("job-1", 20, 0)]
    return [(offset, ASSEMBLY.encode(r)) for offset, r in enumerate(records)]


def aggregator(tmp_path, log=(), clock=time.monotonic, bounds=None, **limits):
    """An aggregator process; those of one test share the journal's store, as
    aggregators share the Faust table, and the work and output folders. `bounds`:
    those across jobs, `limits`: those of each job."""
    limits = {"reorder_frames": 2000, "reorder_bytes": 512_000_000, **limits}
    store = STORES.setdefault(tmp_path, {})
    return Aggregator(Journal(store), tmp_path / "work", tmp_path / "out", AssemblyOptions(18, "veryfast", **limits),
                      replay=lambda partition, offset: iter([r for r in log if r[0] >= offset]),
                      idle_timeout_s=60, clock=clock, **(bounds or {}))


def as_job(records, job_id: str) -> list:
    """The same records, of another job."""
    return [(offset, ASSEMBLY.encode(dataclasses.replace(ASSEMBLY.decode(value), job_id=job_id)))
            for offset, value in records]


STORES: dict = {}


def feed(agg, records):
    events = []
    for offset, value in records:
        events += agg.handle(0, offset, value)
        agg.journal.save()
    return events


def restart(agg) -> list:
    """What a process that holds partition 0 does first: take over its unfinished jobs."""
    events = agg.adopt(list(agg.journal.unfinished({0})))
    agg.journal.save()
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
    bad = ProcessedFrame("job-1", 0, 0, b"not a jpeg", True, [], "w", T, 0, 0)
    events = feed(aggregator(tmp_path), [job_records[0], (1, ASSEMBLY.encode(bad))])
    assert isinstance(events[-1], JobFailed) and "JPEG" in events[-1].reason
    assert not list((tmp_path / "out").glob("*")) and not list((tmp_path / "work").glob("job-1.*"))


def test_a_restarted_aggregator_rebuilds_the_job_from_its_start(tmp_path, job_records):
    first = aggregator(tmp_path, job_records)
    feed(first, job_records[:12])  # then it dies: work files half written
    second = aggregator(tmp_path, job_records[:15])  # the log as it stands at the restart
    events = restart(second) + feed(second, job_records[15:])
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
    again = restart(aggregator(tmp_path, job_records))
    assert again == [done]  # the same outcome, the video still in the store
    first.announced("job-1")
    first.journal.save()
    assert restart(aggregator(tmp_path, job_records)) == []


def test_a_job_failed_by_an_error_stays_failed_after_a_restart(tmp_path, job_records):
    bad = ProcessedFrame("job-1", 2, 2, b"not a jpeg", True, [], "w", T, 0, 0)
    log = job_records[:3] + [(3, ASSEMBLY.encode(bad))] + [(o + 1, v) for o, v in job_records[3:]]
    first = aggregator(tmp_path, log)
    failed = feed(first, log[:4])[-1]
    assert isinstance(failed, JobFailed)
    first.announced("job-1")
    first.journal.save()
    # A restart re-reads the log: the failed job neither resumes nor completes.
    second = aggregator(tmp_path, log)
    assert restart(second) + feed(second, log) == []


@pytest.mark.parametrize("limits", [{"reorder_frames": 5}, {"reorder_bytes": 5 * 30_000}])
def test_frames_waiting_for_a_late_one_are_capped_and_the_job_fails_with_the_reason(tmp_path, job_records, limits):
    start, frames = job_records[0], job_records[1:-1]
    assert all(len(ASSEMBLY.decode(v).jpeg) > 30_000 for _, v in frames)
    events = feed(aggregator(tmp_path, **limits), [start] + frames[1:])  # frame 0 never comes
    failed = events[-1]
    assert isinstance(failed, JobFailed) and "too far out of order" in failed.reason and "DVP_REORDER" in failed.reason
    assert len(events) == 2  # progress at the start, then the failure as soon as the cap is hit
    assert not list((tmp_path / "work").glob("job-1.*"))


def test_frame_indices_outside_the_job_are_set_aside_and_the_job_goes_on(tmp_path, job_records):
    start, frames, end = job_records[0], job_records[1:-1], job_records[-1]
    agg = aggregator(tmp_path)
    feed(agg, [start, end])
    for index in (-1, 20, 10**12):
        stray = ProcessedFrame("job-1", index, index, b"x", True, [], "w", T, 0, 0)
        with pytest.raises(MalformedRecord, match="outside"):
            agg.handle(0, 99, ASSEMBLY.encode(stray))
    done = feed(agg, frames)[-1]
    assert isinstance(done, JobCompleted) and done.frames == 20 and agg.malformed == 3


def test_a_job_whose_publisher_vanished_expires_and_leaves_no_files(tmp_path, job_records):
    now = [1000.0]
    agg = aggregator(tmp_path, clock=lambda: now[0])
    feed(agg, job_records[:8])  # then the publisher dies: no JobEnd, no more frames
    now[0] += 59
    assert agg.expire() == []
    now[0] += 2
    [expired] = agg.expire()
    assert isinstance(expired, JobFailed) and "no record of the job for 60 s" in expired.reason
    assert not list((tmp_path / "work").glob("job-1.*")) and agg.jobs == {}
    agg.announced("job-1")
    agg.journal.save()
    assert restart(aggregator(tmp_path, job_records)) == []  # and it stays over


def test_a_job_whose_partition_moves_is_finished_by_the_new_owner_alone(tmp_path, job_records):
    """Two aggregators; the job's partition moves from one to the other mid-job."""
    first, second = aggregator(tmp_path, job_records), aggregator(tmp_path, job_records)
    assert restart(second) == []
    feed(first, job_records[:10])
    first.keep_only({1, 2})  # the rebalance: partition 0 goes to the second
    assert first.jobs == {} and first.expire() == [] and not list((tmp_path / "work").glob("job-1.*"))
    events = restart(second) + feed(second, job_records[10:])
    done = events[-1]
    assert isinstance(done, JobCompleted) and done.frames == 20
    assert [read_stamp(f) for f in read_video(done.output).frames] == list(range(20))


def filtered_in_the_box(out, clips) -> bool:
    """Whether every output frame is changed inside FaceBox(200, 100, 80, 80)."""
    source = read_video(clips["face"]).frames[:len(out)]
    inside = (slice(110, 170), slice(210, 270))
    return all(np.abs(o[inside].astype(int) - s[inside].astype(int)).mean() > 5
               for o, s in zip(out, source, strict=True))


def strict(records, filter_spec="blur", boxes=None):
    """The job's records as a --privacy strict job sends them: frames unfiltered,
    each with its faces (here `boxes`, as a hostile or broken worker might send)."""
    out = []
    for offset, value in records:
        r = ASSEMBLY.decode(value)
        if isinstance(r, JobStart):
            r = dataclasses.replace(r, privacy="strict", filter=filter_spec)
        elif isinstance(r, ProcessedFrame) and boxes is not None:
            r = dataclasses.replace(r, faces=boxes)
        out.append((offset, ASSEMBLY.encode(r)))
    return out


def test_a_strict_job_is_filtered_here_and_boxes_that_make_no_sense_are_ignored(tmp_path, job_records, clips):
    nan, huge = float("nan"), 1e30
    bad = [FaceBox(nan, 1, 5, 5, 0.9), FaceBox(1, 1, huge, huge, 0.9), FaceBox(1, 1, -5, 5, 0.9),
           FaceBox(-huge, -huge, 10, 10, 0.9)]
    face = FaceBox(200.0, 100.0, 80.0, 80.0, 0.9)
    done = feed(aggregator(tmp_path), strict(job_records, boxes=[*bad, face]))[-1]
    assert isinstance(done, JobCompleted) and done.frames == 20
    out = read_video(done.output).frames
    assert [read_stamp(f) for f in out] == list(range(20))
    assert filtered_in_the_box(out, clips)  # the one sensible box


def test_a_strict_job_with_a_filter_that_does_not_exist_fails_with_the_reason(tmp_path, job_records):
    done = feed(aggregator(tmp_path), strict(job_records, filter_spec="no-such"))[-1]
    assert isinstance(done, JobFailed) and "unknown filter 'no-such'" in done.reason
    assert not list((tmp_path / "work").glob("job-1.*"))


def unfiltered(records, boxes):
    """Frames as a worker told (by a forged frame) that the job is strict sends them."""
    out = []
    for offset, value in records:
        r = ASSEMBLY.decode(value)
        if isinstance(r, ProcessedFrame):
            r = dataclasses.replace(r, filtered=False, faces=boxes)
        out.append((offset, ASSEMBLY.encode(r)))
    return out


def test_a_frame_that_comes_unfiltered_to_a_per_frame_job_is_filtered_here(tmp_path, job_records, clips):
    done = feed(aggregator(tmp_path), unfiltered(job_records, [FaceBox(200.0, 100.0, 80.0, 80.0, 0.9)]))[-1]
    assert isinstance(done, JobCompleted)
    assert filtered_in_the_box(read_video(done.output).frames, clips)


def test_a_frame_with_more_faces_than_any_detector_finds_fails_its_job(tmp_path, job_records):
    done = feed(aggregator(tmp_path), strict(job_records, boxes=[FaceBox(1.0, 1.0, 5.0, 5.0, 0.9)] * 257))[-1]
    assert isinstance(done, JobFailed) and "257 faces" in done.reason


def test_a_long_strict_job_streams_out_with_bounded_memory(tmp_path):
    """3,000 frames of a strict job, arriving a little out of order as from several
    workers: the frames held stay within the disorder plus the look-ahead, Python's
    allocations do not grow with the job, and the video is written while it runs."""
    frames, reach, disorder = 3000, 12, 8
    start = JobStart("long", "long.mp4", "blur", "strict", 160, 120, 25, 1, 1, 25, frames, False, 0)
    for folder in ("work", "out"):
        (tmp_path / folder).mkdir()
    job = JobAssembler(start, tmp_path / "work", tmp_path / "out",
                       AssemblyOptions(30, "ultrafast", reorder_frames=100, reorder_bytes=10**8, strict_reach=reach))
    image = np.full((120, 160, 3), 90, np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    rng = random.Random(7)
    order = []
    for block in range(0, frames, disorder):  # each block of 8 in any order
        order += rng.sample(range(block, block + disorder), disorder)
    peak_held, video = 0, tmp_path / "work" / "long.video.mp4"
    tracemalloc.start()
    try:
        for n, i in enumerate(order):
            face = [FaceBox(40.0 + i % 20, 30.0, 40.0, 40.0, 0.9)] if i % 5 else []  # missed on every fifth
            assert job.add(ProcessedFrame("long", i, i, jpeg, False, face, "w", T, 0, 0)) is None
            peak_held = max(peak_held, job.held)
            if n == 500:
                tracemalloc.reset_peak()
                baseline = tracemalloc.get_traced_memory()[0]
            if n == 1500:
                assert video.stat().st_size > 0  # written as it goes, not at the end
        grown = tracemalloc.get_traced_memory()[1] - baseline  # the peak since the reset
    finally:
        tracemalloc.stop()
    assert peak_held <= disorder + reach, peak_held
    assert grown < 1_000_000, f"{grown} bytes more after 2,500 frames"  # all of them kept: ~2.7 MB
    done = job.add(JobEnd("long", frames, 0))
    assert isinstance(done, JobCompleted) and done.frames == frames


def test_a_jobs_publishing_time_is_used_only_when_plausible(tmp_path, job_records):
    agg = aggregator(tmp_path)
    feed(agg, job_records[:1])  # its start: submitted at 0 s, 1970
    assert agg.published_at("job-1", now_s=100.0) == 0.0
    assert agg.published_at("job-1", now_s=10**9) is None  # decades old: a wrong clock
    assert agg.published_at("job-1", now_s=-1.0) is None  # ahead of ours
    assert agg.published_at("no-such-job", now_s=100.0) is None


def test_jobs_past_the_open_jobs_bound_fail_at_their_start_and_the_others_complete(tmp_path, job_records):
    agg = aggregator(tmp_path, bounds={"max_open_jobs": 2})
    jobs = {name: as_job(job_records, name) for name in ("a", "b", "c")}
    events = feed(agg, [jobs["a"][0], jobs["b"][0], jobs["c"][0]])
    [refused] = [e for e in events if isinstance(e, JobFailed)]
    assert refused.job_id == "c" and "DVP_MAX_OPEN_JOBS" in refused.reason
    assert set(agg.jobs) == {"a", "b"}
    events = feed(agg, jobs["c"][1:] + jobs["a"][1:] + jobs["b"][1:])  # the refused job's records are ignored
    assert sorted(e.job_id for e in events if isinstance(e, JobCompleted)) == ["a", "b"]
    assert not [e for e in events if isinstance(e, JobFailed)]
    assert not (tmp_path / "out" / "c.mp4").exists() and not list((tmp_path / "work").glob("c.*"))
    again = feed(agg, as_job(job_records, "d"))  # with room again, a new job is taken
    assert isinstance(again[-1], JobCompleted) and again[-1].job_id == "d"


def test_past_the_bound_on_frames_held_across_jobs_the_job_holding_the_most_fails(tmp_path, job_records):
    far, near = as_job(job_records, "far"), as_job(job_records, "near")
    bound = sum(len(ASSEMBLY.decode(value).jpeg) for _, value in far[2:12] + near[2:3])
    agg = aggregator(tmp_path, bounds={"max_held_bytes": bound})
    events = feed(agg, [far[0], near[0]] + far[2:12] + near[2:3])  # both wait for their frame 0
    assert not [e for e in events if isinstance(e, JobFailed)]  # at the bound
    events = feed(agg, near[3:4])  # past it: the job that came last is not the one holding the most
    [failed] = [e for e in events if isinstance(e, JobFailed)]
    assert failed.job_id == "far" and "DVP_HELD_MB" in failed.reason and "held the most" in failed.reason
    assert set(agg.jobs) == {"near"}
    done = feed(agg, near[1:2] + near[4:])
    assert isinstance(done[-1], JobCompleted) and done[-1].job_id == "near" and done[-1].frames == 20
    assert not list((tmp_path / "work").glob("far.*"))


def test_frames_held_in_the_strict_look_ahead_count_against_the_bound(tmp_path, job_records):
    start = ASSEMBLY.decode(job_records[0][1])
    strict = [(0, ASSEMBLY.encode(dataclasses.replace(start, privacy="strict")))] + job_records[1:]
    size = len(ASSEMBLY.decode(job_records[1][1]).jpeg)
    agg = aggregator(tmp_path, bounds={"max_held_bytes": 5 * size}, strict_reach=12)
    events = feed(agg, strict[:10])  # in order, yet the look-ahead holds up to 12 frames
    assert isinstance(events[-1], JobFailed) and "DVP_HELD_MB" in events[-1].reason
    assert not agg.jobs


def test_sound_past_the_bound_fails_the_job_and_leaves_no_files(tmp_path, job_records):
    agg = aggregator(tmp_path, max_audio_bytes=10_000)
    chunks = [(100 + i, ASSEMBLY.encode(AudioChunk("job-1", i, bytes(4000)))) for i in range(3)]
    events = feed(agg, job_records[:1] + chunks[:2])
    assert not [e for e in events if isinstance(e, JobFailed)]
    assert (tmp_path / "work" / "job-1.audio.mka").stat().st_size == 8000
    events = feed(agg, chunks[2:])
    assert isinstance(events[-1], JobFailed) and "DVP_MAX_AUDIO_MB" in events[-1].reason
    assert not list((tmp_path / "work").glob("job-1.*"))


def test_the_journal_forgets_only_jobs_announced_and_ended_before_the_time(tmp_path):
    store: dict = {}
    journal = Journal(store)
    ended = dict(status=COMPLETED, outcome={}, ended_s=1000.0)
    journal.put(JobEntry("old", 0, 0, announced=True, **ended))
    journal.put(JobEntry("unannounced", 0, 1, announced=False, **ended))
    journal.put(JobEntry("recent", 0, 2, announced=True, **{**ended, "ended_s": 3000.0}))
    journal.put(JobEntry("running", 0, 3, RUNNING))
    journal.put(JobEntry("from-before-ended-times", 0, 4, COMPLETED, {}, True))
    journal.save()
    assert journal.prune(ended_before_s=2000.0) == 1
    assert sorted(store) == ["from-before-ended-times", "recent", "running", "unannounced"]


def test_an_ended_job_is_journaled_with_its_end_time(tmp_path, job_records):
    agg = aggregator(tmp_path)
    before = time.time()
    feed(agg, job_records)
    agg.announced("job-1")
    agg.journal.save()
    entry = agg.journal.get("job-1")
    assert entry.announced and before <= entry.ended_s <= time.time()
    assert agg.journal.prune(ended_before_s=before) == 0 and agg.journal.prune(ended_before_s=time.time() + 1) == 1
