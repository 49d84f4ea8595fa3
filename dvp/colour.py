"""Colours as players show them: which matrix, primaries and transfer a video's
pixels are in, turning its frames into the BGR the filters work on, and the
tags the output carries so that players show the same colours.

Codes are FFmpeg's (ISO/IEC 23091-2): the numbers a container stores."""
from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

# Matrix (AVColorSpace), primaries (AVColorPrimaries), transfer (AVColorTransferCharacteristic).
BT709, UNSPECIFIED, BT470BG, SMPTE170M, BT2020_NCL, BT2020_CL = 1, 2, 5, 6, 9, 10
PRIMARIES_BT709, PRIMARIES_BT470BG, PRIMARIES_SMPTE170M, PRIMARIES_BT2020 = 1, 5, 6, 9
TRC_BT709, TRC_SMPTE170M, TRC_BT2020_10, TRC_BT2020_12, TRC_PQ, TRC_HLG = 1, 6, 14, 15, 16, 18
NAMES = {BT709: "BT.709", BT470BG: "BT.601 (PAL)", SMPTE170M: "BT.601", BT2020_NCL: "BT.2020"}
HDR_NAMES = {TRC_PQ: "PQ", TRC_HLG: "HLG"}

# swscale's matrices, by the matrix a stream declares.
_SWSCALE = {BT709: Colorspace.ITU709, BT470BG: Colorspace.ITU601, SMPTE170M: Colorspace.ITU601,
            BT2020_NCL: Colorspace.BT2020, BT2020_CL: Colorspace.BT2020}
_PRIMARIES = {BT709: PRIMARIES_BT709, BT470BG: PRIMARIES_BT470BG, SMPTE170M: PRIMARIES_SMPTE170M,
              BT2020_NCL: PRIMARIES_BT2020}
_TRANSFER = {BT709: TRC_BT709, BT470BG: TRC_SMPTE170M, SMPTE170M: TRC_SMPTE170M, BT2020_NCL: TRC_BT709}
SDR_TRANSFERS = {TRC_BT709, TRC_SMPTE170M, TRC_BT2020_10, TRC_BT2020_12, 4, 5, 13}

# BT.2408: HDR's reference (diffuse) white is 203 cd/m², SDR's 100% signal; HLG as on a 1000 cd/m² display.
REFERENCE_WHITE = 203.0
HLG_PEAK = 1000.0
KNEE = 0.75  # of SDR white: darker light passes unchanged; brighter rolls off smoothly to white
# Linear BT.2020 RGB to BT.709 RGB (BT.2087).
BT2020_TO_BT709 = np.array([[1.6605, -0.5876, -0.0728],
                            [-0.1246, 1.1329, -0.0083],
                            [-0.0182, -0.1006, 1.1187]], np.float32)


@dataclass(frozen=True)
class Colour:
    """How a job's frames are to be written: the output's YUV matrix, primaries and
    transfer (always limited range, as players expect of H.264)."""
    matrix: int
    primaries: int
    transfer: int

    @classmethod
    def checked(cls, matrix: int, primaries: int, transfer: int, width: int, height: int) -> Colour:
        """From a topic: codes dvp writes, else what players assume for the size."""
        if matrix in NAMES and primaries in _PRIMARIES.values() and transfer in SDR_TRANSFERS:
            return cls(matrix, primaries, transfer)
        return assumed(width, height)

    @property
    def swscale(self) -> Colorspace:
        return _SWSCALE[self.matrix]

    @property
    def name(self) -> str:
        return NAMES[self.matrix]


def assumed(width: int, height: int) -> Colour:
    """What players assume for an untagged video: BT.709 for HD, BT.601 below (mpv's rule)."""
    matrix = BT709 if width >= 1280 or height > 576 else SMPTE170M
    return Colour(matrix, _PRIMARIES[matrix], _TRANSFER[matrix])


@dataclass(frozen=True)
class Conversion:
    """Turns one stream's frames into BGR in `output`'s colours."""
    output: Colour
    matrix: Colorspace  # the source's, to read its YUV
    full_range: bool
    hdr: int | None  # TRC_PQ or TRC_HLG: tone-mapped to SDR BT.709
    note: str | None  # what the summary says of it, if anything

    @classmethod
    def of(cls, frame: av.VideoFrame) -> Conversion:
        width, height = frame.width, frame.height
        full = frame.color_range == ColorRange.JPEG or frame.format.name.startswith("yuvj")
        deep = any(c.bits > 8 for c in frame.format.components)
        if frame.color_trc in HDR_NAMES:
            return cls(Colour(BT709, PRIMARIES_BT709, TRC_BT709), Colorspace.BT2020, full, frame.color_trc,
                       f"HDR ({HDR_NAMES[frame.color_trc]}, BT.2020) tone-mapped to SDR BT.709")
        if frame.colorspace in NAMES:
            matrix = frame.colorspace
            output = Colour(matrix, frame.color_primaries if frame.color_primaries in _PRIMARIES.values()
                            else _PRIMARIES[matrix],
                            frame.color_trc if frame.color_trc in SDR_TRANSFERS else _TRANSFER[matrix])
        else:
            output = assumed(width, height)
        note = f"{frame.format.name} written as 8-bit" if deep else None
        return cls(output, output.swscale, full, None, note)

    def bgr(self, frame: av.VideoFrame) -> np.ndarray:
        src_range = ColorRange.JPEG if self.full_range else ColorRange.MPEG
        if self.hdr is None:
            return frame.to_ndarray(format="bgr24", src_colorspace=self.matrix, src_color_range=src_range)
        rgb = frame.to_ndarray(format="rgb48le", src_colorspace=self.matrix, src_color_range=src_range)
        return tone_map(rgb, self.hdr)


def tone_map(rgb48: np.ndarray, transfer: int) -> np.ndarray:
    """HDR RGB (BT.2020, PQ or HLG, 16-bit) as SDR BT.709 BGR (8-bit): light up to
    KNEE of reference white as it was, brighter light compressed towards white."""
    signal = rgb48.astype(np.float32) / 65535
    light = pq_eotf(signal) / REFERENCE_WHITE if transfer == TRC_PQ else hlg_display(signal) / REFERENCE_WHITE
    light = np.clip(light @ BT2020_TO_BT709.T, 0, None)
    over = light > KNEE
    light[over] = KNEE + (1 - KNEE) * (1 - np.exp(-(light[over] - KNEE) / (1 - KNEE)))
    sdr = np.power(light, 1 / 2.4)  # BT.1886: the display gamma SDR is made for
    return np.ascontiguousarray((sdr[..., ::-1] * 255 + 0.5).astype(np.uint8))


# BT.2100 PQ and HLG constants.
_M1, _M2, _C1, _C2, _C3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
_HLG_A, _HLG_B, _HLG_C = 0.17883277, 0.28466892, 0.55991073
HLG_LUMA = np.array([0.2627, 0.6780, 0.0593], np.float32)


def pq_eotf(signal: np.ndarray) -> np.ndarray:
    """PQ signal (0-1) to display light in cd/m²."""
    p = np.power(np.clip(signal, 0, 1), 1 / _M2)
    return 10000 * np.power(np.maximum(p - _C1, 0) / (_C2 - _C3 * p), 1 / _M1)


def hlg_display(signal: np.ndarray) -> np.ndarray:
    """HLG signal (0-1) to display light in cd/m² on a HLG_PEAK display (system gamma 1.2)."""
    e = np.clip(signal, 0, 1)
    scene = np.where(e <= 0.5, e * e / 3, (np.exp((e - _HLG_C) / _HLG_A) + _HLG_B) / 12)
    luma = np.maximum(scene @ HLG_LUMA, 1e-6)[..., None]
    return HLG_PEAK * np.power(luma, 0.2) * scene
