"""The live view where no window can open: an MJPEG stream on 127.0.0.1 that
any browser shows (http://127.0.0.1:PORT/). It shows a camera: it answers only
its own names (dvp/hosts.py), a few viewers at a time, and drops connections
that stay silent."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dvp.hosts import allowed_hosts, host_allowed

BOUNDARY = b"dvpframe"
MAX_VIEWERS = 8
IDLE_S = 10.0  # a connection that sends no request, or takes no frame, for this long is closed


class MjpegServer:
    def __init__(self, address: str, port: int):
        self._latest: bytes | None = None
        self._changed = threading.Condition()
        self._closed = False
        server = self
        allowed = allowed_hosts(address)
        viewers = threading.BoundedSemaphore(MAX_VIEWERS)

        class Handler(BaseHTTPRequestHandler):
            timeout = IDLE_S

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if not host_allowed(self.headers.get("Host"), allowed):
                    self.send_error(403, "unknown host")
                    return
                if not viewers.acquire(blocking=False):
                    self.send_error(503, f"{MAX_VIEWERS} viewers already")
                    return
                try:
                    self._stream()
                finally:
                    viewers.release()

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                sent = None
                try:
                    while (jpeg := server._next(sent)) is not None:
                        sent = jpeg
                        self.wfile.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    pass  # the viewer closed its tab, or stopped reading

            def log_message(self, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer((address, port), Handler)
        self._http.daemon_threads = True
        self.url = f"http://{address}:{self._http.server_address[1]}/"
        threading.Thread(target=self._http.serve_forever, name="mjpeg", daemon=True).start()

    def _next(self, sent: bytes | None) -> bytes | None:
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._latest is not sent, timeout=5)
            return None if self._closed else self._latest

    def show(self, jpeg: bytes) -> None:
        with self._changed:
            self._latest = jpeg
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._http.shutdown()
        self._http.server_close()
