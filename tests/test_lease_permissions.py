"""Credentials short of a lease permission (issue 17): the run goes on without the lease,
told once in one line naming the S3 action and the lease's key, never AccessDenied on every run.

The refusals are made by botocore hooks on moto in-process; tests/test_iam.py shows the
same under moto's IAM with the documented policies.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3_scheduler.lease import Lease, Outcome

from .conftest import S3, T0, Clock

LEASE = "jobs/.lease"


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
