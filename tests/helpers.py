"""Test helpers: real processes, real topics, real video files."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from confluent_kafka import Consumer, KafkaError, TopicPartition

from dvp.config import Settings
from dvp.infra.processes import stop_processes
from dvp.waiting import wait_until


@dataclass
class Video:
    frames: list  # BGR arrays
    fps: float
    duration: float  # of the video stream, seconds
    audio_duration: float | None
    audio_codec: str | None


def read_video(path) -> Video:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0] if c.streams.audio else None
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(v)]
        fps = float(v.average_rate)
        duration = float(v.duration * v.time_base) if v.duration else len(frames) / fps
        audio = float(a.duration * a.time_base) if a is not None and a.duration else None
        return Video(frames, fps, duration, audio, a.codec_context.name if a is not None else None)


def write_clip(path, frames: list, fmt: str | None = None, options: dict | None = None,
               tone_s: float | None = None, fps: int = 25) -> None:
    """A video file of these frames (H.264), and with `tone_s` a 300 Hz 16 kHz PCM tone that long."""
    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream("libx264", rate=fps, options=options or {})
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        sound = out.add_stream("pcm_s16le", rate=16000, layout="mono") if tone_s else None
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            tone = (np.sin(np.arange(int(tone_s * 16000)) / 16000 * 2 * np.pi * 300) * 8000).astype(np.int16)
            for start in range(0, len(tone), 1600):
                samples = av.AudioFrame.from_ndarray(tone[None, start:start + 1600], format="s16", layout="mono")
                samples.sample_rate, samples.pts = 16000, start
                out.mux(sound.encode(samples))
            out.mux(sound.encode())


CHROMIUM = "/usr/bin/chromium"  # Debian's: Playwright cannot download its own browser here


def chromium() -> str:
    """The browser for the UI tests; a test without it skips, or fails under CI."""
    if not Path(CHROMIUM).exists():
        import pytest
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return CHROMIUM


def dvp(*args, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the real CLI in a child process."""
    return subprocess.run([sys.executable, "-m", "dvp", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, stdin=subprocess.DEVNULL)


class Services:
    """Workers and aggregators started as real processes for one test."""

    def __init__(self, settings: Settings, logs: Path):
        self.settings = settings
        self.logs = logs
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{args[0]}-{len(self.procs)}.log").open("wb")  # noqa: SIM115 - the child's output
        proc = subprocess.Popen([sys.executable, "-m", "dvp", *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL,
                                env={**os.environ, **self.settings.to_env(), "PYTHONUNBUFFERED": "1", **(env or {})})
        self.procs.append(proc)
        return proc

    def worker(self) -> subprocess.Popen:
        return self.start("worker", "-v")

    def aggregator(self, home: Path | None = None) -> subprocess.Popen:
        """An aggregator; `home`: its own work files and store, as on another machine,
        which shares the cluster's secret as docs/security.md asks."""
        other_machine = {"DVP_HOME": str(home), "DVP_SECRET": self.settings.signing_key.decode()}
        return self.start("aggregator", "-v", env=other_machine if home is not None else None)

    def wait_workers_assigned(self, timeout: float = 60) -> None:
        """Until every worker started holds partitions: the group has settled."""
        def holding(log: Path) -> bool:
            lines = [line for line in log.read_text(errors="replace").splitlines() if "partitions assigned" in line]
            return bool(lines) and not lines[-1].endswith("[]")

        logs = sorted(self.logs.glob("worker-*.log"))
        wait_for(lambda: logs and all(holding(log) for log in logs), timeout, "every worker to hold partitions")

    def stop(self) -> None:
        stop_processes([p.pid for p in self.procs], grace=20)

    def exited(self) -> list[str]:
        """The services that are no longer running, each with its log's last line."""
        return [f"{log.stem} exited {p.returncode}: {last_line(log)}"
                for p, log in zip(self.procs, sorted(self.logs.glob("*.log"), key=log_number), strict=True)
                if p.poll() is not None]

    def log_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.logs.glob("*.log")))


def log_number(log: Path) -> int:
    return int(log.stem.rpartition("-")[2])


def last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else "(empty log)"


def read_topic(settings: Settings, topic: str, timeout: float = 10) -> list:
    """Every record of a topic as it stands now, as a read_committed reader sees
    it: [(partition, offset, headers, value)]."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "test-reader",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        md = consumer.list_topics(topic, timeout=timeout)
        waiting = set(md.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in waiting])
        records, deadline = [], time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    waiting.discard(msg.partition())
                continue
            records.append((msg.partition(), msg.offset(), msg.headers(), msg.value()))
        return records
    finally:
        consumer.close()


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    return wait_until(condition, timeout, f"timed out after {timeout:g} s waiting for {what}", interval,
                      error=AssertionError)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def mustache_under_nose(shown: np.ndarray, source: np.ndarray, detector) -> bool:
    """Whether `shown` (the source frame filtered, then coded) has the mustache
    filter's colour where the source's landmarks put the space under the nose."""
    from dvp.filters import mustache
    from dvp.filters.regions import UNDER_NOSE, UPPER_LIP

    faces = detector.detect(source, landmarks=True)
    if not faces or faces[0].landmarks is None:
        return False
    m = faces[0].landmarks
    x, y = np.round((m[UNDER_NOSE] + m[UPPER_LIP]) / 2).astype(int)
    under_nose = shown[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).mean(axis=0)
    return bool(np.abs(under_nose - mustache.COLOUR[:3]).max() < 40)


@contextmanager
def slowed(pid: int, stopped_s: float, running_s: float) -> Iterator[None]:
    """A process stopped (SIGSTOP) `stopped_s` of every `stopped_s + running_s`
    seconds meanwhile: a slow machine, or a busy one."""
    stop = threading.Event()

    def slow_down() -> None:
        while not stop.is_set():
            os.kill(pid, signal.SIGSTOP)
            time.sleep(stopped_s)
            os.kill(pid, signal.SIGCONT)
            time.sleep(running_s)

    slower = threading.Thread(target=slow_down, daemon=True)
    slower.start()
    try:
        yield
    finally:
        stop.set()
        slower.join()
        os.kill(pid, signal.SIGCONT)


def raw_status(port: int, request: str) -> bytes:
    """The status code a server on 127.0.0.1 answers a request written out by hand."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request.encode())
        return s.recv(64).split(b" ")[1]
