"""A Streamlit page whose WebRTC callback sends each frame straight back, as
the Live page's yardstick: the round trip browser -> Python -> browser without
the pipeline. `python -m tests.live_page OUT SECONDS 0` serves it."""
import av
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from dvp.dashboard.live_page import RTC_CONFIGURATION, offer_loopback_only


def echo(frame: av.VideoFrame) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"), format="bgr24")  # the same conversions


offer_loopback_only()
webrtc_streamer(key="echo", mode=WebRtcMode.SENDRECV, rtc_configuration=RTC_CONFIGURATION,
                media_stream_constraints={"video": True, "audio": False}, video_frame_callback=echo,
                async_processing=False)
