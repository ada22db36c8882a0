"""A Lambda invocation never outlives its deadline (issue 17, item 2).

The ready handler runs against moto's server over HTTP with every request slowed down
(400 ms or 1 s, as a distant or loaded S3 answers), and a context whose remaining time
runs out for real: the handler must return before the deadline, every event whose
target it wrote must be deleted or reported as not deleted, and the lease released.
These tests take real time (a few seconds each): the deadline is the runtime's clock.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3_scheduler import Scheduler, _s3, aws_lambda
from s3_scheduler.aws_lambda import LambdaHandler

from ..conftest import S3, Endpoint

EVENTS = 60


class Deadline:
    """A Lambda context whose remaining time runs out ``seconds`` after it is made."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.end - time.monotonic()) * 1000))


@pytest.fixture
def slow_store(moto_endpoint: Endpoint, make_wire: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[S3, list[float]]:
    """moto's server with the handler's settings in the environment; every request the handler's
    clients send is held for the latency the test puts in the returned list."""
    wire: S3 = make_wire(moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint.url)
    monkeypatch.setenv("S3_SCHEDULER_BUCKET", wire.schedule_bucket)
    monkeypatch.setenv("S3_SCHEDULER_METRICS", "0")
    latency: list[float] = [0.0]

    def delay(**_: Any) -> None:
        time.sleep(latency[0])  # the store's latency: real time, as the deadline is

    made = _s3.fast_client

    def slow_client(max_workers: int, *, timeout: float | None = None) -> Any:
        client = made(max_workers, timeout=timeout)
        client.meta.events.register_first("before-send.s3", delay)
        client._s3_scheduler_session.events.register_first("before-send.s3", delay)  # its bounded siblings
        return client

    monkeypatch.setattr(aws_lambda, "fast_client", slow_client)
    return wire, latency


def _schedule(wire: S3) -> None:
    now = datetime.now(timezone.utc)
    Scheduler(wire.schedule_bucket, "jobs", wire.resource, wire.client).schedule_many(
        [(now - timedelta(seconds=30), wire.target_bucket, f"in/{i:03d}", f"event {i}") for i in range(EVENTS)]
    )


def _outcome(wire: S3, report: dict[str, Any]) -> tuple[set[str], set[str], set[str]]:
    """The targets written, the events still pending (by target), and the events reported failed (by target)."""
    written = set(wire.keys(wire.target_bucket))
    pending = {k.rsplit("|", 1)[1].replace("~~", "/") for k in wire.keys(wire.schedule_bucket) if "|" in k}
    failed = {f["key"].rsplit("|", 1)[1].replace("~~", "/") for f in report["failed"]}
    return written, pending, failed


@pytest.mark.parametrize(("seconds", "budget"), [(0.4, 5.0), (1.0, 3.0)])
def test_the_handler_returns_before_its_deadline_with_nothing_unaccounted(
    slow_store: tuple[S3, list[float]], seconds: float, budget: float
) -> None:
    """With every request slow and a few seconds left, the handler returns in time, each target written is
    deleted or reported, and the lease is gone. With 400 ms a request and 5 s left, the lease, a LIST, a COPY,
    the delete and the release (2 s of the store's time) leave 3 s for the client's own work, even on a loaded
    machine: the run must deliver."""
    wire, latency = slow_store
    latency[0] = seconds
    handler = LambdaHandler()
    handler({}, Deadline(60.0))  # a warm container: its client is built, nothing is due
    _schedule(wire)
    context = Deadline(budget)

    report = handler({}, context)

    left = context.get_remaining_time_in_millis()
    assert left > 0, "the handler outlived its deadline"
    written, pending, failed = _outcome(wire, report)
    assert (written & pending) <= failed, "a delivered event is still pending and not reported"
    unfinished = [f for f in report["failed"] if "still on its way" in f["error"]]
    lease = [k for k in wire.keys(wire.schedule_bucket) if k.endswith(".lease")]
    assert not lease or unfinished, "the lease is released unless a copy of the run is still on its way"
    assert len(written) + len(pending - written) >= EVENTS  # nothing lost
    if seconds == 0.4:
        assert report["delivered"], "the lease, a LIST, a COPY, the delete and the release fit in 5 s"


def test_a_bounded_client_gives_up_in_time(moto_endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client the wind-down uses makes one attempt and times out within its bound."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint.url)
    client = _s3.fast_client(4)

    quick = _s3.bounded(client, 0.7)

    config = quick.meta.config
    assert (config.connect_timeout, config.read_timeout) == (0.5, 0.5)
    assert config.retries["total_max_attempts"] == 1
    assert _s3.bounded(client, 0.6) is quick
    assert _s3.bounded(object(), 1.0) is not None


def test_a_refused_batch_delete_falls_back_only_while_time_is_left(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    """DeleteObjects refused near the deadline: the one-by-one deletes stop in time, the keys left are reported."""
    scheduler = s3.scheduler(clock=lambda: datetime.now(timezone.utc))
    now = datetime.now(timezone.utc)
    scheduler.schedule_many([(now - timedelta(seconds=5), s3.target_bucket, f"k/{i}", "x") for i in range(150)])

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "NotImplemented", "Message": "no"}}, "DeleteObjects")

    def slow(**_: Any) -> None:
        time.sleep(0.05)  # a store 50 ms away: real time, as the deadline is

    s3.client.meta.events.register("before-call.s3.DeleteObjects", refuse)
    s3.client.meta.events.register_first("before-send.s3", slow)
    started = time.monotonic()

    report = scheduler.handle(timeout=2.0)

    assert time.monotonic() - started < 2.5
    written = set(s3.keys(s3.target_bucket))
    pending = {k.rsplit("|", 1)[1].replace("~~", "/") for k in s3.keys(s3.schedule_bucket) if "|" in k}
    failed = {f.event.path for f in report.failed}
    assert (written & pending) <= failed
