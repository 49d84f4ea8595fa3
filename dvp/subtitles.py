"""Text subtitles carried from any container to MP4: each cue as plain UTF-8
text (what MP4's mov_text holds), from SubRip, ASS/SSA, WebVTT or mov_text.
Picture subtitles (DVD, Blu-ray, DVB) are bitmaps: not carried."""
from __future__ import annotations

import re
import struct

TEXT_CODECS = ("subrip", "srt", "text", "ass", "ssa", "webvtt", "mov_text")
# FFmpeg's subtitle encoders start only with a style header; its content is ours to choose.
ASS_HEADER = (b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\n"
              b"Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, "
              b"Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, "
              b"Alignment, MarginL, MarginR, MarginV, Encoding\n"
              b"Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0\n\n"
              b"[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n")
_MARKUP = re.compile(r"<[^>]*>|\{[^}]*\}")


def cue_text(codec: str, data: bytes) -> str:
    """One cue's text, without markup."""
    if codec == "mov_text":
        (length,) = struct.unpack(">H", data[:2]) if len(data) >= 2 else (0,)
        data = data[2:2 + length]
    text = data.decode("utf-8", "replace")
    if codec in ("ass", "ssa"):  # ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text
        text = text.split(",", 8)[-1].replace("\\N", "\n").replace("\\n", "\n")
    return _MARKUP.sub("", text).strip()


def mov_text(text: str) -> bytes:
    """A cue as MP4's mov_text sample: its length, then its UTF-8 text."""
    encoded = text.encode()[:65535]
    return struct.pack(">H", len(encoded)) + encoded
