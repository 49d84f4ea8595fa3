import numpy as np
import pytest

from dvp.errors import FilterSpecError
from dvp.faces import Face, FaceDetector
from dvp.filters import FILTERS, parse_spec
from dvp.filters.regions import padded_box
from dvp.sample import astronaut_face, background


@pytest.fixture(scope="module")
def scene():
    """A real face on a textured background, and what MediaPipe finds in it."""
    image = background(480, 360)
    face = astronaut_face(200)
    image[80:280, 140:340] = face
    detector = FaceDetector()
    faces = detector.detect(image, landmarks=True)
    detector.close()
    return image, faces


def test_detector_finds_the_astronaut(scene):
    image, faces = scene
    assert len(faces) == 1
    f = faces[0]
    assert 140 <= f.x and f.x + f.w <= 340 and 80 <= f.y and f.y + f.h <= 280
    assert f.landmarks is not None and f.landmarks.shape == (468, 2)


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filter_changes_the_face_and_nothing_far_from_it(scene, name):
    image, faces = scene
    out = parse_spec(name).apply(image.copy(), faces)
    f = faces[0]
    inner = (slice(int(f.y + f.h * 0.3), int(f.y + f.h * 0.6)), slice(int(f.x + f.w * 0.2), int(f.x + f.w * 0.8)))
    assert np.abs(out[inner].astype(int) - image[inner].astype(int)).mean() > 10
    x0, y0, x1, y1 = padded_box(f, 0.6, image.shape)
    mask = np.ones(image.shape[:2], bool)
    mask[y0:y1, x0:x1] = False
    assert np.array_equal(out[mask], image[mask])


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filter_without_faces_changes_nothing(scene, name):
    image, _ = scene
    assert np.array_equal(parse_spec(name).apply(image.copy(), []), image)


def test_sunglasses_fall_back_to_the_box_without_landmarks(scene):
    image, faces = scene
    f = faces[0]
    boxed = [Face(f.x, f.y, f.w, f.h, f.score)]
    out = parse_spec("sunglasses").apply(image.copy(), boxed)
    assert not np.array_equal(out, image)


def test_filters_handle_faces_at_the_image_edge():
    image = np.full((100, 100, 3), 128, np.uint8)
    edge = [Face(90.0, 90.0, 30.0, 30.0, 0.9)]
    for name in FILTERS:
        out = parse_spec(name).apply(image.copy(), edge)
        assert out.shape == image.shape


def test_pixelate_blocks_are_flat(scene):
    image, faces = scene
    out = parse_spec("pixelate:blocks=4,padding=0").apply(image.copy(), faces)
    f = faces[0]
    cell = out[int(f.y) + 2:int(f.y + f.h / 4) - 2, int(f.x) + 2:int(f.x + f.w / 4) - 2]
    assert (cell == cell[0, 0]).all()


def test_spec_round_trip_and_defaults():
    spec = parse_spec("pixelate:blocks=12")
    assert spec.params["blocks"] == 12 and spec.params["padding"] == 0.2
    assert str(spec) == "pixelate:blocks=12"
    assert str(parse_spec("blur")) == "blur"
    assert str(parse_spec(str(spec))) == str(spec)


@pytest.mark.parametrize("spec, message", [
    ("nope", "unknown filter 'nope'"),
    ("blur:radius=3", "has no parameter 'radius'"),
    ("pixelate:blocks=2.5", "blocks must be an integer"),
    ("blur:strength=abc", "strength must be a number"),
    ("blur:strength=99", "from 0.05 to 2"),
    ("blur:strength", "strength must be a number"),
])
def test_bad_specs_are_refused_with_a_reason(spec, message):
    with pytest.raises(FilterSpecError, match=message):
        parse_spec(spec)
