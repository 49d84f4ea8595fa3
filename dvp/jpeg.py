"""Frames on the wire are JPEG. Encoding is ours; decoding takes bytes from a
topic, so the header is read first: OpenCV decodes whatever format the bytes
claim to be, at whatever size they declare (629 bytes can declare 30000x30000,
which decodes into 5.2 GB). Only baseline or progressive JPEG of the size the
job declared, under the pixel limit, reaches the decoder."""
from __future__ import annotations

import cv2
import numpy as np

from dvp.errors import InputError, MalformedRecord

EIGHT_K = 7680 * 4320  # the default pixel limit: the largest frames cameras record
MIN_JPEG_QUALITY = 30  # below this a frame is refused rather than sent: blocks would hide the picture

_SOI = b"\xff\xd8"
_DECODED_SOF = {0xC0, 0xC2}  # baseline, progressive
_OTHER_SOF = {0xC1, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # extended, lossless, arithmetic...
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length: TEM, RSTn


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's frame header, without decoding it."""
    if not data.startswith(_SOI):
        raise MalformedRecord("not a JPEG (no start-of-image marker)")
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise MalformedRecord(f"not a JPEG (byte {at} is not a marker)")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if length < 2:
            raise MalformedRecord("not a JPEG (a segment of length under 2)")
        if marker in _DECODED_SOF:
            if at + 9 > len(data):
                break
            height = int.from_bytes(data[at + 5:at + 7], "big")
            width = int.from_bytes(data[at + 7:at + 9], "big")
            return width, height
        if marker in _OTHER_SOF:
            raise MalformedRecord("a JPEG neither baseline nor progressive")
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            break
        at += 2 + length
    raise MalformedRecord("not a JPEG (no frame header)")


def check_pixels(path: str, width: int, height: int, max_pixels: int) -> None:
    """Refuse a source whose frames the workers would refuse."""
    if width * height > max_pixels:
        raise InputError(f"{path}: its {width}x{height} frames are over DVP_MAX_PIXELS={max_pixels}, the most "
                         f"pixels the workers take; raise it on every service to send them")


def decode_jpeg(data: bytes, max_pixels: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """A BGR image from JPEG bytes of a topic: refused (MalformedRecord, with the
    reason) unless its header declares `size` (if given) and at most `max_pixels`."""
    width, height = jpeg_size(data)
    if width * height > max_pixels:
        raise MalformedRecord(f"a {width}x{height} JPEG, over the limit of {max_pixels} pixels (DVP_MAX_PIXELS)")
    if size is not None and (width, height) != size:
        raise MalformedRecord(f"a {width}x{height} JPEG where the job's frames are {size[0]}x{size[1]}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or (image.shape[1], image.shape[0]) != (width, height):
        raise MalformedRecord("an undecodable JPEG")
    return image


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """A frame as every stage puts it on the wire: JPEG at `quality` (1-100)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InputError(f"cannot encode a {image.shape[1]}x{image.shape[0]} frame as JPEG")
    return buf.tobytes()


def encode_jpeg_within(image: np.ndarray, quality: int, max_bytes: int) -> tuple[bytes, int]:
    """The frame as JPEG at `quality`, or at the highest quality under it (in steps
    of 10, down to MIN_JPEG_QUALITY) that fits in `max_bytes`; and that quality."""
    jpeg = encode_jpeg(image, quality)
    while len(jpeg) > max_bytes and quality > MIN_JPEG_QUALITY:
        quality = max(quality - 10, MIN_JPEG_QUALITY)
        jpeg = encode_jpeg(image, quality)
    if len(jpeg) > max_bytes:
        raise InputError(f"a {image.shape[1]}x{image.shape[0]} frame is {len(jpeg) / 1e6:.1f} MB as JPEG even at "
                         f"quality {quality}, over the {max_bytes / 1e6:.1f} MB Kafka accepts (message.max.bytes "
                         f"of the client and the topics)")
    return jpeg, quality
