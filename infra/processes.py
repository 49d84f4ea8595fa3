"""Background processes of the local stack, remembered by pid files."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class Service:
    name: str
    pid: int
    log: Path

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A zombie child of ours is dead too.
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            return pid == 0
        except ChildProcessError:
            return True


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

    def get(self, name: str) -> Optional[Service]:
        return next((s for s in self.services() if s.name == name), None)

    def stop(self, names: Optional[list[str]] = None, timeout: float = 30.0) -> list[Service]:
        """SIGTERM (workers finish their frames), then SIGKILL what is left."""
        targets = [s for s in self.services() if names is None or s.name in names]
        for service in targets:
            if service.alive:
                signal_group(service.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(s.alive for s in targets) and time.monotonic() < deadline:
            time.sleep(0.1)
        for service in targets:
            if service.alive:
                signal_group(service.pid, signal.SIGKILL)
            (self.run / f"{service.name}.pid").unlink(missing_ok=True)
        return targets


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
