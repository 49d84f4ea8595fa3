"""`dvp dashboard`: Streamlit serving app.py, bound to 127.0.0.1 unless told otherwise."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from dvp.config import Settings
from dvp.store import Store

APP = Path(__file__).with_name("app.py")


def serve(settings: Settings, address: str, port: int, sink: bool) -> None:
    """Replace this process by the Streamlit server; settings travel in the environment."""
    Store(settings).close()  # a busy or unreachable store is one line here, not a page later
    os.environ.update(settings.to_env())
    argv = [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.address", address, "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
            "--global.developmentMode", "false"]
    print(f"dashboard on http://{address}:{port}", flush=True)
    os.execv(sys.executable, argv + (["--", "--no-sink"] if not sink else []))
