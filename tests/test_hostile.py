"""Records, requests and disks that try to crash, fool or exhaust the pipeline:
each test reproduces a finding of the audit (issue 19) against the real component."""
import contextlib
import dataclasses
import hashlib
import resource
import socket
import struct
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from dvp import kafka
from dvp.config import Names, Settings
from dvp.consumers.frames import Consumed, FrameProcessor, WorkerIdentity
from dvp.encode import VideoEncoder
from dvp.errors import DvpError, JobError, MalformedRecord
from dvp.faces import Detectors, FaceDetector
from dvp.history import fetch
from dvp.infra.kafka.cluster import new_cluster_id
from dvp.infra.tansu import free_port
from dvp.jpeg import EIGHT_K, decode_jpeg, jpeg_size
from dvp.kafka import ReliableProducer
from dvp.kafka_cluster import Cluster
from dvp.messages import (
    ASSEMBLY,
    FRAMES,
    JOBS,
    RESULTS,
    Frame,
    FrameFailed,
    JobCompleted,
    JobEnd,
    JobFailed,
    JobStart,
    ProcessedFrame,
    ResultChunk,
    StageTimings,
    now_us,
    printable,
)
from dvp.producers.mjpeg import IDLE_S, MAX_VIEWERS, MjpegServer
from dvp.producers.publish import publish
from dvp.producers.watch import JobWatcher
from dvp.signing import key_file, signed, verified
from dvp.store import Store, StoreError
from dvp.streams.assembler import AssemblyOptions, JobAssembler
from tests.helpers import dvp, raw_status, read_topic, wait_for

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
    (small_jpeg().replace(b"\xff\xc0", b"\xff\xc3", 1), "neither baseline nor progressive"),  # lossless
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
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        outcome = processor.process(Consumed(NAMES.frames, 0, 5, b"job-1", record))
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_kb < 100_000  # decoded: 5.2 GB more
    finally:
        detectors.close()
    failed = ASSEMBLY.decode(outcome.result.value)
    assert isinstance(failed, FrameFailed) and "30000x30000" in failed.reason and "DVP_MAX_PIXELS" in failed.reason
    [letter] = outcome.also
    assert letter.topic == NAMES.deadletter and letter.value == record


@pytest.mark.integration
def test_bombs_on_every_partition_cost_their_frames_and_the_next_job_completes(broker_kind, settings, services,
                                                                               clips):
    """Was: each bomb crashed its worker up to 3 times, the frames behind it waited."""
    if broker_kind != "tansu":
        pytest.skip("the workers' checks are the same on every broker")
    services.worker()
    services.aggregator()
    services.wait_workers_assigned()
    producer = ReliableProducer(settings)
    bomb, names = declaring(30000, 30000), settings.names
    producer.send(names.processed, ASSEMBLY.encode(JobStart("bombed", "crafted", "blur", "per-frame", 64, 48, 25, 1,
                                                            1, 25, settings.frames_partitions, False, now_us())),
                  key=b"bombed")
    for p in range(settings.frames_partitions):
        producer.send(names.frames, FRAMES.encode(Frame("bombed", p, p, "blur", "per-frame", bomb, now_us(), now_us(),
                                                        settings.detector)), key=b"bombed", partition=p)
    for p in range(Cluster.reach(settings).partition_count(names.live)):  # the live thread reads them as they come
        producer.send(names.live, FRAMES.encode(Frame("live-bombed", p, p, "blur", "per-frame", bomb, now_us(),
                                                      now_us(), settings.live_detector)), key=b"live", partition=p)
    producer.send(names.processed, ASSEMBLY.encode(JobEnd("bombed", settings.frames_partitions, 0)), key=b"bombed")
    producer.flush(10)
    cluster = Cluster.reach(settings)
    watcher = JobWatcher(cluster)
    try:
        with pytest.raises(DvpError, match="job bombed failed: frame .*30000x30000.*DVP_MAX_PIXELS"):
            watcher.wait("bombed", settings.frames_partitions, progress=False, timeout=60)
        published = publish(cluster, str(clips["face"]), "blur", progress=False)
        done = watcher.wait(published.start.job_id, published.frames, progress=False, timeout=120)
    finally:
        watcher.close()
    assert done.frames == 75
    assert services.exited() == [] and "exited" not in services.log_text()  # no worker process died
    letters = [v for _, _, _, v in read_topic(settings, names.deadletter)]
    assert sum(v.startswith(b"DVP") and bomb in v for v in letters) >= settings.frames_partitions


def test_the_aggregator_fails_a_job_whose_frame_declares_another_size(tmp_path):
    start = JobStart("job-1", "x.mp4", "blur", "per-frame", 64, 48, 25, 1, 1, 25, 2, False, 0)
    job = JobAssembler(start, tmp_path, tmp_path, AssemblyOptions(30, "ultrafast", 100, 10**8))
    assert job.add(ProcessedFrame("job-1", 0, 0, small_jpeg(), True, [], "w", T, 0, 0)) is None
    with pytest.raises(JobError, match="frame 1: a 128x96 JPEG where the job's frames are 64x48"):
        job.add(ProcessedFrame("job-1", 1, 1, declaring(128, 96), True, [], "w", T, 0, 0))
    with pytest.raises(JobError, match="frame 2: a 30000x30000 JPEG, over the limit"):
        job.add(ProcessedFrame("job-1", 2, 2, declaring(30000, 30000), True, [], "w", T, 0, 0))


def completed(job_id: str, data: bytes, key: bytes | None) -> JobCompleted:
    record = JobCompleted(job_id, f"/x/{job_id}.mp4", 1, 0, 0.04, len(data), 1, hashlib.sha256(data).hexdigest(), 1)
    return signed(key, record) if key is not None else record


def test_a_completion_verifies_only_as_it_was_signed_under_the_cluster_secret(tmp_path):
    key = key_file(tmp_path)
    assert key == key_file(tmp_path) and (tmp_path / "secret").stat().st_mode & 0o077 == 0
    record = completed("job-1", b"video", key)
    assert verified(key, record)
    assert not verified(b"another secret", record)
    assert not verified(key, dataclasses.replace(record, sha256=hashlib.sha256(b"forged").hexdigest()))
    assert not verified(key, dataclasses.replace(record, job_id="job-2"))
    assert not verified(key, completed("job-1", b"video", None))


@pytest.mark.integration
def test_forged_results_are_refused_by_fetch_and_the_watcher(broker_kind, settings, tmp_path):
    """Was: a forged ResultChunk + JobCompleted made `dvp fetch` write the forger's
    bytes; a forged JobCompleted of 0 chunks ended `publish --wait` at once."""
    if broker_kind != "tansu":
        pytest.skip("records on topics: one broker shows it")
    Cluster.reach(settings).ensure_topics()
    names, producer = settings.names, kafka.ReliableProducer(settings)
    cluster = Cluster.reach(settings)
    watcher = JobWatcher(cluster)
    forger_key = b"not the cluster's secret"
    for job_id, body_id, key in [("victim-1", "victim-1", forger_key), ("victim-2", "victim-2", None),
                                 ("victim-3", "other-job", settings.signing_key),
                                 ("honest-1", "honest-1", settings.signing_key)]:
        data = f"bytes of {job_id}".encode()
        producer.send(names.results, RESULTS.encode(ResultChunk(body_id, 0, data)), key=job_id.encode())
        producer.send(names.jobs, JOBS.encode(completed(body_id, data, key)), key=job_id.encode())
    producer.flush(10)
    try:
        for victim in ("victim-1", "victim-2"):
            with pytest.raises(DvpError, match="completion record does not verify"):
                fetch(cluster, victim, tmp_path / f"{victim}.mp4")
        with pytest.raises(DvpError, match="no such job"):  # keyed victim-3, about other-job
            fetch(cluster, "victim-3", tmp_path / "victim-3.mp4")
        assert fetch(cluster, "honest-1", tmp_path / "honest.mp4").job_id == "honest-1"
        assert (tmp_path / "honest.mp4").read_bytes() == b"bytes of honest-1"
        assert not list(tmp_path.glob("victim*"))

        # A watcher that joined before the forgeries: ignores them, says so when it stalls.
        producer.send(names.jobs, JOBS.encode(completed("victim-4", b"", forger_key)), key=b"victim-4")
        producer.flush(10)
        with pytest.raises(DvpError, match="1 completion records did not verify"):
            watcher.wait("victim-4", 1, progress=False, timeout=3, save_to=tmp_path / "victim-4.mp4")
        assert not (tmp_path / "victim-4.mp4").exists()
    finally:
        watcher.close()


def test_strings_from_messages_are_escaped_for_the_terminal():
    assert printable("title\x1b]0;pwned\x07\x1b[2J\rdone\u202e") == "title\\x1b]0;pwned\\x07\\x1b[2J\\rdone\\u202e"
    assert printable("Zoë_日本語 ok") == "Zoë_日本語 ok"


@pytest.mark.integration
def test_a_failure_reason_with_escape_sequences_reaches_the_terminal_escaped(broker_kind, settings):
    """Was: a reason rewrote the terminal's title and cleared the screen."""
    if broker_kind != "tansu":
        pytest.skip("records on topics: one broker shows it")
    Cluster.reach(settings).ensure_topics()
    producer = kafka.ReliableProducer(settings)
    producer.send(settings.names.jobs, JOBS.encode(JobFailed("job-1", "\x1b]0;pwned\x07\x1b[2Jgone")), key=b"job-1")
    producer.flush(10)
    done = dvp("fetch", "job-1", "-o", "/tmp/never.mp4", env=settings.to_env())
    assert done.returncode == 1
    assert done.stderr.strip() == "dvp: error: job job-1: failed: \\x1b]0;pwned\\x07\\x1b[2Jgone"


SECRETS = ("hunter2-sasl", "pw-in-userinfo", "pw-in-query", "the-dvp-secret", "keystore-pass")


def secret_settings(tmp_path) -> Settings:
    return Settings.load(environ={
        "DVP_HOME": str(tmp_path), "DVP_SECRET": "the-dvp-secret",
        "DVP_KAFKA_CONFIG": "security.protocol=SASL_SSL,sasl.username=me,sasl.password=hunter2-sasl,"
                            "ssl.keystore.password=keystore-pass",
        "DVP_CLICKHOUSE_DSN": "http://me:pw-in-userinfo@127.0.0.1:1/db?password=pw-in-query&compress=1"})


def test_dvp_config_masks_every_secret_and_shows_the_rest(tmp_path):
    """Was: `dvp config` printed sasl.password and the DSN's password in clear."""
    settings = secret_settings(tmp_path)
    done = dvp("config", env=settings.to_env())
    assert done.returncode == 0
    for secret in SECRETS:
        assert secret not in done.stdout
    assert "sasl.username=me" in done.stdout and "sasl.password=***" in done.stdout
    assert "http://me:***@127.0.0.1:1/db?password=***&compress=1" in done.stdout


def test_store_errors_name_the_store_without_its_passwords(tmp_path):
    """Was: a DSN password given as ?password= was printed in store errors."""
    with pytest.raises(StoreError) as caught:
        Store(secret_settings(tmp_path), busy_timeout_s=1)
    assert "127.0.0.1:1" in str(caught.value)
    for secret in SECRETS:
        assert secret not in str(caught.value)


def test_the_mjpeg_server_answers_only_its_names_a_few_viewers_and_drops_idle_connections():
    """Was: it served the camera to any Host; each idle connection held a thread forever."""
    server = MjpegServer("127.0.0.1", free_port())
    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    server.show(small_jpeg())
    try:
        assert raw_status(port, "GET / HTTP/1.1\r\nHost: rebind.evil.example\r\n\r\n") == b"403"
        viewers = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_VIEWERS)]
        for v in viewers:
            v.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            assert v.recv(64).split(b" ")[1] == b"200"
        assert raw_status(port, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n") == b"503"
        for v in viewers:
            v.close()
        idle = socket.create_connection(("127.0.0.1", port))
        idle.settimeout(IDLE_S + 10)
        assert idle.recv(64) == b""  # closed by the server, having sent nothing
        idle.close()
        wait_for(lambda: raw_status(port, "GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n") == b"200", 10, "a free place")
    finally:
        server.close()


def test_cluster_ids_never_start_with_a_dash():
    """Was: `dvp kafka up` failed 1 time in 64, the id read as an option."""
    ids = [new_cluster_id() for _ in range(5000)]
    assert all(len(i) == 22 and i[0] != "-" for i in ids) and len(set(ids)) == 5000


def test_a_full_disk_gives_its_space_back_when_the_job_fails(tmp_path):
    """Was: the failed job's work file stayed open (unlinked), and every later job
    failed with ENOSPC until the aggregator restarted."""
    fds = len(list(Path("/proc/self/fd").iterdir()))
    encoder = VideoEncoder(Path("/dev/full"), 640, 480, Fraction(25), Fraction(1, 25), 30, "ultrafast")
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    with pytest.raises(OSError):  # noqa: PT012 - the disk fills at some frame
        for pts in range(200):
            encoder.write(noise, pts)
        encoder.close()
    with contextlib.suppress(OSError):
        encoder.close()
    assert len(list(Path("/proc/self/fd").iterdir())) == fds
