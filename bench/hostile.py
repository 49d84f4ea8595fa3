"""What a burst of hostile frames costs the jobs behind it: `dvp publish --wait`
of a clip timed on a `dvp up` stack (2 workers), alone and right after a JPEG
bomb (629 bytes declaring 30000x30000 pixels) was sent to every partition of
the frames and live topics. Rounds alternate the two; figures are medians.

    python bench/hostile.py [--rounds 3] [--size 640x480] [--seconds 4]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: tests.*

from dvp import kafka  # noqa: E402
from dvp.config import Settings  # noqa: E402
from dvp.kafka_cluster import Cluster  # noqa: E402
from dvp.messages import ASSEMBLY, FRAMES, Frame, JobEnd, JobStart, now_us  # noqa: E402
from dvp.sample import write_sample  # noqa: E402
from tests.test_hostile import declaring  # noqa: E402


def dvp(*args: str, env: dict) -> float:
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "dvp", *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - began


def burst(settings: Settings, producer: kafka.ReliableProducer, job_id: str) -> int:
    """A bomb on every partition of the frames and live topics; returns how many."""
    bomb, names, parts = declaring(30000, 30000), settings.names, settings.frames_partitions
    key = job_id.encode()
    producer.send(names.processed, ASSEMBLY.encode(JobStart(job_id, "bench", "blur", "per-frame", 64, 48, 25, 1, 1,
                                                            25, parts, False, now_us())), key=key)
    for p in range(parts):
        producer.send(names.frames, FRAMES.encode(Frame(job_id, p, p, "blur", "per-frame", bomb, now_us(), now_us(),
                                                        settings.detector)), key=key, partition=p)
    live = Cluster.reach(settings).partition_count(names.live)
    for p in range(live):
        producer.send(names.live, FRAMES.encode(Frame(f"{job_id}-live", p, p, "blur", "per-frame", bomb, now_us(),
                                                      now_us(), settings.live_detector)), key=key, partition=p)
    producer.send(names.processed, ASSEMBLY.encode(JobEnd(job_id, parts, 0)), key=key)
    producer.flush(10)
    return parts + live


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as work:
        env = {**os.environ, "DVP_HOME": f"{work}/home"}
        clip, out = Path(work) / "clip.mp4", Path(work) / "out.mp4"
        write_sample(str(clip), seconds=args.seconds, width=width, height=height)
        job = ["publish", str(clip), "--filter", "blur", "--wait", "-o", str(out), "-q"]
        dvp("up", "--workers", "2", env=env)
        try:
            settings = Settings.load(environ=env)
            producer = kafka.ReliableProducer(settings)
            dvp(*job, env=env)  # warm: models loaded, groups settled
            alone, after = [], []
            for r in range(args.rounds):
                alone.append(dvp(*job, env=env))
                bombs = burst(settings, producer, f"bombs-{r}")
                after.append(dvp(*job, env=env))
                print(f"round {r + 1}: alone {alone[-1]:.1f} s, after {bombs} bombs {after[-1]:.1f} s", flush=True)
        finally:
            dvp("down", env=env)
    a, b = statistics.median(alone), statistics.median(after)
    print(f"\n| {args.seconds:g} s clip, {width}x{height}, 2 workers | alone | after a bomb on every partition |"
          f" difference |\n|---|---|---|---|\n| dvp publish --wait (median of {args.rounds}) | {a:.1f} s | "
          f"{b:.1f} s | {b - a:+.1f} s |")


if __name__ == "__main__":
    main()
