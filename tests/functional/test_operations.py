"""Operating a schedule: pending, cancel, reschedule, handle(until=, timeout=) and its report."""

from __future__ import annotations

import itertools
import json
import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from botocore.exceptions import ClientError

from s3_scheduler import (
    EventNotPendingError,
    HandleReport,
    InvalidKeyError,
    RunInProgressError,
    ScheduledEvent,
    Scheduler,
)

from ..conftest import S3, T0, Clock, honours_if_match_on_delete, pooled_client

UTC = timezone.utc


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def once(action: Callable[[], Any]) -> Callable[..., None]:
    """A botocore event handler that runs ``action`` the first time only."""
    done: list[bool] = []

    def handler(**_: Any) -> None:
        if not done:
            done.append(True)
            action()

    return handler


def sleeper(clock: Clock) -> Callable[[float], None]:
    """A sleep that moves the injected clock instead of waiting."""
    return lambda delay: clock.advance(delay)


# pending -------------------------------------------------------------------------------


def test_pending_lists_events_in_time_order_from_names_alone(s3: S3, clock: Clock) -> None:
    """pending() yields ScheduledEvents in time order, reading no object."""
    scheduler = s3.scheduler(clock=clock)
    plus_two = timezone(timedelta(hours=2))
    scheduler.schedule(T0 + seconds(30), s3.target_bucket, "b", "x")
    scheduler.schedule(datetime(2026, 11, 27, 14, 0, 10, tzinfo=plus_two), s3.target_bucket, "a", "x")
    scheduler.schedule((T0 + seconds(20)).replace(tzinfo=None), s3.target_bucket, "dir/c", "x")
    s3.counter.calls.clear()

    events = list(scheduler.pending())

    assert [(e.path, e.when) for e in events] == [
        ("a", T0 + seconds(10)),
        ("dir/c", T0 + seconds(20)),
        ("b", T0 + seconds(30)),
    ]
    assert all(e.when.tzinfo is UTC and e.bucket == s3.target_bucket for e in events)
    assert dict(s3.counter.calls) == {"ListObjectsV2": 1}


@pytest.mark.slow
def test_pending_until_over_5000_events_stops_after_the_first_page(s3: S3, clock: Clock) -> None:
    """pending(until=) over 5,000 events reads only the page it needs, and one LIST of the T names of the day
    14 h ahead, which that page does not reach."""
    scheduler = s3.scheduler(clock=clock)
    s3.seed(scheduler, ((T0 + timedelta(minutes=i + 1), s3.target_bucket, f"e/{i}", "x") for i in range(5000)))
    s3.counter.calls.clear()

    events = list(scheduler.pending(until=T0 + timedelta(hours=1)))

    assert len(events) == 60
    assert events[-1].when == T0 + timedelta(hours=1)
    assert s3.counter.lists == 2
    s3.counter.calls.clear()
    assert sum(1 for _ in scheduler.pending()) == 5000
    assert s3.counter.lists == 5


def test_pending_is_lazy(s3: S3, clock: Clock) -> None:
    """Taking the first events of pending() reads one page, not the whole prefix."""
    scheduler = s3.scheduler(clock=clock)
    s3.seed(scheduler, ((T0 + timedelta(minutes=i), s3.target_bucket, f"e/{i}", "x") for i in range(1500)))
    s3.counter.calls.clear()

    first = list(itertools.islice(scheduler.pending(), 3))

    assert [e.path for e in first] == ["e/0", "e/1", "e/2"]
    assert s3.counter.lists == 1


def test_pending_passes_over_names_that_are_not_events(s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """Stray names are not yielded, not warned and not touched."""
    s3.client.put_object(Bucket=s3.schedule_bucket, Key="jobs/|not-a-time|b|k", Body=b"")
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        events = list(scheduler.pending())

    assert [e.key for e in events] == [key]
    assert caplog.records == []
    assert len(s3.keys(s3.schedule_bucket)) == 2


def test_pending_until_takes_naive_as_utc_and_checks_its_type(s3: S3, clock: Clock) -> None:
    """A naive until means UTC; a non-datetime until raises TypeError at once."""
    scheduler = s3.scheduler(clock=clock)
    scheduler.schedule(T0 + seconds(10), s3.target_bucket, "in", "x")
    scheduler.schedule(T0 + seconds(20), s3.target_bucket, "out", "x")

    assert [e.path for e in scheduler.pending(until=(T0 + seconds(10)).replace(tzinfo=None))] == ["in"]
    with pytest.raises(TypeError, match="until must be a datetime"):
        scheduler.pending(until="soon")  # type: ignore[arg-type]


# cancel --------------------------------------------------------------------------------


def test_cancel_removes_a_pending_event_once(s3: S3, clock: Clock) -> None:
    """cancel() is True when it removed the event, False the second time."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0 + seconds(60), s3.target_bucket, "k", "x")

    assert scheduler.cancel(key) is True
    assert scheduler.cancel(key) is False
    assert s3.keys(s3.schedule_bucket) == []


def test_cancel_of_a_delivered_event_is_false(s3: S3, clock: Clock) -> None:
    """An event already delivered cannot be cancelled."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")
    scheduler.handle()

    assert scheduler.cancel(key) is False
    assert s3.keys(s3.target_bucket) == ["k"]


def test_cancel_of_a_key_never_scheduled_is_false(s3: S3) -> None:
    """A well-formed key that was never written answers False."""
    key = s3.scheduler().prefix + "2030-01-01%2000%3A00%3A00%2B00%3A00|b|k"

    assert s3.scheduler().cancel(key) is False


def test_cancel_refuses_keys_of_other_schedulers(s3: S3) -> None:
    """cancel() only removes events of its own prefix: anything else is InvalidKeyError."""
    other = s3.scheduler("jobs-archive").schedule(T0, s3.target_bucket, "k", "x")

    with pytest.raises(InvalidKeyError):
        s3.scheduler("jobs").cancel(other)
    assert s3.keys(s3.schedule_bucket) == [other]


def test_cancel_lets_other_s3_errors_raise(s3: S3) -> None:
    """A missing bucket is an error to raise, not an answer."""
    scheduler = Scheduler("no-such-bucket", "jobs", s3.resource, s3.client)

    with pytest.raises(ClientError):
        scheduler.cancel("jobs/|2030-01-01%2000%3A00%3A00%2B00%3A00|b|k")


def test_stop_keeps_its_0_0_3_meaning(s3: S3) -> None:
    """stop() is True for a missing key, where cancel() is False."""
    scheduler = s3.scheduler()
    key = scheduler.prefix + "2030-01-01%2000%3A00%3A00%2B00%3A00|b|k"

    assert scheduler.stop(key) is True
    assert scheduler.cancel(key) is False


@pytest.mark.parametrize(
    "moment", ["before-call.s3.CopyObject", "after-call.s3.CopyObject", "before-call.s3.DeleteObjects"]
)
def test_cancel_during_a_delivery_never_loses_the_event(s3: S3, clock: Clock, moment: str) -> None:
    """cancel() run at each step of a delivery: the event was delivered or cancel() said True."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")
    answers: list[bool] = []
    s3.client.meta.events.register(moment, once(lambda: answers.append(scheduler.cancel(key))))

    scheduler.handle()

    delivered = s3.keys(s3.target_bucket) == ["k"]
    assert len(answers) == 1
    assert delivered or answers[0]
    assert s3.keys(s3.schedule_bucket) == []


def test_a_delivery_between_cancels_look_and_delete_makes_cancel_false(s3: S3, clock: Clock) -> None:
    """If handle() delivers after cancel() found the event, the conditional delete answers False."""
    if not honours_if_match_on_delete(s3.client, s3.schedule_bucket):
        pytest.skip("this moto ignores If-Match on DELETE; cancel() then answers as its docstring says")
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")
    s3.client.meta.events.register("after-call.s3.HeadObject", once(scheduler.handle))

    answer = scheduler.cancel(key)

    assert answer is False
    assert s3.body(s3.target_bucket, "k") == b"x"


def test_cancel_racing_handle_in_threads_never_loses_an_event(s3: S3, clock: Clock) -> None:
    """40 events cancelled while handle() delivers them: each was delivered or cancel() said True."""
    scheduler = s3.scheduler(clock=clock)
    keys = [scheduler.schedule(T0 - seconds(i), s3.target_bucket, f"t/{i}", "x") for i in range(40)]
    answers: dict[str, bool] = {}
    # handle() delivers the oldest first; cancel from the newest, to meet in the middle.
    canceller = threading.Thread(target=lambda: answers.update((key, scheduler.cancel(key)) for key in keys))
    s3.client.meta.events.register("after-call.s3.ListObjectsV2", once(canceller.start))

    report = scheduler.handle()
    canceller.join()

    delivered = set(s3.keys(s3.target_bucket))
    lost = [k for i, k in enumerate(keys) if f"t/{i}" not in delivered and not answers[k]]
    assert lost == []
    assert report.failed == []
    assert len(report.delivered) + len(report.vanished) == 40
    assert s3.keys(s3.schedule_bucket) == []


def test_an_event_cancelled_before_its_copy_is_vanished_not_failed(
    s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """An event removed between the listing and its copy is reported as vanished, not warned."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")
    s3.client.meta.events.register("after-call.s3.ListObjectsV2", once(lambda: scheduler.cancel(key)))

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        report = scheduler.handle()

    assert [e.key for e in report.vanished] == [key]
    assert report.failed == []
    assert caplog.records == []
    assert s3.keys(s3.target_bucket) == []


# reschedule ----------------------------------------------------------------------------


def test_reschedule_moves_an_event_and_keeps_its_content(s3: S3, clock: Clock) -> None:
    """The event gets a new key and time, same target and content; the old key is gone."""
    scheduler = s3.scheduler(clock=clock)
    old = scheduler.schedule(T0 + seconds(60), s3.target_bucket, "dir/k", b"\x00payload")

    new = scheduler.reschedule(old, T0 + timedelta(hours=2))

    assert new != old
    assert list(scheduler.pending()) == [ScheduledEvent(new, T0 + timedelta(hours=2), s3.target_bucket, "dir/k")]
    assert s3.body(s3.schedule_bucket, new) == b"\x00payload"


def test_reschedule_writes_the_new_event_before_removing_the_old(s3: S3, clock: Clock) -> None:
    """The write of the new key comes before the delete of the old: never in neither place."""
    scheduler = s3.scheduler(clock=clock)
    old = scheduler.schedule(T0 + seconds(60), s3.target_bucket, "k", "x")
    order: list[str] = []
    for name in ("PutObject", "DeleteObject"):
        s3.client.meta.events.register(
            f"before-parameter-build.s3.{name}",
            lambda params, name=name, **_: order.append(name) if "lease" not in params["Key"] else None,
        )

    scheduler.reschedule(old, T0 + seconds(120))

    assert order == ["PutObject", "DeleteObject"]


def test_reschedule_of_a_missing_event_raises_and_creates_nothing(s3: S3, clock: Clock) -> None:
    """A key no longer pending raises EventNotPendingError, a LookupError; nothing is written."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")
    scheduler.handle()

    with pytest.raises(EventNotPendingError, match="no longer pending") as raised:
        scheduler.reschedule(key, T0 + timedelta(hours=1))

    assert isinstance(raised.value, LookupError)
    assert s3.keys(s3.schedule_bucket) == []


def test_reschedule_racing_a_delivery_takes_back_its_copy(s3: S3, clock: Clock) -> None:
    """Without the lease, if handle() delivers the old event mid-move, reschedule raises and leaves no new event."""
    scheduler = s3.scheduler(clock=clock, exclusive=False)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")
    s3.client.meta.events.register("after-call.s3.PutObject", once(scheduler.handle))

    with pytest.raises(EventNotPendingError):
        scheduler.reschedule(key, T0 + timedelta(hours=1))

    assert s3.keys(s3.schedule_bucket) == []
    assert s3.keys(s3.target_bucket) == ["k"]


def test_a_run_during_a_leased_move_delivers_nothing_and_the_event_moves(s3: S3, clock: Clock) -> None:
    """With the lease, a run started mid-move of a due event is deferred; the event moves, delivered by no one."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")
    during: list[Any] = []

    def run_meanwhile(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == key and not during:  # the new name is written; the old one is next
            during.append(scheduler.handle())

    s3.client.meta.events.register("before-parameter-build.s3.DeleteObject", run_meanwhile)

    new = scheduler.reschedule(key, T0 + timedelta(hours=1))

    assert during[0].delivered == []
    assert [e.key for e in during[0].deferred] == [key]
    assert s3.keys(s3.schedule_bucket) == [new]
    assert s3.keys(s3.target_bucket) == []


def test_a_reschedule_while_a_run_holds_the_lease_raises_and_changes_nothing(s3: S3, clock: Clock) -> None:
    """A due event cannot be moved while a run holds the lease (it may be delivering it): RunInProgressError."""
    waits: list[float] = []
    scheduler = s3.scheduler(clock=clock, sleep=waits.append, lease_ttl=timedelta(seconds=10))
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")
    running = s3.scheduler(clock=clock)._lease.acquire(T0)  # a run that holds the lease
    assert running.run is not None

    with pytest.raises(RunInProgressError, match="try again"):
        scheduler.reschedule(key, T0 + timedelta(days=1))

    assert waits == [1.0] * 10
    assert sorted(s3.keys(s3.schedule_bucket)) == sorted([key, "jobs/.lease"])


def test_reschedule_to_the_same_time_keeps_the_key(s3: S3, clock: Clock) -> None:
    """Rescheduling to the time it already has returns the same key and writes nothing."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")

    assert scheduler.reschedule(key, T0.replace(tzinfo=None)) == key
    assert s3.counter.calls["CopyObject"] == 0
    scheduler.cancel(key)
    with pytest.raises(EventNotPendingError):
        scheduler.reschedule(key, T0)


def test_reschedule_checks_its_arguments(s3: S3) -> None:
    """A bad time is TypeError; a key that is not an event is InvalidKeyError."""
    scheduler = s3.scheduler()
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")

    with pytest.raises(TypeError, match="when must be a datetime"):
        scheduler.reschedule(key, "tomorrow")  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        scheduler.reschedule("jobs/|garbage", T0)


# handle(until=, timeout=) and the report -------------------------------------------------


def test_handle_until_delivers_each_event_at_its_own_second(s3: S3, clock: Clock) -> None:
    """Events due 10, 20 and 30 s ahead are each delivered within 1 s of their time."""
    scheduler = s3.scheduler(clock=clock, sleep=sleeper(clock))
    due = {f"t{n}": T0 + seconds(n) for n in (10, 20, 30)}
    for target, when in due.items():
        scheduler.schedule(when, s3.target_bucket, target, target)
    copied_at: dict[str, datetime] = {}
    s3.client.meta.events.register(
        "before-parameter-build.s3.CopyObject", lambda params, **_: copied_at.setdefault(params["Key"], clock.now)
    )

    report = scheduler.handle(until=T0 + seconds(60))

    assert [e.path for e in report.delivered] == ["t10", "t20", "t30"]
    for target, when in due.items():
        assert timedelta(0) <= copied_at[target] - when <= seconds(1)
    assert clock.now < T0 + seconds(31)


def test_handle_until_leaves_later_events_pending(s3: S3, clock: Clock) -> None:
    """An event due after until stays for a later run."""
    scheduler = s3.scheduler(clock=clock, sleep=sleeper(clock))
    later = scheduler.schedule(T0 + seconds(90), s3.target_bucket, "later", "x")
    scheduler.schedule(T0 + seconds(30), s3.target_bucket, "soon", "x")

    report = scheduler.handle(until=T0 + seconds(60))

    assert [e.path for e in report.delivered] == ["soon"]
    assert s3.keys(s3.schedule_bucket) == [later]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"until": T0 + timedelta(minutes=15, seconds=1)}, ValueError, "at most 0:15:00"),
        ({"until": "soon"}, TypeError, "until must be a datetime"),
        ({"timeout": -1}, ValueError, "zero or more"),
        ({"timeout": float("nan")}, ValueError, "zero or more"),
        ({"timeout": "5"}, TypeError, "number of seconds"),
    ],
)
def test_handle_checks_its_options_before_any_request(
    s3: S3, clock: Clock, options: dict[str, Any], error: type, message: str
) -> None:
    """Bad until or timeout raise, naming the allowed form, and send nothing."""
    scheduler = s3.scheduler(clock=clock)
    s3.counter.calls.clear()

    with pytest.raises(error, match=message):
        scheduler.handle(**options)

    assert s3.counter.total == 0


def test_timeout_defers_what_has_not_started(clock: Clock) -> None:
    """No delivery starts after the timeout; the rest stay pending, counted as deferred."""
    with pooled_client(1) as client:
        scheduler = Scheduler("sched", "jobs", s3_client=client, clock=clock)
        keys = [scheduler.schedule(T0 - seconds(10 - i), "target", f"t{i}", "x") for i in range(5)]
        client.meta.events.register("after-call.s3.CopyObject", lambda **_: clock.advance(10))

        report = scheduler.handle(timeout=25)

        assert [e.path for e in report.delivered] == ["t0", "t1", "t2"]
        assert [e.key for e in report.deferred] == keys[3:]
        remaining = [o["Key"] for o in client.list_objects_v2(Bucket="sched")["Contents"]]
        assert remaining == keys[3:]


def test_timeout_defers_events_due_after_it_without_waiting(s3: S3, clock: Clock) -> None:
    """With until, an event due after the timeout is deferred at once, not waited for."""
    waits: list[float] = []

    def sleep(delay: float) -> None:
        waits.append(delay)
        clock.advance(delay)

    scheduler = s3.scheduler(clock=clock, sleep=sleep)
    scheduler.schedule(T0 + seconds(5), s3.target_bucket, "in-time", "x")
    late = scheduler.schedule(T0 + seconds(50), s3.target_bucket, "too-late", "x")

    report = scheduler.handle(until=T0 + seconds(60), timeout=30)

    assert [e.path for e in report.delivered] == ["in-time"]
    assert [e.key for e in report.deferred] == [late]
    assert waits == [5.0]


def test_handle_report_counts_every_outcome(s3: S3, clock: Clock) -> None:
    """delivered, failed and skipped are reported; to_dict is JSON-ready; repr is one line."""
    s3.client.put_object(Bucket=s3.schedule_bucket, Key="jobs/|2000-13-40|b|k", Body=b"")
    scheduler = s3.scheduler(clock=clock)
    good = scheduler.schedule(T0 - seconds(2), s3.target_bucket, "good", "x")
    bad = scheduler.schedule(T0 - seconds(1), "no-such-bucket", "bad", "x")

    report = scheduler.handle()

    assert isinstance(report, HandleReport)
    assert [e.key for e in report.delivered] == [good]
    assert [f.event.key for f in report.failed] == [bad]
    assert report.skipped == ["jobs/|2000-13-40|b|k"]
    assert report.deferred == []
    assert not report.ok
    assert repr(report) == (
        "HandleReport(delivered=1, failed=1, skipped=1, deferred=0, vanished=0, rejected=0, dead_lettered=0, expired=0)"
    )
    data = json.loads(json.dumps(report.to_dict()))
    assert data["delivered"][0] == {
        "key": good,
        "when": "2026-11-27T11:59:58+00:00",
        "bucket": s3.target_bucket,
        "path": "good",
    }
    assert data["failed"][0]["error"].startswith("NoSuchBucket: ")
    assert data["skipped"] == ["jobs/|2000-13-40|b|k"]


def test_each_delivery_and_the_run_are_logged_at_info(s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """One INFO line per delivery with key, target and lateness, and one summary line."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0 - seconds(3), s3.target_bucket, "out", "secret-body")

    with caplog.at_level(logging.INFO, logger="s3_scheduler"):
        scheduler.handle()

    messages = [r.getMessage() for r in caplog.records if r.name.startswith("s3_scheduler")]
    delivered = [m for m in messages if m.startswith("Delivered")]
    assert delivered == [f"Delivered {key!r} to 's3://{s3.target_bucket}/out', 3.000 s late"]
    assert [m for m in messages if m.startswith("Handled")] == [
        f"Handled 's3://{s3.schedule_bucket}/jobs/|': delivered=1 failed=0 skipped=0 deferred=0 vanished=0"
        " rejected=0 dead_lettered=0 expired=0"
    ]
    assert "secret-body" not in caplog.text


def test_a_handle_with_no_arguments_still_works_as_in_0_0_3(s3: S3, clock: Clock) -> None:
    """handle() with no arguments delivers what is due now and nothing later, never sleeping."""
    scheduler = s3.scheduler(clock=clock, sleep=lambda _: pytest.fail("handle() slept"))
    scheduler.schedule(T0, s3.target_bucket, "now", "x")
    scheduler.schedule(T0 + seconds(1), s3.target_bucket, "later", "x")

    report = scheduler.handle()

    assert [e.path for e in report.delivered] == ["now"]
