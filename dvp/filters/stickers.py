"""Pictures pasted over faces: drawn once in code at a base size (BGRA, the
alpha channel where the picture is), then scaled, rotated and blended."""
from __future__ import annotations

import math

import cv2
import numpy as np


def canvas(width: int, height: int) -> np.ndarray:
    """A transparent BGRA picture to draw a sticker on."""
    return np.zeros((height, width, 4), np.uint8)


def paste(image: np.ndarray, sticker: np.ndarray, centre: np.ndarray | tuple[float, float], width: float,
          roll: float) -> None:
    """Blend `sticker` onto `image` in place: `width` pixels wide, its middle on
    `centre` (x, y), turned clockwise by `roll` degrees; what falls outside the
    image is cut off."""
    base_h, base_w = sticker.shape[:2]
    scale = width / base_w
    if scale * base_w < 2:
        return
    side = int(math.ceil(math.hypot(base_w, base_h) * scale)) + 2  # holds the sticker at any angle
    turn = np.asarray(cv2.getRotationMatrix2D((base_w / 2, base_h / 2), -roll, scale), np.float64)
    turn[:, 2] += (side / 2 - base_w / 2, side / 2 - base_h / 2)
    warped = cv2.warpAffine(sticker, turn, (side, side), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    x0, y0 = int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2))
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1, iy1 = min(x0 + side, image.shape[1]), min(y0 + side, image.shape[0])
    if ix1 <= ix0 or iy1 <= iy0:
        return
    piece = warped[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    alpha = piece[:, :, 3:4].astype(np.float32) / 255
    region = image[iy0:iy1, ix0:ix1]
    region[:] = (piece[:, :, :3] * alpha + region * (1 - alpha)).astype(np.uint8)
