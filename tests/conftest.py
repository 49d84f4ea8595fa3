import itertools
from contextlib import contextmanager
from pathlib import Path

import pytest

from dvp.config import Settings
from dvp.infra import tansu
from dvp.infra.kafka.cluster import KafkaCluster
from dvp.sample import write_sample
from tests.helpers import Services

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Real face, real audio; every frame carries its index in a corner stamp."""
    d = tmp_path_factory.mktemp("clips")
    paths = {"face": d / "face.mp4", "long": d / "long.mp4"}
    write_sample(str(paths["face"]), seconds=3, width=480, height=360, stamp=True)
    write_sample(str(paths["long"]), seconds=8, width=480, height=360, stamp=True)
    return paths


def pytest_addoption(parser):
    parser.addoption("--broker", choices=["tansu", "kafka", "all"], default="all",
                     help="which broker the integration tests run on: the embedded Tansu, "
                          "Apache Kafka (one KRaft node), or each in turn (default)")


def pytest_generate_tests(metafunc):
    if "broker_kind" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--broker")
        metafunc.parametrize("broker_kind", ["tansu", "kafka"] if chosen == "all" else [chosen],
                             scope="session")


@pytest.fixture(scope="session")
def broker(broker_kind, tmp_path_factory):
    """One broker of the kind under test for the session; each test gets its own topics."""
    logs = tmp_path_factory.mktemp(broker_kind)
    if broker_kind == "tansu":
        port = tansu.free_port()
        proc = tansu.start(port, logs / "broker.log", with_parent=True)
        yield f"127.0.0.1:{port}"
        proc.kill()
        proc.wait()
    else:
        cluster = KafkaCluster(logs, brokers=1, with_parent=True).start()
        yield cluster.bootstrap
        cluster.stop()


def settings_for(bootstrap: str, home: Path, **changes) -> Settings:
    """Settings for one test: its own topics and home, small partition counts."""
    return Settings.load(environ={}).replace(
        bootstrap_servers=bootstrap, topic_prefix=f"t{next(_prefixes)}.", home=home,
        frames_partitions=8, processed_partitions=4, connect_timeout_s=10.0, **changes)


@pytest.fixture
def settings(broker, tmp_path) -> Settings:
    return settings_for(broker, tmp_path / "home")


@contextmanager
def running_services(settings: Settings, logs: Path, request):
    """Services of one test, stopped at its end; their logs printed if it failed."""
    s = Services(settings, logs)
    try:
        yield s
    finally:
        s.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(s.log_text())


@pytest.fixture
def services(settings, tmp_path, request):
    with running_services(settings, tmp_path / "logs", request) as s:
        yield s


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def pytest_terminal_summary(terminalreporter):
    from tests.test_faults import FAULT_REPORT
    if FAULT_REPORT:
        terminalreporter.section("fault tests on a 3-broker Apache Kafka cluster")
        terminalreporter.write_line(
            "| fault | frames lost | duplicate frames | longest stall of a partition | job finished later by "
            "| lowest PSNR vs no fault |")
        terminalreporter.write_line("|---|---|---|---|---|---|")
        for r in FAULT_REPORT:
            terminalreporter.write_line(
                f"| {r['fault']} | {r['lost']} | {r['duplicates']} | {r['stall_s']:.1f} s | {r['delay_s']:+.1f} s "
                f"| {r['min_psnr']:.1f} dB |")
