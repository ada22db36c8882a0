"""The run lease: a lease that never blocks for long, runs that die or are taken over (issue 9),
and credentials short of a lease permission (issue 17): the run goes on without the lease,
told once in one line naming the S3 action and the lease's key, never AccessDenied on every run.

The refusals are made by botocore hooks on moto in-process; tests/functional/test_iam.py shows the
same under moto's IAM with the documented policies.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3_scheduler.lease import STALE_AFTER, Lease, Outcome

from ..conftest import S3, T0, Clock

LEASE = "jobs/.lease"


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def lease_body(s3: S3) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(s3.body(s3.schedule_bucket, LEASE))
    return data


def deny(s3: S3, operation: str, *, when: Any = None) -> None:
    """Refuse ``operation`` on the lease as IAM does (AccessDenied), where ``when(params)`` holds."""

    def refuse(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == LEASE and (when is None or when(params)):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, operation)

    s3.client.meta.events.register(f"before-parameter-build.s3.{operation}", refuse)


def leftover_lease(s3: S3) -> None:
    """A lease that expired before the test's time: a run that died, or one that could not delete it."""
    body = {"owner": "gone", "expires": (T0 - timedelta(minutes=5)).isoformat()}
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=LEASE, Body=json.dumps(body).encode())


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The package's WARNING lines."""
    return [
        r.getMessage() for r in caplog.records if r.name.startswith("s3_scheduler") and r.levelno >= logging.WARNING
    ]


def test_runs_that_may_write_the_lease_but_not_read_it_deliver_warned_once(
    s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """With a lease left over and s3:GetObject on it denied, each run delivers without it, told once in one line."""
    leftover_lease(s3)
    deny(s3, "GetObject")
    scheduler = s3.scheduler(clock=clock)
    caplog.set_level(logging.WARNING, logger="s3_scheduler")

    reports = []
    for i in range(2):
        scheduler.schedule(T0, s3.target_bucket, f"k{i}", "x")
        reports.append(scheduler.handle())

    assert [len(report.delivered) for report in reports] == [1, 1]
    assert all(report.ok for report in reports)
    (line,) = warnings(caplog)
    assert "s3:GetObject" in line
    assert repr(LEASE) in line


def test_a_run_that_may_not_take_an_expired_lease_over_delivers_warned_once(
    s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A takeover write (If-Match) refused, as a policy on s3:if-match can, makes the run go on without the lease."""
    leftover_lease(s3)
    deny(s3, "PutObject", when=lambda params: "IfMatch" in params)
    scheduler = s3.scheduler(clock=clock)
    caplog.set_level(logging.WARNING, logger="s3_scheduler")

    reports = []
    for i in range(2):
        scheduler.schedule(T0, s3.target_bucket, f"k{i}", "x")
        reports.append(scheduler.handle())

    assert [len(report.delivered) for report in reports] == [1, 1]
    (line,) = warnings(caplog)
    assert "s3:PutObject" in line
    assert repr(LEASE) in line


def test_a_lease_that_may_not_be_read_is_denied_not_raised(s3: S3, clock: Clock) -> None:
    """Lease.acquire answers DENIED, not AccessDenied, when the lease exists and s3:GetObject on it is refused."""
    leftover_lease(s3)
    deny(s3, "GetObject")
    lease = Lease(s3.client, s3.schedule_bucket, LEASE, ttl=timedelta(seconds=60), clock=clock)

    acquired = lease.acquire(T0)

    assert acquired.outcome is Outcome.DENIED
    assert acquired.run is None


def test_a_reschedule_that_may_not_read_the_lease_moves_the_event_without_it(
    s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """An event near its time is moved, not refused with AccessDenied, when the lease exists but may not be read;
    one warning names the action and the lease."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0 + timedelta(minutes=2), s3.target_bucket, "k", "x")
    leftover_lease(s3)
    deny(s3, "GetObject")
    caplog.set_level(logging.WARNING, logger="s3_scheduler")

    moved = scheduler.reschedule(key, T0 + timedelta(minutes=3))
    again = scheduler.reschedule(moved, T0 + timedelta(minutes=4))

    assert [event.key for event in scheduler.pending()] == [again]
    (line,) = warnings(caplog)
    assert "s3:GetObject" in line
    assert repr(LEASE) in line


def test_a_refused_renewal_whose_lease_may_not_be_read_back_stops_the_run(
    s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewal refused (the lease changed) that may not read the lease back takes it as lost, in one warning."""
    lease = Lease(s3.client, s3.schedule_bucket, LEASE, ttl=timedelta(seconds=60), clock=clock)
    run = lease.acquire(T0).run
    assert run is not None
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=LEASE, Body=b'{"owner": "another run"}')
    deny(s3, "GetObject")
    caplog.set_level(logging.WARNING, logger="s3_scheduler")

    renewed = run.renew()

    assert (renewed, run.lost, run.may_start(T0)) == (False, True, False)
    (line,) = warnings(caplog)
    assert "s3:GetObject" in line
    assert repr(LEASE) in line


# the lease -----------------------------------------------------------------------------


def put_lease(s3: S3, **fields: Any) -> None:
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=LEASE, Body=json.dumps(fields).encode())


def test_a_lease_expiring_further_ahead_than_any_run_asks_is_taken_over(
    s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A lease years ahead (a hand edit, a wrong clock) is stale: taken over with a WARNING, and the run delivers."""
    scheduler = s3.scheduler(clock=clock)
    scheduler.schedule(T0, s3.target_bucket, "k", "x")
    put_lease(s3, owner="elsewhere", expires=(T0 + timedelta(days=3650)).isoformat())

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        report = scheduler.handle()

    assert len(report.delivered) == 1
    assert "stale lease" in caplog.text


def test_a_lease_just_within_reach_is_obeyed(s3: S3, clock: Clock) -> None:
    """A lease expiring within what a run may ask for defers the run."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")
    put_lease(s3, owner="elsewhere", expires=(T0 + STALE_AFTER).isoformat())

    report = scheduler.handle()

    assert [e.key for e in report.deferred] == [key]


def test_a_deferral_past_the_holders_term_is_a_warning(s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """Deferred by a holder kept alive past its window and ttl: WARNING; within its term: INFO only."""
    scheduler = s3.scheduler(clock=clock)
    scheduler.schedule(T0, s3.target_bucket, "k", "x")
    since = T0 - timedelta(minutes=1)
    fields = {"owner": "slow", "since": since.isoformat(), "until": since.isoformat(), "ttl": 60.0}

    put_lease(s3, **fields, expires=(T0 + seconds(30)).isoformat())
    with caplog.at_level(logging.INFO, logger="s3_scheduler"):
        scheduler.handle()
    in_term = [r.levelno for r in caplog.records if "Deferred" in r.getMessage()]
    caplog.clear()
    clock.advance(120)
    put_lease(s3, **fields, expires=(clock.now + seconds(30)).isoformat())
    with caplog.at_level(logging.INFO, logger="s3_scheduler"):
        scheduler.handle()
    overstayed = [r for r in caplog.records if "Deferred" in r.getMessage()]

    assert in_term == [logging.INFO]
    assert [r.levelno for r in overstayed] == [logging.WARNING]
    assert "past its term" in overstayed[0].getMessage()


def test_a_run_that_dies_holds_the_others_up_for_one_ttl_at_most(s3: S3, clock: Clock) -> None:
    """A lease left by a run that never released it defers runs within lease_ttl and is taken over after it."""
    dead = s3.scheduler(clock=clock)
    acquired = dead._lease.acquire(clock.now)  # a run that took the lease, then died
    assert acquired.run is not None
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")

    clock.advance(59)
    deferred = scheduler.handle()
    clock.advance(2)
    delivered = scheduler.handle()

    assert [e.key for e in deferred.deferred] == [key]
    assert [e.key for e in delivered.delivered] == [key]


def test_a_lease_that_may_not_be_deleted_is_released_by_rewriting_it(
    s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Without s3:DeleteObject on the lease, a run rewrites it as expired (warned once); the next run goes at once."""

    def deny(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == LEASE:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DeleteObject")

    s3.client.meta.events.register("before-parameter-build.s3.DeleteObject", deny)
    scheduler = s3.scheduler(clock=clock)
    other = s3.scheduler(clock=clock)

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        for i in range(2):
            scheduler.schedule(T0, s3.target_bucket, f"a{i}", "x")
            scheduler.handle()
    warned = caplog.text.count("grant s3:DeleteObject")
    other.schedule(T0, s3.target_bucket, "b", "x")
    report = other.handle()

    assert len(report.delivered) == 1
    assert datetime.fromisoformat(lease_body(s3)["expires"]) <= clock.now
    assert warned == 1


def test_a_lost_lease_stops_new_copies(s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """A renewal that finds the lease taken over marks it lost: no further copy starts, the rest is deferred."""
    scheduler = s3.scheduler(clock=clock, max_workers=1)
    for i in range(3):
        scheduler.schedule(T0 - seconds(3 - i), s3.target_bucket, f"k{i}", "x")
    runs: list[Any] = []
    original = scheduler._lease.acquire

    def acquire(window_end: datetime) -> Any:
        acquired = original(window_end)
        runs.append(acquired.run)
        return acquired

    scheduler._lease.acquire = acquire  # type: ignore[method-assign]

    def take_over(**_: Any) -> None:
        s3.client.meta.events.unregister("after-call.s3.CopyObject", take_over)
        put_lease(s3, owner="other", expires=(T0 + timedelta(minutes=5)).isoformat())
        runs[0].renew()

    s3.client.meta.events.register("after-call.s3.CopyObject", take_over)
    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        report = scheduler.handle()

    assert len(report.delivered) == 1
    assert len(report.deferred) == 2
    assert "taken over" in caplog.text
    assert lease_body(s3)["owner"] == "other"
