"""Solid box over each face."""
from dvp.filters.regions import padded_box

NAME = "blackout"
PARAMS = {
    "gray": (0, 0, 255, "fill level, 0 black to 255 white", True),
    "padding": (0.2, 0.0, 1.0, "grow each face box by this fraction on every side"),
}


def apply(image, faces, params):
    for face in faces:
        x0, y0, x1, y1 = padded_box(face, params["padding"], image.shape)
        image[y0:y1, x0:x1] = params["gray"]
    return image
