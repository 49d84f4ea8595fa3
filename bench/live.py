"""Live figures at 30 fps, 640x480, 1280x720 and 1920x1080, with 1 and 2
workers, measured in one run.

- `dvp live` on a machine where nothing runs: the time from its launch to the
  first frame shown, and the frames skipped in the first second.
- `dvp live`: a file played as a camera, capture to shown, each setting on a
  private embedded broker (`dvp run`'s stack).
- The live detection schedules (consumers/live_schedule.py) against ground
  truth at 1280x720: faces left in clear, full searches, time a frame.
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
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: tests.*

from dvp.config import Settings  # noqa: E402
from dvp.consumers.live_schedule import LiveSchedule  # noqa: E402
from dvp.faces import FaceDetector  # noqa: E402
from dvp.filters import parse_spec  # noqa: E402
from dvp.infra.stack import Stack  # noqa: E402
from dvp.producers.live import run_live  # noqa: E402
from dvp.sample import write_sample  # noqa: E402
from tests.ground_truth import leaked_frames, moving_face_clip  # noqa: E402
from tests.photos import Placement, scene_clip  # noqa: E402

SIZES = [(640, 480), (1280, 720), (1920, 1080)]
WORKERS = [1, 2]
ROOT = Path(__file__).resolve().parent.parent


def fresh(seconds: float) -> None:
    """`dvp live` as a newcomer runs it: no stack, no cluster (a private one starts)."""
    print("| dvp live, nothing running | first frame shown | skipped in the first second | shown |")
    print("|---|---|---|---|")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVP_")}
    with tempfile.TemporaryDirectory() as work:
        for width, height in SIZES:
            clip = Path(work) / f"{width}.mp4"
            write_sample(str(clip), seconds=min(seconds, 5), width=width, height=height, fps=30, audio=False)
            done = subprocess.run([sys.executable, "-m", "dvp", "live", "--camera", str(clip), "--view", "none"],
                                  capture_output=True, text=True, env={**env, "DVP_HOME": f"{work}/home"})
            said = dict(re.findall(r"^(\w+)\s+(.*)$", done.stdout, re.M))
            if done.returncode != 0:
                print(f"| {width}x{height} | failed: {done.stderr.strip().splitlines()[-1:]} |")
                continue
            first_second = said["skipped"].split("(")[1].split()[0]
            workers = re.search(r"\d+ workers?(?=,)", done.stderr)  # as the private stack's line says
            print(f"| {width}x{height}, {workers[0] if workers else '?'} | {said['first'].split(' after')[0]} "
                  f"| {first_second} | {said['shown']} of {said['captured']} |", flush=True)


def terminal(seconds: float) -> None:
    settings = Settings.load()
    print("\n| frame | workers | captured | shown | skipped | p50 | p95 | p99 |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for width, height in SIZES:
            clip, warm = Path(work) / f"{width}.mp4", Path(work) / f"{width}-warm.mp4"
            write_sample(str(clip), seconds=seconds, width=width, height=height, fps=30, audio=False)
            write_sample(str(warm), seconds=3, width=width, height=height, fps=30, audio=False)
            for workers in WORKERS:
                with Stack.running(settings, workers, live=True) as stack:
                    run_live(stack.cluster, str(warm), "blur", None, "none", 0)  # the groups settle
                    s = run_live(stack.cluster, str(clip), "blur", None, "none", 0)
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
                skipped = f"{said['skipped'].split()[0]} of {said['captured']}"
            p50, p95, p99 = (np.percentile(trips, p) for p in (50, 95, 99))
            print(f"| {width}x{height} | {workers or 'none (echo)'} | {r['shown'] / seconds:.0f} fps "
                  f"| {p50:.0f} ms | {p95:.0f} ms | {p99:.0f} ms | {python} | {skipped} | {jitter:.0f} ms "
                  f"| {inbound.get('frameWidth')}x{inbound.get('frameHeight')} |", flush=True)


def schedules() -> None:
    """Each schedule on the same frames: a face gliding in from the edge (hidden,
    blurred, turned on the way) and one appearing mid-picture, both 1280x720."""
    clips = {"gliding in": moving_face_clip(1280, 720, 300, frames=44),
             "appearing": scene_clip(1280, 720, [], 10)
             + scene_clip(1280, 720, [Placement("astronaut", 90, 0.5, 0.45, dx=3)], 34)}
    detector, beside, blur = FaceDetector("mediapipe"), FaceDetector("mediapipe"), parse_spec("blur")
    for loading in (detector, beside):  # the models load before anything is timed
        loading.detect(clips["appearing"][0].image)
    print("\n| live schedule, 1280x720 | " + " | ".join(f"leaked frames, {name}" for name in clips)
          + " | full searches | search time a frame |")
    print("|---|" + "---|" * (len(clips) + 2))
    for every in (1, 2, 4, 8, None):
        leaks, fulls, frames, spent = [], 0, 0, 0.0
        for clip in clips.values():
            schedule = LiveSchedule(every, beside=lambda _name: beside.detect)
            out = []
            start = time.perf_counter()
            for i, truth in enumerate(clip):
                if every is None:  # frames come at 30 fps while the full searches beside run
                    time.sleep(max(start + i / 30 - time.perf_counter(), 0))
                began = time.perf_counter()
                faces = schedule.faces("bench", truth.image, i * 33_333, detector.detect, near=detector.detect_near)
                spent += time.perf_counter() - began
                out.append(blur.apply(truth.image.copy(), faces))
            schedule.close()
            leaks.append(len(leaked_frames(clip, out)))
            fulls += schedule.full_searches + schedule.beside_searches
            frames += len(clip)
        name = {1: "every frame searched whole", None: "adapted (the default): in line 1, beside as often as "
                "they end, frames at 30 fps"}.get(every, f"whole every {every}, in line")
        print(f"| {name} | " + " | ".join(f"{n} of {len(c)}" for n, c in zip(leaks, clips.values(), strict=True))
              + f" | {fulls} of {frames} | {1000 * spent / frames:.0f} ms |", flush=True)
    detector.close()
    beside.close()


if __name__ == "__main__":
    length = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    schedules()
    fresh(length)
    terminal(length)
    browser(length)
