"""Processes and signals: nothing left behind, nothing signalled that is not ours,
every command stoppable, every refused setting one line."""
import os
import signal
import subprocess
import sys
import time

import pytest

from dvp.infra import tansu
from dvp.infra.processes import alive
from tests.helpers import dvp, wait_for


def children(pid: int, command: str = "") -> set[int]:
    """The processes `pid` started, whose command line holds `command`."""
    ps = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in ps.splitlines() if command in line}


def at_least(n: int, found):
    """A wait_for condition: what `found()` returns, once it holds n things."""
    return lambda: (lambda now: now if len(now) >= n else None)(found())


def start_dvp(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dvp", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, env={**os.environ, **(env or {})})


def test_dvp_down_never_signals_a_process_it_did_not_start(tmp_path):
    """A pid file outlives its process (a reboot, a crash); its pid may then be another program's."""
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    strangers = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    try:
        (home / "run" / "worker.pid").write_text(str(strangers[0].pid))  # as older versions wrote it
        (home / "run" / "aggregator.pid").write_text(f"{strangers[1].pid} 1")  # another start time
        status = dvp("status", env={"DVP_HOME": str(home)})
        assert status.stdout.count(" dead ") == 2, status.stdout
        result = dvp("down", env={"DVP_HOME": str(home)})
        assert result.returncode == 0, result.stderr
        time.sleep(0.5)
        assert all(s.poll() is None for s in strangers), "dvp down signalled a process it did not start"
        assert not list((home / "run").glob("*.pid"))
    finally:
        for s in strangers:
            s.kill()
            s.wait()


@pytest.mark.integration
def test_the_services_of_a_killed_dvp_run_end_with_it(clips, tmp_path):
    run = start_dvp("run", str(clips["long"]), "-o", str(tmp_path / "out.mp4"), "-q", "--workers", "2")
    try:
        # The broker, two workers and the aggregator.
        services = wait_for(at_least(4, lambda: children(run.pid)), 60, "dvp run's services")
    finally:
        run.kill()
        run.wait()
    assert not (tmp_path / "out.mp4").exists()
    wait_for(lambda: not any(alive(pid) for pid in services), 30, "the orphaned services to end")


@pytest.mark.parametrize("command", [["worker"], ["aggregator"], ["topics"], ["publish", "CLIP", "--filter", "blur"],
                                     ["run", "CLIP", "-o", "OUT"]])
def test_sigterm_stops_a_command_that_waits_for_an_unreachable_broker(command, clips, tmp_path):
    args = [str(clips["face"]) if a == "CLIP" else str(tmp_path / "out.mp4") if a == "OUT" else a for a in command]
    proc = start_dvp(*args, "--bootstrap-servers", f"127.0.0.1:{tansu.free_port()}",
                     env={"DVP_CONNECT_TIMEOUT_S": "120", "DVP_HOME": str(tmp_path / "home")})
    time.sleep(3)  # well into the wait
    assert proc.poll() is None, proc.communicate()
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=10)
    assert time.monotonic() - signalled < 3
    assert "Traceback" not in stderr


@pytest.mark.parametrize("setting, message", [
    ("no.such.key=1", 'No such configuration property: "no.such.key"'),
    ("message.max.bytes=abc", 'Invalid value for configuration property "message.max.bytes"'),
])
def test_kafka_settings_the_client_refuses_are_one_line(setting, message, clips, tmp_path):
    for command in (["publish", str(clips["face"]), "--filter", "blur"], ["topics"], ["worker"]):
        result = dvp(*command, "--kafka-config", setting, "--bootstrap-servers", "127.0.0.1:9",
                     env={"DVP_CONNECT_TIMEOUT_S": "2"})
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [f"dvp: error: Kafka client settings refused: {message}"]


def test_dvp_sample_into_a_missing_folder_is_one_line(tmp_path):
    result = dvp("sample", str(tmp_path / "no" / "such" / "clip.mp4"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"dvp: error: {tmp_path / 'no' / 'such' / 'clip.mp4'}: the folder {tmp_path / 'no' / 'such'} does not exist"]


@pytest.mark.integration
def test_a_worker_process_that_dies_is_replaced(tmp_path):
    port = tansu.free_port()
    broker = tansu.start(port, tmp_path / "broker.log", with_parent=True)
    pool = start_dvp("worker", "--processes", "2", "--bootstrap-servers", f"127.0.0.1:{port}",
                     env={"DVP_TOPIC_PREFIX": "pool."})
    try:
        def workers():
            return children(pool.pid, "spawn_main")

        first = wait_for(at_least(2, workers), 60, "two worker processes")
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        replaced = wait_for(at_least(2, lambda: workers() - {victim}), 30, "a new worker process")
        assert len(replaced - first) == 1
        pool.send_signal(signal.SIGTERM)
        assert pool.wait(timeout=30) == 0
        assert not any(alive(pid) for pid in replaced)
    finally:
        if pool.poll() is None:
            pool.kill()
            pool.wait()
        broker.kill()
        broker.wait()
