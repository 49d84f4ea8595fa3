"""The dashboard's Live page in real headless Chromium, its fake camera playing a
Y4M file that this module writes (a face, and each frame's number as a row of
large cells that survive the video codec). Meant to run inside a network
namespace with only loopback (`unshare -n`), where it starts a broker, workers
and the dashboard on the namespace's own loopback:

    unshare -n sh -c 'ip link set lo up && exec python -m tests.live_page OUT SECONDS WORKERS WIDTH HEIGHT'

WORKERS 0 serves a page that sends each frame straight back (webrtc_echo.py).

In the page, every frame the camera hands to WebRTC and every frame the page
shows back is timed (requestVideoFrameCallback) and its number read from its
cells; a frame's round trip is the time from one to the other. Prints one JSON
line: round trips, frames shown, black frames, frames shown (JPEG files in OUT, to
compare with the camera's), the browser's WebRTC statistics and the
dashboard's own figures for the session."""
from __future__ import annotations

import base64
import json
import re
import socket
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from dvp.infra import tansu
from dvp.infra.processes import dvp_command, start, stop_processes
from dvp.infra.tansu import free_port
from dvp.sample import astronaut_face, background
from tests.helpers import CHROMIUM

FPS, LOOP = 30, 90  # the fake camera plays the file in a loop
CODE_BITS, CODE_CELL = 8, 40  # frame number + 1 (0: black, nothing back yet) along the top


@dataclass(frozen=True)
class FakeCamera:
    width: int
    height: int

    @property
    def face(self) -> tuple[int, int, int]:
        """Left, top and size of the face, the same in every frame."""
        size = self.height * 3 // 8
        return (self.width - size) // 2, self.height // 4, size

    def frame(self, index: int) -> np.ndarray:
        image = background(self.width, self.height)
        left, top, size = self.face
        image[top:top + size, left:left + size] = astronaut_face(size)
        code = index + 1
        for bit in range(CODE_BITS):
            image[:CODE_CELL, bit * CODE_CELL:(bit + 1) * CODE_CELL] = 255 if code >> bit & 1 else 0
        return image

    def write_y4m(self, path: Path) -> None:
        with av.open(str(path), "w", format="yuv4mpegpipe") as out:
            stream = out.add_stream("rawvideo", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
            for i in range(LOOP):
                frame = av.VideoFrame.from_ndarray(self.frame(i), format="bgr24")
                frame.pts, frame.time_base = i, Fraction(1, FPS)
                out.mux(stream.encode(frame))

    def face_change(self, shown_image: str, index: int) -> float:
        """How much the face region of a frame shown differs from the camera's
        frame where it differs most: the mean absolute difference over 24x24
        pixels, 0-255. The codec alone changes it by under 20; a blur by about 40."""
        shown = cv2.resize(cv2.imread(shown_image, cv2.IMREAD_COLOR), (self.width, self.height))
        left, top, size = self.face
        region = (slice(top, top + size), slice(left, left + size))
        diff = np.abs(shown[region].astype(np.int16) - self.frame(index)[region]).mean(axis=2).astype(np.float32)
        return float(cv2.blur(diff, (24, 24)).max())


# Runs in every frame of the page. The camera's stream, as getUserMedia hands it
# to the component, is also played in a hidden <video>; every video element's
# frames are timed and their numbers read; frames shown are kept as JPEG;
# the peer connections are kept for their statistics.
TIMING_JS = """
(() => {
  const BITS = $BITS, CELL = $CELL, W = $W, H = $H;
  const events = window.__dvp = {sent: [], shown: [], snaps: [], back: 0};
  const canvas = document.createElement('canvas');
  canvas.width = W; canvas.height = H;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  function read(video) {
    ctx.drawImage(video, 0, 0, W, H);
    const px = ctx.getImageData(0, 0, BITS * CELL, CELL).data;
    let code = 0;
    for (let bit = 0; bit < BITS; bit++) {
      const x = bit * CELL + CELL / 2, y = CELL / 2;
      const i = (y * BITS * CELL + x) * 4;
      if (px[i] + px[i + 1] + px[i + 2] > 3 * 127) code |= 1 << bit;
    }
    return code;
  }
  function watch(video, into, snaps) {
    const each = (now) => {
      if (video.videoWidth > 0) {  // WebRTC may send it smaller: drawn at W x H
        const code = read(video);
        into.push([code, now]);
        // Every one of the first frames back (a leak at the start is the likely one), then every 15th.
        if (snaps && code > 0 && (++events.back <= 20 || events.back % 15 === 0) && events.snaps.length < 40)
          events.snaps.push([code, canvas.toDataURL('image/jpeg', 0.95)]);
      }
      video.requestVideoFrameCallback(each);
    };
    video.requestVideoFrameCallback(each);
  }
  const original = navigator.mediaDevices && navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  if (original) navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await original(constraints);
    const local = document.createElement('video');
    local.muted = true; local.autoplay = true; local.playsInline = true; local.style.display = 'none';
    local.srcObject = stream;
    document.body.appendChild(local);
    local.play();
    watch(local, events.sent, false);
    return stream;
  };
  const Original = window.RTCPeerConnection;
  if (Original) {
    window.__pcs = [];
    window.RTCPeerConnection = function (...args) {
      const pc = new Original(...args); window.__pcs.push(pc); return pc;
    };
    window.RTCPeerConnection.prototype = Original.prototype;
  }
  const seen = new WeakSet();
  setInterval(() => {
    for (const v of document.querySelectorAll('video')) {
      if (seen.has(v) || v.style.display === 'none' || !v.srcObject) continue;
      seen.add(v);
      watch(v, events.shown, true);
    }
  }, 100);
})();
"""

RTC_STATS_JS = """async () => {
  const out = {};
  for (const pc of window.__pcs || []) {
    (await pc.getStats()).forEach(r => {
      if ((r.type === 'inbound-rtp' || r.type === 'outbound-rtp') && r.kind === 'video') out[r.type] = r;
    });
  }
  return out;
}"""


def round_trips_ms(sent: list, shown: list) -> list[float]:
    """For each frame shown (its first showing), the time since the camera handed
    the same frame over (its latest handing before that)."""
    trips, last_shown = [], None
    for code, t in shown:
        if code == 0 or code == last_shown:
            continue
        last_shown = code
        before = [s for c, s in sent if c == code and s <= t]
        if before and t - before[-1] < LOOP / FPS * 1000 / 2:
            trips.append(t - before[-1])
    return trips


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def in_browser(url: str, camera: FakeCamera, y4m: Path, seconds: float, screenshot: Path) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--allow-loopback-in-peer-connection", "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={y4m}"])
        page = browser.new_page(viewport={"width": 1200, "height": 1120})
        page.add_init_script(TIMING_JS.replace("$BITS", str(CODE_BITS)).replace("$CELL", str(CODE_CELL))
                             .replace("$W", str(camera.width)).replace("$H", str(camera.height)))
        page.goto(url)
        component = page.wait_for_selector("iframe[title*='webrtc']", timeout=60_000).content_frame()
        component.get_by_role("button", name="START").click(timeout=60_000)
        deadline = time.monotonic() + 60
        while not component.evaluate("window.__dvp.shown.some(([c]) => c > 0)"):
            if time.monotonic() > deadline:
                raise SystemExit("no frame came back to the page within 60 s")
            time.sleep(0.2)
        started = component.evaluate("window.__dvp.shown.length")
        page.wait_for_timeout(seconds * 1000)
        events = component.evaluate("window.__dvp")
        events["rtc"] = component.evaluate(RTC_STATS_JS)
        page.screenshot(path=str(screenshot))
        component.get_by_role("button", name="STOP").click()  # the session ends: its figures in the log
        page.wait_for_timeout(2000)
        browser.close()
    events["shown"] = events["shown"][started:]  # measured once frames flow
    return events



def child_log(path: Path):
    """A child's output file, open while it runs."""
    return path.open("wb")  # noqa: SIM115 - handed to the child

def main(out: Path, seconds: float, workers: int, camera: FakeCamera) -> None:
    """Broker, workers and dashboard on this namespace's loopback; the page in Chromium."""
    out.mkdir(parents=True, exist_ok=True)
    y4m = out / "camera.y4m"
    camera.write_y4m(y4m)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    broker_port, port = free_port(), free_port()
    env = {"DVP_HOME": str(out / "home"), "DVP_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker_port}",
           "DVP_WEBRTC_LOOPBACK": "1"}
    procs = []
    try:
        if workers == 0:  # the yardstick: each frame straight back
            echo = str(Path(__file__).with_name("webrtc_echo.py"))
            procs.append(start([sys.executable, "-m", "streamlit", "run", echo,
                                "--server.port", str(port), "--server.address", "127.0.0.1",
                                "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                               child_log(logs / "echo.log"), env, with_parent=True))
            url = f"http://127.0.0.1:{port}/"
        else:
            procs.append(tansu.start(broker_port, logs / "broker.log", with_parent=True))
            for name, args in [("worker", ["worker", "-v", "--processes", str(workers)]),
                               ("dashboard", ["dashboard", "-v", "--no-sink", "--port", str(port)])]:
                procs.append(start(dvp_command(*args), child_log(logs / f"{name}.log"), env, with_parent=True))
            url = f"http://127.0.0.1:{port}/?page=Live"
        wait(lambda: listening(port), 60, "the page's server")
        wait(lambda: workers == 0 or len(set(re.findall(
            r"\[(\d+)\].* live frames from partitions \[\d", (logs / "worker.log").read_text(errors="replace")
        ))) >= workers, 90, "the workers to take the live frames")
        events = in_browser(url, camera, y4m, seconds, out / "live-page.png")
    finally:
        stop_processes([p.pid for p in reversed(procs)], 10)
    snaps = []
    for code, url in events["snaps"]:
        path = out / f"shown-{len(snaps)}-{code - 1}.jpg"
        path.write_bytes(base64.b64decode(url.split(",", 1)[1]))
        snaps.append({"index": code - 1, "path": str(path)})
    ended = re.findall(r"live page \S+ ended: .*", (logs / "dashboard.log").read_text(errors="replace")
                       if workers else "")
    print(json.dumps({"in_python": ended[-1] if ended else None,
                      "round_trips_ms": round_trips_ms(events["sent"], events["shown"]),
                      "shown": len(events["shown"]), "sent": len(events["sent"]),
                      "black": sum(1 for c, _t in events["shown"] if c == 0), "snaps": snaps,
                      "rtc": events["rtc"]}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), FakeCamera(int(sys.argv[4]), int(sys.argv[5])))
