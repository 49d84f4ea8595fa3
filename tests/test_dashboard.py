"""The dashboard, fed by a real `dvp run` as `make demo` leaves it: each page
rendered by Streamlit (AppTest), then once in a real browser."""
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from dvp.dashboard.url import MAX_REFRESH_S, REFRESH_S, refresh_s
from dvp.filters import FILTERS
from dvp.infra.tansu import free_port
from tests.helpers import chromium, dvp, raw_status, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo(tmp_path_factory, clips):
    """A one-shot `dvp run`, its broker gone since: the store under its home holds the job."""
    home = tmp_path_factory.mktemp("home")
    done = dvp("run", str(clips["face"]), "-o", str(home / "out.mp4"), "--quiet", env={"DVP_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    summary = dict(line.split(None, 1) for line in done.stdout.splitlines() if line.strip())
    assert summary["metrics"].startswith("stored in chdb://"), summary["metrics"]
    env = {"DVP_HOME": str(home), "DVP_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nothing listens
           "DVP_CONNECT_TIMEOUT_S": "1"}
    return {"env": env, "job": summary["job"], "frames": int(summary["frames"].split()[0]),
            "faces": int(summary["faces"])}


def page(demo, name: str, job: str | None = None, check: bool = True) -> dict:
    """What AppTest finds on a page; with `check`, no error may be on it."""
    done = subprocess.run([sys.executable, "-m", "tests.pages", name, *([job] if job else [])],
                          capture_output=True, text=True, env={**os.environ, **demo["env"]}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    shown = json.loads(done.stdout.splitlines()[-1])
    assert shown["exception"] == [], shown
    assert not check or shown["error"] == [], shown
    return shown


def test_the_workers_page_shows_who_did_the_job(demo):
    shown = page(demo, "Workers")
    [workers] = [t for t in shown["tables"] if t and "worker_id" in t[0]]
    assert {w["host"] for w in workers} == {socket.gethostname()}
    assert all(ipaddress.ip_address(w["ip"]) for w in workers)  # the address it reaches the broker from
    assert sum(int(w["frames"]) for w in workers) == demo["frames"] == 75
    assert sum(int(w["faces"]) for w in workers) == demo["faces"]
    assert all(float(w["avg_detect_ms"]) > 0 for w in workers)
    assert shown["metrics"]["frames done"] == "75"
    # Its broker is gone: said, not a traceback.
    assert any("cannot be asked" in w and "cannot reach Kafka" in w for w in shown["warning"]), shown["warning"]


def test_the_jobs_page_and_the_job_page_agree_with_the_run(demo):
    jobs = page(demo, "Jobs")
    [job] = [row for t in jobs["tables"] for row in t if row.get("job_id") == demo["job"]]
    assert (job["state"], job["frames"], job["faces"]) == ("completed", "75", str(demo["faces"]))
    one = page(demo, "Job", demo["job"])
    assert one["header"] == [f"Job {demo['job']}"]
    assert one["metrics"]["frames"] == "75 / 75" and one["metrics"]["state"] == "completed"
    [timeline] = [t for t in one["tables"] if t and "frame_index" in t[0]]
    assert sorted(int(r["frame_index"]) for r in timeline) == list(range(75))


def test_an_empty_store_says_so(tmp_path):
    shown = page({"env": {"DVP_HOME": str(tmp_path), "DVP_BOOTSTRAP_SERVERS": "127.0.0.1:1"}}, "Workers")
    assert any("No worker has processed a frame yet" in i for i in shown["info"])


MARKDOWN_REASON = "![x](http://evil.example/x.png) [open me](http://evil.example) **urgent**"
STORE_A_FAILED_JOB = f"""
from dvp.config import Settings
from dvp.dashboard.sink import Record, rows_of
from dvp.messages import JOBS, JobFailed
from dvp.store import JOB_COLUMNS, JOBS_TABLE, Store
settings = Settings.load()
jobs = rows_of(settings.names, [Record(settings.names.jobs, 0, 0, 1_700_000_000_000,
                                       JOBS.encode(JobFailed("marked-up", {MARKDOWN_REASON!r})))]).jobs
Store(settings).insert(JOBS_TABLE, JOB_COLUMNS, jobs)
"""


def test_a_failure_reason_from_a_record_is_shown_as_text_not_markdown(tmp_path):
    env = {"DVP_HOME": str(tmp_path), "DVP_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    done = subprocess.run([sys.executable, "-c", STORE_A_FAILED_JOB], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    shown = page({"env": env}, "Job", "marked-up", check=False)
    assert shown["metrics"]["state"] == "failed"
    assert MARKDOWN_REASON in shown["text"]
    assert not [m for m in shown["markdown"] if "evil.example" in m], shown["markdown"]


def test_refresh_from_the_url_is_a_number_of_seconds_of_at_most_an_hour():
    assert refresh_s(None) == REFRESH_S and refresh_s("0") == 0 and refresh_s("5") == 5
    assert refresh_s("1e9") == MAX_REFRESH_S == 3600
    assert [refresh_s(v) for v in ("nan", "inf", "-1", "soon", "")] == [REFRESH_S] * 5


def test_every_page_in_a_real_browser(demo, tmp_path):
    browser_path = chromium()
    from playwright.sync_api import sync_playwright

    port = free_port()
    log = (tmp_path / "dashboard.log").open("wb")  # noqa: SIM115 - the server's output
    server = subprocess.Popen([sys.executable, "-m", "dvp", "dashboard", "--port", str(port),
                               "--allow-host", "dvp.example"],
                              env={**os.environ, **demo["env"]}, stdout=log, stderr=subprocess.STDOUT)
    shots = tmp_path / "shots"
    shots.mkdir()
    try:
        wait_for(lambda: _listening(port), 60, "the dashboard to listen")
        check_the_host_header(port)
        # Processes take turns with the embedded store: the terminal's figures meanwhile.
        status = dvp("status", env=demo["env"])
        assert status.returncode == 0 and demo["job"] in status.stdout, status.stdout + status.stderr
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            view = browser.new_page(viewport={"width": 1400, "height": 900})
            base = f"http://127.0.0.1:{port}"
            for name, query, expected in [
                ("workers", "?page=Workers", socket.gethostname()),
                ("jobs", "?page=Jobs", demo["job"]),
                ("job", f"?page=Job&job={demo['job']}", "75 / 75"),
            ]:
                view.goto(base + query)
                # Tables draw on a canvas; their cells are in the page, for screen readers.
                view.get_by_text(expected).first.wait_for(state="attached", timeout=60_000)
                if name == "job":  # the video `dvp run -o` wrote, in the page
                    view.locator("video").first.wait_for(state="attached", timeout=30_000)
                view.wait_for_timeout(1500)  # charts and tables finish drawing
                view.screenshot(path=str(shots / f"dashboard-{name}.png"), full_page=True)
            check_the_filter_picker(view, base)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    served = (tmp_path / "dashboard.log").read_text(errors="replace")
    assert "Exception in ASGI application" not in served, served[-3000:]  # every file the pages asked for
    keep = os.environ.get("DVP_SCREENSHOTS")  # e.g. docs/, to refresh the README's pictures
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)


def check_the_filter_picker(view, base: str) -> None:
    """The Live page's filter picker previews the spec typed on the sample face,
    chains included, and keeps the last good one when a bad one is typed."""
    view.goto(base + "?page=Live")
    view.get_by_text("preview: blur").wait_for(timeout=60_000)
    preview = view.locator("[data-testid='stImage'] img").first
    blurred = preview.get_attribute("src")
    field = view.get_by_role("textbox", name="Filter")
    field.fill("pixelate:blocks=12|mesh")
    field.press("Enter")
    view.get_by_text("preview: pixelate:blocks=12|mesh").wait_for(timeout=30_000)
    assert preview.get_attribute("src") != blurred
    field.fill("pixelate|nope")
    field.press("Enter")
    view.get_by_text("unknown filter 'nope'").wait_for(timeout=30_000)
    assert view.get_by_text("preview: pixelate:blocks=12|mesh").count() == 1
    view.get_by_text("Filters", exact=True).click()  # the catalogue: every filter with its preview
    view.get_by_text("a masquerade mask over the eyes", exact=False).wait_for(timeout=30_000)
    assert view.locator("[data-testid='stImage'] img").count() == 1 + len(FILTERS)


def check_the_host_header(port: int) -> None:
    """Was: every page and the websocket answered `Host: rebind.evil.example` (DNS rebinding)."""
    websocket = ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
    for host, path, extra, status in [
        ("rebind.evil.example", "/", "", b"403"), (f"rebind.evil.example:{port}", "/_stcore/stream", websocket, b"403"),
        (f"127.0.0.1:{port}", "/", "", b"200"), ("localhost", "/", "", b"200"), (f"[::1]:{port}", "/", "", b"200"),
        ("dvp.example", "/", "", b"200"), (f"127.0.0.1:{port}", "/_stcore/stream", websocket, b"101"),
    ]:
        assert raw_status(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n") == status, (host, path)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_job_published_to_a_running_stack_shows_while_it_runs(broker_kind, settings, clips, tmp_path):
    """`dvp up` (here on the test's broker) runs the dashboard, whose sink stores the
    jobs' metrics while nobody looks. With its one worker frozen after a first job,
    a second job shows as running, its frames waiting for that worker (the group's
    lag), on the pages and in `dvp status`."""
    if broker_kind != "tansu":
        pytest.skip("the dashboard reads its figures from the store, fed the same on every broker")
    env = {**settings.to_env(), "DVP_HOME": str(tmp_path / "home"), "DVP_DASHBOARD_PORT": str(free_port()),
           "DVP_CONNECT_TIMEOUT_S": "5"}
    up = dvp("up", "--workers", "1", env=env)
    assert up.returncode == 0, up.stderr
    [worker] = [int(line.split()[2]) for line in up.stdout.splitlines() if line.startswith("worker")]
    try:
        first = dvp("publish", str(clips["face"]), "--filter", "blur", "-q", "--wait", "--job-id", "first", env=env)
        assert first.returncode == 0, first.stderr
        wait_for(lambda: state(env, "first") == ("completed", "75"), 60, "the first job stored")
        os.kill(worker, signal.SIGSTOP)  # the next job stays open until we have seen it running
        try:
            publish = dvp("publish", str(clips["face"]), "--filter", "blur", "-q", env=env)
            assert publish.returncode == 0, publish.stderr
            job = publish.stdout.split()[-1]
            wait_for(lambda: state(env, job) == ("running", "0"), 60, f"job {job} to show as running")
            # The worker's first row: the table of workers (its jobs' times follow).
            worker_id, *_, waiting = next(row[:6] for row in status_rows(env)
                                          if row and row[0].startswith(f"{socket.gethostname()}-{worker}-"))
            assert int(waiting) >= 75, waiting  # every frame of the job waits for the frozen worker
            shown = page({"env": env}, "Workers")
            [row] = [r for t in shown["tables"] for r in t if r.get("worker_id") == worker_id]
            assert row["ip"] and row["host"] == socket.gethostname()
            assert int(row["waiting"]) >= 75 and int(shown["metrics"]["frames waiting"]) >= 75, shown
            jobs = page({"env": env}, "Jobs")
            assert [r["state"] for t in jobs["tables"] for r in t if r.get("job_id") == job] == ["running"]
        finally:
            os.kill(worker, signal.SIGCONT)  # (that a frozen worker goes on is the fault tests')
    finally:
        dvp("down", env=env)


def status_rows(env: dict) -> list[list[str]]:
    return [line.split() for line in dvp("status", env=env).stdout.splitlines()]


def state(env: dict, job: str) -> tuple[str, str] | None:
    """The job's state and frames as `dvp status` prints them."""
    rows = [row for row in status_rows(env) if row and row[0] == job]
    return (rows[0][1], rows[0][2]) if rows else None
