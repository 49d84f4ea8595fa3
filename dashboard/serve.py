"""`dvp dashboard`: Streamlit serving app.py in this process, bound to 127.0.0.1
unless told otherwise. The metrics sink starts with the server, not with the
first page view: a `dvp up` stack stores metrics while nobody looks."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dvp.config import Settings
from dvp.dashboard.backend import shared
from dvp.hosts import allowed_hosts, host_allowed

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

APP = Path(__file__).with_name("app.py")


class HostGuard:
    """ASGI middleware: requests and websockets whose Host is not one of ours get 403."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]):
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1")
            if not host_allowed(host, self.allowed):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"unknown host\n"})
                return
        await self.app(scope, receive, send)


def _guard_hosts(allowed: frozenset[str]) -> None:
    """Streamlit makes its Starlette app inside its server: wrap what it makes."""
    from streamlit.web.server.starlette import starlette_server

    make = starlette_server.create_starlette_app
    starlette_server.create_starlette_app = lambda runtime: HostGuard(make(runtime), allowed)  # type: ignore


def serve(settings: Settings, address: str, port: int, sink: bool, allow_hosts: tuple[str, ...] = ()) -> None:
    from streamlit.web import bootstrap  # heavy: only here

    _guard_hosts(allowed_hosts(address, allow_hosts))
    shared(settings, with_sink=sink)  # a store out of reach is one line here, not a page later
    options = {"server_address": address, "server_port": port, "server_headless": True,
               "browser_gatherUsageStats": False, "client_toolbarMode": "viewer",
               "global_developmentMode": False}
    bootstrap.load_config_options(flag_options=options)
    print(f"dashboard on http://{address}:{port}", flush=True)
    bootstrap.run(str(APP), False, [], options)
