"""Background processes of the local stack, remembered by pid files.

A pid file holds the pid and the process's start time: after a reboot or once
the pid is reused, the pid names another process, which is never signalled."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dvp.errors import DvpError
from dvp.parent import die_with_parent
from dvp.waiting import wait_until


@dataclass(frozen=True)
class Service:
    name: str
    pid: int
    started: str  # the process's start time, as the kernel counts it
    log: Path

    @property
    def alive(self) -> bool:
        """Still running, and still the process that was started."""
        return alive(self.pid) and start_time(self.pid) == self.started


def start_time(pid: int) -> str:
    """When the process started (clock ticks since boot, field 22 of /proc/PID/stat);
    '' if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]  # fields after the command name, which may hold spaces


class ServiceDir:
    """`<home>/run/<name>.pid` and `<home>/logs/<name>.log` for each service."""

    def __init__(self, home: Path):
        self.run = home / "run"
        self.logs = home / "logs"

    def spawn(self, name: str, argv: list[str], env: dict, with_parent: bool = False) -> subprocess.Popen:
        """Start a service in its own process group; `with_parent`: it ends when
        this process does, however this process ends."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = start(argv, log, env, with_parent)
        self.remember(name, proc.pid)
        return proc

    def remember(self, name: str, pid: int) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        (self.run / f"{name}.pid").write_text(f"{pid} {start_time(pid)}")

    def services(self) -> list[Service]:
        found = []
        for pid_file in sorted(self.run.glob("*.pid")) if self.run.exists() else ():
            pid, _, started = pid_file.read_text().partition(" ")
            if pid.isdigit():
                found.append(Service(pid_file.stem, int(pid), started.strip(), self.logs / f"{pid_file.stem}.log"))
        return found

    def get(self, name: str) -> Service | None:
        return next((s for s in self.services() if s.name == name), None)

    def stop(self, names: list[str] | None = None, timeout: float = 30.0) -> list[Service]:
        """SIGTERM (workers finish their frames), then SIGKILL what is left."""
        targets = [s for s in self.services() if names is None or s.name in names]
        stop_processes([s.pid for s in targets if s.alive], timeout)  # a stale pid file signals nothing
        for service in targets:
            (self.run / f"{service.name}.pid").unlink(missing_ok=True)
        return targets


def start(argv: list[str], log: IO[bytes], env: dict | None = None, with_parent: bool = False) -> subprocess.Popen:
    """A process in a session of its own (a terminal's Ctrl-C is for its parent to handle)."""
    parent = os.getpid()
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})}, start_new_session=True,
                            preexec_fn=(lambda: die_with_parent(parent)) if with_parent else None)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is dead too: reap it.
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        return reaped == 0
    except ChildProcessError:
        return True


def stop_processes(pids: list[int], grace: float) -> None:
    """SIGTERM each process and the processes it started (services finish what
    they hold), then SIGKILL what is still running after `grace` seconds."""
    for pid in pids:
        if alive(pid):
            signal_group(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not any(alive(pid) for pid in pids), grace, "", interval=0.1)
    except DvpError:
        for pid in pids:
            if alive(pid):
                signal_group(pid, signal.SIGKILL)
        wait_until(lambda: not any(alive(pid) for pid in pids), max(grace, 10), "processes survived SIGKILL",
                   interval=0.05)


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the service and any processes it started
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def dvp_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvp", *args]
