"""Peak memory (resident set) of each process of `dvp run` (its defaults: a private
embedded broker, 2 workers, the aggregator), on clips of growing length: how
much more a longer video costs. Read from /proc while the command runs (VmHWM:
each process's own peak).

    python bench/memory.py [--minutes 1,10] [--size 768x576]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dvp.sample import write_sample

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
    for entry in os.listdir("/proc"):
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", default="1,10")
    parser.add_argument("--size", default="768x576")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
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
