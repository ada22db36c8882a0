"""Recurring events under SIGKILL (issue 20): a process looping on ``handle()`` is killed at
random moments and started again; afterwards every series has exactly one pending occurrence.

How it runs. 20 series of every 2 seconds (and 5 of every second with ``COUNT``) are
written on moto's server, or on a real S3 server when one is set. One process at a time
(``tests/run_in_subprocess.py loop``) delivers them; each is SIGKILLed after a random time
(0.3 to 1.5 s) and the next one starts with its clock moved past the dead one's lease
(``offset``), as waiting would, without the wait. A last run, in this process and past
every lease, finishes. Then each series (by its id, from each pending event's metadata) has
one pending occurrence, or none once its ``COUNT`` is spent: a run killed between writing
the next occurrence and deleting the one it delivered never forks a series (two pending)
nor breaks one (none). Marked slow (it runs with ``S3_SCHEDULER_FULL_CAMPAIGNS=1``, as CI runs it): 5 kills.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pytest

from s3_scheduler import Scheduler, keys

from ..conftest import FULL_SIZE, S3, Endpoint

CHILD = (sys.executable, str(Path(__file__).parents[1] / "run_in_subprocess.py"), "loop")
KILLS = 5 if FULL_SIZE else 2
SERIES = 20
COUNTED = 5
LEASE_TTL = 10.0
SEED = int(os.environ.get("S3_SCHEDULER_CAMPAIGN_SEED", "20261207"))
WAIT = 30.0
"""Seconds a process may take to start, or to end once signalled, before the test fails."""


@pytest.mark.slow
def test_series_killed_at_random_moments_neither_fork_nor_break(
    endpoint: Endpoint, make_wire: Callable[..., S3], tmp_path: Path
) -> None:
    """SIGKILLs at random moments of a looping handler: afterwards each series has exactly one
    pending occurrence (none for a series whose COUNT is spent), and every target was written."""
    wire = make_wire(endpoint)
    rng = random.Random(SEED)
    offset = 0.0
    now = datetime.now(timezone.utc)
    writer = Scheduler(wire.schedule_bucket, "jobs", s3_client=wire.client)
    for number in range(SERIES):
        writer.schedule(now, wire.target_bucket, f"every-2s/{number}", "x", repeat="FREQ=SECONDLY;INTERVAL=2")
    for number in range(COUNTED):
        writer.schedule(now, wire.target_bucket, f"counted/{number}", "x", repeat="FREQ=SECONDLY;COUNT=4")
    for kill in range(KILLS):
        log = tmp_path / f"{kill}.log"
        spec = {
            "endpoint": endpoint.url,
            "bucket": wire.schedule_bucket,
            "path": "jobs",
            "shards": 1,
            "shard": None,
            "offset": offset,
            "max_workers": 8,
            "lease_ttl": LEASE_TTL,
            "pause": 0.2,
            "log": str(log),
        }
        process = subprocess.Popen(
            [*CHILD, json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={
                **os.environ,
                "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                "AWS_ACCESS_KEY_ID": endpoint.access_key,
                "AWS_SECRET_ACCESS_KEY": endpoint.secret_key,
            },
        )
        deadline = time.monotonic() + WAIT
        while not (log.exists() and '"ready"' in log.read_text()) and process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"process {kill} not ready within {WAIT} s")
            time.sleep(0.05)
        time.sleep(rng.uniform(0.3, 1.5))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=WAIT)
        offset += LEASE_TTL + 1  # the next process's clock is past the dead one's lease

    def clock() -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=offset + LEASE_TTL + 1)

    last = Scheduler(wire.schedule_bucket, "jobs", s3_client=wire.client, clock=clock)
    last.handle()
    series: Counter[str] = Counter()
    for event in last.pending():
        shown = last.show(event.key)
        assert shown.series is not None, f"{event.key} lost its series"
        series[shown.path.split("/")[0] + ":" + shown.series] += 1
    forked = {name: count for name, count in series.items() if count > 1}
    assert forked == {}
    every = sum(1 for name in series if name.startswith("every-2s:"))
    assert every == SERIES, f"{SERIES - every} series of every 2 s broke"
    assert sum(1 for name in series if name.startswith("counted:")) == 0  # COUNT=4 spent long ago
    written = {key.split("/")[0] for key in wire.keys(wire.target_bucket)}
    assert written == {"every-2s", "counted"}
    assert len(wire.keys(wire.target_bucket)) == SERIES + COUNTED
    assert all(keys.SERIES_MARKERS not in key for key in wire.keys(wire.target_bucket))
