"""Confinement: each job in its own cgroup, inside its limits, as its own Unix account.

`detect` picks the layout at start (pure v2, hybrid v2 + v1, or none); process.py places each
job in its groups through the spawner (spawner.py, spawnd.py), and job.py ends a job only when
its group is empty. `Confinement.find`/`kill_job`/`job_ids` let a restarted server deal with
what a dead one left (groups are named `job-ID` under a root named after the data directory).
"""

from __future__ import annotations

from jobservice.core.confine.account import Account
from jobservice.core.confine.base import Confinement, JobCgroup
from jobservice.core.confine.detect import ConfineMode, detect, root_name
from jobservice.core.confine.none import Unconfined

__all__ = [
    "Account",
    "ConfineMode",
    "Confinement",
    "JobCgroup",
    "Unconfined",
    "detect",
    "root_name",
]
