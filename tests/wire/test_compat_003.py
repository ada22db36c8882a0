"""Cross-version tests: s3-scheduler 0.0.3 and this package on the same S3, both ways.

0.0.3's sdist is unpacked into a temporary folder (its code is never part of this
project) and run in a subprocess against the same S3 server (moto's, and a real one when
set). .ci/run fetches the sdist once and names it in ``S3_SCHEDULER_ORIGINAL_SDIST``;
without it the session fixture fetches it from the package index, and the tests skip,
saying why, when the index cannot be reached. Marked slow (a subprocess and the package
index): they run with ``S3_SCHEDULER_FULL_CAMPAIGNS=1``, as CI runs them. The fixture and
the driver (``original_source``, `run_original`) are in conftest.py, shared with
test_mixed_fleet.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from s3_scheduler import Scheduler

from ..conftest import S3, Endpoint, run_original

pytestmark = pytest.mark.slow


def real_now() -> datetime:
    # 0.0.3 reads the real clock, so these tests use it too.
    return datetime.now(timezone.utc)


def test_events_written_by_0_0_3_are_delivered_by_this_package(
    original_source: Path, endpoint: Endpoint, wire: S3
) -> None:
    """0.0.3's events, with UTC, naive and offset times, reach their targets via handle()."""
    now = real_now()
    india = timezone(timedelta(hours=5, minutes=30))
    arizona = timezone(timedelta(hours=-7))
    due = {
        "plain/key.txt": now - timedelta(hours=1),
        "with space+plus&%.txt": (now - timedelta(hours=1)).replace(tzinfo=None),
        "ünï/cødé/日本": (now - timedelta(minutes=30)).astimezone(india),
        "/leading/slash": (now - timedelta(hours=2)).astimezone(arizona),
        "pipe|hash#q?x": now - timedelta(minutes=1),
    }
    future = {"future.txt": now + timedelta(days=1)}
    orders = [
        ["schedule", when.isoformat(), wire.target_bucket, target, f"content of {target}"]
        for target, when in {**due, **future}.items()
    ]
    written = run_original(original_source, endpoint, wire, "/path", orders)

    Scheduler(wire.schedule_bucket, "/path", wire.resource, wire.client).handle()

    for target in due:
        key = target.lstrip("/")
        assert wire.body(wire.target_bucket, key) == f"content of {target}".encode()
    assert wire.keys(wire.schedule_bucket) == [written[-1]]


def test_events_written_by_this_package_are_delivered_by_0_0_3(
    original_source: Path, endpoint: Endpoint, wire: S3
) -> None:
    """Our events (inputs 0.0.3 handles: no '~' in targets) are delivered by 0.0.3."""
    now = real_now()
    tokyo = timezone(timedelta(hours=9))
    scheduler = Scheduler(wire.schedule_bucket, "jobs/", wire.resource, wire.client)
    due = {
        "a b+c/d.txt": now - timedelta(hours=1),
        "ünï/cødé": (now - timedelta(minutes=5)).astimezone(tokyo),
        "pct%41": (now - timedelta(minutes=2)).replace(tzinfo=None, microsecond=0),
        "/leading": now - timedelta(seconds=30),
    }
    for target, when in due.items():
        scheduler.schedule(when, wire.target_bucket, target, f"content of {target}")
    later = scheduler.schedule(now + timedelta(hours=3), wire.target_bucket, "later.txt", "later")

    run_original(original_source, endpoint, wire, "jobs/", [["handle"]])

    for target in due:
        assert wire.body(wire.target_bucket, target.lstrip("/")) == f"content of {target}".encode()
    assert wire.keys(wire.schedule_bucket) == [later]


def test_keys_for_utc_and_naive_times_are_byte_identical(original_source: Path, endpoint: Endpoint, wire: S3) -> None:
    """For UTC and naive times, with and without microseconds, both write the same keys."""
    base = datetime(2031, 3, 4, 5, 6, 7, 891011)
    times = [
        base.replace(tzinfo=timezone.utc),
        base.replace(tzinfo=timezone.utc, microsecond=0),
        base,
        base.replace(microsecond=0),
    ]
    targets = ["plain", "dir/sub/file name+1.txt", "ünï/cødé", "/leading", "pipe|q?#%"]
    inputs = [(when, target) for when in times for target in targets]
    orders = [["schedule", when.isoformat(), "target-b", target, "x"] for when, target in inputs]

    theirs = run_original(original_source, endpoint, wire, "/path/", orders)
    scheduler = Scheduler(wire.schedule_bucket, "/path/", wire.resource, wire.client)
    ours = [scheduler.schedule(when, "target-b", target, "x") for when, target in inputs]

    assert ours == theirs
    assert len(set(ours)) == 2 * len(targets)  # a naive time is the same key as its UTC twin
