"""The dashboard's figures, as pandas DataFrames from the metrics store. No
Streamlit here: every figure the pages show is computed, and testable, here."""
from __future__ import annotations

import pandas as pd

from dvp.store import FRAMES_TABLE, JOBS_TABLE, OUTPUTS_TABLE, Store

STALE_S = 30  # a worker without a record for this long is shown as stale
_TOTAL = "(decode_ms + detect_ms + filter_ms + encode_ms)"


def workers(store: Store) -> pd.DataFrame:
    """One row per worker: who and where, frames done, per-frame times (ms) by stage."""
    return store.query(f"""
        SELECT worker_id, any(host) AS host, any(ip) AS ip, count() AS frames, sum(faces) AS faces,
               max(ts) AS last_seen,
               if(dateDiff('second', max(ts), now64(6, 'UTC')) <= {STALE_S}, 'active', 'stale') AS state,
               round(avg(queue_ms), 1) AS avg_queue_ms, round(avg(decode_ms), 1) AS avg_decode_ms,
               round(avg(detect_ms), 1) AS avg_detect_ms, round(avg(filter_ms), 1) AS avg_filter_ms,
               round(avg(encode_ms), 1) AS avg_encode_ms,
               round(avg({_TOTAL}), 1) AS avg_ms, round(quantile(0.95)({_TOTAL}), 1) AS p95_ms,
               round(quantile(0.95)(queue_ms), 1) AS p95_queue_ms,
               round(quantile(0.95)(decode_ms), 1) AS p95_decode_ms,
               round(quantile(0.95)(detect_ms), 1) AS p95_detect_ms,
               round(quantile(0.95)(filter_ms), 1) AS p95_filter_ms,
               round(quantile(0.95)(encode_ms), 1) AS p95_encode_ms,
               round(count() / greatest(dateDiff('millisecond', min(ts), max(ts)) / 1000, 1), 2) AS fps
        FROM {FRAMES_TABLE} FINAL
        GROUP BY worker_id
        ORDER BY last_seen DESC""")


def jobs(store: Store) -> pd.DataFrame:
    """One row per job, newest first: state, progress, frames, faces, wall time, fps."""
    return store.query(f"""
        WITH events AS (
            SELECT job_id, min(ts) AS started,
                   maxIf(ts, kind IN ('completed', 'failed')) AS ended,
                   if(countIf(kind = 'failed') > 0, 'failed',
                      if(countIf(kind = 'completed') > 0, 'completed', 'running')) AS state,
                   max(frames_written) AS written, max(frame_count) AS frame_count,
                   maxIf(faces, kind = 'completed') AS faces, maxIf(duration_s, kind = 'completed') AS video_s,
                   anyIf(reason, kind = 'failed') AS reason
            FROM {JOBS_TABLE} FINAL GROUP BY job_id),
        work AS (
            SELECT job_id, count() AS frames_processed, uniqExact(worker_id) AS workers, min(ts) AS first_frame
            FROM {FRAMES_TABLE} FINAL GROUP BY job_id)
        SELECT e.job_id AS job_id, e.state AS state,
               if(e.frame_count > 0, round(100 * e.written / e.frame_count), NULL) AS progress_pct,
               e.written AS frames, e.frame_count AS frame_count, e.faces AS faces, w.workers AS workers,
               w.frames_processed AS frames_processed,
               round(dateDiff('millisecond', e.started,
                              if(e.state = 'running', now64(6, 'UTC'), e.ended)) / 1000, 2) AS wall_s,
               round(e.written / greatest(wall_s, 0.001), 1) AS fps,
               e.video_s AS video_s, e.started AS started, e.reason AS reason
        FROM events AS e LEFT JOIN work AS w USING (job_id)
        ORDER BY e.started DESC""")


def job_time_per_worker(store: Store) -> pd.DataFrame:
    """Per worker: the jobs it took part in, its own time on each (the sum of its
    frames' times), and the average wall time of those jobs."""
    return store.query(f"""
        WITH per_job AS (
            SELECT worker_id, job_id, any(host) AS host, count() AS frames, sum({_TOTAL}) / 1000 AS busy_s
            FROM {FRAMES_TABLE} FINAL GROUP BY worker_id, job_id),
        walls AS (
            SELECT job_id, dateDiff('millisecond', min(ts), maxIf(ts, kind IN ('completed', 'failed'))) / 1000
                   AS wall_s
            FROM {JOBS_TABLE} FINAL GROUP BY job_id HAVING countIf(kind IN ('completed', 'failed')) > 0)
        SELECT p.worker_id AS worker_id, any(p.host) AS host, count() AS jobs, sum(p.frames) AS frames,
               round(avg(p.busy_s), 2) AS avg_busy_s_per_job, round(avg(w.wall_s), 2) AS avg_job_wall_s
        FROM per_job AS p LEFT JOIN walls AS w USING (job_id)
        GROUP BY p.worker_id ORDER BY jobs DESC, worker_id""")


def job_frames(store: Store, job_id: str) -> pd.DataFrame:
    """A job's per-frame timeline: which worker did which frame, when, how long."""
    return store.query(f"""
        SELECT frame_index, worker_id, host, ts, queue_ms, decode_ms, detect_ms, filter_ms, encode_ms,
               {_TOTAL} AS total_ms, faces
        FROM {FRAMES_TABLE} FINAL WHERE job_id = {{job:String}}
        ORDER BY frame_index, ts""", parameters={"job": job_id})


def over_time(store: Store, seconds: int = 600) -> pd.DataFrame:
    """Frames per second and mean per-frame time per worker, by second, over the last `seconds`
    of recorded activity."""
    return store.query(f"""
        SELECT toStartOfSecond(ts) AS second, worker_id, count() AS fps, round(avg({_TOTAL}), 1) AS ms,
               round(avg(queue_ms + {_TOTAL}), 1) AS latency_ms
        FROM {FRAMES_TABLE} FINAL
        WHERE ts >= (SELECT max(ts) FROM {FRAMES_TABLE}) - INTERVAL {int(seconds)} SECOND
        GROUP BY second, worker_id ORDER BY second""")


def running_jobs(store: Store) -> int:
    return int(store.query(f"""
        SELECT count() AS n FROM (SELECT job_id FROM {JOBS_TABLE} FINAL GROUP BY job_id
                                  HAVING countIf(kind IN ('completed', 'failed')) = 0)""")["n"].iloc[0])


def recent_partitions(store: Store, seconds: int = STALE_S) -> dict[str, set[int]]:
    """The frames partitions each worker processed in its last `seconds` of work."""
    rows = store.query(f"""
        SELECT worker_id, groupUniqArray(partition) AS partitions
        FROM {FRAMES_TABLE} AS f FINAL
        INNER JOIN (SELECT worker_id, max(ts) AS last FROM {FRAMES_TABLE} GROUP BY worker_id) AS l USING (worker_id)
        WHERE f.ts >= l.last - INTERVAL {int(seconds)} SECOND
        GROUP BY worker_id""")
    return {r.worker_id: {int(p) for p in r.partitions} for r in rows.itertuples()}


def output_paths(store: Store, job_id: str, host: str) -> list[str]:
    """Where `dvp run` on this host wrote the job's video."""
    rows = store.query(f"""SELECT path FROM {OUTPUTS_TABLE} FINAL
                           WHERE job_id = {{job:String}} AND host = {{host:String}}""",
                       parameters={"job": job_id, "host": host})
    return list(rows["path"])
