"""Which of a source's container tags the output keeps: a privacy tool keeps
what describes the video (when, what) and drops what describes the person
(where, with which device) unless asked to keep everything."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# Describe the video: kept.
KEPT = ("title", "creation_time", "date", "description", "comment", "copyright", "artist", "album", "genre",
        "language")
# Describe the file, and are written anew by the muxer: neither kept nor worth a word.
TECHNICAL = ("major_brand", "minor_version", "compatible_brands", "encoder", "duration", "handler_name",
             "vendor_id", "creation_time-eng")
MAX_TAGS = 32
MAX_VALUE = 1024  # characters
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


@dataclass(frozen=True)
class Metadata:
    kept: dict[str, str]
    stripped: tuple[str, ...]  # names of the tags dropped for privacy

    @classmethod
    def of(cls, tags: Mapping[str, str], keep_all: bool = False) -> Metadata:
        kept, stripped = {}, []
        for key, value in tags.items():
            if key.lower() in TECHNICAL or key.lower().startswith("encoder"):
                continue
            if keep_all or key.lower() in KEPT:
                kept[key] = value
            else:
                stripped.append(key)
        return cls(checked(kept), tuple(stripped))


def checked(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags from a topic, or a file: at most MAX_TAGS, plain names, bounded values."""
    return {key: value[:MAX_VALUE] for key, value in list(tags.items())[:MAX_TAGS]
            if _KEY.fullmatch(key) and isinstance(value, str)}
