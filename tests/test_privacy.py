"""--privacy strict: a face the detector misses on some frames is still filtered
on every frame, judged with ground truth (faces where the test put them)."""
import numpy as np
import pytest

from dvp.faces import Face, FaceDetector
from dvp.messages import PER_FRAME, STRICT
from dvp.streams.privacy import TemporalCover
from tests.ground_truth import RememberingDetector, leaked_frames, moving_face_clip, through_the_pipeline


@pytest.fixture(scope="module")
def detector():
    # MediaPipe: the clip's troubles make it miss (the default detector finds
    # these faces), and strict mode is there for whichever detector misses.
    d = FaceDetector("mediapipe")
    yield RememberingDetector(d)
    d.close()


@pytest.mark.parametrize("width, height, crop", [(640, 480, 240), (640, 480, 800), (3840, 2160, 500)],
                         ids=["640x480", "close-up", "4K"])
def test_strict_mode_leaks_no_frame_where_per_frame_mode_does(detector, tmp_path, width, height, crop):
    clip = moving_face_clip(width, height, crop)  # the 4K face is 150 pixels wide
    per_frame = leaked_frames(clip, through_the_pipeline(clip, PER_FRAME, detector, tmp_path))
    strict = leaked_frames(clip, through_the_pipeline(clip, STRICT, detector, tmp_path))
    print(f"{width}x{height}: leaked frames per-frame {per_frame}, strict {strict} of {len(clip)}")
    assert per_frame, "the clip no longer troubles the detector: the test cannot tell the modes apart"
    assert all(clip[i].trouble for i in per_frame)  # misses happen where the troubles are
    assert strict == []


def box(x: float, w: float = 40) -> list[Face]:
    return [Face(x, 100, w, w, 0.9)]


def covers(faces: list[Face], x: float, w: float = 40) -> bool:
    return any(f.x <= x and x + w <= f.x + f.w for f in faces)


def run(cover: TemporalCover, detections: list[list[Face]]) -> list[list[Face]]:
    out = [faces for i, d in enumerate(detections) for _, faces in cover.push(i, i, d)]
    return out + [faces for _, faces in cover.drain()]


def test_misses_inside_a_track_are_bridged_and_a_face_is_held_for_the_reach():
    # A face moving 5 px a frame, found on frames 0-9 and 13-19, gone after 19.
    seen = [box(100 + 5 * i) if i < 10 or 13 <= i < 20 else [] for i in range(40)]
    out = run(TemporalCover(reach=4), seen)
    assert all(covers(out[i], 100 + 5 * i) for i in range(20))  # 10-12 interpolated
    assert all(covers(out[i], 100 + 5 * i) for i in range(20, 24))  # held, moving on
    assert all(out[i] == [] for i in range(25, 40))  # then let go


def test_a_face_is_covered_before_it_is_first_found():
    # A face walking in at 10% of its width a frame: found from frame 6 on.
    seen = [[] if i < 6 else box(10 + 4 * i) for i in range(20)]
    out = run(TemporalCover(reach=4), seen)
    assert out[:2] == [[], []]
    assert all(covers(out[i], 10 + 4 * i) for i in range(2, 20))


def test_boxes_are_smoothed_never_smaller_than_found():
    jitter = [box(100 + (6 if i % 2 else -6), 40 + (4 if i % 3 else 0)) for i in range(30)]
    out = run(TemporalCover(reach=3), jitter)
    lefts = [f[0].x for f in out[3:27]]
    assert max(lefts) - min(lefts) < 12  # the raw boxes jump 12 px every frame
    assert all(covers(out[i], jitter[i][0].x, jitter[i][0].w) for i in range(30))


def test_two_faces_keep_their_own_tracks():
    seen = [box(50 + 2 * i) + ([] if i == 5 else box(400 - 2 * i)) for i in range(12)]
    out = run(TemporalCover(reach=3), seen)
    assert covers(out[5], 400 - 10) and covers(out[5], 60)
    assert all(len(faces) == 2 for faces in out)


def test_memory_stays_bounded_on_a_long_stream():
    """A face on every frame of a 10-minute clip: the look-ahead and the tracks stay small."""
    cover: TemporalCover[int] = TemporalCover(reach=12)
    written = 0
    for i in range(15_000):
        written += sum(1 for _ in cover.push(i, i, box(100 + (i % 50))))
        assert cover.waiting <= 12 and written == max(i - 11, 0)
        assert len(cover._tracks) <= 3 and sum(len(t.seen) for t in cover._tracks) <= 2 * (12 + 4)
    assert written + sum(1 for _ in cover.drain()) == 15_000


def test_frames_out_of_order_are_refused():
    cover: TemporalCover[int] = TemporalCover(reach=2)
    list(cover.push(0, 0, []))
    with pytest.raises(ValueError, match="in order"):
        list(cover.push(2, 2, []))


def test_a_landmark_filter_in_a_chain_keeps_strict_coverage(detector, tmp_path):
    """'pixelate|mesh' is strict: where the detector misses, the face is still pixelated."""
    clip = moving_face_clip(640, 480, 240)
    per_frame = leaked_frames(clip, through_the_pipeline(clip, PER_FRAME, detector, tmp_path, "pixelate|mesh"))
    strict = leaked_frames(clip, through_the_pipeline(clip, STRICT, detector, tmp_path, "pixelate|mesh"))
    assert per_frame and strict == []


def test_landmark_filters_draw_in_strict_mode_as_they_do_per_frame(detector, tmp_path):
    """The workers send each face's mesh with its box: the aggregator draws the mesh
    where the worker would have (frames with a detection; a mesh is landmarks only)."""
    clip = moving_face_clip(640, 480, 240, frames=14)[4:]  # the face whole, found on every frame
    per_frame = through_the_pipeline(clip, PER_FRAME, detector, tmp_path, "mesh")
    strict = through_the_pipeline(clip, STRICT, detector, tmp_path, "mesh")
    compared = 0
    for truth, a, b in zip(clip, per_frame, strict, strict=True):
        drawn = np.abs(a.astype(np.int16) - truth.image).max(axis=2) > 60  # the mesh's lines
        if drawn.sum() < 100:  # the mesh model found no mesh on this frame
            continue
        compared += 1
        assert (np.abs(b.astype(np.int16) - truth.image).max(axis=2) > 60)[drawn].mean() > 0.8
    assert compared >= len(clip) // 2


def test_a_lone_stray_detection_is_not_held_for_the_reach():
    seen = [box(300) if i == 10 else [] for i in range(40)]
    out = run(TemporalCover(reach=12), seen)
    assert [i for i, faces in enumerate(out) if faces] == list(range(8, 13))  # two frames each side, not twelve


def test_one_jittery_box_does_not_fling_the_cover():
    # A face standing still, found on frames 0-9, its box once 60 px off (a detector's jitter), then lost.
    seen = [box(100 + (60 if i == 8 else 0)) if i < 10 else [] for i in range(24)]
    out = run(TemporalCover(reach=12), seen)
    for faces in out[10:22]:  # held where it was, not moving on at 60 px a frame
        assert covers(faces, 100) and all(f.x > 40 and f.x + f.w < 220 for f in faces)


def test_a_face_turning_away_stays_one_track():
    # Found on every frame; on frames 10-12 turned: its box half as wide, as tall.
    seen = [[Face(100 + 5 * i, 100, 18, 40, 0.5)] if 10 <= i <= 12 else box(100 + 5 * i) for i in range(30)]
    out = run(TemporalCover(reach=12), seen)
    assert all(len(faces) == 1 for faces in out)  # no second track held over its neighbours
