"""The aggregator's watchdog: stuck is told apart from busy and from idle, and a
stalled aggregator starts again in place."""
import subprocess
import sys
import textwrap

from dvp.streams.watchdog import Watchdog


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_records_waiting_while_nothing_is_fetched_is_a_stall():
    clock = Clock()
    dog = Watchdog(clock, stall_s=30)
    with dog.handling():
        clock.now = 5
    clock.now = 34
    assert dog.stall({0: 3}) is None  # 29 s: a failover may take that long
    clock.now = 36
    assert dog.stall({0: 0, 1: 0}) is None  # idle, nothing waits: an idle aggregator
    why = dog.stall({0: 0, 1: 4})
    assert why is not None and "partitions [1]" in why


def test_a_long_assembly_step_is_progress_not_a_stall():
    clock = Clock()
    dog = Watchdog(clock, stall_s=30)
    with dog.handling():  # a final mux of a long job, records piling up meanwhile
        clock.now = 300
        assert not dog.idle_too_long() and dog.stall({0: 500}) is None
    clock.now = 301
    assert dog.stall({0: 500}) is None


def test_a_delivery_that_never_comes_is_a_stall_even_while_handling():
    clock = Clock()
    dog = Watchdog(clock, stall_s=30)
    with dog.handling(), dog.delivering("a record to t.jobs"):
        clock.now = 20
        assert dog.stall({}) is None
        clock.now = 31
        assert dog.stall({}) == "a record to t.jobs not delivered within 30 s"
    assert dog.stall({}) is None  # delivered in the end


def test_a_rebalance_does_not_count_as_idle_time():
    clock = Clock()
    dog = Watchdog(clock, stall_s=30)
    clock.now = 100
    dog.rest()
    clock.now = 120
    assert dog.stall({0: 10}) is None


def test_starting_again_keeps_the_process_and_its_command_line(tmp_path):
    script = tmp_path / "again.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        from dvp.streams.watchdog import start_again
        print(os.getpid(), sys.argv[1:], flush=True)
        if not os.environ.get("AGAIN"):
            os.environ["AGAIN"] = "1"
            start_again("a test")
    """))
    done = subprocess.run([sys.executable, str(script), "--flag", "été"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first == second and first.endswith("['--flag', 'été']")  # same pid, same arguments
    assert "aggregator stalled: a test; starting again" in done.stderr
