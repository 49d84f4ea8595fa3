"""Background processes of the local stack, remembered by pid files."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dvp.errors import DvpError
from dvp.waiting import wait_until


@dataclass(frozen=True)
class Service:
    name: str
    pid: int
    log: Path

    @property
    def alive(self) -> bool:
        return alive(self.pid)


class ServiceDir:
    """`<home>/run/<name>.pid` and `<home>/logs/<name>.log` for each service."""

    def __init__(self, home: Path):
        self.run = home / "run"
        self.logs = home / "logs"

    def spawn(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        self.run.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **env}, start_new_session=True)
        self.remember(name, proc.pid)
        return proc

    def remember(self, name: str, pid: int) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        (self.run / f"{name}.pid").write_text(str(pid))

    def services(self) -> list[Service]:
        found = []
        for pid_file in sorted(self.run.glob("*.pid")) if self.run.exists() else ():
            try:
                pid = int(pid_file.read_text())
            except ValueError:
                continue
            found.append(Service(pid_file.stem, pid, self.logs / f"{pid_file.stem}.log"))
        return found

    def get(self, name: str) -> Service | None:
        return next((s for s in self.services() if s.name == name), None)

    def stop(self, names: list[str] | None = None, timeout: float = 30.0) -> list[Service]:
        """SIGTERM (workers finish their frames), then SIGKILL what is left."""
        targets = [s for s in self.services() if names is None or s.name in names]
        stop_processes([s.pid for s in targets], timeout)
        for service in targets:
            (self.run / f"{service.name}.pid").unlink(missing_ok=True)
        return targets


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
        wait_until(lambda: not any(alive(pid) for pid in pids), grace, "processes survived SIGKILL", interval=0.1)


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the service and any processes it started
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def dvp_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvp", *args]
