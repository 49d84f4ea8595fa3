"""Bad input: one clear line on stderr, exit status 1, nothing that looks like an output."""
import re
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from dvp.infra.tansu import free_port
from dvp.kafka_cluster import Cluster
from dvp.producers.publish import publish
from dvp.producers.watch import JobWatcher
from tests.helpers import dvp, read_video

pytestmark = pytest.mark.integration


def write_video(path, frames, fps=25, fmt=None):
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("mpeg4" if fmt == "avi" else "libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        out.start_encoding()
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def noise(width, height, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)


def assert_refused(result, message, output):
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dvp: error: "), result.stderr
    assert message in lines[0]
    assert not output.exists()
    assert not list(output.parent.glob(f"*{output.name}*"))


def make_input(kind, clips, tmp_path):
    if kind == "missing":
        return tmp_path / "nope.mp4"
    if kind == "text":
        path = tmp_path / "notes.mp4"
        path.write_text("this is not a video\n" * 100)
        return path
    if kind == "truncated":
        data = clips["face"].read_bytes()
        path = tmp_path / "truncated.mp4"
        path.write_bytes(data[: len(data) // 2])
        return path
    if kind == "no-frames":
        path = tmp_path / "empty.avi"
        with av.open(str(path), "w", format="avi") as out:
            stream = out.add_stream("mpeg4", rate=25)
            stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
            out.start_encoding()
        return path
    if kind == "audio-only":
        path = tmp_path / "tone.m4a"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("aac", rate=44100, layout="mono")
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, 0
            out.mux(stream.encode(frame))
            out.mux(stream.encode())
        return path
    if kind == "1x1":
        path = tmp_path / "dot.avi"
        with av.open(str(path), "w", format="avi") as out:
            stream = out.add_stream("rawvideo", rate=25)
            stream.width, stream.height, stream.pix_fmt = 1, 1, "bgr24"
            for i in range(5):
                frame = av.VideoFrame.from_ndarray(np.full((1, 1, 3), 200, np.uint8), format="bgr24")
                frame.pts = i
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
        return path
    raise ValueError(kind)


@pytest.mark.parametrize("kind, message", [
    ("missing", "no such file"),
    ("text", "not a video FFmpeg can read"),
    ("truncated", "not a video FFmpeg can read"),
    ("no-frames", "has no video frames"),
    ("audio-only", "has no video stream"),
    ("1x1", "is 1x1 pixels, too small to filter"),
])
def test_bad_files_are_refused_before_anything_starts(kind, message, clips, tmp_path):
    source = make_input(kind, clips, tmp_path)
    out = tmp_path / "out" / "result.mp4"
    started = time.monotonic()
    assert_refused(dvp("run", str(source), "-o", str(out)), message, out)
    assert time.monotonic() - started < 30


def test_a_stream_cut_midway_yields_the_frames_before_the_cut(tmp_path):
    """MPEG-TS has no index to lose: a cut file decodes up to the cut, and the job uses that."""
    ts = tmp_path / "clip.ts"
    write_video(ts, [noise(64, 48, i) for i in range(10)], fmt="mpegts")
    cut = tmp_path / "cut.ts"
    cut.write_bytes(ts.read_bytes()[: ts.stat().st_size // 2])
    out = tmp_path / "out.mp4"
    result = dvp("run", str(cut), "-o", str(out), "-q", "--filter", "blackout")
    assert result.returncode == 0, result.stderr
    assert 0 < len(read_video(out).frames) < 10


@pytest.mark.parametrize("spec, message", [
    ("sparkles", "unknown filter 'sparkles'"),
    ("blur:radius=4", "has no parameter 'radius'"),
    ("pixelate:blocks=0", "blocks must be an integer from 2 to 64"),
])
def test_unknown_filters_and_parameters_are_refused(spec, message, clips, tmp_path):
    out = tmp_path / "out.mp4"
    assert_refused(dvp("run", str(clips["face"]), "-o", str(out), "--filter", spec), message, out)
    assert_refused(dvp("publish", str(clips["face"]), "--filter", spec, "--bootstrap-servers", "127.0.0.1:1"),
                   message, out)


def test_unreachable_broker_fails_within_a_bounded_time(clips, tmp_path):
    out = tmp_path / "out.mp4"
    port = free_port()  # nothing listens there
    started = time.monotonic()
    result = dvp("run", str(clips["face"]), "-o", str(out), "--bootstrap-servers", f"127.0.0.1:{port}",
                 env={"DVP_CONNECT_TIMEOUT_S": "3"})
    assert_refused(result, f"cannot reach Kafka at 127.0.0.1:{port} within 3 s", out)
    result = dvp("publish", str(clips["face"]), "--filter", "blur", "--bootstrap-servers", f"127.0.0.1:{port}",
                 env={"DVP_CONNECT_TIMEOUT_S": "3"})
    assert_refused(result, "cannot reach Kafka", out)
    assert time.monotonic() - started < 60


def test_a_frame_larger_than_the_cluster_accepts_even_at_low_quality_is_refused(broker, tmp_path):
    clip = tmp_path / "noise.mp4"
    write_video(clip, [noise(1280, 960, i) for i in range(3)])
    out = tmp_path / "out.mp4"
    result = dvp("publish", str(clip), "--filter", "blur", "--bootstrap-servers", broker, "--wait", "-o", str(out),
                 "--kafka-config", "message.max.bytes=300000")
    assert_refused(result, "even at quality 30, over the 0.2 MB Kafka accepts", out)


def test_frames_over_the_cluster_limit_midway_are_sent_at_a_lower_quality(settings, services, tmp_path):
    """The first frames fit the 1 MB a cluster accepts, later ones do not at the
    quality asked for: they go at a lower one, and the job says so."""
    clip = tmp_path / "grows.mp4"
    write_video(clip, [np.zeros((960, 1280, 3), np.uint8)] * 5 + [noise(1280, 960, 9)] * 3)
    limited = settings.replace(kafka_config=("message.max.bytes=1000000",))
    services.worker()
    services.aggregator()
    cluster = Cluster.reach(limited)
    watcher = JobWatcher(cluster)
    try:
        published = publish(Cluster.reach(limited.replace(jpeg_quality=95)), str(clip), "blur", job_id="grows-1",
                            progress=False)
        done = watcher.wait("grows-1", published.frames, progress=False, timeout=60)
    finally:
        watcher.close()
    assert done.frames == 8
    [note] = done.notes
    assert re.fullmatch(r"frames sent at a lower JPEG quality \(down to [5-8]5, not 95\) to fit in the 0.9 MB the "
                        r"cluster accepts: 3", note), note


def test_bad_job_ids_and_settings_are_refused(clips, tmp_path):
    out = tmp_path / "out.mp4"
    assert_refused(dvp("publish", str(clips["face"]), "--filter", "blur", "--job-id", "../evil"), "job id", out)
    assert_refused(dvp("run", str(clips["face"]), "-o", str(out), "--workers", "0"), "--workers must be", out)
    assert_refused(dvp("run", str(clips["face"]), "-o", str(out), "--jpeg-quality", "0"), "--jpeg-quality", out)
    assert_refused(dvp("run", str(clips["face"]), "-o", str(out), "--kafka-config", "oops"), "KEY=VALUE", out)


def test_a_video_too_long_for_the_embedded_brokers_memory_is_refused_before_anything_starts(tmp_path):
    from dvp.errors import InputError
    from dvp.run import check_broker_memory

    gigabyte = 10**9
    # 10 minutes of 1080p at 30 fps, about 250 kB a frame as JPEG: 18 000 frames.
    with pytest.raises(InputError, match=r"18000 frames would take about 11\.7 GB .* 4\.0 GB is available"):
        check_broker_memory("long.mp4", 18000, 250_000, 4 * gigabyte)
    check_broker_memory("long.mp4", 18000, 250_000, 16 * gigabyte)  # fits
    check_broker_memory("long.mp4", 18000, 250_000, None)  # memory unknown: not refused
