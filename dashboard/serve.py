"""`dvp dashboard`: Streamlit serving app.py in this process, bound to 127.0.0.1
unless told otherwise. The metrics sink starts with the server, not with the
first page view: a `dvp up` stack stores metrics while nobody looks."""
from __future__ import annotations

from pathlib import Path

from dvp.config import Settings
from dvp.dashboard.backend import shared

APP = Path(__file__).with_name("app.py")


def serve(settings: Settings, address: str, port: int, sink: bool) -> None:
    from streamlit.web import bootstrap  # heavy: only here

    shared(settings, with_sink=sink)  # a store out of reach is one line here, not a page later
    options = {"server_address": address, "server_port": port, "server_headless": True,
               "browser_gatherUsageStats": False, "client_toolbarMode": "viewer",
               "global_developmentMode": False}
    bootstrap.load_config_options(flag_options=options)
    print(f"dashboard on http://{address}:{port}", flush=True)
    bootstrap.run(str(APP), False, [], options)
