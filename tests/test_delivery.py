"""Where outputs go: the aggregator writes only into its own store; the video
travels back to its publisher over Kafka; job ids are never shared."""
import dataclasses
import hashlib

import pytest

from dvp.errors import DvpError
from dvp.history import fetch
from dvp.kafka_cluster import Cluster
from dvp.messages import JobStart
from dvp.producers.publish import publish
from dvp.producers.watch import JobWatcher
from tests.helpers import dvp, read_video

pytestmark = pytest.mark.integration


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_video_reaches_its_publisher_and_stays_in_the_store(broker_kind, settings, services, clips, tmp_path):
    if broker_kind != "tansu":
        pytest.skip("the results protocol is the stages', the same on every broker (the fault tests fetch on Kafka)")
    services.worker()
    services.aggregator()
    out = tmp_path / "elsewhere" / "talk.mp4"
    out.parent.mkdir()
    result = dvp("publish", str(clips["face"]), "--filter", "pixelate", "--job-id", "talk-1", "--wait",
                 "-o", str(out), "-q", env=settings.to_env())
    assert result.returncode == 0, result.stderr
    stored = settings.outputs / "talk-1.mp4"
    assert sha256(out) == sha256(stored)
    assert len(read_video(out).frames) == 75
    assert not list(out.parent.glob(".*partial"))
    # Later, and from anywhere: by job id.
    again = tmp_path / "again.mp4"
    done = fetch(Cluster.reach(settings), "talk-1", again)
    assert sha256(again) == sha256(stored) and done.frames == 75
    result = dvp("fetch", "no-such-job", "-o", str(tmp_path / "x.mp4"), env=settings.to_env())
    assert result.returncode == 1 and result.stderr.strip() == "dvp: error: job no-such-job: no such job"


def test_a_job_id_in_use_is_refused_and_nothing_is_sent(broker_kind, settings, services, clips, tmp_path):
    if broker_kind != "tansu":
        pytest.skip("the publisher's check, the same on every broker")
    services.worker()
    services.aggregator()
    first = dvp("publish", str(clips["face"]), "--filter", "blur", "--job-id", "same", "--wait", "-q",
                env=settings.to_env())
    assert first.returncode == 0, first.stderr
    second = dvp("publish", str(clips["face"]), "--filter", "blur", "--job-id", "same", "--wait", "-q",
                 env={**settings.to_env(), "DVP_STALL_TIMEOUT_S": "20"})
    assert second.returncode == 1
    assert second.stderr.strip() == ("dvp: error: job id same is already in use (completed); "
                                     "choose another or leave --job-id out")


def test_the_aggregator_writes_only_into_its_own_store(broker_kind, settings, services, clips, tmp_path):
    """Nothing in a job names a path on the aggregator's machine: the store and a
    name made from the (checked) job id are all it uses."""
    if broker_kind != "tansu":
        pytest.skip("the aggregator's paths, the same on every broker")
    services.worker()
    services.aggregator()
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    cluster = Cluster.reach(settings)
    watcher = JobWatcher(cluster)
    try:
        published = publish(cluster, str(clips["face"]), "blur", job_id="precious.txt", progress=False)
        done = watcher.wait(published.start.job_id, published.frames, progress=False, timeout=120,
                            save_to=tmp_path / "mine.mp4")
    finally:
        watcher.close()
    assert "output" not in {f.name for f in dataclasses.fields(JobStart)}
    assert victim.read_text() == "keep me"
    assert done.output == str(settings.outputs / "precious.txt.mp4")
    assert {p.parent for p in settings.outputs.rglob("*") if p.is_file()} == {settings.outputs}
    assert sha256(tmp_path / "mine.mp4") == sha256(settings.outputs / "precious.txt.mp4")


def test_without_wait_an_output_path_is_refused(settings, clips, tmp_path):
    result = dvp("publish", str(clips["face"]), "--filter", "blur", "-o", str(tmp_path / "x.mp4"),
                 env=settings.to_env())
    assert result.returncode == 1 and "-o needs --wait" in result.stderr
    with pytest.raises(DvpError, match="no such job"):
        fetch(Cluster.reach(settings), "never-ran", tmp_path / "y.mp4")


def test_a_stalled_job_says_why(broker_kind, settings, services, clips):
    """No worker runs: the job cannot progress, and the publisher is told so."""
    if broker_kind == "tansu":
        pytest.skip("the embedded broker does not report consumer group members")
    services.aggregator()
    result = dvp("publish", str(clips["face"]), "--filter", "blur", "--wait", "-q",
                 env={**settings.to_env(), "DVP_STALL_TIMEOUT_S": "8"})
    assert result.returncode == 1
    assert "no news from the aggregator for 8 s (no worker is running (consumer group " in result.stderr
    assert f"{settings.names.workers} has no members)" in result.stderr
