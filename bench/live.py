"""Live latency at 30 fps, 640x480 and 1280x720, with 1 and 2 workers, measured
in one run.

- `dvp live`: a file played as a camera, capture to shown, each setting on a
  private embedded broker (`dvp run`'s stack).
- The dashboard's Live page in headless Chromium with a fake camera, inside a
  network namespace with only loopback (tests/live_page.py, as root): the round
  trip from the browser's camera to the frame shown in the page, the same for a
  page that sends each frame straight back (0 workers: WebRTC alone), the
  dashboard's own figure (a frame's arrival in Python to its return) and the
  browser's jitter buffer.

    python bench/live.py [SECONDS]
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from dvp.config import Settings
from dvp.infra.stack import Stack
from dvp.producers.live import run_live
from dvp.sample import write_sample

SIZES = [(640, 480), (1280, 720)]
WORKERS = [1, 2]
ROOT = Path(__file__).resolve().parent.parent


def terminal(seconds: float) -> None:
    settings = Settings.load()
    print("| frame | workers | captured | shown | skipped | p50 | p95 | p99 |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for width, height in SIZES:
            clip, warm = Path(work) / f"{width}.mp4", Path(work) / f"{width}-warm.mp4"
            write_sample(str(clip), seconds=seconds, width=width, height=height, fps=30, audio=False)
            write_sample(str(warm), seconds=3, width=width, height=height, fps=30, audio=False)
            for workers in WORKERS:
                with Stack.running(settings, workers, live=True) as stack:
                    run_live(stack.settings, str(warm), "blur", None, "none", 0)  # the groups settle
                    s = run_live(stack.settings, str(clip), "blur", None, "none", 0)
                print(f"| {width}x{height} | {workers} | {s.captured} | {s.shown} | {s.skipped} "
                      f"| {s.percentile(50):.0f} ms | {s.percentile(95):.0f} ms | {s.percentile(99):.0f} ms |",
                      flush=True)


def browser(seconds: float) -> None:
    print("\n| frame | workers | shown in the page | round trip p50 | p95 | p99 | in Python p50 "
          "| skipped in Python | jitter buffer | received as |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for width, height in SIZES:
        for workers in [0, *WORKERS]:
            with tempfile.TemporaryDirectory() as work:
                done = subprocess.run(
                    ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" -m tests.live_page "$@"',
                     sys.executable, work, str(seconds), str(workers), str(width), str(height)],
                    capture_output=True, text=True, cwd=ROOT, timeout=seconds + 300)
            if done.returncode != 0:
                print(f"| {width}x{height} | {workers} | failed: {done.stderr.strip().splitlines()[-1:]} |")
                continue
            r = json.loads(done.stdout.splitlines()[-1])
            trips = np.array(r["round_trips_ms"])
            inbound = r["rtc"].get("inbound-rtp", {})
            jitter = 1000 * inbound.get("jitterBufferDelay", 0) / max(inbound.get("jitterBufferEmittedCount", 1), 1)
            python, skipped = "-", "-"
            if r["in_python"]:  # "... ended: captured  N; shown     N; skipped   N; latency p50 N ms, ..."
                said = dict(part.split(None, 1) for part in r["in_python"].split("ended: ")[1].split("; "))
                python = said["latency"].split("p50 ")[1].split(",")[0]
                skipped = f"{said['skipped']} of {said['captured']}"
            p50, p95, p99 = (np.percentile(trips, p) for p in (50, 95, 99))
            print(f"| {width}x{height} | {workers or 'none (echo)'} | {r['shown'] / seconds:.0f} fps "
                  f"| {p50:.0f} ms | {p95:.0f} ms | {p99:.0f} ms | {python} | {skipped} | {jitter:.0f} ms "
                  f"| {inbound.get('frameWidth')}x{inbound.get('frameHeight')} |", flush=True)


if __name__ == "__main__":
    length = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    terminal(length)
    browser(length)
