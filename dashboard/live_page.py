"""The Live page: the browser's own camera through the pipeline and back,
filtered, over WebRTC (streamlit-webrtc, aiortc in this process).

Once the live path answers (a probe through every live partition), each frame
the browser sends is published on the live topic (live_session.py), and for
each the browser is sent the next filtered frame whose turn has come, in order:
a few may wait for their turn out, so that a frame that came back a little
late is shown rather than skipped. Never the camera's own frame: until the
first filtered frame is back, it gets black."""
from __future__ import annotations

import logging
import threading
from collections import deque

import av
import cv2
import numpy as np
import streamlit as st
from streamlit_webrtc import VideoProcessorBase, WebRtcMode, webrtc_streamer

from dvp.dashboard.filter_picker import filter_picker
from dvp.errors import DvpError
from dvp.kafka_cluster import Cluster
from dvp.live_session import LiveSession, Shown
from dvp.messages import now_us

log = logging.getLogger("dvp.dashboard")
# No STUN or TURN server: unset, streamlit-webrtc asks a public one, which hangs
# where there is no internet. Browsers that reach the dashboard reach its host.
RTC_CONFIGURATION: dict = {"iceServers": []}
MAX_QUEUED = 2  # filtered frames waiting to go out, one per frame in; past this the oldest is skipped


class BrowserCamera(VideoProcessorBase):
    """streamlit-webrtc's video processor for one browser connection."""

    def __init__(self, cluster: Cluster, filter_spec: str):
        self.session = LiveSession(cluster, filter_spec)
        self.last: np.ndarray | None = None
        self._queued: deque[Shown] = deque()
        self._ready = threading.Event()
        threading.Thread(target=self._wait_ready, name="live-ready", daemon=True).start()

    def _wait_ready(self) -> None:
        try:
            self.session.wait_ready()
            self._ready.set()
        except DvpError as exc:
            self.session.stats.error = str(exc)

    def recv(self, frame: av.VideoFrame) -> av.VideoFrame:
        image = frame.to_ndarray(format="bgr24")
        if self._ready.is_set():
            self._through_the_pipeline(image)
        if self.last is None:
            out = np.zeros(image.shape, np.uint8)
        elif self.last.shape != image.shape:  # the browser changed its resolution (bandwidth)
            out = np.asarray(cv2.resize(self.last, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_AREA),
                             np.uint8)
        else:
            out = np.asarray(self.last, np.uint8)
        return av.VideoFrame.from_ndarray(out, format="bgr24")

    def _through_the_pipeline(self, image: np.ndarray) -> None:
        """Send the frame; take the next filtered one to show into `last`."""
        try:
            self.session.send(image, now_us())
            due = self.session.receive(0)
            self.session.stats.error = None
        except DvpError as exc:  # the page says it; the video goes on (black or the last filtered frame)
            self.session.stats.error = str(exc)
            due = []
        for shown in due:
            if shown.jpeg is None:
                self.session.counted(shown)
            else:
                self._queued.append(shown)
        while len(self._queued) > MAX_QUEUED:  # one frame goes out per frame in: the view must not lag
            self.session.counted(self._queued.popleft(), on_screen=False)
        if self._queued:
            shown = self._queued.popleft()
            self.session.counted(shown, on_screen=shown.image is not None)
            if shown.image is not None:
                self.last = shown.image

    def on_ended(self) -> None:
        """On aiortc's event loop (maybe twice): quick, and never raising into it."""
        try:
            self.session.close(flush_s=0.5)
        except DvpError as exc:
            log.warning("live page %s: %s", self.session.id, exc)
        log.info("live page %s ended: %s", self.session.id, "; ".join(self.session.stats.lines()))


def offer_loopback_only() -> None:
    """aiortc offers 127.0.0.1 alone. aioice leaves loopback out of its host
    candidates, so without this a browser on a machine with only loopback
    (a test's network namespace) finds no way to connect."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def live_page(cluster: Cluster) -> None:
    settings = cluster.settings
    st.header("Live")
    st.caption("Your camera through the workers and back, filtered. Frames not back within "
               f"{settings.live_deadline_ms} ms of their capture are skipped, so the view never lags more and more.")
    spec = filter_picker("live_filter")  # a bad spec is said; a running session keeps the one it has
    if settings.webrtc_loopback:
        offer_loopback_only()
    ctx = webrtc_streamer(
        key="live", mode=WebRtcMode.SENDRECV, rtc_configuration=RTC_CONFIGURATION,
        media_stream_constraints={"video": True, "audio": False},
        video_processor_factory=lambda: BrowserCamera(cluster, spec),
        # In step with the browser's frames: the asynchronous mode sends the camera's
        # own frame until the first processed one is ready.
        async_processing=False)
    if ctx.video_processor is not None:
        ctx.video_processor.session.set_filter(spec)
        figures(ctx.video_processor)
    elif not ctx.state.playing:
        try:  # before START: a cluster out of reach is said here, not as a dead video
            cluster.wait_reachable(min(settings.connect_timeout_s, 5)).ensure_topics()
        except DvpError as exc:
            st.error(str(exc))


@st.fragment(run_every=1.0)
def figures(camera: BrowserCamera) -> None:
    s = camera.session.stats
    if s.error:
        st.error(s.error)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("frames sent", s.captured)
    c2.metric("shown", s.shown)
    c3.metric("skipped", s.skipped)
    c4.metric("latency p50 / p95", f"{s.percentile(50):.0f} / {s.percentile(95):.0f} ms" if s.latencies_ms else "-")
