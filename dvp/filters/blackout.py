"""Solid box over each face."""
from dvp.filters.regions import face_regions

NAME = "blackout"
PARAMS = {
    "gray": (0, 0, 255, "fill level, 0 black to 255 white", True),
    "padding": (0.2, 0.0, 1.0, "grow each face box by this fraction on every side"),
}


def apply(image, faces, params):
    for x0, y0, x1, y1 in face_regions(image, faces, params["padding"]):
        image[y0:y1, x0:x1] = params["gray"]
    return image
