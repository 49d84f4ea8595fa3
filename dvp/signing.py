"""Results bound to their job and to the cluster's services: the aggregator puts
an HMAC in each JobCompleted, under a secret shared by the cluster's services
(DVP_SECRET, else HOME/secret), and whoever receives a video checks it before
believing the record. The record names the video's size and SHA-256, so the
pieces on the results topic are bound too: a forger without the secret can
neither name other bytes nor claim a job that is not its own."""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from dvp.messages import JOBS, JobCompleted

SECRET_FILE = "secret"  # under HOME, made on first use: the services of one machine share it


def _mac(key: bytes, completed: JobCompleted) -> str:
    return hmac.new(key, JOBS.encode(dataclasses.replace(completed, mac="")), hashlib.sha256).hexdigest()


def signed(key: bytes, completed: JobCompleted) -> JobCompleted:
    return dataclasses.replace(completed, mac=_mac(key, completed))


def verified(key: bytes, completed: JobCompleted) -> bool:
    return hmac.compare_digest(completed.mac, _mac(key, completed))


def key_file(home: Path) -> bytes:
    """The secret of HOME/secret, made (readable by its owner only) if there is none:
    made whole under another name and linked into place, so that processes starting
    together all read the one that won."""
    path = home / SECRET_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=home, prefix=".secret-")
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.close(fd)
            os.link(partial, path)
        except FileExistsError:  # made meanwhile by another process: theirs is the one
            pass
        finally:
            Path(partial).unlink()
    return path.read_bytes().strip()
