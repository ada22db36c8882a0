"""Overlapping runs: 4 handlers at once over 500 due events, as threads and as processes,
against moto's server. With the lease each event is delivered exactly once; without it
the duplicates show.

The target bucket is versioned, so every copy into a target key leaves a version: the
number of versions of a key is the number of times the event was delivered. All four
handlers list before any delivers (a barrier after their listing). Without the lease each
handler copies one event at a time and waits, after its first copy, for the others to
have made theirs: the first event in key order is then copied four times, whatever the
scheduling, so the duplicates do not depend on a race.

500 events where CI asks for the full campaigns (``S3_SCHEDULER_FULL_CAMPAIGNS``), 100
otherwise. Each handler counts the copies botocore sent again after a dropped connection:
those, and only those, may land twice under the lease.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from s3_scheduler import Scheduler

from ..conftest import Endpoint

HANDLERS = 4
EVENTS = 500 if os.environ.get("S3_SCHEDULER_FULL_CAMPAIGNS") else 100
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def _run_handler(endpoint: Endpoint, bucket: str, exclusive: bool, barrier: Any, results: Any) -> None:
    """One handler: its own boto3 session, a barrier after its listing (and, without the
    lease, after its first copy), then handle()."""
    resource = endpoint.resource()
    client = resource.meta.client
    client.meta.events.register("after-call.s3.ListObjectsV2", lambda **_: barrier.wait(60))
    copied: list[bool] = []

    def first_copy(**_: Any) -> None:
        if not copied:
            copied.append(True)
            barrier.wait(60)

    calls = Counter[str]()
    client.meta.events.register("before-call.s3.CopyObject", lambda **_: calls.update(["call"]))
    client.meta.events.register("before-send.s3.CopyObject", lambda **_: calls.update(["send"]))
    options: dict[str, Any] = {}
    if not exclusive:
        client.meta.events.register("after-call.s3.CopyObject", first_copy)
        options["max_workers"] = 1
    scheduler = Scheduler(bucket, "jobs", resource, client, exclusive=exclusive, clock=lambda: NOW, **options)
    report = scheduler.handle()
    retried = calls["send"] - calls["call"]  # botocore sends a copy again after a dropped connection
    results.put((len(report.delivered), len(report.deferred), len(report.vanished), len(report.failed), retried))


def _versions(client: Any, bucket: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", ()):
            counts[version["Key"]] += 1
    return counts


UNLEASED_EVENTS = 100
"""The events of the test without the lease: it shows that duplicates happen, which 100 show."""


def _seeded(moto_endpoint: Endpoint, make_wire: Any, count: int) -> Any:
    wire = make_wire(moto_endpoint)
    wire.client.put_bucket_versioning(Bucket=wire.target_bucket, VersioningConfiguration={"Status": "Enabled"})
    scheduler = Scheduler(wire.schedule_bucket, "jobs", wire.resource, wire.client)
    scheduler.schedule_many(
        (NOW - timedelta(seconds=i + 1), wire.target_bucket, f"t/{i:03d}", str(i)) for i in range(count)
    )
    return wire


@pytest.fixture
def setup_events(moto_endpoint: Endpoint, make_wire: Any) -> Any:
    return _seeded(moto_endpoint, make_wire, EVENTS)


@pytest.fixture
def setup_unleased_events(moto_endpoint: Endpoint, make_wire: Any) -> Any:
    return _seeded(moto_endpoint, make_wire, UNLEASED_EVENTS)


def _run_all(kind: str, endpoint: Endpoint, bucket: str, exclusive: bool) -> list[tuple[int, int, int, int, int]]:
    if kind == "threads":
        barrier: Any = threading.Barrier(HANDLERS)
        import queue

        results: Any = queue.Queue()
        workers: list[Any] = [
            threading.Thread(target=_run_handler, args=(endpoint, bucket, exclusive, barrier, results))
            for _ in range(HANDLERS)
        ]
    else:
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(HANDLERS)
        results = context.Queue()
        workers = [
            context.Process(target=_run_handler, args=(endpoint, bucket, exclusive, barrier, results))
            for _ in range(HANDLERS)
        ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(60)
    return outcomes


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_exclusive_runs_deliver_each_event_exactly_once(
    kind: str, moto_endpoint: Endpoint, setup_events: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """With exclusive=True (the default), 4 overlapping handlers deliver each of 500 events once, but for
    a copy botocore sent again after a dropped connection (the Guarantees page's "What remains": the first attempt may
    have landed). Under load moto's server drops connections; each retried copy is counted, and is the
    only duplicate allowed."""
    wire = setup_events

    outcomes = _run_all(kind, moto_endpoint, wire.schedule_bucket, exclusive=True)

    versions = _versions(wire.client, wire.target_bucket)
    retried = sum(o[4] for o in outcomes)
    with capsys.disabled():
        print(f"\n{kind}, exclusive: (delivered, deferred, vanished, failed, retried) per handler = {sorted(outcomes)}")
    assert len(versions) == EVENTS
    assert sum(versions.values()) - EVENTS <= retried
    if retried == 0:
        assert set(versions.values()) == {1}
    assert sum(o[0] for o in outcomes) == EVENTS
    assert wire.keys(wire.schedule_bucket) == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_without_the_lease_overlapping_runs_deliver_twice(
    kind: str, moto_endpoint: Endpoint, setup_unleased_events: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """With exclusive=False the same 4 handlers deliver events more than once: what the lease prevents."""
    wire = setup_unleased_events

    outcomes = _run_all(kind, moto_endpoint, wire.schedule_bucket, exclusive=False)

    versions = _versions(wire.client, wire.target_bucket)
    duplicated = sum(1 for n in versions.values() if n > 1)
    with capsys.disabled():
        print(
            f"\n{kind}, not exclusive: {sum(versions.values())} copies of {UNLEASED_EVENTS} events,"
            f" {duplicated} events delivered more than once; per handler {sorted(outcomes)}"
        )
    first = f"t/{UNLEASED_EVENTS - 1:03d}"  # the oldest: first in key order, copied by all four before any delete
    assert len(versions) == UNLEASED_EVENTS
    assert versions[first] == HANDLERS
    assert duplicated > 0
    assert wire.keys(wire.schedule_bucket) == []
