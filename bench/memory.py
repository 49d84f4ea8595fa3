"""Peak memory (resident set) of each process of `dvp run` (its defaults: a private
embedded broker, 2 workers, the aggregator), on clips of growing length: how
much more a longer video costs. Read from /proc while the command runs (VmHWM:
each process's own peak).

Then the aggregator under many open jobs, as a flood of JobStarts (or a publisher
gone wrong) would leave it: its logic (streams/aggregator.py, no broker) in a
fresh process, fed jobs that each send a start and frames and never end, with
the bounds across jobs at their defaults and with none.

    python bench/memory.py [--minutes 1,10] [--size 768x576] [--open-jobs 10,100,1000]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: dvp.*

from dvp.config import Settings  # noqa: E402
from dvp.messages import ASSEMBLY, JobFailed, JobStart, ProcessedFrame, StageTimings  # noqa: E402
from dvp.sample import face_scene, write_sample  # noqa: E402

FPS = 25


def role(pid: int) -> str | None:
    """What a process of the run is, from its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    words = [a.decode(errors="replace") for a in argv if a]
    if any("tansu" in w for w in words[:1]):
        return "broker"
    for name in ("worker", "aggregator", "run"):
        if name in words[2:4]:  # python -m dvp NAME
            return f"dvp {name}"
    return None


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in (p.name for p in Path("/proc").iterdir()):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def peak_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(clip: Path, out: Path, home: Path) -> tuple[dict[str, float], float]:
    """The largest peak of each role over the run, and the run's wall time."""
    began = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "dvp", "run", str(clip), "-o", str(out), "--quiet"],
                            env={**os.environ, "DVP_HOME": str(home)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    peaks: dict[int, tuple[str, float]] = {}
    while proc.poll() is None:
        for pid in descendants(proc.pid):
            name, mb = role(pid), peak_mb(pid)
            if name is not None and mb is not None:
                peaks[pid] = (name, max(mb, peaks.get(pid, (name, 0.0))[1]))
        time.sleep(0.2)
    if proc.returncode != 0:
        raise SystemExit(f"dvp run failed: {proc.stderr.read().strip()[-500:]}")
    by_role: dict[str, float] = {}
    for name, mb in peaks.values():
        by_role[name] = max(mb, by_role.get(name, 0.0))
    return by_role, time.monotonic() - began


def open_jobs(jobs: int, frames_each: int, bounded: bool, width: int, height: int, out) -> None:
    """In a process of its own: `jobs` jobs of `frames_each` frames that never end
    (frame 0 never comes when `frames_each` > 1, so the rest wait in memory); what is
    sent to `out`: the resident set after, in MB, and the jobs failed."""
    from dvp.streams.aggregator import Aggregator
    from dvp.streams.assembler import AssemblyOptions
    from dvp.streams.journal import Journal
    s = Settings()
    work = Path(tempfile.mkdtemp())
    agg = Aggregator(Journal({}), work, work, AssemblyOptions(s.crf, s.preset, s.reorder_frames,
                                                              s.reorder_mb * 1_000_000),
                     replay=lambda partition, offset: iter(()), idle_timeout_s=s.job_idle_timeout_s,
                     max_open_jobs=s.max_open_jobs if bounded else None,
                     max_held_bytes=s.held_mb * 1_000_000 if bounded else None)
    jpeg = cv2.imencode(".jpg", cv2.resize(face_scene(), (width, height)))[1].tobytes()
    failed = 0
    for j in range(jobs):
        job = f"job-{j}"
        records = [JobStart(job, "bench", "blur", "per-frame", width, height, 25, 1, 1, 25, None, False, 0)]
        first = 0 if frames_each == 1 else 1
        records += [ProcessedFrame(job, i, i, jpeg, True, [], "w", StageTimings(0, 0, 0, 0, 0), 0, 0)
                    for i in range(first, first + frames_each)]
        for offset, record in enumerate(records):
            failed += sum(isinstance(e, JobFailed) for e in agg.handle(0, offset, ASSEMBLY.encode(record)))
    out.send((int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, failed))


def measure_open_jobs(counts: list[int], width: int, height: int) -> None:
    import multiprocessing
    spawn = multiprocessing.get_context("spawn")
    s = Settings()
    cases = [(n, 1) for n in counts] + [(24, s.reorder_frames)]
    print(f"\n| aggregator, {width}x{height} | no bounds across jobs | DVP_MAX_OPEN_JOBS={s.max_open_jobs}, "
          f"DVP_HELD_MB={s.held_mb} |\n|---|---|---|")
    for jobs, frames_each in cases:
        cells = []
        for bounded in (False, True):
            mine, theirs = spawn.Pipe()
            child = spawn.Process(target=open_jobs, args=(jobs, frames_each, bounded, width, height, theirs))
            child.start()
            mb, failed = mine.recv()
            child.join()
            cells.append(f"{mb:.0f} MB" + (f", {failed} jobs failed" if failed else ""))
        what = (f"{jobs} open jobs, 1 frame each" if frames_each == 1
                else f"{jobs} jobs holding frames out of order (up to DVP_REORDER_FRAMES each)")
        print(f"| {what} | {cells[0]} | {cells[1]} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", default="1,10")
    parser.add_argument("--size", default="768x576")
    parser.add_argument("--open-jobs", default="10,100,1000", help="counts of open jobs; empty: skip")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    if args.open_jobs:
        measure_open_jobs([int(n) for n in args.open_jobs.split(",")], width, height)
    if not args.minutes:
        return
    lengths = [float(m) for m in args.minutes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for minutes in lengths:
            clip = Path(work) / f"clip-{minutes:g}.mp4"
            write_sample(str(clip), seconds=minutes * 60, width=width, height=height, fps=FPS)
            peaks, wall = measure(clip, Path(work) / "out.mp4", Path(work) / f"home-{minutes:g}")
            clip.unlink()
            rows.append((minutes, peaks, wall))
            print(f"{minutes:g} min: {wall:.0f} s, " + ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(peaks.items())),
                  flush=True)
    names = sorted({k for _m, p, _w in rows for k in p})
    print(f"\n| clip ({width}x{height}, {FPS} fps) | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for minutes, peaks, _wall in rows:
        print(f"| {minutes:g} min | " + " | ".join(f"{peaks.get(n, 0):.0f} MB" for n in names) + " |")
    if len(rows) > 1:
        first, last = rows[0][1], rows[-1][1]
        print("| growth | " + " | ".join(f"{last.get(n, 0) - first.get(n, 0):+.0f} MB" for n in names) + " |")


if __name__ == "__main__":
    main()
