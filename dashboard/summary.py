"""`dvp status`: the dashboard's key figures in the terminal."""
from __future__ import annotations

from dvp.dashboard import queries
from dvp.dashboard.cluster import group_lag, waiting_frames
from dvp.errors import BrokerError, DvpError
from dvp.kafka_cluster import Cluster
from dvp.store import Store


def summary_lines(cluster: Cluster, jobs_shown: int = 5) -> list[str]:
    settings = cluster.settings
    try:
        group = group_lag(cluster)  # asked first: the embedded store is not held while the cluster answers
    except BrokerError as exc:
        group, cluster_error = None, str(exc)
    try:
        store = Store(settings)
    except DvpError as exc:
        return [f"metrics: {exc}"]
    try:
        with store.held():
            workers, jobs = queries.workers(store), queries.jobs(store)
            per_worker = queries.job_time_per_worker(store)
            recent = queries.recent_partitions(store)
    finally:
        store.close()
    if workers.empty and jobs.empty:
        return ["metrics: none stored yet"]
    waiting = waiting_frames(group, recent).by_worker if group else {}
    lines = [f"{'worker':<28} {'host':<16} {'ip':<15} {'state':<7} {'frames':>7} {'waiting':>7} "
             f"{'queue':>6} {'decode':>6} {'detect':>6} {'filter':>6} {'encode':>6} {'avg ms':>7} {'p95 ms':>7} "
             f"{'fps':>6}"]
    lines += [f"{w.worker_id:<28} {w.host:<16} {w.ip:<15} {w.state:<7} {w.frames:>7} "
              f"{waiting.get(w.worker_id, 0) if group else '?':>7} {w.avg_queue_ms:>6} {w.avg_decode_ms:>6} "
              f"{w.avg_detect_ms:>6} {w.avg_filter_ms:>6} {w.avg_encode_ms:>6} {w.avg_ms:>7} {w.p95_ms:>7} "
              f"{w.fps:>6}" for w in workers.itertuples()]
    lines.append("(stage columns: average ms per frame)" if group else
                 f"(stage columns: average ms per frame; frames waiting unknown: {cluster_error})")
    lines.append(f"{'job':<40} {'state':<10} {'frames':>7} {'faces':>6} {'wall s':>7} {'fps':>6}")
    lines += [f"{j.job_id:<40} {j.state:<10} {j.frames:>7} {j.faces:>6} {j.wall_s:>7} {j.fps:>6}"
              for j in jobs.head(jobs_shown).itertuples()]
    if not per_worker.empty:
        lines.append(f"{'worker':<28} {'jobs':>5} {'frames':>7} {'busy s per job':>15} {'avg job wall s':>15}")
        lines += [f"{w.worker_id:<28} {w.jobs:>5} {w.frames:>7} {w.avg_busy_s_per_job:>15} {w.avg_job_wall_s:>15}"
                  for w in per_worker.itertuples()]
    return lines
