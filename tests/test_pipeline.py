"""The main job end to end, on a real broker with real worker and aggregator processes."""
import os
import signal
import struct
import subprocess
from fractions import Fraction

import av
import numpy as np
import pytest

from dvp import kafka
from dvp.faces import FaceDetector
from dvp.filters import outline
from dvp.filters.regions import padded_box
from dvp.kafka_cluster import Cluster
from dvp.messages import ASSEMBLY, METRICS, ProcessedFrame
from dvp.producers.publish import publish
from dvp.producers.watch import JobWatcher
from dvp.sample import read_stamp, write_sample
from tests.conftest import running_services
from tests.ground_truth import leaked_frames, moving_face_clip
from tests.helpers import (
    dvp,
    mean_abs_diff,
    mustache_under_nose,
    psnr,
    read_topic,
    read_video,
    slowed,
    wait_for,
    write_clip,
)

pytestmark = pytest.mark.integration


def run_job(settings, clip, tmp_path, **kwargs):
    cluster = Cluster.reach(settings)
    watcher = JobWatcher(cluster)
    try:
        published = publish(cluster, str(clip), kwargs.pop("filter_spec", "blur"), progress=False)
        return published, watcher.wait(published.start.job_id, published.frames, progress=False,
                                       timeout=120, save_to=tmp_path / "out.mp4", **kwargs)
    finally:
        watcher.close()


def assert_every_frame_once_in_order(video, n):
    assert len(video.frames) == n
    assert [read_stamp(f) for f in video.frames] == list(range(n))


def our_processes() -> set[int]:
    """Brokers and dvp services running on this machine now."""
    ps = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in ps.splitlines()
            if "tansu" in line or "-m dvp worker" in line or "-m dvp aggregator" in line}


def test_dvp_run_filters_faces_and_keeps_everything_else(clips, tmp_path):
    out = tmp_path / "blurred.mp4"
    before = our_processes()
    result = dvp("run", str(clips["face"]), "-o", str(out), "--workers", "2", "-q")
    assert result.returncode == 0, result.stderr
    assert "frames    75" in result.stdout and str(out) in result.stdout
    assert our_processes() <= before, "dvp run left processes behind"

    src, dst = read_video(clips["face"]), read_video(out)
    assert abs(len(dst.frames) - len(src.frames)) <= 1
    assert dst.fps == pytest.approx(src.fps)
    assert abs(dst.duration - src.duration) <= 1 / src.fps
    assert dst.audio_codec == "aac"
    assert dst.audio_duration == pytest.approx(src.audio_duration, abs=0.1)

    assert_faces_filtered_and_the_rest_kept(src.frames, dst.frames)


def assert_faces_filtered_and_the_rest_kept(source_frames, output_frames):
    detector = FaceDetector()
    with_faces = 0
    for i, (before, after) in enumerate(zip(source_frames, output_frames, strict=False)):
        faces = detector.detect(before)
        mask = np.ones(before.shape[:2], bool)
        for face in faces:
            x0, y0, x1, y1 = padded_box(face, 0.0, before.shape)
            assert mean_abs_diff(before[y0:y1, x0:x1], after[y0:y1, x0:x1]) > 8, f"face not filtered in frame {i}"
            x0, y0, x1, y1 = padded_box(face, 0.6, before.shape)
            mask[y0:y1, x0:x1] = False
        with_faces += bool(faces)
        # JPEG on the wire and H.264 out both lose a little: 30 dB is "nearly unchanged".
        assert psnr(before[mask], after[mask]) > 30, f"frame {i} changed away from faces"
    assert with_faces >= len(source_frames) * 0.9


def test_two_workers_share_one_job(broker_kind, settings, services, clips, tmp_path, monkeypatch):
    if broker_kind != "tansu":
        pytest.skip("the fault tests run every job with two workers on a 3-broker Apache Kafka cluster")
    services.worker()
    services.worker()
    services.aggregator()
    services.wait_workers_assigned()
    admins = []
    make_admin = kafka.admin
    monkeypatch.setattr(kafka, "admin", lambda s: admins.append(s) or make_admin(s))
    published, done = run_job(settings, clips["face"], tmp_path)
    assert done.frames == published.frames == 75
    assert len(admins) == 1  # publishing and watching ask one cluster handle (they made 7 clients)
    frames = [ASSEMBLY.decode(v) for _, _, _, v in read_topic(settings, settings.names.processed)]
    by_worker = {}
    for f in frames:
        if isinstance(f, ProcessedFrame):
            by_worker[f.worker_id] = by_worker.get(f.worker_id, 0) + 1
    assert len(by_worker) == 2, by_worker
    assert all(n >= 5 for n in by_worker.values()), by_worker
    metrics = [METRICS.decode(v) for _, _, _, v in read_topic(settings, settings.names.metrics)]
    assert {m.worker_id for m in metrics} == set(by_worker)
    assert all(m.timings.detect_ms > 0 and m.pid > 0 and m.host for m in metrics)
    assert_every_frame_once_in_order(read_video(tmp_path / "out.mp4"), 75)  # as delivered to the publisher


def test_faces_the_detector_misses_on_some_frames_are_filtered_on_every_frame(broker_kind, settings, services,
                                                                              tmp_path):
    """Strict privacy, the default for blur, across two workers: ground truth says where the face is."""
    if broker_kind != "tansu":
        pytest.skip("the cover is the aggregator's, the same on every broker")
    clip = moving_face_clip(640, 480, 240)
    write_clip(tmp_path / "in.mp4", [t.image for t in clip], options={"crf": "12"})
    services.worker()
    services.worker()
    services.aggregator()
    services.wait_workers_assigned()
    published, done = run_job(settings, tmp_path / "in.mp4", tmp_path)
    assert published.start.privacy == "strict" and done.frames == len(clip)
    workers = {f.worker_id for _, _, _, v in read_topic(settings, settings.names.processed)
               if isinstance(f := ASSEMBLY.decode(v), ProcessedFrame)}
    assert len(workers) == 2
    assert leaked_frames(clip, read_video(tmp_path / "out.mp4").frames) == []


def test_worker_killed_mid_job_loses_no_frame(broker_kind, settings, services, clips, tmp_path):
    if broker_kind != "tansu":
        pytest.skip("on Apache Kafka, the fault tests kill a worker mid-job on a 3-broker cluster")
    victim = services.worker()
    services.worker()
    services.aggregator()

    def kill_when_busy():
        processed = [v for _, _, _, v in read_topic(settings, settings.names.metrics, timeout=2)]
        if any(METRICS.decode(v).pid == victim.pid for v in processed):
            os.kill(victim.pid, signal.SIGKILL)
            return True
        return False

    cluster = Cluster.reach(settings)
    watcher = JobWatcher(cluster)
    try:
        published = publish(cluster, str(clips["long"]), "pixelate",
                            progress=False)
        wait_for(kill_when_busy, 60, "the first worker to process a frame")
        done = watcher.wait(published.start.job_id, published.frames, progress=False, timeout=120)
    finally:
        watcher.close()
    assert victim.wait() == -signal.SIGKILL
    assert_every_frame_once_in_order(read_video(done.output), published.frames)


def test_aggregator_killed_mid_job_completes_after_restart(broker_kind, settings, services, clips, tmp_path):
    if broker_kind != "tansu":
        pytest.skip("on Apache Kafka, the fault tests kill the aggregator mid-job on a 3-broker cluster")
    services.worker()
    services.worker()
    first = services.aggregator()
    out = tmp_path / "out.mp4"
    cluster = Cluster.reach(settings)
    watcher = JobWatcher(cluster)
    try:
        published = publish(cluster, str(clips["long"]), "blackout", progress=False)
        work = settings.home / "aggregator"
        wait_for(lambda: any(work.glob("*.video.mp4")), 60, "the aggregator to start writing")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert not out.exists()
        services.aggregator()
        done = watcher.wait(published.start.job_id, published.frames, progress=False, timeout=120)
    finally:
        watcher.close()
    assert "recovering job" in services.log_text()
    video = read_video(done.output)
    assert_every_frame_once_in_order(video, published.frames)
    assert video.audio_duration == pytest.approx(read_video(clips["long"]).audio_duration, abs=0.1)


def test_malformed_records_are_set_aside_and_the_pipeline_goes_on(broker_kind, settings, services, clips, tmp_path):
    if broker_kind != "tansu":
        pytest.skip("records set aside by the stages, the same on every broker")
    from dvp.kafka import ReliableProducer
    Cluster.reach(settings).ensure_topics()
    producer = ReliableProducer(settings)
    producer.send(settings.names.frames, b"not avro at all", key=b"k", partition=0)
    producer.send(settings.names.processed, b"DVP\x01\xff\xfe", key=b"k")
    producer.flush(10)
    services.worker()
    services.aggregator()
    published, done = run_job(settings, clips["face"], tmp_path)
    assert done.frames == published.frames
    dead = read_topic(settings, settings.names.deadletter)
    sources = sorted(dict(h)["dvp.topic"].decode() for _, _, h, _ in dead)
    assert sources == sorted([settings.names.frames, settings.names.processed])
    assert {v for _, _, _, v in dead} == {b"not avro at all", b"DVP\x01\xff\xfe"}


def test_worker_stopped_with_sigterm_finishes_its_frames_and_leaves(settings, services, clips, tmp_path):
    first = services.worker()
    services.aggregator()
    cluster = Cluster.reach(settings)
    watcher = JobWatcher(cluster)
    try:
        published = publish(cluster, str(clips["long"]), "blur",
                            progress=False)
        wait_for(lambda: len(read_topic(settings, settings.names.metrics, timeout=2)) >= 10, 60,
                 "the worker to process frames")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        services.worker()
        done = watcher.wait(published.start.job_id, published.frames, progress=False, timeout=120)
    finally:
        watcher.close()
    assert_every_frame_once_in_order(read_video(done.output), published.frames)


def test_audio_that_mp4_cannot_carry_is_reencoded_to_aac(clips, tmp_path):
    source = tmp_path / "pcm.mkv"
    write_clip(source, read_video(clips["face"]).frames[:30], tone_s=1.2)
    out = tmp_path / "out.mp4"
    result = dvp("run", str(source), "-o", str(out), "-q", "--workers", "1")
    assert result.returncode == 0, result.stderr
    video = read_video(out)
    assert len(video.frames) == 30
    assert video.audio_codec == "aac"
    assert video.audio_duration == pytest.approx(1.2, abs=0.1)


def test_dvp_run_on_a_given_cluster(settings, clips, tmp_path):
    """The one-shot job on an existing cluster: local workers and aggregator join it."""
    out = tmp_path / "out.mp4"
    result = dvp("run", str(clips["face"]), "-o", str(out), "--bootstrap-servers", settings.bootstrap,
                 "--filter", "sunglasses", "-q", env={"DVP_TOPIC_PREFIX": settings.topic_prefix})
    assert result.returncode == 0, result.stderr
    assert_every_frame_once_in_order(read_video(out), 75)


def test_phone_video_stored_sideways_is_filtered_upright(clips, tmp_path):
    """Phones store portrait video sideways, with a rotation for players: the faces
    must be found in the upright picture, and the output must play upright."""
    upright = read_video(clips["face"]).frames[:25]
    stored = tmp_path / "stored.mp4"
    with av.open(str(stored), "w") as out:
        video = out.add_stream("libx264", rate=25, options={"crf": "16"})
        video.width, video.height, video.pix_fmt = 360, 480, "yuv420p"
        for i, image in enumerate(upright):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(image)), format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(video.encode(frame))
        out.mux(video.encode())
    # The track header's matrix: show the stored picture turned 90 degrees clockwise.
    identity = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    clockwise = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    data = stored.read_bytes()
    track = data.index(identity, data.index(identity) + 1)  # the first is the movie header's
    phone = tmp_path / "phone.mp4"
    phone.write_bytes(data[:track] + clockwise + data[track + len(clockwise):])

    out = tmp_path / "out.mp4"
    result = dvp("run", str(phone), "-o", str(out), "-q", "--workers", "1")
    assert result.returncode == 0, result.stderr
    output = read_video(out).frames
    assert output[0].shape == upright[0].shape
    assert_faces_filtered_and_the_rest_kept(upright, output)


def test_avi_with_b_frames_keeps_every_frame_time_and_the_sound_in_step(clips, tmp_path):
    """AVI has no presentation times: with B-frames the decoder hands out decode-order
    times. The output's frame times must equal the input's display times."""
    source = tmp_path / "camera.avi"
    write_clip(source, read_video(clips["face"]).frames[:40], fmt="avi", options={"bf": "2", "crf": "16"}, tone_s=1.6)
    out = tmp_path / "out.mp4"
    result = dvp("run", str(source), "-o", str(out), "-q", "--workers", "1")
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as c:
        times = [frame.time for frame in c.decode(video=0)]
    assert len(times) == 40
    assert max(abs(t - i / 25) for i, t in enumerate(times)) <= 0.001
    assert_every_frame_once_in_order(read_video(out), 40)
    assert read_video(out).audio_duration == pytest.approx(1.6, abs=0.05)


def test_dvp_run_applies_a_chain_of_filters_drawn_on_landmarks(clips, tmp_path):
    spec = "cartoon:levels=4|mustache|outline"
    out = tmp_path / "chain.mp4"
    result = dvp("run", str(clips["face"]), "-o", str(out), "--filter", spec, "-q")
    assert result.returncode == 0, result.stderr
    src, dst = read_video(clips["face"]), read_video(out)
    assert_every_frame_once_in_order(dst, len(src.frames))
    detector = FaceDetector()
    try:
        for i in range(0, len(src.frames), 10):
            faces = detector.detect(src.frames[i], landmarks=True)
            x0, y0, x1, y1 = padded_box(faces[0], 0, src.frames[i].shape)
            face = (slice(y0, y1), slice(x0, x1))
            assert mean_abs_diff(dst.frames[i][face], src.frames[i][face]) > 15, f"frame {i}: face not cartooned"
            assert mustache_under_nose(dst.frames[i], src.frames[i], detector), f"frame {i}: no mustache"
            # The outline's top edge, within a few rows of where this process finds the box
            # (its worker found it in the frame after JPEG; H.264 smears a thin line's colour).
            band = dst.frames[i][y0 - 4:y0 + 5, x0 + 5:x1 - 5].astype(int)
            nearest = np.abs(band - outline.COLOUR).max(axis=2).min(axis=0)
            assert (nearest < 80).mean() > 0.7, f"frame {i}: no outline"
    finally:
        detector.close()


def test_a_slow_worker_slows_a_job_and_never_fails_it(broker_kind, settings, tmp_path, request):
    """Workers own fixed partitions: one slower than the other falls behind on its
    share while the other races ahead. Published all at once, the aggregator held
    the frames after the slow worker's first missing one until its reorder limit
    failed the job (a 10-minute clip on a busy 2-core machine: 2000 frames). The
    publisher now keeps within half that limit of the assembly."""
    if broker_kind != "tansu":
        pytest.skip("pacing is the publisher's, the same on every broker")
    settings = settings.replace(reorder_frames=100)
    clip = tmp_path / "in.mp4"
    write_sample(str(clip), seconds=16, width=320, height=240, stamp=True)  # 400 frames
    with running_services(settings, tmp_path / "logs", request) as services:
        services.worker()
        slow = services.worker()
        services.aggregator()
        services.wait_workers_assigned()
        with slowed(slow.pid, 0.4, 0.1):
            published, done = run_job(settings, clip, tmp_path)
    assert done.frames == published.frames == 400
    by_worker: dict[str, int] = {}
    for m in (METRICS.decode(v) for _, _, _, v in read_topic(settings, settings.names.metrics)):
        by_worker[m.worker_id] = by_worker.get(m.worker_id, 0) + 1
    assert len(by_worker) == 2 and min(by_worker.values()) >= 100, by_worker  # the slow one had its share
    assert_every_frame_once_in_order(read_video(tmp_path / "out.mp4"), 400)
