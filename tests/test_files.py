"""The files people have: colour-tagged, full range and HDR video, several audio
tracks, subtitles, chapters, location tags, damage, files cut short, sizes that
change, 4K and 8K. Each judged against the file as a player shows it."""
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from dvp.colour import TRC_HLG, TRC_PQ
from dvp.encode import VideoEncoder
from dvp.errors import InputError
from dvp.media import SourceOptions, VideoSource
from dvp.messages import ASSEMBLY, JobEnd, JobFailed, JobStart, ProcessedFrame, StageTimings
from dvp.metadata import Metadata
from dvp.producers.publish import FrameFitter
from dvp.subtitles import cue_text
from tests.files import (
    BT601,
    BT709,
    Tracks,
    cut,
    damage,
    decoded_with_its_tags,
    scenery,
    write_hdr,
    write_tagged,
)
from tests.helpers import dvp
from tests.test_aggregator import aggregator, feed

CAMERA_TAGS = {"title": "Holiday", "creation_time": "2024-05-01T10:00:00.000000Z",
               "location": "+48.8577+002.2950/", "make": "Apple", "model": "iPhone 15"}


def colour_error(shown: list[np.ndarray], reference: list[np.ndarray]) -> float:
    assert len(shown) == len(reference)
    return float(np.mean([np.abs(a.astype(np.int16) - b).mean() for a, b in zip(shown, reference, strict=True)]))


def reencoded(path: Path, reference: list[np.ndarray], like: Path) -> list[np.ndarray]:
    """The yardstick: the reference frames through x264 at dvp's quality, tagged as `like`
    is, without dvp; what any re-encode loses."""
    with av.open(str(like)) as c:
        f = next(c.decode(video=0))
        colour = (f.colorspace, f.color_primaries, f.color_trc)
    write_tagged(path, reference, colour if colour[0] in (1, 5, 6) else None, fps=25)
    return decoded_with_its_tags(path)


def test_a_camera_file_keeps_its_colours_tracks_chapters_and_safe_tags(tmp_path):
    """A 720p BT.709 camera file with two audio tracks, SubRip subtitles, chapters,
    location and device tags, and two damaged packets, through `dvp run`."""
    source = tmp_path / "camera.mkv"
    tracks = Tracks(audio=[("eng", 440), ("fra", 660)], subtitles=True,
                    chapters=[("Arrival", 0.0), ("Beach", 0.6)], tags=CAMERA_TAGS)
    write_tagged(source, scenery(1280, 720, 30), BT709, tracks=tracks)
    damage(source, range(20, 22))
    out = tmp_path / "out.mp4"
    result = dvp("run", str(source), "-o", str(out), "-q", "--workers", "1")
    assert result.returncode == 0, result.stderr
    # Colours on the frames before the damage: decoders conceal damage each their own way.
    shown, reference = decoded_with_its_tags(out)[:20], decoded_with_its_tags(source)[:20]
    yardstick = colour_error(reencoded(tmp_path / "yardstick.mp4", reference, source), reference)
    assert colour_error(shown, reference) <= 1.5 * yardstick
    with av.open(str(out)) as c:
        video = c.streams.video[0].codec_context
        assert (video.colorspace, video.color_primaries, video.color_trc) == BT709
        assert [(a.language, a.codec_context.name) for a in c.streams.audio] == [("eng", "aac"), ("fra", "aac")]
        assert [s.language for s in c.streams.subtitles] == ["deu"]
        cues = [cue_text("mov_text", bytes(p)) for p in c.demux(c.streams.subtitles[0]) if p.size]
        cues = [cue for cue in cues if cue]  # between cues, MP4 holds empty ones
        assert [ch["metadata"]["title"] for ch in c.chapters()] == ["Arrival", "Beach"]
        tags = {k.lower(): v for k, v in c.metadata.items()}
    assert tags["title"] == "Holiday" and tags["creation_time"].startswith("2024-05-01T10:00:00")
    assert not {"location", "make", "model"} & set(tags)
    notes = [line for line in result.stdout.splitlines() if line.startswith("note")]
    assert any("stripped: MODEL, LOCATION, MAKE" in n for n in notes), result.stdout
    assert cues == ["line 0", "line 1"]
    assert any("damaged video packet" in n and "skipped" in n for n in notes), result.stdout


@pytest.mark.parametrize("colour, full_range, codec, size", [
    (BT601, False, "libx264", (720, 480)),  # SD, tagged
    (BT601, True, "mjpeg", (640, 480)),  # a webcam's or an old camera's MJPEG: full range
    (None, False, "libx264", (1280, 720)),  # HD, untagged: players take it for BT.709
])
def test_colours_survive_as_players_show_them(tmp_path, colour, full_range, codec, size):
    source = tmp_path / "source.mkv"
    write_tagged(source, scenery(*size, 4), colour, full_range=full_range, codec=codec)
    out = tmp_path / "out.mp4"
    with VideoSource(str(source)) as video:
        frames = list(video.frames())
        assert video.conversion is not None
        encoder = VideoEncoder(out, *size, Fraction(25), Fraction(1, 25), 18, "veryfast", video.conversion.output)
    for frame in frames:
        encoder.write(frame.image, frame.pts)
    encoder.close()
    reference = decoded_with_its_tags(source)
    yardstick = colour_error(reencoded(tmp_path / "yardstick.mp4", reference, source), reference)
    assert colour_error(decoded_with_its_tags(out), reference) <= 1.5 * yardstick


@pytest.mark.parametrize("transfer", [TRC_HLG, TRC_PQ])
def test_hdr_video_is_tone_mapped_to_sdr_bt709_and_says_so(tmp_path, transfer):
    sdr = scenery(640, 360, 3)
    source = tmp_path / "hdr.mp4"
    write_hdr(source, sdr, transfer)
    with VideoSource(str(source)) as video:
        frames = [f.image for f in video.frames()]
        notes = video.notes()
        output = video.conversion.output
    assert (output.matrix, output.primaries, output.transfer) == BT709
    assert any("tone-mapped to SDR BT.709" in n for n in notes)
    # HDR's reference white is SDR's white: the pictures come back as they were made,
    # highlights a little compressed; read as SDR (flattened), they are twice as far off.
    error, flattened = colour_error(frames, sdr), colour_error(decoded_with_its_tags(source), sdr)
    assert error < 9 and error < 0.6 * flattened, (error, flattened)


def test_damaged_packets_are_skipped_and_a_file_without_a_good_frame_is_refused(tmp_path):
    source = tmp_path / "damaged.mp4"
    write_tagged(source, scenery(640, 480, 50), BT601)
    damage(source, range(14, 15))
    with VideoSource(str(source)) as video:
        assert len(list(video.frames())) == 49
        assert video.notes() == ["damaged video packets skipped: 1"]
    damage(source, range(50))
    with VideoSource(str(source)) as video, pytest.raises(InputError, match="has no video frame that decodes"):
        list(video.frames())


def test_a_file_cut_short_gives_what_it_has_and_says_how_much(tmp_path):
    whole = tmp_path / "whole.mp4"
    write_tagged(whole, scenery(640, 480, 50), BT601)
    source = tmp_path / "cut.mp4"
    with av.open(str(whole)) as i, av.open(str(source), "w", options={"movflags": "+faststart"}) as o:
        stream = o.add_stream_from_template(i.streams.video[0])
        for packet in i.demux(i.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                o.mux(packet)
    cut(source, 0.6)
    with VideoSource(str(source)) as video:
        read = len(list(video.frames()))
        assert 10 < read < 50
        assert video.notes() == [f"the file ends early: {read} frames of the 50 it states could be read"]


def test_audio_tracks_are_kept_or_one_chosen(tmp_path):
    source = tmp_path / "two.mkv"
    write_tagged(source, scenery(320, 240, 10), BT601, tracks=Tracks(audio=[("eng", 440), ("fra", 660)]))
    for chosen, languages in ((None, ["eng", "fra"]), (2, ["fra"])):
        with VideoSource(str(source), SourceOptions(audio_track=chosen)) as video:
            list(video.frames())
            side = tmp_path / "side.mka"
            side.write_bytes(b"".join(video.audio_chunks(1 << 20)))
        with av.open(str(side)) as c:
            assert [a.language for a in c.streams.audio] == languages
    with pytest.raises(InputError, match=r"no audio track 3 \(its audio tracks: 1: audio track 1 \(aac, eng\); "
                                         r"2: audio track 2 \(aac, fra\)\)"):
        VideoSource(str(source), SourceOptions(audio_track=3))


@pytest.mark.parametrize("codec, data", [
    ("subrip", b"<i>Hello</i> there"),
    ("ass", b"3,0,Default,,0,0,0,,{\\i1}Hello{\\i0}\\Nthere"),
    ("mov_text", b"\x00\x0bHello\nthere" + b"\x00\x00\x00\x0cstyl"),
])
def test_subtitle_cues_keep_their_text_without_markup(codec, data):
    assert cue_text(codec, data) in ("Hello there", "Hello\nthere")


def test_metadata_describing_the_person_is_stripped_unless_kept():
    default = Metadata.of(CAMERA_TAGS)
    assert default.kept == {"title": "Holiday", "creation_time": CAMERA_TAGS["creation_time"]}
    assert default.stripped == ("location", "make", "model")
    assert Metadata.of(CAMERA_TAGS, keep_all=True).kept == CAMERA_TAGS


def test_frames_of_another_size_are_scaled_by_the_publisher_and_refused_by_the_aggregator(tmp_path):
    fitter = FrameFitter(90, 1_000_000, 64, 48)
    jpeg = fitter.jpeg(np.zeros((96, 128, 3), np.uint8))
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    assert fitter.notes() == ["frames of another size scaled to 64x48: 1"]

    start = JobStart("job-1", "x.mp4", "blur", "per-frame", 64, 48, 25, 1, 1, 25, 2, False, 0)
    timings = StageTimings(0.0, 0.0, 0.0, 0.0, 0.0)
    frames = [ProcessedFrame("job-1", i, i, cv2.imencode(".jpg", np.zeros(shape, np.uint8))[1].tobytes(), True,
                             [], "w", timings, 0, 0) for i, shape in enumerate([(48, 64, 3), (48, 80, 3)])]
    records = [start, *frames, JobEnd("job-1", 2, 0)]
    events = feed(aggregator(tmp_path), [(offset, ASSEMBLY.encode(r)) for offset, r in enumerate(records)])
    assert isinstance(events[-1], JobFailed)
    assert events[-1].reason == "frame 1: a 80x48 JPEG where the job's frames are 64x48"


def test_a_frame_over_the_cluster_limit_is_sent_at_a_lower_quality():
    detail = np.random.default_rng(1).integers(0, 256, (480, 640, 3), np.uint8)
    fitter = FrameFitter(95, 300_000, 640, 480)  # 361 kB at quality 95, 233 kB at 85
    assert len(fitter.jpeg(detail)) <= 300_000
    assert fitter.lowered == 1 and fitter.lowest < 95
    with pytest.raises(InputError, match="even at quality 30"):
        FrameFitter(95, 50_000, 640, 480).jpeg(detail)


@pytest.mark.integration
def test_8k_with_camera_detail_completes_on_the_embedded_broker(tmp_path):
    """Frames of 7 MB as JPEG (4K: 2 MB), over Kafka's 1 MB default. MediaPipe finds
    the (absent) faces here: CenterFace takes 16 s an 8K frame on one core, and the
    detector does not change what the frames weigh."""
    for width, height in ((7680, 4320),):
        grain = np.random.default_rng(0).normal(0, 6, (height, width, 3))
        frames = [np.clip(f + grain, 0, 255).astype(np.uint8) for f in scenery(width, height, 2)]
        source = tmp_path / f"{width}.mp4"
        write_tagged(source, frames, BT709)
        out = tmp_path / f"{width}-out.mp4"
        result = dvp("run", str(source), "-o", str(out), "-q", "--workers", "1", "--detector", "mediapipe")
        assert result.returncode == 0, result.stderr
        with av.open(str(out)) as c:
            assert (c.streams.video[0].width, c.streams.video[0].height) == (width, height)
            assert c.streams.video[0].frames == 2
