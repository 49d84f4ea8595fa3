"""Whole commands timed from outside, in one run: `dvp run` (its defaults: a
private embedded broker, workers, the aggregator, start-up included) against
deface (1.5, its defaults: CenterFace, one process) and a single-process
reference doing dvp's work with the same libraries and settings: PyAV decode,
the pipeline's face detector configuration, blur, libx264 at the pipeline's CRF
and preset. Rounds alternate the commands; figures are medians. Then where `dvp run`'s time goes before and after its
frames are processed, from its own metrics in the store.

    python bench/throughput.py [--frames 100,800] [--size 768x576] [--workers 1,2] [--rounds 3]
    python bench/throughput.py --reference IN OUT     # the reference alone
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FPS = 25


def reference(src: str, out: str) -> None:
    """The plain loop, one process, nothing of the pipeline's transport."""
    import av

    from dvp.config import Settings
    from dvp.encode import VideoEncoder
    from dvp.faces import Detectors
    from dvp.filters import parse_spec

    s = Settings.load()
    detectors, blur = Detectors.of(s), parse_spec("blur")
    detector = detectors.get(s.detector)
    with av.open(src) as container:
        stream = container.streams.video[0]
        encoder = VideoEncoder(Path(out), stream.width, stream.height, stream.average_rate, stream.time_base,
                               s.crf, s.preset)
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="bgr24")
            encoder.write(blur.apply(image, detector.detect(image)), frame.pts)
        encoder.close()
    detectors.close()


def timed(argv: list[str], env: dict | None = None) -> float:
    began = time.perf_counter()
    done = subprocess.run(argv, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()[-500:]}")
    return time.perf_counter() - began


def timeline(home: Path, launched: float) -> dict[str, float]:
    """Seconds from the command's launch to its job's milestones, from the store `dvp run` filled."""
    from dvp.config import Settings
    from dvp.store import Store

    store = Store(Settings.load(environ={"DVP_HOME": str(home)}))
    try:
        frames = store.query(
            "SELECT toUnixTimestamp64Micro(min(ts)) AS first, toUnixTimestamp64Micro(max(ts)) AS last, "
            "min(toUnixTimestamp64Micro(ts) - (queue_ms + decode_ms + detect_ms + filter_ms + encode_ms) * 1000) "
            "AS published FROM dvp_frames FINAL").iloc[0]
        done = store.query("SELECT toUnixTimestamp64Micro(max(ts)) AS done FROM dvp_job_events FINAL "
                           "WHERE kind = 'completed'").iloc[0]["done"]
    finally:
        store.close()
    first, last, published = (float(frames[k]) / 1e6 - launched for k in ("first", "last", "published"))
    return {"first frame published": published, "first frame processed": first,
            "last frame processed": last, "job completed": float(done) / 1e6 - launched}


def worker_time(home: Path) -> list[dict[str, float]]:
    """Each worker's milliseconds per frame by stage, from the store `dvp run` filled:
    its time per frame is the span of its frames over their count (it had a backlog
    all along); 'loop' is what the stages leave (Kafka, Avro, waiting)."""
    from dvp.config import Settings
    from dvp.store import Store

    store = Store(Settings.load(environ={"DVP_HOME": str(home)}))
    try:
        rows = store.query(
            "SELECT count() AS n, (toUnixTimestamp64Micro(max(ts)) - toUnixTimestamp64Micro(min(ts))) / 1000 AS span,"
            " avg(decode_ms) AS decode, avg(detect_ms) AS detect, avg(filter_ms) AS filter,"
            " avg(encode_ms) AS encode FROM dvp_frames FINAL GROUP BY worker_id")
    finally:
        store.close()
    out = []
    for _, r in rows.iterrows():
        per_frame = float(r["span"]) / (int(r["n"]) - 1)
        stages = {k: float(r[k]) for k in ("decode", "detect", "filter", "encode")}
        out.append({**stages, "loop": per_frame - sum(stages.values()), "per_frame": per_frame})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", default="100,800")
    parser.add_argument("--size", default="768x576")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reference", nargs=2, metavar=("IN", "OUT"))
    args = parser.parse_args()
    if args.reference:
        reference(*args.reference)
        return
    from dvp.sample import write_sample

    width, height = map(int, args.size.split("x"))
    workers = [int(w) for w in args.workers.split(",")]
    deface = shutil.which("deface", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    peers = ["reference"] + (["deface"] if deface else [])
    print(f"| clip ({width}x{height}) | " + " | ".join(peers) + " | "
          + " | ".join(f"dvp run, {w} worker{'s' * (w > 1)}" for w in workers) + " |")
    print("|---|---|" + "---|" * (len(workers) + len(peers) - 1))
    timelines, spent = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for frames in (int(f) for f in args.frames.split(",")):
            clip = Path(tmp) / f"clip-{frames}.mp4"
            write_sample(str(clip), seconds=frames / FPS, width=width, height=height, fps=FPS)
            times: dict[str, list[float]] = {name: [] for name in [*peers, *map(str, workers)]}
            for r in range(args.rounds):
                order = list(times)
                for name in order if r % 2 == 0 else reversed(order):
                    out = Path(tmp) / f"out-{name}.mp4"
                    if name == "reference":
                        times[name].append(timed([sys.executable, __file__, "--reference", str(clip), str(out)]))
                        continue
                    if name == "deface":
                        times[name].append(timed([str(deface), str(clip), "-o", str(out)]))
                        continue
                    home = Path(tmp) / f"home-{frames}-{name}-{r}"
                    launched = time.time()
                    times[name].append(timed([sys.executable, "-m", "dvp", "run", str(clip), "-o", str(out),
                                              "--workers", name, "--quiet"], {"DVP_HOME": str(home)}))
                    timelines.append((frames, int(name), timeline(home, launched), times[name][-1]))
                    spent.append((frames, int(name), worker_time(home)))
            ref = statistics.median(times["reference"])
            cells = [f"{statistics.median(times[p]):.1f} s" for p in peers]
            for w in workers:
                took = statistics.median(times[str(w)])
                cells.append(f"{took:.1f} s ({ref / took:.2f}" + (
                    f"; {took / statistics.median(times['deface']):.2f} of deface's)" if deface else ")"))
            print(f"| {frames} frames | " + " | ".join(cells) + " |", flush=True)
    print("\n(ratio: the reference's time over dvp run's, higher is better; then dvp run's time as a share of "
          f"deface's, lower is better; medians of {args.rounds} alternated rounds)\n")
    print("| clip | workers | first frame published | first frame processed | last frame processed "
          "| job completed | command exited |")
    print("|---|---|---|---|---|---|---|")
    for frames, w in sorted({(f, w) for f, w, _t, _e in timelines}):
        runs = [(t, e) for f, ww, t, e in timelines if (f, ww) == (frames, w)]
        med = {k: statistics.median(t[k] for t, _e in runs) for k in runs[0][0]}
        print(f"| {frames} frames | {w} | " + " | ".join(f"{v:.1f} s" for v in med.values())
              + f" | {statistics.median(e for _t, e in runs):.1f} s |")
    longest = max(f for f, _w, _s in spent)
    print(f"\nA worker's time per frame ({longest} frames; medians over workers and rounds; overhead: all but "
          "detect and filter, as a share of its time)\n")
    print("| workers | decode JPEG | detect | filter | encode JPEG | loop (Kafka, Avro, waiting) | per frame "
          "| overhead |")
    print("|---|---|---|---|---|---|---|---|")
    for w in workers:
        each = [x for f, ww, s in spent if (f, ww) == (longest, w) for x in s]
        med = {k: statistics.median(x[k] for x in each) for k in each[0]}
        overhead = 1 - (med["detect"] + med["filter"]) / med["per_frame"]
        print(f"| {w} | " + " | ".join(f"{med[k]:.1f} ms" for k in ("decode", "detect", "filter", "encode", "loop",
                                                                      "per_frame"))
              + f" | {overhead:.0%} |")


if __name__ == "__main__":
    main()
