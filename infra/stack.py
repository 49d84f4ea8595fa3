"""The local stack: broker, workers, aggregator and dashboard as background processes.

`dvp up` / `dvp down` / `dvp status` manage a long-running one under
DVP_HOME; `Stack` is the private, throw-away one that `dvp run` uses."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dvp.config import Settings
from dvp.errors import DvpError
from dvp.infra import tansu
from dvp.infra.processes import Service, ServiceDir, dvp_command, stop_processes
from dvp.kafka_cluster import Cluster

LOCAL_PORT = 9092
# Stop order: first what consumes, last the broker.
STOP_ORDER = ("dashboard", "worker", "aggregator", "broker")
PRIVATE_SESSION_TIMEOUT_MS = 2000  # `dvp run`'s own embedded broker (see Stack.running)


def up(settings: Settings, workers: int) -> list[Service]:
    services = ServiceDir(settings.home)
    if settings.bootstrap_servers is None:
        broker = services.get("broker")
        if broker is None or not broker.alive:
            if tansu.port_open(LOCAL_PORT):
                raise DvpError(f"port {LOCAL_PORT} is taken by another program; to use it as the "
                               f"cluster, set DVP_BOOTSTRAP_SERVERS=127.0.0.1:{LOCAL_PORT}")
            proc = tansu.start(LOCAL_PORT, services.logs / "broker.log")
            services.remember("broker", proc.pid)
    Cluster.reach(settings).ensure_topics()
    env = settings.to_env()
    wanted = {"worker": dvp_command("worker", "--processes", str(workers)),
              "aggregator": dvp_command("aggregator"),
              # It owns the embedded metrics store: it fills it (a sink) and shows it.
              "dashboard": dvp_command("dashboard")}
    for name, argv in wanted.items():
        running = services.get(name)
        if running is None or not running.alive:
            services.spawn(name, argv, env)
    return services.services()


def down(settings: Settings) -> list[Service]:
    services = ServiceDir(settings.home)
    stopped = []
    for name in STOP_ORDER:
        stopped += services.stop([name])
    return stopped


def status(settings: Settings) -> list[Service]:
    return ServiceDir(settings.home).services()


class Stack:
    """Workers and an aggregator for one job, on the given cluster or on a
    private embedded broker (`Stack.running`); everything stops and is removed
    when it ends."""

    def __init__(self, cluster: Cluster, home: Path, procs: dict[str, list[subprocess.Popen]]):
        self.cluster = cluster
        self.settings = cluster.settings
        self._home = home
        self._procs = procs

    @classmethod
    @contextmanager
    def running(cls, settings: Settings, workers: int, live: bool = False, files: bool = True) -> Iterator[Stack]:
        """`live`: the workers also take live camera frames (left to the cluster's own by default);
        `files`: an aggregator assembles file jobs (live frames need none)."""
        home = Path(tempfile.mkdtemp(prefix="dvp-run-"))
        services = ServiceDir(home)
        procs: dict[str, list[subprocess.Popen]] = {}
        try:
            settings = settings.replace(home=home)
            if settings.bootstrap_servers is None:
                port = tansu.free_port()
                procs["broker"] = [tansu.start(port, services.logs / "broker.log", with_parent=True)]
                # The embedded broker holds each JoinGroup for half the session timeout, and
                # a job waits for its workers' joins; on a private broker on this machine a
                # short session costs nothing (a dead process's partitions just move sooner).
                settings = settings.replace(bootstrap_servers=f"127.0.0.1:{port}",
                                            session_timeout_ms=min(settings.session_timeout_ms,
                                                                   PRIVATE_SESSION_TIMEOUT_MS))
            # Started first: their imports and models load while the topics are made
            # (each waits for the broker and makes sure of the topics itself).
            # -v: their logs say what happened when a job fails (keep_logs).
            env = settings.to_env()
            argv = dvp_command("worker", "-v", *([] if live else ["--no-live"]))
            procs["worker"] = [services.spawn(f"worker-{i}", argv, env, with_parent=True) for i in range(workers)]
            if files:
                procs["aggregator"] = [services.spawn("aggregator", dvp_command("aggregator", "-v"), env,
                                                      with_parent=True)]
            cluster = Cluster.reach(settings)
            cluster.ensure_topics()
            yield cls(cluster, home, procs)
        finally:
            # On a private broker nothing outlives the stack: no offsets or group to
            # leave in order, so nothing to wait for (Faust alone takes over a second).
            grace = 0 if "broker" in procs else 30
            for name in STOP_ORDER:
                stop_processes([proc.pid for proc in procs.get(name, ())], grace=grace)
            shutil.rmtree(home, ignore_errors=True)

    def check_alive(self) -> None:
        """Raise if the job can no longer finish: the aggregator or every worker died."""
        if any(p.poll() is not None for p in self._procs.get("aggregator", ())):
            raise DvpError("the aggregator exited early")
        if all(p.poll() is not None for p in self._procs["worker"]):
            raise DvpError("every worker exited early")

    def keep_logs(self) -> Path:
        """Copy the services' logs out of the stack's home, which goes at exit."""
        kept = Path(tempfile.mkdtemp(prefix="dvp-logs-"))
        shutil.copytree(self._home / "logs", kept, dirs_exist_ok=True)
        return kept
