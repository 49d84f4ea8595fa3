"""`dvp status`: the dashboard's key figures in the terminal."""
from __future__ import annotations

from dvp.config import Settings
from dvp.dashboard import queries
from dvp.errors import DvpError
from dvp.store import Store


def summary_lines(settings: Settings, jobs_shown: int = 5) -> list[str]:
    try:
        store = Store(settings)
    except DvpError as exc:
        return [f"metrics: {exc}"]
    try:
        workers, jobs = queries.workers(store), queries.jobs(store)
    finally:
        store.close()
    if workers.empty and jobs.empty:
        return ["metrics: none stored yet"]
    lines = [f"{'worker':<28} {'host':<16} {'ip':<15} {'state':<7} {'frames':>7} {'avg ms':>7} "
             f"{'p95 ms':>7} {'fps':>6}"]
    lines += [f"{w.worker_id:<28} {w.host:<16} {w.ip:<15} {w.state:<7} {w.frames:>7} {w.avg_ms:>7} {w.p95_ms:>7} "
              f"{w.fps:>6}" for w in workers.itertuples()]
    lines.append(f"{'job':<40} {'state':<10} {'frames':>7} {'faces':>6} {'wall s':>7} {'fps':>6}")
    lines += [f"{j.job_id:<40} {j.state:<10} {j.frames:>7} {j.faces:>6} {j.wall_s:>7} {j.fps:>6}"
              for j in jobs.head(jobs_shown).itertuples()]
    return lines
