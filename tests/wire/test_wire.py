"""What crosses the wire: real HTTP to moto's server, and to a real S3 server when set.

Special characters in targets and scheduler paths, CopySource quoting, endpoint
configuration and the client's connection pool.

The copy's CopySourceIfMatch and DeleteObjects' per-key ETags are not tried here: neither
moto nor Ceph 16 honours them, so such a test would skip on both. How a run answers the
refusals AWS sends is tested in tests/functional/test_reliability.py, the refusal made by
a botocore hook.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Callable

import pytest

from s3_scheduler import EventNotPendingError, TargetNotAllowedError, keys

from ..conftest import S3, T0, Clock, Endpoint

TARGETS = [
    "with space/and  two.txt",
    "plus+sign",
    "percent%20literal%",
    "pipe|in|key",
    "hash#fragment",
    "question?versionId=abc",
    "ünïcødé/日本語/файл",
    "/leading-slash",
    "tilde~one~~two~/three",
    "amp&eq=semi;colon,comma",
    "dir/sub/deep/file.json",
]


@pytest.mark.parametrize("target", TARGETS)
def test_special_targets_are_delivered_to_the_exact_key(wire: S3, clock: Clock, target: str) -> None:
    """Each target key, whatever its characters, receives exactly its content."""
    scheduler = wire.scheduler("jobs", clock=clock)
    scheduler.schedule(T0 - timedelta(minutes=1), wire.target_bucket, target, f"content of {target}")

    scheduler.handle()

    expected = target[1:] if target.startswith("/") else target
    assert wire.keys(wire.target_bucket) == [expected]
    assert wire.body(wire.target_bucket, expected) == f"content of {target}".encode()
    assert wire.keys(wire.schedule_bucket) == []


@pytest.mark.parametrize("path", ["/path", "/path/", "team a/jobs+%", "ü/|odd|"])
def test_scheduler_paths_with_special_characters(wire: S3, clock: Clock, path: str) -> None:
    """Scheduler paths with a leading '/', spaces, '+', '%', unicode or '|' work end to end."""
    scheduler = wire.scheduler(path, clock=clock)
    key = scheduler.schedule(T0 - timedelta(minutes=1), wire.target_bucket, "out.bin", b"\x00\x01\xfe")
    future = scheduler.schedule(T0 + timedelta(days=1), wire.target_bucket, "later.bin", b"later")

    scheduler.handle()

    assert key.startswith(keys.listing_prefix(path))
    assert wire.body(wire.target_bucket, "out.bin") == b"\x00\x01\xfe"
    assert wire.keys(wire.schedule_bucket) == [future]


def test_due_window_is_read_in_key_order_over_http(wire: S3, clock: Clock) -> None:
    """Over HTTP too, one LIST covers the due window ahead of a far-future backlog (and one
    the series markers of its due events)."""
    scheduler = wire.scheduler(clock=clock)
    for i in range(30):
        scheduler.schedule(T0 + timedelta(days=3, seconds=i), wire.target_bucket, f"later/{i}", "l")
    for i in range(5):
        scheduler.schedule(T0 - timedelta(seconds=i + 1), wire.target_bucket, f"now/{i}", str(i))
    wire.counter.calls.clear()

    scheduler.handle()

    assert wire.counter.lists == 2  # and one LIST of the series markers of the due page
    assert wire.counter.calls["CopyObject"] == 5
    assert sorted(wire.keys(wire.target_bucket)) == [f"now/{i}" for i in range(5)]
    assert len(wire.keys(wire.schedule_bucket)) == 30


def test_stop_over_http(wire: S3) -> None:
    """stop() answers True for a present and for a missing event."""
    scheduler = wire.scheduler()
    key = scheduler.schedule(T0, wire.target_bucket, "x", "x")

    assert scheduler.stop(key) is True
    assert scheduler.stop(key) is True
    assert wire.keys(wire.schedule_bucket) == []


def test_delivery_never_overflows_the_connection_pool(
    endpoint: Endpoint, make_wire: Callable[..., S3], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Delivering more events than the pool holds never makes urllib3 discard connections."""
    wire = make_wire(endpoint, max_pool_connections=4)
    scheduler = wire.scheduler(clock=clock)
    for i in range(40):
        scheduler.schedule(T0 - timedelta(seconds=i + 1), wire.target_bucket, f"t/{i}", "x")

    with caplog.at_level(logging.WARNING):
        scheduler.handle()

    assert len(wire.keys(wire.target_bucket)) == 40
    assert "Connection pool is full" not in caplog.text


def test_operations_over_http(wire: S3, clock: Clock) -> None:
    """pending, cancel, reschedule and handle(until=, timeout=) work against the server."""
    scheduler = wire.scheduler("ops", clock=clock, sleep=clock.advance)
    first = scheduler.schedule(T0 + timedelta(seconds=10), wire.target_bucket, "a b/1", "one")
    second = scheduler.schedule(T0 + timedelta(seconds=20), wire.target_bucket, "ü/2", "two")
    third = scheduler.schedule(T0 + timedelta(hours=1), wire.target_bucket, "3", "three")

    assert [e.key for e in scheduler.pending()] == [first, second, third]
    assert [e.key for e in scheduler.pending(until=T0 + timedelta(seconds=15))] == [first]
    assert scheduler.cancel(third) is True
    assert scheduler.cancel(third) is False
    moved = scheduler.reschedule(second, T0 + timedelta(seconds=30))
    with pytest.raises(EventNotPendingError):
        scheduler.reschedule(second, T0)

    report = scheduler.handle(until=T0 + timedelta(seconds=40))

    assert [e.key for e in report.delivered] == [first, moved]
    assert clock.now >= T0 + timedelta(seconds=30)
    assert wire.body(wire.target_bucket, "ü/2") == b"two"
    assert scheduler.cancel(first) is False
    assert list(scheduler.pending()) == []


def test_timeout_over_http(wire: S3, clock: Clock) -> None:
    """A zero timeout starts no delivery: every due event stays (those read are counted deferred)."""
    scheduler = wire.scheduler(clock=clock)
    keys = [scheduler.schedule(T0 - timedelta(seconds=i + 1), wire.target_bucket, f"t{i}", "x") for i in range(3)]

    report = scheduler.handle(timeout=0)

    assert {e.key for e in report.deferred} <= set(keys)
    assert report.delivered == []
    assert sorted(wire.keys(wire.schedule_bucket)) == sorted(keys)


def test_lease_over_http(wire: S3, clock: Clock) -> None:
    """The lease is taken, found held, taken over once expired, and released, on the server."""
    scheduler = wire.scheduler("leased", clock=clock)
    lease = "leased/.lease"
    first = scheduler.schedule(T0, wire.target_bucket, "first", "1")
    wire.client.put_object(
        Bucket=wire.schedule_bucket,
        Key=lease,
        Body=json.dumps({"owner": "other", "expires": (T0 + timedelta(minutes=1)).isoformat()}).encode(),
    )

    held = scheduler.handle()
    clock.advance(61)
    taken_over = scheduler.handle()

    assert [e.key for e in held.deferred] == [first]
    assert [e.key for e in taken_over.delivered] == [first]
    assert wire.keys(wire.schedule_bucket) == []
    second = scheduler.schedule(clock.now, wire.target_bucket, "second", "2")
    assert [e.key for e in scheduler.handle().delivered] == [second]
    assert wire.keys(wire.schedule_bucket) == []


def test_allowed_targets_and_dead_letters_over_http(wire: S3, clock: Clock) -> None:
    """An event for a target outside the allowlist is never copied, then dead-lettered."""
    injected = wire.scheduler("guarded").schedule(T0 - timedelta(hours=2), wire.target_bucket, "secret/x", "evil")
    scheduler = wire.scheduler(
        "guarded",
        clock=clock,
        allowed_targets=[f"{wire.target_bucket}/public/"],
        dead_letter_after=timedelta(hours=1),
    )
    with pytest.raises(TargetNotAllowedError):
        scheduler.schedule(T0, wire.target_bucket, "secret/y", "no")
    allowed = scheduler.schedule(T0, wire.target_bucket, "public/ok", "ok")

    report = scheduler.handle()

    assert [e.key for e in report.rejected] == [injected]
    assert [e.key for e in report.dead_lettered] == [injected]
    assert [e.key for e in report.delivered] == [allowed]
    assert wire.keys(wire.target_bucket) == ["public/ok"]
    assert [e.path for e in scheduler.dead_letters()] == ["secret/x"]


def test_lease_renewal_and_release_over_http(wire: S3, clock: Clock) -> None:
    """A run's lease is renewed with If-Match (radosgw wants the ETag unquoted) and released, on the server."""
    scheduler = wire.scheduler("renewed", clock=clock)
    acquired = scheduler._lease.acquire(clock.now)
    run = acquired.run
    assert run is not None

    clock.advance(30)
    renewed = [run.renew(), run.renew()]
    expires = json.loads(wire.body(wire.schedule_bucket, "renewed/.lease"))["expires"]
    run.release()

    assert renewed == [True, True]
    assert expires == (clock.now + timedelta(seconds=60)).isoformat()
    assert wire.keys(wire.schedule_bucket) == []
