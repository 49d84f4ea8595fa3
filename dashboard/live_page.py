"""The Live page: the browser's own camera through the pipeline and back,
filtered, over WebRTC (streamlit-webrtc, aiortc in this process).

The browser's frames go into a sink, which publishes each on the live topic
once the live path answers (a probe through every live partition;
live_session.py). The video sent back is a track of its own, paced by the
filtered frames as their turn comes, not by the camera's: a burst of camera
frames (a busy browser sends them unevenly) is not a burst of frames skipped.
Never the camera's own frame: until the first filtered frame is back, the
browser gets no frame at all."""
from __future__ import annotations

import asyncio
import logging
import threading
from fractions import Fraction

import av
import streamlit as st
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from dvp.dashboard.filter_picker import filter_picker
from dvp.errors import DvpError
from dvp.kafka_cluster import Cluster
from dvp.live_session import LiveSession, Shown
from dvp.messages import now_us

log = logging.getLogger("dvp.dashboard")
# No STUN or TURN server: unset, streamlit-webrtc asks a public one, which hangs
# where there is no internet. Browsers that reach the dashboard reach its host.
RTC_CONFIGURATION: dict = {"iceServers": []}
MAX_QUEUED = 2  # filtered frames waiting for the video encoder; past this the oldest is skipped
TIME_BASE = Fraction(1, 90_000)  # RTP's video clock
RECEIVE_WAIT_S = 0.02


class FilteredTrack(MediaStreamTrack):
    """The video sent back: each filtered frame as its turn comes, stamped with
    its capture time."""
    kind = "video"

    def __init__(self, camera: BrowserCamera):
        super().__init__()
        self._camera = camera
        self._queue: asyncio.Queue[tuple[Shown, av.VideoFrame] | None] = asyncio.Queue()

    def due(self, shown: Shown, frame: av.VideoFrame | None) -> None:
        """On the event loop: a frame whose turn came, skipped where `frame` is None."""
        session = self._camera.session
        if session is None:
            return
        if frame is None:
            session.counted(shown)
            return
        self._queue.put_nowait((shown, frame))
        while self._queue.qsize() > MAX_QUEUED:  # the encoder is behind: the view must not lag
            late = self._queue.get_nowait()
            if late is not None:
                session.counted(late[0], on_screen=False)

    async def recv(self) -> av.VideoFrame:
        item = await self._queue.get() if self.readyState == "live" else None
        session = self._camera.session
        if item is None or session is None:
            raise MediaStreamError
        shown, frame = item
        session.counted(shown)
        frame.pts = round((shown.captured_at_us - (session.first_capture_us or 0)) / 1e6 / TIME_BASE)
        frame.time_base = TIME_BASE
        return frame

    def end(self) -> None:
        """On the event loop: a recv waiting now, or any later, raises MediaStreamError."""
        self._queue.put_nowait(None)
        self.stop()


class BrowserCamera:
    """One browser connection. streamlit-webrtc hands it the browser's track
    (`addTrack`, `start` and `stop` make it a MediaSink) and sends `output` back.
    The session is made when the connection starts, on a thread of its own that
    waits for the live path and then reads the filtered frames."""

    def __init__(self, cluster: Cluster, filter_spec: str):
        self._cluster = cluster
        self.spec = filter_spec
        self.session: LiveSession | None = None
        self.error: str | None = None
        self.ended = False
        self._input: MediaStreamTrack | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._ready = threading.Event()
        self.output = FilteredTrack(self)

    def set_filter(self, filter_spec: str) -> None:
        self.spec = filter_spec
        if self.session is not None:
            self.session.set_filter(filter_spec)

    # MediaSink
    def addTrack(self, track: MediaStreamTrack) -> None:  # noqa: N802 - streamlit-webrtc's name
        self._input = track

    def hasTrack(self) -> bool:  # noqa: N802
        return self._input is not None

    def start(self) -> None:
        """On aiortc's event loop, once the connection is set up."""
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._send_frames())
        threading.Thread(target=self._session_thread, name="live-page", daemon=True).start()

    def stop(self) -> None:
        """The connection ended (STOP, the page closed): the session ends with its figures."""
        self.ended = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._end_tracks)

    def _end_tracks(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.output.end()

    async def _send_frames(self) -> None:
        """The browser's frames, published once the live path is ready."""
        assert self._input is not None
        while not self.ended:
            try:
                frame = await self._input.recv()
            except MediaStreamError:
                return
            if self._ready.is_set() and self.session is not None and isinstance(frame, av.VideoFrame):
                try:
                    self.session.send(frame.to_ndarray(format="bgr24"), now_us())
                except DvpError as exc:  # the page says it; the video goes on
                    self.error = str(exc)

    def _session_thread(self) -> None:
        try:
            self.session = LiveSession(self._cluster, self.spec)
            self.session.wait_ready()
            self._ready.set()
            while not self.ended:
                self._hand_out(self.session.receive(RECEIVE_WAIT_S))
        except DvpError as exc:
            self.error = str(exc)
        finally:
            self._close()

    def _hand_out(self, due: list[Shown]) -> None:
        """Frames whose turn came, decoded here, off the event loop."""
        assert self._loop is not None
        for shown in due:
            image = shown.image
            frame = None if image is None else av.VideoFrame.from_ndarray(image, format="bgr24")
            self._loop.call_soon_threadsafe(self.output.due, shown, frame)

    def _close(self) -> None:
        if self.session is None:
            return
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
    camera = st.session_state.get("live_camera")
    if camera is None or camera.ended:  # one per connection: the next START gets a new one
        camera = st.session_state["live_camera"] = BrowserCamera(cluster, spec)
    camera.set_filter(spec)
    ctx = webrtc_streamer(
        key="live", mode=WebRtcMode.SENDRECV, rtc_configuration=RTC_CONFIGURATION,
        media_stream_constraints={"video": True, "audio": False},
        sink_video_track=camera, source_video_track=camera.output)
    if ctx.state.playing:
        figures(camera)
    else:
        try:  # before START: a cluster out of reach is said here, not as a dead video
            cluster.wait_reachable(min(settings.connect_timeout_s, 5)).ensure_topics()
        except DvpError as exc:
            st.error(str(exc))


@st.fragment(run_every=1.0)
def figures(camera: BrowserCamera) -> None:
    if camera.error:
        st.error(camera.error)
    if camera.session is None:
        return
    s = camera.session.stats
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("frames sent", s.captured)
    c2.metric("shown", s.shown)
    c3.metric("skipped", s.skipped)
    c4.metric("latency p50 / p95", f"{s.percentile(50):.0f} / {s.percentile(95):.0f} ms" if s.latencies_ms else "-")
