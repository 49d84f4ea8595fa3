"""Settings: declared once, checked when built, the same through every door."""
import pytest

from dvp.config import Settings, describe
from dvp.errors import DvpError
from tests.helpers import dvp


@pytest.mark.parametrize("env, message", [
    ({"DVP_CONNECT_TIMEOUT_S": "-1"}, "DVP_CONNECT_TIMEOUT_S must be at least 0.1, got -1"),
    ({"DVP_CONNECT_TIMEOUT_S": "soon"}, "DVP_CONNECT_TIMEOUT_S: 'soon' is not a valid float"),
    ({"DVP_GUARANTEE": "at-most-once"}, "must be one of at-least-once, exactly-once"),
    ({"DVP_JPEG_QUALITY": "101"}, "DVP_JPEG_QUALITY (--jpeg-quality) must be from 1 to 100"),
    ({"DVP_FRAMES_PARTITIONS": "0"}, "DVP_FRAMES_PARTITIONS must be at least 1"),
    ({"DVP_REPLICATION_FACTOR": "0"}, "DVP_REPLICATION_FACTOR must be -1"),
    ({"DVP_SESSION_TIMEOUT_MS": "10"}, "DVP_SESSION_TIMEOUT_MS must be at least 1000"),
    ({"DVP_CRF": "60"}, "DVP_CRF must be from 0 to 51"),
    ({"DVP_PRESET": "warp"}, "DVP_PRESET must be one of"),
    ({"DVP_KAFKA_CONFIG": "acks"}, "Kafka setting 'acks' is not KEY=VALUE"),
])
def test_a_bad_setting_is_refused_when_settings_are_built(env, message):
    with pytest.raises(DvpError) as refused:
        Settings.load(environ=env)
    assert message in str(refused.value)


def test_flags_beat_the_environment_and_replace_checks_too():
    s = Settings.load(environ={"DVP_JPEG_QUALITY": "50", "DVP_KAFKA_CONFIG": "acks=all,linger.ms=1"},
                      flags={"jpeg_quality": "70"})
    assert s.jpeg_quality == 70
    assert s.client_config()["linger.ms"] == "1"
    with pytest.raises(DvpError, match="DVP_CRF"):
        s.replace(crf=-1)


def test_settings_survive_the_trip_through_the_environment_of_a_child_process():
    s = Settings.load(environ={"DVP_TOPIC_PREFIX": "x.", "DVP_KAFKA_CONFIG": "acks=all", "DVP_CRF": "23"})
    assert Settings.load(environ=s.to_env()) == s.replace(bootstrap_servers=s.bootstrap)


def test_every_name_comes_from_the_prefix():
    names = Settings.load(environ={"DVP_TOPIC_PREFIX": "team-a."}).names
    assert names.frames == "team-a.frames" and names.workers == "team-a.workers"
    assert all(v.startswith("team-a.") for v in vars(names).values())


def test_dvp_config_lists_every_setting_and_a_bad_one_is_one_line():
    listed = dvp("config", env={"DVP_CRF": "20"})
    assert listed.returncode == 0
    for env, _flag, _help in describe():
        assert env in listed.stdout
    assert "DVP_CRF                    20 " in listed.stdout
    refused = dvp("config", env={"DVP_CONNECT_TIMEOUT_S": "-1"})
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "dvp: error: DVP_CONNECT_TIMEOUT_S must be at least 0.1, got -1"]
