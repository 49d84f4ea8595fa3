import cv2
import numpy as np
import pytest

from dvp.errors import FilterSpecError
from dvp.faces import Face, FaceDetector
from dvp.filters import FILTERS, parse_spec, privacy_for
from dvp.filters.regions import MOUTH_CORNERS, UNDER_NOSE, UPPER_LIP, padded_box
from dvp.messages import PER_FRAME, STRICT
from dvp.sample import astronaut_face, background, face_scene
from tests.helpers import dvp

LOWER_LIP = 17  # face-mesh index: the lower lip's bottom


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
    assert f.x >= 140 and f.x + f.w <= 340 and f.y >= 80 and f.y + f.h <= 280
    assert f.landmarks is not None and f.landmarks.shape == (468, 2)


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Pixels a filter changed (beyond rounding)."""
    return np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 20


# The share of the face box a filter changes at least: those that cover the face
# change most of it; those that draw on it (a mustache, lines) a part.
COVERS = {"blur": 0.5, "pixelate": 0.5, "blackout": 0.9, "cartoon": 0.5, "emoji": 0.9, "mask": 0.15,
          "sunglasses": 0.1, "mustache": 0.04, "mesh": 0.1, "outline": 0.02}


def test_every_filter_has_its_expectation():
    assert set(COVERS) == set(FILTERS)


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filter_changes_the_face_and_nothing_far_from_it(scene, name):
    image, faces = scene
    out = parse_spec(name).apply(image.copy(), faces)
    f = faces[0]
    box = changed(image, out)[int(f.y):int(f.y + f.h), int(f.x):int(f.x + f.w)]
    assert box.mean() >= COVERS[name]
    x0, y0, x1, y1 = padded_box(f, 0.6, image.shape)
    mask = np.ones(image.shape[:2], bool)
    mask[y0:y1, x0:x1] = False
    assert np.array_equal(out[mask], image[mask])


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filter_without_faces_changes_nothing(scene, name):
    image, _ = scene
    assert np.array_equal(parse_spec(name).apply(image.copy(), []), image)


@pytest.mark.parametrize("name", ["sunglasses", "mask", "mustache", "emoji"])
def test_landmark_filters_fall_back_to_the_box_without_landmarks(scene, name):
    image, faces = scene
    f = faces[0]
    boxed = [Face(f.x, f.y, f.w, f.h, f.score)]
    drawn = changed(image, parse_spec(name).apply(image.copy(), boxed))
    ys, xs = np.nonzero(drawn)
    assert len(xs) and f.x <= xs.mean() <= f.x + f.w and f.y <= ys.mean() <= f.y + f.h


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
    assert spec.steps[0].params["blocks"] == 12 and spec.steps[0].params["padding"] == 0.2
    assert str(spec) == "pixelate:blocks=12"
    assert str(parse_spec("blur")) == "blur"
    assert str(parse_spec(str(spec))) == str(spec)
    chain = parse_spec(" pixelate:blocks=12 | mesh:contours=0 ")
    assert str(chain) == "pixelate:blocks=12|mesh" and str(parse_spec(str(chain))) == str(chain)


def test_a_chain_is_its_filters_one_after_the_other(scene):
    image, faces = scene
    chained = parse_spec("cartoon:levels=4|mustache|outline").apply(image.copy(), faces)
    one_by_one = image.copy()
    for name in ("cartoon:levels=4", "mustache", "outline"):
        one_by_one = parse_spec(name).apply(one_by_one, faces)
    assert np.array_equal(chained, one_by_one)
    assert not np.array_equal(chained, parse_spec("mustache|cartoon:levels=4|outline").apply(image.copy(), faces))


def test_every_chain_is_strict_unless_asked_otherwise():
    for spec in ("blur", "pixelate", "blackout", "blur|pixelate", "pixelate|mesh", "mustache"):
        assert privacy_for(parse_spec(spec)) == STRICT
        assert privacy_for(parse_spec(spec), PER_FRAME) == PER_FRAME


def blob_angle(mask: np.ndarray) -> float:
    """The direction of a blob's long axis, degrees clockwise on the image."""
    ys, xs = np.nonzero(mask)
    cov = np.cov(np.vstack([xs - xs.mean(), ys - ys.mean()]))
    values, vectors = np.linalg.eigh(cov)
    dx, dy = vectors[:, np.argmax(values)]
    angle = np.degrees(np.arctan2(dy, dx))
    return (angle + 90) % 180 - 90  # an axis has no front: -90..90


def test_the_mustache_sits_between_nose_and_upper_lip():
    image = face_scene(720, 640)  # a face large enough to tell the nose from the lip
    detector = FaceDetector()
    faces = detector.detect(image, landmarks=True)
    detector.close()
    m = faces[0].landmarks
    drawn = changed(image, parse_spec("mustache").apply(image.copy(), faces))
    ys, xs = np.nonzero(drawn)
    nose, lip = m[UNDER_NOSE], m[UPPER_LIP]
    assert abs(xs.mean() - (nose[0] + lip[0]) / 2) < 3  # centred on the face's midline
    assert nose[1] - 2 < ys.mean() < lip[1] + 2  # its middle between the nose and the lip
    philtrum = np.round((nose + lip) / 2).astype(int)
    assert drawn[philtrum[1], philtrum[0]]
    assert ys.max() < m[LOWER_LIP][1]  # the mouth stays open to view
    mouth = np.linalg.norm(m[MOUTH_CORNERS[0]] - m[MOUTH_CORNERS[1]])
    assert 1.2 * mouth < xs.max() - xs.min() < 1.8 * mouth


@pytest.fixture(scope="module")
def rolled_scene():
    """The scene turned 25 degrees clockwise (the ground truth), and what MediaPipe finds in it."""
    image = face_scene()
    height, width = image.shape[:2]
    turned = cv2.warpAffine(image, cv2.getRotationMatrix2D((width / 2, height / 2), -ROLL, 1.0), (width, height),
                            borderMode=cv2.BORDER_REFLECT)
    detector = FaceDetector()
    faces = detector.detect(turned, landmarks=True)
    detector.close()
    assert len(faces) == 1 and faces[0].landmarks is not None
    return turned, faces


ROLL = 25


@pytest.mark.parametrize("name", ["mustache", "mask", "sunglasses"])
def test_landmark_filters_turn_with_a_rolled_head(rolled_scene, name):
    image, faces = rolled_scene
    drawn = changed(image, parse_spec(name).apply(image.copy(), faces))
    assert abs(blob_angle(drawn) - ROLL) < 6
    upright = face_scene()
    detector = FaceDetector()
    upright_faces = detector.detect(upright, landmarks=True)
    detector.close()
    assert abs(blob_angle(changed(upright, parse_spec(name).apply(upright.copy(), upright_faces)))) < 6


@pytest.mark.parametrize("spec, message", [
    ("nope", "unknown filter 'nope'"),
    ("blur:radius=3", "has no parameter 'radius'"),
    ("pixelate:blocks=2.5", "blocks must be an integer"),
    ("blur:strength=abc", "strength must be a number"),
    ("blur:strength=99", "from 0.05 to 2"),
    ("blur:strength", "strength must be a number"),
    ("blur||mesh", "has an empty step"),
    ("blur|", "has an empty step"),
    ("blur|nope", "unknown filter 'nope'; choose one of: blur, "),
    ("blur|pixelate:blocks=1", "blocks must be an integer from 2 to 64"),
    ("|".join(["blur"] * 9), "9 filters in one chain; at most 8"),
])
def test_bad_specs_are_refused_with_a_reason(spec, message):
    with pytest.raises(FilterSpecError, match=message):
        parse_spec(spec)


def test_dvp_filters_lists_every_filter_with_its_parameters():
    result = dvp("filters")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line and not line[0].isspace()}
    assert set(FILTERS) <= listed
    for f in FILTERS.values():
        for key, p in f.params.items():
            assert f"    {key}={p.default:g}  ({p.low:g}..{p.high:g}) {p.help}" in result.stdout
    assert "'pixelate:blocks=12|mesh'" in result.stdout
