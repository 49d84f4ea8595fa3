"""The live detection schedule (consumers/live_schedule.py), judged with ground
truth: real photos at known boxes, blurred where the schedule's searches found
faces, through the live detector (MediaPipe). No broker: the per-frame work."""
import math
import time

import numpy as np
import pytest

from dvp.consumers.live_schedule import LiveSchedule
from dvp.faces import FaceDetector
from dvp.filters import parse_spec
from tests.ground_truth import leaked_frames, moving_face_clip
from tests.photos import Placement, scene_clip

FRAME_US = 33_333  # 30 fps
BLUR = parse_spec("blur")


@pytest.fixture(scope="module")
def detector():
    found = FaceDetector("mediapipe")
    yield found
    found.close()


def filtered(clip, schedule: LiveSchedule, detector: FaceDetector) -> list[np.ndarray]:
    """Regions searched as workers search them (the short-range model: detect_near)."""
    return [BLUR.apply(t.image.copy(), schedule.faces("cam", t.image, i * FRAME_US, detector.detect,
                                                      near=detector.detect_near))
            for i, t in enumerate(clip)]


@pytest.fixture(scope="module")
def gliding():
    """A face entering from the left edge and crossing a 1280x720 frame: hidden,
    blurred and turned on the way."""
    return moving_face_clip(1280, 720, 300, frames=44)


def test_region_searches_between_full_ones_cover_a_moving_face_as_well_as_searching_every_frame(gliding, detector):
    every_frame = LiveSchedule(every=1)
    baseline = leaked_frames(gliding, filtered(gliding, every_frame, detector))
    assert every_frame.full_searches == 44 and every_frame.region_searches == 0
    assert len(baseline) <= 4, baseline  # the detector's own misses: the face's first sliver, troubles
    fourth = LiveSchedule(every=4)
    leaks = leaked_frames(gliding, filtered(gliding, fourth, detector))
    # The face's first frames, at the edge, wait for the second full search: k - 1 frames.
    assert len(leaks) <= len(baseline) + 3, (leaks, baseline)
    assert not [i for i in leaks if i >= 4 and i not in baseline], (leaks, baseline)
    # The face was found again around where it was (a region that missed it would call
    # for a full search on the next frame, every time).
    assert fourth.full_searches <= math.ceil(44 / 4) + 6, fourth.full_searches
    assert fourth.region_searches >= 44 - fourth.full_searches


def test_a_face_that_appears_waits_for_the_next_full_search_and_no_longer(detector):
    person = [Placement("astronaut", 90, 0.5, 0.45, dx=3)]
    clip = scene_clip(1280, 720, [], 10) + scene_clip(1280, 720, person, 14)  # it appears on frame 10
    leaks = leaked_frames(clip, filtered(clip, LiveSchedule(every=4), detector))
    assert set(leaks) <= {10, 11}, leaks  # full searches on frames 0, 4, 8, 12, ...
    assert 12 not in leaks and 13 not in leaks
    assert leaked_frames(clip, filtered(clip, LiveSchedule(every=1), detector)) == []


def costed(ms_per_megapixel: float, clock: list[float]):
    """A detector whose searches cost time in proportion to the pixels searched, on
    a clock of the test's: what the schedule adapts to, without timing a machine."""
    def detect(image: np.ndarray, _landmarks: bool) -> list:
        clock[0] += ms_per_megapixel * image.shape[0] * image.shape[1] / 1e6 / 1000
        return []
    return detect


@pytest.mark.parametrize(("width", "height", "k"), [(640, 480, 1), (1280, 720, 3), (1920, 1080, 6)])
def test_full_searches_are_spaced_to_what_they_cost_against_the_time_between_frames(width, height, k):
    clock = [0.0]
    schedule = LiveSchedule(clock=lambda: clock[0])
    detect = costed(50.0, clock)  # about MediaPipe with tiles: 46 ms a frame at 1280x720
    image = np.zeros((height, width, 3), np.uint8)
    for i in range(30):
        schedule.faces("cam", image, i * FRAME_US, detect)
    assert schedule.k("cam") == k  # ceil(full search / (0.6 of a frame's time))
    assert schedule.full_searches == math.ceil(30 / k)


def test_a_session_is_scheduled_apart_from_the_others():
    clock = [0.0]
    schedule = LiveSchedule(clock=lambda: clock[0])
    detect = costed(50.0, clock)
    big, small = np.zeros((1080, 1920, 3), np.uint8), np.zeros((480, 640, 3), np.uint8)
    for i in range(10):
        schedule.faces("hd", big, i * FRAME_US, detect)
        schedule.faces("vga", small, i * FRAME_US, detect)
    assert schedule.k("vga") == 1 and schedule.k("hd") > 1


@pytest.fixture(scope="module")
def beside_detector():
    found = FaceDetector("mediapipe")
    yield found
    found.close()


def test_full_searches_beside_find_a_face_that_appears_for_the_next_frame(detector, beside_detector):
    """Where a full search costs more than a frame's time, frames get region searches
    and full searches run beside; each is let finish before the next frame here."""
    person = [Placement("astronaut", 90, 0.5, 0.45, dx=3)]
    clip = scene_clip(1280, 720, [], 10) + scene_clip(1280, 720, person, 14)
    slow = time.perf_counter  # searches seen as 20 times dearer: beside, whatever this machine's speed
    schedule = LiveSchedule(beside=lambda _name: beside_detector.detect, clock=lambda: 20 * slow())
    out = []
    try:
        for i, truth in enumerate(clip):
            out.append(BLUR.apply(truth.image.copy(), schedule.faces("cam", truth.image, i * FRAME_US,
                                                                     detector.detect, detector="mediapipe",
                                                                     near=detector.detect_near)))
            schedule.settle()
    finally:
        schedule.close()
    assert schedule.full_searches == 1 and schedule.beside_searches >= 20  # in line: the first frame only
    assert leaked_frames(clip, out) == [10]  # found beside on its first frame, covered from the next on
