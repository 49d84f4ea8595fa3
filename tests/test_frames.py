"""A worker's per-frame work, without a broker: records in, records out."""
import cv2
import numpy as np
import pytest

from dvp.config import Names
from dvp.consumers.frames import Consumed, FrameProcessor, WorkerIdentity
from dvp.faces import Detectors, FaceDetector
from dvp.jpeg import EIGHT_K
from dvp.messages import ASSEMBLY, FRAMES, METRICS, Frame, FrameFailed, FrameMetrics, ProcessedFrame
from dvp.sample import astronaut_face, background

NAMES = Names.with_prefix("t.")
ME = WorkerIdentity("host-1", "host", "10.1.2.3", 1)
FACE = (slice(80, 280), slice(140, 340))  # where the test puts the face


@pytest.fixture(scope="module")
def processor():
    detectors = Detectors(FaceDetector)
    yield FrameProcessor(NAMES, detectors, ME, jpeg_quality=90, max_pixels=EIGHT_K)
    detectors.close()


def scene() -> np.ndarray:
    image = background(480, 360)
    image[FACE] = astronaut_face(200)
    return image


def consumed(value: bytes, offset: int = 7) -> Consumed:
    return Consumed(NAMES.frames, 3, offset, b"job-1", value)


def frame_record(image: np.ndarray, filter_spec: str = "blackout", jpeg: bytes | None = None,
                 privacy: str = "per-frame", detector: str = "centerface") -> bytes:
    if jpeg is None:
        jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    return FRAMES.encode(Frame("job-1", 4, 400, filter_spec, privacy, jpeg, 1, 2, detector))


def test_a_frame_comes_out_filtered_where_the_face_is_with_its_metrics(processor):
    image = scene()
    outcome = processor.process(consumed(frame_record(image)))
    assert outcome.result.topic == NAMES.processed and outcome.result.key == b"job-1"
    result = ASSEMBLY.decode(outcome.result.value)
    assert isinstance(result, ProcessedFrame) and (result.index, result.pts) == (4, 400)
    out = cv2.imdecode(np.frombuffer(result.jpeg, np.uint8), cv2.IMREAD_COLOR)
    centre = (slice(145, 190), slice(210, 250))  # inside the face (x 200-260, y 136-196), whatever the box
    assert out[centre].mean() < 15  # blacked out
    far = (slice(0, 60), slice(0, 100))
    assert np.abs(out[far].astype(int) - image[far].astype(int)).mean() < 10  # the rest stays, but for JPEG
    assert len(result.faces) == 1 and result.worker_id == ME.id
    [metrics] = outcome.also
    assert metrics.topic == NAMES.metrics
    m = METRICS.decode(metrics.value)
    assert isinstance(m, FrameMetrics)
    assert (m.host, m.ip, m.pid, m.partition, m.faces) == (ME.host, ME.ip, ME.pid, 3, 1)
    assert m.timings.detect_ms > 0


def test_under_strict_privacy_the_frame_goes_on_as_it_came_with_its_faces(processor):
    """The aggregator filters it, once the faces are tracked over frames."""
    value = frame_record(scene(), privacy="strict")
    result = ASSEMBLY.decode(processor.process(consumed(value)).result.value)
    assert result.jpeg == FRAMES.decode(value).jpeg
    [face] = result.faces
    assert face.x < 240 < face.x + face.w and face.y < 180 < face.y + face.h


@pytest.mark.parametrize("privacy", ["", "lenient", "x" * 1000])
def test_a_frame_with_an_unknown_privacy_mode_is_set_aside(processor, privacy):
    outcome = processor.process(consumed(frame_record(scene(), privacy=privacy)))
    assert outcome.result.topic == NAMES.deadletter and b"privacy" in dict(outcome.result.headers)["dvp.error"]


def test_a_record_that_is_no_frame_becomes_a_dead_letter_with_its_origin(processor):
    outcome = processor.process(consumed(b"not avro at all", offset=11))
    letter = outcome.result
    assert letter.topic == NAMES.deadletter and letter.value == b"not avro at all" and letter.key == b"job-1"
    headers = dict(letter.headers)
    assert headers["dvp.topic"] == NAMES.frames.encode() and headers["dvp.partition"] == b"3"
    assert headers["dvp.offset"] == b"11" and headers["dvp.worker"] == ME.id.encode()
    assert b"magic" in headers["dvp.error"]
    assert outcome.also == ()


@pytest.mark.parametrize("record, reason", [
    (frame_record(scene(), jpeg=b"\xff\xd8 not a jpeg"), "not a JPEG"),
    (frame_record(scene(), filter_spec="no-such-filter"), "unknown filter"),
    (frame_record(scene(), detector="yolo\x1b[2J"), "unknown face detector 'yolo\\x1b[2J'"),
])
def test_a_frame_that_breaks_a_stage_fails_its_job_and_is_set_aside(processor, record, reason):
    outcome = processor.process(consumed(record))
    failed = ASSEMBLY.decode(outcome.result.value)
    assert outcome.result.topic == NAMES.processed
    assert isinstance(failed, FrameFailed) and failed.index == 4 and reason in failed.reason
    [letter] = outcome.also
    assert letter.topic == NAMES.deadletter and letter.value == record


def test_each_frame_is_searched_by_the_detector_its_job_asks_for(processor):
    for detector in ("mediapipe", "centerface"):
        result = ASSEMBLY.decode(processor.process(consumed(frame_record(scene(), detector=detector))).result.value)
        assert len(result.faces) == 1
    assert set(processor.detectors._made) == {"centerface", "mediapipe"}


def test_a_refused_result_becomes_a_failure_of_its_frame(processor):
    outcome = processor.process(consumed(frame_record(scene())))
    assert outcome.if_refused is not None
    refused = outcome.if_refused("a 2.1 MB record is larger than Kafka accepts")
    failed = ASSEMBLY.decode(refused.value)
    assert refused.topic == NAMES.processed and isinstance(failed, FrameFailed)
    assert (failed.job_id, failed.index) == ("job-1", 4) and "larger than Kafka accepts" in failed.reason
