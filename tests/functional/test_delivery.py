"""The delivery pipeline at the floor (issue 10): two requests per event, delivery before
the listing ends, flat memory, the look-ahead switch, bulk scheduling, adaptive width."""

from __future__ import annotations

import logging
import threading
import time
import tracemalloc
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from s3_scheduler import ScheduleManyError, Scheduler, delivery
from s3_scheduler._s3 import fast_client
from s3_scheduler.delivery import _Limit
from s3_scheduler.outcomes import Due
from s3_scheduler.report import ScheduledEvent

from ..conftest import S3, T0, Clock


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def count_sends(client: Any) -> Counter[str]:
    """Count every request that leaves the client (retries included), by operation."""
    sent: Counter[str] = Counter()

    def on_send(event_name: str, **_: Any) -> None:
        sent[event_name.rsplit(".", 1)[-1]] += 1

    client.meta.events.register_first("before-send.s3", on_send)
    return sent


def seed(s3: S3, scheduler: Scheduler, count: int, start: datetime, step: timedelta, prefix: str) -> list[str]:
    return s3.seed(scheduler, ((start + step * i, s3.target_bucket, f"{prefix}/{i:05d}", str(i)) for i in range(count)))


@pytest.mark.slow
def test_a_run_costs_two_requests_per_delivered_event(s3: S3, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 due events: one COPY each, one DeleteObjects per 100, one LIST, the lease: at most 1.02 per event."""
    monkeypatch.setattr(delivery, "DELETE_FLUSH_SECONDS", 600.0)  # a batch is sent full, not early, however slow
    scheduler = s3.scheduler(clock=clock)
    seed(s3, scheduler, 1000, T0 - seconds(1000), seconds(1), "due")
    sent = count_sends(s3.client)

    report = scheduler.handle()

    total = sum(sent.values())
    assert len(report.delivered) == 1000
    assert sent["CopyObject"] == 1000
    assert sent["DeleteObjects"] == 10
    assert total / 1000 <= 1.02, dict(sent)
    assert s3.keys(s3.schedule_bucket) == []


@pytest.mark.slow
def test_delivery_starts_before_the_listing_ends(s3: S3, clock: Clock) -> None:
    """While the second LIST page is being asked for, a copy has already been made."""
    scheduler = s3.scheduler(clock=clock)
    seed(s3, scheduler, 1100, T0 - seconds(1100), seconds(1), "due")
    copies: list[str] = []
    s3.client.meta.events.register("after-call.s3.CopyObject", lambda **_: copies.append("copy"))
    seen_at_second_page: list[int] = []

    def second_page(params: dict[str, Any], **_: Any) -> None:
        if params.get("ContinuationToken") and not seen_at_second_page:
            deadline = time.monotonic() + 20
            while not copies and time.monotonic() < deadline:  # a copy must come while this page waits
                time.sleep(0.01)
            seen_at_second_page.append(len(copies))

    s3.client.meta.events.register("before-parameter-build.s3.ListObjectsV2", second_page)

    report = scheduler.handle()

    assert seen_at_second_page
    assert seen_at_second_page[0] >= 1
    assert len(report.delivered) == 1100


class EndlessS3:
    """A stand-in client that lists ``due`` events generated on the fly and stores nothing,
    so that tracemalloc sees only what the scheduler itself holds."""

    def __init__(self, due: int) -> None:
        self.due = due
        self.copies = 0
        self.deleted = 0
        self.lock = threading.Lock()
        self.meta = None

    def get_paginator(self, name: str) -> Any:
        return self

    def paginate(self, Bucket: str, Prefix: str, **_: Any) -> Any:
        if Prefix != "jobs/|":  # the series markers: none
            yield {"Contents": []}
            return
        for start in range(0, self.due, 1000):
            yield {"Contents": [{"Key": self.key(i), "ETag": '"e"'} for i in range(start, min(start + 1000, self.due))]}

    @staticmethod
    def key(i: int) -> str:
        when = quote(str(T0 - timedelta(seconds=100_000 - i)))
        return f"jobs/|{when}|target|out/{i:06d}"

    def copy_object(self, **_: Any) -> dict[str, Any]:
        with self.lock:
            self.copies += 1
        return {}

    def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.deleted += len(Delete["Objects"])
        return {}

    def put_object(self, **_: Any) -> dict[str, Any]:
        return {"ETag": '"lease"'}

    def delete_object(self, **_: Any) -> dict[str, Any]:
        return {}


@pytest.mark.slow
def test_memory_stays_flat_however_many_events_are_due(clock: Clock) -> None:
    """20,000 due events: the run's traced peak stays under 10 MiB (the old window list alone took ~40 MiB)."""
    fake = EndlessS3(20_000)
    scheduler = Scheduler("sched", "jobs", s3_client=fake, clock=clock)

    tracemalloc.start()
    try:
        report = scheduler.handle()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert fake.copies == fake.deleted == len(report.delivered) == 20_000
    assert peak < 10 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_without_legacy_offsets_a_dense_future_costs_two_lists_of_events(s3: S3) -> None:
    """2,000 events in the next 12 h and 100 due: 3 LISTs with the 14 h look-ahead; without it, one page and one
    LIST of the names with a ``T`` of the day (two such LISTs when now + 14 h is the next day), and the run's
    one LIST of the series markers of the due page."""
    clock = Clock(T0.replace(hour=5))
    seeder = s3.scheduler(clock=clock)
    seed(s3, seeder, 2000, clock.now + seconds(20), seconds(21), "later")
    seed(s3, seeder, 100, clock.now - seconds(100), seconds(1), "due")

    s3.counter.calls.clear()
    legacy = s3.scheduler(clock=clock, exclusive=False).pending(until=clock.now)
    assert len(list(legacy)) == 100
    with_lookahead = s3.counter.lists
    s3.counter.calls.clear()
    report = s3.scheduler(clock=clock, legacy_offsets=False).handle()

    assert with_lookahead == 3
    assert s3.counter.lists == 3
    assert len(report.delivered) == 100


def test_a_plus_14_key_of_0_0_3_is_delivered_on_time_by_default(s3: S3, clock: Clock) -> None:
    """A key 0.0.3 wrote with +14:00, due now, is read by default and not with legacy_offsets=False."""
    kiribati = timezone(timedelta(hours=14))
    key = f"jobs/|{quote(str(T0.astimezone(kiribati)))}|{s3.target_bucket}|k"
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=key, Body=b"x")

    strict = s3.scheduler(clock=clock, legacy_offsets=False)
    assert strict.handle().delivered == []
    assert strict.check().offset_keys == [key]
    report = s3.scheduler(clock=clock).handle()

    assert [e.key for e in report.delivered] == [key]


def test_schedule_many_returns_keys_in_order(s3: S3, clock: Clock) -> None:
    """Each event is written, its key returned in the order given."""
    scheduler = s3.scheduler(clock=clock)
    events = [(T0 + seconds(i), s3.target_bucket, f"k{i}", f"c{i}") for i in range(30)]

    keys = scheduler.schedule_many(events)

    assert [scheduler.schedule(w, b, p, c) for w, b, p, c in events] == keys
    assert s3.body(s3.schedule_bucket, keys[7]) == b"c7"


def test_schedule_many_checks_every_event_before_any_request(s3: S3, clock: Clock) -> None:
    """One bad event (or two events with one name) raises before anything is written."""
    scheduler = s3.scheduler(clock=clock)
    before = s3.counter.total

    with pytest.raises(ValueError, match="event 2 of the batch"):
        scheduler.schedule_many(
            [(T0, s3.target_bucket, "a", "x"), (T0, s3.target_bucket, "b", "x"), (T0, "", "c", "x")]
        )
    with pytest.raises(ValueError, match="events 0 and 1"):
        scheduler.schedule_many([(T0, s3.target_bucket, "a", "x"), (T0, s3.target_bucket, "a", "y")])

    assert s3.counter.total == before
    assert s3.keys(s3.schedule_bucket) == []


def test_schedule_many_reports_the_failures_and_keeps_what_was_written(s3: S3, clock: Clock) -> None:
    """A write that fails is listed in ScheduleManyError; the others stay written."""
    scheduler = s3.scheduler(clock=clock)

    def refuse(params: dict[str, Any], **_: Any) -> None:
        if params["Key"].endswith("|bad"):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "PutObject")

    s3.client.meta.events.register("before-parameter-build.s3.PutObject", refuse)

    with pytest.raises(ScheduleManyError) as raised:
        scheduler.schedule_many([(T0, s3.target_bucket, n, "x") for n in ("a", "bad", "c")])

    assert [index for index, _ in raised.value.failures] == [1]
    assert raised.value.keys[1] is None
    assert sorted(s3.keys(s3.schedule_bucket)) == sorted(k for k in raised.value.keys if k)
    assert "1 of 3 events were not written" in str(raised.value)


def test_schedule_accepts_a_timedelta_from_now(s3: S3, clock: Clock) -> None:
    """when may be a timedelta: that long after the scheduler's clock."""
    scheduler = s3.scheduler(clock=clock)

    key = scheduler.schedule(timedelta(minutes=5), s3.target_bucket, "k", "x")

    assert [e.when for e in scheduler.pending()] == [T0 + timedelta(minutes=5)]
    assert key.startswith("jobs/|2026-11-27%2012%3A05%3A00")


def test_the_copy_width_halves_when_s3_asks_to_slow_down_and_grows_back() -> None:
    """SlowDown halves the copies in flight; a run of successes widens them again, one at a time."""
    limit = _Limit(8)
    assert limit.acquire(0)

    limit.release(throttled=True)
    narrowed = limit.limit
    for _ in range(4):
        assert limit.acquire(0)
        limit.release(throttled=False)

    assert narrowed == 4
    assert limit.limit == 5


def test_a_slowdown_in_a_run_narrows_it(s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """A copy refused with SlowDown after botocore's retries fails alone and narrows the run's width."""
    scheduler = s3.scheduler(clock=clock, max_workers=4)
    scheduler.schedule(T0, s3.target_bucket, "slow", "x")

    def slow_down(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow"}}, "CopyObject")

    s3.client.meta.events.register("before-call.s3.CopyObject", slow_down)
    report = scheduler.handle()

    assert len(report.failed) == 1
    assert "2 copies at once" in caplog.text


def test_a_client_the_scheduler_builds_does_not_parse_timestamps(s3: S3) -> None:
    """The scheduler's own client leaves LastModified as text: no request of the scheduler reads it."""
    s3.client.put_object(Bucket=s3.schedule_bucket, Key="x", Body=b"x")

    client = fast_client(16)
    listed = client.list_objects_v2(Bucket=s3.schedule_bucket)["Contents"][0]

    assert isinstance(listed["LastModified"], str)
    assert client.meta.config.max_pool_connections == 16 + 3  # the listing, the batch delete, the lease


def test_a_client_the_scheduler_builds_still_checks_parameters(s3: S3) -> None:
    """stop() given a number deletes no object of that name: the scheduler's own client checks parameters."""
    s3.client.put_object(Bucket=s3.schedule_bucket, Key="123", Body=b"x")
    scheduler = Scheduler(s3.schedule_bucket, "jobs", None, fast_client(4))

    stopped = scheduler.stop(123)

    assert stopped is False
    assert "123" in s3.keys(s3.schedule_bucket)


def test_a_run_leaves_the_client_passed_in_as_it_was(s3: S3, clock: Clock) -> None:
    """After handle() a client passed in still checks parameters and parses timestamps."""
    scheduler = s3.scheduler(clock=clock)
    seed(s3, scheduler, 3, T0 - seconds(3), seconds(1), "due")

    report = scheduler.handle()
    s3.client.put_object(Bucket=s3.schedule_bucket, Key="x", Body=b"x")
    listed = s3.client.list_objects_v2(Bucket=s3.schedule_bucket)["Contents"][0]

    assert len(report.delivered) == 3
    assert isinstance(listed["LastModified"], datetime)
    with pytest.raises(ParamValidationError):  # MaxKeys, unlike Key, is not read by older botocores' endpoint rules
        s3.client.list_objects_v2(Bucket=s3.schedule_bucket, MaxKeys="many")


def test_no_copier_outlives_its_run(s3: S3, clock: Clock) -> None:
    """Once handle() returns, its copier threads end: none is left to hold the process open at its exit."""
    scheduler = s3.scheduler(clock=clock, max_workers=4)
    seed(s3, scheduler, 20, T0 - seconds(20), seconds(1), "due")
    copiers: set[threading.Thread] = set()

    def note_copiers(*_: Any) -> None:
        copiers.update(thread for thread in threading.enumerate() if thread.name.startswith("s3-scheduler-copy"))

    report = scheduler.handle(on_delivery=note_copiers)
    for thread in copiers:
        thread.join(timeout=10)

    assert len(report.delivered) == 20
    assert copiers
    assert [thread.name for thread in copiers if thread.is_alive()] == []


def test_a_copier_says_an_unexpected_error_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    """A copy task that raises (a bug: tasks hand on their own errors) is logged with its key; the copier goes on."""
    copiers = delivery._Copiers(1)
    due = Due(ScheduledEvent.from_key("jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|b|k", "jobs/|"), None)
    done = threading.Event()

    def broken(_: Due) -> None:
        raise RuntimeError("a bug")

    with caplog.at_level(logging.ERROR, logger="s3_scheduler"):
        copiers.start(broken, due)
        copiers.start(lambda _: done.set(), due)
        finished = done.wait(10)
        copiers.shutdown()

    assert finished
    assert "Unexpected error in a copier, delivering 'jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|b|k'" in caplog.text
    assert "RuntimeError: a bug" in caplog.text


def test_few_delivered_events_ever_wait_for_their_delete(s3: S3, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the first DeleteObjects stuck, copied-but-not-deleted events never exceed max_workers + UNDELETED_LIMIT.

    That count is what a run killed at that moment would deliver twice. The first
    DeleteObjects is held until 500 copies have landed, or until the run stops starting
    copies for want of deletes: without that bound, the copies would run on meanwhile.
    """
    workers = 8
    scheduler = s3.scheduler(clock=clock, max_workers=workers)
    seed(s3, scheduler, 800, T0 - seconds(800), seconds(1), "due")
    progress = threading.Condition()
    copied, deleted, worst, stalled = [0], [0], [0], [False]
    sending = threading.local()
    has_room = delivery._Deleter.has_room

    def watch_room(self: Any, timeout: float) -> bool:
        room = has_room(self, timeout)
        if not room:
            with progress:
                stalled[0] = True
                progress.notify_all()
        return room

    monkeypatch.setattr(delivery._Deleter, "has_room", watch_room)

    def after_copy(**_: Any) -> None:
        with progress:
            copied[0] += 1
            worst[0] = max(worst[0], copied[0] - deleted[0])
            progress.notify_all()

    def note_batch(params: dict[str, Any], **_: Any) -> None:
        sending.size = len(params["Delete"]["Objects"])

    def hold_the_first(**_: Any) -> None:
        with progress:
            if deleted[0] == 0:
                progress.wait_for(lambda: copied[0] >= 500 or stalled[0], timeout=60)

    def count_deleted(**_: Any) -> None:  # once the reply is back: until then, each key may be delivered again
        with progress:
            deleted[0] += sending.size

    s3.client.meta.events.register("after-call.s3.CopyObject", after_copy)
    s3.client.meta.events.register("before-parameter-build.s3.DeleteObjects", note_batch)
    s3.client.meta.events.register("before-call.s3.DeleteObjects", hold_the_first)
    s3.client.meta.events.register("after-call.s3.DeleteObjects", count_deleted)

    report = scheduler.handle()

    assert len(report.delivered) == 800
    assert s3.keys(s3.schedule_bucket) == []
    assert worst[0] <= workers + delivery.UNDELETED_LIMIT


def test_events_due_close_together_share_a_batch_delete(s3: S3, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """handle(until=) over 20 events 50 ms apart (closer than DELETE_FLUSH_SECONDS) sends one
    DeleteObjects for them all, not one per wait for the next event (issue 19: client CPU)."""
    monkeypatch.setattr(delivery._Deleter, "__init__", _flushing_after(600.0))
    scheduler = s3.scheduler(clock=clock, sleep=clock.advance)
    seed(s3, scheduler, 20, T0 + seconds(1), seconds(0.05), "dense")
    sent = count_sends(s3.client)

    report = scheduler.handle(until=T0 + seconds(5))

    assert len(report.delivered) == 20
    assert sent["DeleteObjects"] == 1, dict(sent)
    assert s3.keys(s3.schedule_bucket) == []


def test_a_wait_longer_than_the_flush_time_sends_the_batch_first(
    s3: S3, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events 2 s apart (longer than DELETE_FLUSH_SECONDS): each wait for the next event first
    sends the copied events' batch delete, so none waits through the gap for its delete."""
    monkeypatch.setattr(delivery._Deleter, "__init__", _flushing_after(600.0))
    sent = count_sends(s3.client)  # the seeding below sends no copy and no batch delete
    seen_at_each_wait: list[tuple[int, int]] = []

    def sleep(seconds_: float) -> None:
        """Before the fake clock moves on, give the deleter up to 5 s (real) to send what
        the run flushed; then note the copies and batch deletes sent so far."""
        deadline = time.monotonic() + 5.0
        while sent["DeleteObjects"] < sent["CopyObject"] and time.monotonic() < deadline:
            time.sleep(0.005)
        seen_at_each_wait.append((sent["CopyObject"], sent["DeleteObjects"]))
        clock.advance(seconds_)

    scheduler = s3.scheduler(clock=clock, sleep=sleep)
    seed(s3, scheduler, 3, T0 + seconds(1), seconds(2), "sparse")

    report = scheduler.handle(until=T0 + seconds(10))

    assert len(report.delivered) == 3
    assert all(deletes == copies for copies, deletes in seen_at_each_wait), seen_at_each_wait
    assert [copies for copies, _ in seen_at_each_wait][:3] == [0, 1, 2], seen_at_each_wait
    assert sent["DeleteObjects"] == 3, dict(sent)
    assert s3.keys(s3.schedule_bucket) == []


def _flushing_after(seconds_: float) -> Any:
    """A `_Deleter.__init__` whose batches wait ``seconds_`` (real time) before the deleter
    sends them on its own: only a flush, a full batch or the run's end sends them."""
    original = delivery._Deleter.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._flush_after = seconds_

    return init
