"""Gaussian blur over each face box."""
import cv2

from dvp.filters.regions import face_regions

NAME = "blur"
PARAMS = {
    "strength": (0.5, 0.05, 2.0, "blur kernel size as a fraction of the face size"),
    "padding": (0.2, 0.0, 1.0, "grow each face box by this fraction on every side"),
}


def apply(image, faces, params):
    for x0, y0, x1, y1 in face_regions(image, faces, params["padding"]):
        kernel = int(params["strength"] * max(x1 - x0, y1 - y0)) | 1  # odd, as OpenCV needs
        image[y0:y1, x0:x1] = cv2.GaussianBlur(image[y0:y1, x0:x1], (kernel, kernel), 0)
    return image
