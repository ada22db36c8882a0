"""The run loop: windows on the scheduler's clock, stops through an event, retries through outages; one shard's
loop (ShardRun), the first shard's with the strays."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from s3_scheduler import Scheduler
from s3_scheduler.report import HandleReport, ScheduledEvent
from s3_scheduler.runner import (
    FIRST_RETRY,
    MAX_RETRY,
    ShardRun,
    one_line,
    run_until_stopped,
    stop_on_signals,
    wait_for_stop_signal,
)

from ..conftest import T0, Clock, targets_by_shard


@pytest.fixture
def aws() -> Iterator[Any]:
    """moto in-process with buckets 'sched' and 'target'."""
    with mock_aws():
        client = boto3.client("s3")
        for bucket in ("sched", "target"):
            client.create_bucket(Bucket=bucket)
        yield client


class FakeWait:
    """The runner's wait on the injected clock: records each wait, and sets ``stop`` after ``stop_after``."""

    def __init__(self, clock: Clock, stop: threading.Event, stop_after: int) -> None:
        self.clock = clock
        self.stop = stop
        self.stop_after = stop_after
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> bool:
        self.waits.append(seconds)
        if len(self.waits) >= self.stop_after:
            self.stop.set()
        if self.stop.is_set():
            return True
        self.clock.advance(seconds)
        return False


def keys(client: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def fail_first(client: Any, operation: str, count: int, error: Exception) -> list[int]:
    """Make the first ``count`` calls of ``operation`` raise ``error``; return the list of calls seen."""
    calls: list[int] = []

    def maybe_fail(**_: Any) -> None:
        calls.append(1)
        if len(calls) <= count:
            raise error

    client.meta.events.register(f"before-call.s3.{operation}", maybe_fail)
    return calls


def server_error(operation: str = "ListObjectsV2") -> ClientError:
    return ClientError({"Error": {"Code": "InternalError", "Message": "We encountered\nan internal error"}}, operation)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "s3_scheduler"]


# windows on the scheduler's clock ------------------------------------------------------------


def test_run_delivers_each_event_at_its_time_across_windows(aws: Any, clock: Clock) -> None:
    """Events due in later windows are each delivered on their second, read from the scheduler's clock."""
    stop = threading.Event()
    wait = FakeWait(clock, stop, stop_after=4)
    scheduler = Scheduler("sched", "jobs", s3_client=aws, clock=clock, sleep=clock.advance)
    for offset in (3, 14, 25):
        scheduler.schedule(T0 + timedelta(seconds=offset), "target", f"t{offset}", "x")
    copied: dict[str, datetime] = {}
    aws.meta.events.register(
        "before-parameter-build.s3.CopyObject", lambda params, **_: copied.setdefault(params["Key"], clock.now)
    )
    delivered: list[tuple[str, float]] = []

    run_until_stopped(scheduler, 10, stop, wait=wait, on_delivery=lambda e, late: delivered.append((e.path, late)))

    assert {k: (v - T0).total_seconds() for k, v in copied.items()} == {"t3": 3, "t14": 14, "t25": 25}
    assert delivered == [("t3", 0.0), ("t14", 0.0), ("t25", 0.0)]
    assert wait.waits == [7.0, 6.0, 5.0, 10.0]  # each window waits out its end: T0+10, +20, +30, +40


def test_a_stop_mid_delivery_finishes_that_delivery_and_starts_no_other(aws: Any, clock: Clock) -> None:
    """A stop asked during a copy lets that delivery finish (copy and delete), then the run ends."""
    stop = threading.Event()
    wait = FakeWait(clock, stop, stop_after=100)
    scheduler = Scheduler("sched", "jobs", s3_client=aws, clock=clock, sleep=clock.advance)
    scheduler.schedule(T0 + timedelta(seconds=2), "target", "in-flight", "x")
    later = scheduler.schedule(T0 + timedelta(seconds=5), "target", "later", "x")
    aws.meta.events.register("after-call.s3.CopyObject", lambda **_: stop.set())

    run_until_stopped(scheduler, 10, stop, wait=wait)

    assert keys(aws, "target") == ["in-flight"]
    assert keys(aws, "sched") == [later]
    assert wait.waits == []


def test_each_window_report_is_passed_on(aws: Any, clock: Clock) -> None:
    """on_report receives every window's report, a failed delivery included, and the run goes on."""
    stop = threading.Event()
    scheduler = Scheduler("sched", "jobs", s3_client=aws, clock=clock, sleep=clock.advance)
    scheduler.schedule(T0 - timedelta(seconds=1), "no-such-target", "k", "x")
    reports: list[HandleReport] = []

    run_until_stopped(scheduler, 10, stop, wait=FakeWait(clock, stop, stop_after=2), on_report=reports.append)

    assert [len(r.failed) for r in reports] == [1, 1]


@pytest.mark.parametrize("interval", [0, -1, 901])
def test_an_interval_out_of_range_is_refused(aws: Any, interval: float) -> None:
    """The interval must be more than 0 and at most handle()'s 15-minute window."""
    scheduler = Scheduler("sched", "jobs", s3_client=aws)

    with pytest.raises(ValueError, match="interval must be more than 0 and at most 900 seconds"):
        run_until_stopped(scheduler, interval, threading.Event())


# outages ---------------------------------------------------------------------------------


def test_an_s3_error_is_warned_in_one_line_and_retried_with_growing_waits(
    aws: Any, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Three failing windows wait 1, 2 and 4 s, each warned once; the fourth delivers what fell due meanwhile."""
    stop = threading.Event()
    wait = FakeWait(clock, stop, stop_after=4)
    scheduler = Scheduler("sched", "jobs", s3_client=aws, clock=clock, sleep=clock.advance)
    scheduler.schedule(T0 + timedelta(seconds=2), "target", "k", "x")
    fail_first(aws, "ListObjectsV2", 3, server_error())
    delivered: list[ScheduledEvent] = []

    run_until_stopped(scheduler, 10, stop, wait=wait, on_delivery=lambda e, late: delivered.append(e))

    assert wait.waits[:3] == [FIRST_RETRY, 2 * FIRST_RETRY, 4 * FIRST_RETRY]
    assert [e.path for e in delivered] == ["k"]
    assert keys(aws, "target") == ["k"]
    logged = warnings(caplog)
    assert len(logged) == 3
    assert all("\n" not in line and "InternalError" in line for line in logged)
    assert logged[0].endswith("trying again in 1 s")


def test_an_unreachable_endpoint_is_retried_until_it_answers(
    aws: Any, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused connection is a passing outage: warned, waited on, and the run delivers once S3 answers."""
    stop = threading.Event()
    wait = FakeWait(clock, stop, stop_after=3)
    scheduler = Scheduler("sched", "jobs", s3_client=aws, clock=clock, sleep=clock.advance)
    scheduler.schedule(T0, "target", "k", "x")
    fail_first(aws, "ListObjectsV2", 2, EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))

    run_until_stopped(scheduler, 10, stop, wait=wait, describe=lambda error: "cannot reach S3")

    assert keys(aws, "target") == ["k"]
    assert warnings(caplog) == [
        "Run: cannot reach S3; trying again in 1 s",
        "Run: cannot reach S3; trying again in 2 s",
    ]


def test_the_wait_between_failed_windows_is_capped(aws: Any, clock: Clock) -> None:
    """A long outage doubles the wait up to MAX_RETRY (5 minutes) and no further."""
    stop = threading.Event()
    wait = FakeWait(clock, stop, stop_after=12)
    scheduler = Scheduler("sched", "jobs", s3_client=aws, clock=clock, sleep=clock.advance)
    fail_first(aws, "ListObjectsV2", 100, server_error())

    run_until_stopped(scheduler, 10, stop, wait=wait)

    assert wait.waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, MAX_RETRY, MAX_RETRY, MAX_RETRY]
    assert MAX_RETRY == 300


def test_a_good_window_resets_the_wait(aws: Any, clock: Clock) -> None:
    """After a window that succeeds, the next failure waits FIRST_RETRY again."""
    stop = threading.Event()
    wait = FakeWait(clock, stop, stop_after=5)
    scheduler = Scheduler("sched", "jobs", s3_client=aws, clock=clock, sleep=clock.advance)
    outcomes = iter([True, True, False, True])

    def flaky(**_: Any) -> None:
        if next(outcomes, False):
            raise server_error()

    aws.meta.events.register("before-call.s3.ListObjectsV2", flaky)

    run_until_stopped(scheduler, 10, stop, wait=wait)

    assert wait.waits[:4] == [1, 2, 10, 1]


def test_an_outage_longer_than_max_lateness_expires_what_fell_due_early_in_it(aws: Any, clock: Clock) -> None:
    """After 127 s of outage, with max_lateness 60 s, an event 125 s late expires and one 27 s late is delivered."""
    stop = threading.Event()
    wait = FakeWait(clock, stop, stop_after=8)
    scheduler = Scheduler(
        "sched", "jobs", s3_client=aws, clock=clock, sleep=clock.advance, max_lateness=timedelta(seconds=60)
    )
    early = scheduler.schedule(T0 + timedelta(seconds=2), "target", "early", "x")
    scheduler.schedule(T0 + timedelta(seconds=100), "target", "recent", "x")
    fail_first(aws, "ListObjectsV2", 7, server_error())  # waits 1 + 2 + ... + 64 = 127 s
    reports: list[HandleReport] = []

    run_until_stopped(scheduler, 10, stop, wait=wait, on_report=reports.append)

    assert [([e.key for e in r.expired], [e.path for e in r.delivered]) for r in reports] == [([early], ["recent"])]
    assert keys(aws, "target") == ["recent"]
    assert keys(aws, "sched") == []


def test_a_stop_during_a_retry_wait_ends_the_run(aws: Any, clock: Clock) -> None:
    """A stop asked while waiting out an outage ends the run at once, with no further request."""
    stop = threading.Event()
    wait = FakeWait(clock, stop, stop_after=1)
    scheduler = Scheduler("sched", "jobs", s3_client=aws, clock=clock, sleep=clock.advance)
    calls = fail_first(aws, "ListObjectsV2", 100, server_error())

    run_until_stopped(scheduler, 10, stop, wait=wait)

    assert (wait.waits, len(calls)) == ([FIRST_RETRY], 1)


def test_errors_that_are_not_s3_errors_propagate(aws: Any, clock: Clock) -> None:
    """A bug is not an outage: anything but a botocore error ends the run with its exception."""
    stop = threading.Event()
    scheduler = Scheduler("sched", "jobs", s3_client=aws, clock=clock, sleep=clock.advance)
    fail_first(aws, "ListObjectsV2", 1, RuntimeError("a bug"))

    with pytest.raises(RuntimeError, match="a bug"):
        run_until_stopped(scheduler, 10, stop, wait=FakeWait(clock, stop, stop_after=5))


def test_one_line_keeps_an_error_on_one_line() -> None:
    """The default description of an error is its type and message with the line breaks folded."""
    assert one_line(server_error()) == (
        "ClientError: An error occurred (InternalError) when calling the ListObjectsV2 operation:"
        " We encountered an internal error"
    )


# signals ---------------------------------------------------------------------------------


def test_stop_on_signals_sets_the_event_on_sigterm_and_restores_the_handler() -> None:
    """Inside the block SIGTERM sets the event instead of ending the process; after it, the old handler is back."""
    previous = signal.getsignal(signal.SIGTERM)

    with stop_on_signals(threading.Event()) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        stopped = stop.wait(30)

    assert stopped
    assert signal.getsignal(signal.SIGTERM) is previous


class SignalOnWait(threading.Event):
    """An event whose first wait sends this process SIGTERM, once a handler other than ``previous`` is set."""

    def __init__(self, previous: Any) -> None:
        super().__init__()
        self.previous = previous
        self.sent = False

    def wait(self, timeout: float | None = None) -> bool:
        if not self.sent:
            self.sent = True
            if signal.getsignal(signal.SIGTERM) is self.previous:  # no handler: fail instead of killing pytest
                return True
            os.kill(os.getpid(), signal.SIGTERM)
        return super().wait(timeout)


def test_wait_for_stop_signal_returns_on_sigterm() -> None:
    """The demo's wait (and any other) ends on SIGTERM, which sets the event, and restores the handler."""
    previous = signal.getsignal(signal.SIGTERM)
    stop = SignalOnWait(previous)

    wait_for_stop_signal(stop)

    assert stop.sent
    assert stop.is_set()
    assert signal.getsignal(signal.SIGTERM) is previous


# one shard's loop: ShardRun ----------------------------------------------------------------------------------------


@pytest.fixture
def spread(aws: Any, clock: Clock) -> dict[str, str]:
    """Due events in shards 0, 1 and 2 of 3, under the unsharded prefix and in shard 5 of 8: each target by label."""
    past = T0 - timedelta(seconds=1)
    targets = {str(shard): key for shard, key in targets_by_shard("target", 3).items()}
    for key in targets.values():
        Scheduler("sched", "jobs", s3_client=aws, clock=clock, shards=3).schedule(past, "target", key, key)
    targets["unsharded"] = "unsharded"
    Scheduler("sched", "jobs", s3_client=aws, clock=clock).schedule(past, "target", "unsharded", "u")
    targets["5"] = targets_by_shard("target", 8, "beyond")[5]
    Scheduler("sched", "jobs", s3_client=aws, clock=clock, shards=8).schedule(past, "target", targets["5"], "b")
    return targets


def test_a_shard_run_delivers_its_shard_alone(aws: Any, clock: Clock, spread: dict[str, str]) -> None:
    """ShardRun of shard 1 (no strays) delivers shard 1's events, and neither the other shards nor the strays."""
    scheduler = Scheduler("sched", "jobs", s3_client=aws, clock=clock, shards=3)

    report = ShardRun(scheduler, "jobs", 1).handle(until=T0)

    assert [event.path for event in report.delivered] == [spread["1"]]
    assert keys(aws, "target") == [spread["1"]]


def test_the_first_shard_run_also_delivers_the_strays(aws: Any, clock: Clock, spread: dict[str, str]) -> None:
    """ShardRun of shard 0 with strays delivers shard 0, the unsharded prefix and shard 5 (numbered 3 or more),
    side by side, calling on_delivery one call at a time; the report has each place's; each stray's scheduler is
    made once, however many windows."""
    scheduler = Scheduler("sched", "jobs", s3_client=aws, clock=clock, shards=3)
    made: list[str] = []

    def strays(path: str) -> Scheduler:
        made.append(path)
        return Scheduler("sched", path, s3_client=aws, clock=clock)

    calls = threading.Lock()
    overlapping: list[str] = []
    delivered: list[str] = []

    def on_delivery(event: ScheduledEvent, lateness: float) -> None:
        if not calls.acquire(blocking=False):
            overlapping.append(event.path)
            return
        try:
            delivered.append(event.path)
        finally:
            calls.release()

    run = ShardRun(scheduler, "jobs", 0, strays=strays)
    report = run.handle(until=T0, on_delivery=on_delivery)
    Scheduler("sched", "jobs", s3_client=aws, clock=clock).schedule(T0, "target", "again", "a")
    again = run.handle(until=T0)

    assert sorted(delivered) == sorted([spread["0"], "unsharded", spread["5"]])
    assert overlapping == []
    assert report.shards is not None
    assert {label: len(part.delivered) for label, part in report.shards.items()} == {"0": 1, "unsharded": 1, "5": 1}
    assert len(report.delivered) == 3
    assert [event.path for event in again.delivered] == ["again"]
    assert sorted(made) == ["jobs", "jobs/5"]
    assert sorted(keys(aws, "target")) == sorted([spread["0"], "unsharded", spread["5"], "again"])


def test_a_stray_places_error_is_raised_once_the_shard_is_done(aws: Any, clock: Clock, spread: dict[str, str]) -> None:
    """When a stray place's run fails, the shard's own run still delivers, then the error is raised (the run loop
    retries it next window)."""
    scheduler = Scheduler("sched", "jobs", s3_client=aws, clock=clock, shards=3)
    broken = Scheduler("no-such-bucket", "jobs", s3_client=aws, clock=clock)

    with pytest.raises(ClientError):
        ShardRun(scheduler, "jobs", 0, strays=lambda path: broken).handle(until=T0)

    assert keys(aws, "target") == [spread["0"]]


def test_a_shard_run_of_a_shard_out_of_range_is_refused(aws: Any) -> None:
    """ShardRun takes a shard from 0 to shards - 1 only."""
    scheduler = Scheduler("sched", "jobs", s3_client=aws, shards=3)

    with pytest.raises(ValueError, match="shard must be from 0 to 2, not 3"):
        ShardRun(scheduler, "jobs", 3)


def test_shards_found_lists_the_places_and_needs_shards(aws: Any, clock: Clock, spread: dict[str, str]) -> None:
    """Scheduler.shards_found returns every shard found, whatever its number, and whether the unsharded prefix holds
    anything; a scheduler without shards refuses it (it never looks for shards)."""
    found = Scheduler("sched", "jobs", s3_client=aws, shards=3).shards_found()

    assert (found.shards, found.unsharded) == ((0, 1, 2, 5), True)
    with pytest.raises(ValueError, match="shards_found needs a scheduler with shards"):
        Scheduler("sched", "jobs", s3_client=aws).shards_found()
