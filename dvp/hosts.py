"""Local servers answer only their own names: a web page a user visits can point a
name it controls at 127.0.0.1 (DNS rebinding) and then read whatever a server there
shows, unless the server refuses requests whose Host it does not know."""
from __future__ import annotations

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def allowed_hosts(bind_address: str, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """Loopback, the address the server binds, and the names it was told (--allow-host)."""
    names = {*LOOPBACK, *extra}
    if bind_address not in ("", "0.0.0.0", "::"):
        names.add(bind_address)
    return frozenset(n.strip().lower().strip("[]") for n in names if n.strip())


def host_of(header: str) -> str:
    """The name of a Host header, without its port: "[::1]:8501" is "::1"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    return header is not None and host_of(header) in allowed
