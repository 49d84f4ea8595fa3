"""`dvp live` latency, capture to shown, with a file played as a camera at 30 fps:
640x480 and 1280x720, with 1 and 2 workers, each on a private embedded broker
(`dvp run`'s stack). Prints p50/p95/p99 and the frames skipped, measured in one run.

    python bench/live.py [SECONDS]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from dvp.config import Settings
from dvp.infra.stack import Stack
from dvp.producers.live import run_live
from dvp.sample import write_sample

SIZES = [(640, 480), (1280, 720)]
WORKERS = [1, 2]


def main(seconds: float) -> None:
    settings = Settings.load()
    print("| frame | workers | captured | shown | skipped | p50 | p95 | p99 |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for width, height in SIZES:
            clip, warm = Path(work) / f"{width}.mp4", Path(work) / f"{width}-warm.mp4"
            write_sample(str(clip), seconds=seconds, width=width, height=height, fps=30, audio=False)
            write_sample(str(warm), seconds=3, width=width, height=height, fps=30, audio=False)
            for workers in WORKERS:
                with Stack.running(settings, workers) as stack:
                    run_live(stack.settings, str(warm), "blur", None, "none", 0)  # the groups settle
                    s = run_live(stack.settings, str(clip), "blur", None, "none", 0)
                print(f"| {width}x{height} | {workers} | {s.captured} | {s.shown} | {s.skipped} "
                      f"| {s.percentile(50):.0f} ms | {s.percentile(95):.0f} ms | {s.percentile(99):.0f} ms |",
                      flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0)
