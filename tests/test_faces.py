"""Face detection at every face size and frame size, judged by ground truth:
real face photos placed where the test knows them, not by what the detector says."""
import numpy as np
import pytest

from dvp.detectors.mediapipe import tiles
from dvp.faces import Face, FaceDetector, merge
from dvp.sample import astronaut_face, background

# Where the face is in the astronaut photo, drawn by hand: eyebrows to chin,
# cheek to cheek, as fractions of the crop (x, y, w, h).
FACE_IN_CROP = (0.30, 0.28, 0.30, 0.30)


def scene(width: int, height: int, crop: int, x: int, y: int) -> tuple[np.ndarray, tuple[float, ...]]:
    """A frame with the astronaut's crop at (x, y), and the true face box in the frame."""
    image = background(width, height)
    photo = astronaut_face(crop)
    x1, y1 = min(x + crop, width), min(y + crop, height)
    image[y:y1, x:x1] = photo[:y1 - y, :x1 - x]
    fx, fy, fw, fh = FACE_IN_CROP
    return image, (x + fx * crop, y + fy * crop, fw * crop, fh * crop)


def covered(truth: tuple[float, ...], faces: list[Face]) -> float:
    """The largest share of the true face box inside one detected box."""
    tx, ty, tw, th = truth
    best = 0.0
    for f in faces:
        w = max(min(tx + tw, f.x + f.w) - max(tx, f.x), 0)
        h = max(min(ty + th, f.y + f.h) - max(ty, f.y), 0)
        best = max(best, w * h / (tw * th))
    return best


@pytest.fixture(scope="module")
def detector():
    d = FaceDetector()
    yield d
    d.close()


@pytest.fixture(scope="module")
def whole_frame_only():
    """What dvp did before: the full-range model on the whole frame."""
    d = FaceDetector("mediapipe", detector_range="full", tile=10**9)
    yield d
    d.close()


def test_tiles_hold_every_square_up_to_half_a_tile_whole():
    width, height, tile = 3840, 2160, 640
    views = list(tiles(width, height, tile))
    assert len(views) > 20
    for size in (320, 640):  # the smallest level holds 320, the next 640, ...
        for y in range(0, height - size + 1, 97):
            for x in range(0, width - size + 1, 101):
                assert any(vx <= x and x + size <= vx + vw and vy <= y and y + size <= vy + vh
                           for vx, vy, vw, vh in views)
    assert list(tiles(640, 480, 640)) == []


def test_boxes_of_one_face_from_several_views_become_one():
    whole = Face(100, 100, 50, 50, 0.9)
    cut = Face(100, 100, 30, 50, 0.7)  # the same face cut at a tile's edge
    other = Face(400, 100, 50, 50, 0.8)
    assert merge([cut, other, whole]) == [whole, other]


@pytest.mark.parametrize("x, y", [(300, 200), (1700, 900), (3300, 1650), (620, 1500)])
def test_a_150_pixel_face_in_a_4k_frame_is_found_wherever_it_is(detector, whole_frame_only, x, y):
    image, truth = scene(3840, 2160, 500, x, y)  # the face is 150 pixels wide
    assert covered(truth, detector.detect(image)) > 0.8
    assert covered(truth, whole_frame_only.detect(image)) == 0  # the leak tiles close


@pytest.mark.parametrize("width, height, crop", [(640, 480, 200), (1280, 720, 220), (1920, 1080, 260)])
def test_small_faces_are_found_at_common_sizes(detector, width, height, crop):
    image, truth = scene(width, height, crop, width // 3, height // 4)
    assert covered(truth, detector.detect(image)) > 0.8


def test_a_close_up_filling_half_the_frame_is_found(detector):
    image, truth = scene(1280, 720, 1100, 300, 0)  # the face is 330 x 330 pixels of 720
    assert truth[3] >= 720 * 0.45
    assert covered(truth, detector.detect(image)) > 0.8


def landmarks_on(truth: tuple[float, ...], faces: list[Face]) -> bool:
    """Whether a face found on the true box carries a mesh whose centre is inside it."""
    tx, ty, tw, th = truth
    return any(f.landmarks is not None and tx <= f.landmarks[:, 0].mean() <= tx + tw
               and ty <= f.landmarks[:, 1].mean() <= ty + th for f in faces)


@pytest.mark.parametrize("width, height, crop", [(640, 480, 200), (3840, 2160, 500)], ids=["640x480", "4K"])
def test_a_face_found_gets_its_landmarks_at_any_frame_size(detector, width, height, crop):
    """The landmark filters (mustache, mask, mesh) need a face's mesh: a 150-pixel
    face in a 4K frame gets one as a 60-pixel face in 640x480 does."""
    image, truth = scene(width, height, crop, width // 3, height // 4)
    assert landmarks_on(truth, detector.detect(image, landmarks=True))


def test_every_face_of_a_crowd_gets_its_landmarks(detector):
    image = background(1920, 1080)
    truths = []
    for i in range(12):  # 12 faces, more than one mesh pass over the frame would return
        x, y = 20 + (i % 6) * 310, 60 + (i // 6) * 500
        image[y:y + 300, x:x + 300] = astronaut_face(300)
        fx, fy, fw, fh = FACE_IN_CROP
        truths.append((x + fx * 300, y + fy * 300, fw * 300, fh * 300))
    faces = detector.detect(image, landmarks=True)
    assert [t for t in truths if not landmarks_on(t, faces)] == []
