"""Throughput of the pipeline against a single-process reference, in one run.

    python bench/throughput.py [--seconds 20] [--size 720x528] [--workers 2]

The reference decodes, detects (MediaPipe), blurs and encodes (H.264) in one
process: the ceiling on this machine. The pipeline is `dvp run` on the same
clip: embedded broker, N worker processes, the aggregator, start-up included.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dvp.config import Settings
from dvp.faces import FaceDetector
from dvp.filters import parse_spec
from dvp.media import VideoSource
from dvp.run import run_job
from dvp.sample import write_sample
from dvp.streams.encode import VideoEncoder


def reference(clip: Path, out: Path) -> tuple[int, float]:
    began = time.perf_counter()
    detector, blur = FaceDetector(), parse_spec("blur")
    with VideoSource(str(clip)) as source:
        info, encoder, n = source.info, None, 0
        for frame in source.frames():
            if encoder is None:
                height, width = frame.image.shape[:2]
                encoder = VideoEncoder(out, width, height, info.fps, info.time_base, 18, "veryfast")
            encoder.write(blur.apply(frame.image, detector.detect(frame.image)), frame.pts)
            n += 1
        encoder.close()
    return n, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--size", default="720x528")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        write_sample(str(clip), seconds=args.seconds, width=width, height=height)
        n, ref_s = reference(clip, Path(tmp) / "reference.mp4")
        summary = run_job(Settings.load(), str(clip), str(Path(tmp) / "pipeline.mp4"),
                          workers=args.workers, progress=False)
    ref_fps, pipe_fps = n / ref_s, summary.frames / summary.wall_s
    print(f"clip:      {n} frames, {width}x{height}")
    print(f"reference: {ref_fps:6.1f} fps ({ref_s:.1f} s, one process)")
    print(f"pipeline:  {pipe_fps:6.1f} fps ({summary.wall_s:.1f} s, {args.workers} workers, start-up included)")
    print(f"ratio:     {pipe_fps / ref_fps:.2f}")


if __name__ == "__main__":
    main()
