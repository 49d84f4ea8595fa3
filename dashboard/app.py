"""The dashboard's pages (a Streamlit script; `dvp dashboard` serves it).
Workers, Jobs, one Job and Live, chosen in the sidebar or by `?page=…&job=…`."""
from __future__ import annotations

import functools
import sys
import time

import pandas as pd
import streamlit as st

from dvp.config import Settings
from dvp.dashboard import queries
from dvp.dashboard.backend import Backend, shared
from dvp.dashboard.cluster import GroupLag, group_lag, waiting_frames
from dvp.dashboard.url import refresh_s
from dvp.errors import BrokerError, DvpError
from dvp.kafka_cluster import Cluster

PAGES = ("Workers", "Jobs", "Job", "Live")


def connect() -> Backend:
    """The process's backend (`dvp dashboard` made it; made here under AppTest)."""
    try:
        return shared(Settings.load(), with_sink="--no-sink" not in sys.argv)
    except DvpError as exc:
        st.error(str(exc))
        st.stop()
        raise  # st.stop() ends the run; this is for the type checker


def refresh_while_running(running: int) -> None:
    """While a job runs the page redraws itself, every `?refresh=SECONDS` (0: never)."""
    every = refresh_s(st.query_params.get("refresh"))
    if running and every:
        st.caption(f"A job is running: this page refreshes every {every:g} s (`?refresh=0`: never).")
        time.sleep(every)
        st.rerun()


def no_data(what: str) -> None:
    st.info(f"No {what} yet. Publish a video (`dvp publish VIDEO --filter blur`, or `dvp run VIDEO -o OUT.mp4`) "
            "and it appears here.")


def cluster_now(cluster: Cluster) -> GroupLag | BrokerError:
    try:
        return group_lag(cluster)
    except BrokerError as exc:
        return exc


def workers_page(b: Backend, group: GroupLag | BrokerError) -> None:
    st.header("Workers")
    table = queries.workers(b.store)
    if table.empty:
        no_data("worker has processed a frame")
        return
    if isinstance(group, GroupLag):
        waiting = waiting_frames(group, queries.recent_partitions(b.store))
        table["waiting"] = table["worker_id"].map(waiting.by_worker).fillna(0).astype(int)
        waiting_total = f"{waiting.total}"
        st.caption(f"Frames waiting per worker: the consumer group's lag on its partitions, from {waiting.how}.")
    else:
        waiting_total = "unknown"
        st.warning(f"The cluster cannot be asked now, so frames waiting are unknown: {group}")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("workers active", int((table["state"] == "active").sum()))
    c2.metric("frames done", int(table["frames"].sum()))
    c3.metric("frames waiting", waiting_total)
    c4.metric("faces found", int(table["faces"].sum()))
    if b.sink_error:
        st.warning(f"The metrics sink stopped: {b.sink_error}")
    st.dataframe(table, hide_index=True, use_container_width=True)
    history = queries.over_time(b.store)
    if not history.empty:
        st.subheader("By worker, over time")
        left, right = st.columns(2)
        left.caption("throughput: frames per second")
        left.line_chart(history.pivot_table(index="second", columns="worker_id", values="fps", fill_value=0))
        right.caption("latency: queue wait + processing per frame, ms")
        right.line_chart(history.pivot_table(index="second", columns="worker_id", values="latency_ms"))


def jobs_page(b: Backend) -> None:
    st.header("Jobs")
    table = queries.jobs(b.store)
    if table.empty:
        no_data("job")
        return
    c1, c2, c3 = st.columns(3)
    c1.metric("jobs", len(table))
    c2.metric("running", int((table["state"] == "running").sum()))
    c3.metric("failed", int((table["state"] == "failed").sum()))
    table.insert(1, "page", "?page=Job&job=" + table["job_id"])
    st.dataframe(table, hide_index=True, use_container_width=True,
                 column_config={"page": st.column_config.LinkColumn("open", display_text="open")})
    st.subheader("Average job time per worker")
    st.dataframe(queries.job_time_per_worker(b.store), hide_index=True, use_container_width=True)


def job_page(b: Backend) -> None:
    jobs = queries.jobs(b.store)
    if jobs.empty:
        st.header("Job")
        no_data("job")
        return
    ids = list(jobs["job_id"])
    wanted = st.query_params.get("job")
    job_id = st.selectbox("Job", ids, index=ids.index(wanted) if wanted in ids else 0)
    st.header(f"Job {job_id}")
    job = jobs[jobs["job_id"] == job_id].iloc[0]
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("state", job["state"])
    c2.metric("frames", f"{int(job['frames'])}" + (f" / {int(job['frame_count'])}" if pd.notna(job["frame_count"])
                                                     else ""))
    c3.metric("faces", int(job["faces"]))
    c4.metric("wall time", f"{job['wall_s']:.1f} s")
    c5.metric("fps", f"{job['fps']:.1f}")
    if job["state"] == "failed":
        st.error("failed")
        st.text(job["reason"])  # from a record: text, never Markdown (links, images)
    frames = queries.job_frames(b.store, job_id)
    if not frames.empty:
        st.subheader("Frames: which worker did which, when, how long")
        st.scatter_chart(frames, x="ts", y="frame_index", color="worker_id", size="total_ms")
        st.dataframe(frames, hide_index=True, use_container_width=True)
    if job["state"] == "completed":
        try:
            video = b.video(job_id)
            if video is not None:
                st.video(str(video))
        except DvpError as exc:
            st.info(f"The video is not available here: {exc}")


def main() -> None:
    st.set_page_config(page_title="dvp", layout="wide")
    b = connect()
    asked = st.query_params.get("page", PAGES[0])
    page = st.sidebar.radio("Page", PAGES, index=PAGES.index(asked) if asked in PAGES else 0)
    st.sidebar.caption(f"store: {b.store.where}")
    try:
        if page == "Live":  # its video must not be cut by the refresh of the other pages
            from dvp.dashboard.live_page import live_page  # aiortc: loaded when asked for

            live_page(b.cluster)
            return
        show = {"Jobs": jobs_page, "Job": job_page}.get(page)
        if show is None:  # Workers: the cluster is asked before the store is held (it may take seconds)
            show = functools.partial(workers_page, group=cluster_now(b.cluster))
        with b.store.held():  # one session of the store for the page's queries
            show(b)
            running = queries.running_jobs(b.store)
        refresh_while_running(running)
    except DvpError as exc:
        st.error(str(exc))


main()
