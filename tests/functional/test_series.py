"""Recurring events on moto in-process: a series is one pending occurrence at a time."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from botocore.exceptions import EndpointConnectionError

from s3_scheduler import ScheduledEvent, Scheduler, keys, occurrences

from ..conftest import FULL_SIZE, S3, T0, Clock, cancel_during_handle

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def scheduler(s3: S3, clock: Clock, **options: Any) -> Scheduler:
    return s3.scheduler(clock=clock, sleep=lambda _: None, **options)


def pending_keys(sched: Scheduler) -> list[str]:
    return [event.key for event in sched.pending()]


def test_a_daily_series_delivers_each_occurrence_and_writes_the_next(s3: S3, clock: Clock) -> None:
    """Each run delivers the due occurrence, with its time in the target's metadata, and
    leaves exactly the next one pending, with the same content, content type and metadata."""
    sched = scheduler(s3, clock)
    start = T0 + timedelta(hours=1)
    key = sched.schedule(
        start, s3.target_bucket, "daily", "hello", repeat="FREQ=DAILY", content_type="text/plain", metadata={"a": "b"}
    )
    assert sched.pending().__next__().when == start
    for day in range(3):
        clock.now = start + timedelta(days=day, seconds=5)
        report = sched.handle()
        assert [e.key for e in report.delivered] == [key]
        head = s3.client.head_object(Bucket=s3.target_bucket, Key="daily")
        assert head["Metadata"][keys.OCCURRENCE_META] == (start + timedelta(days=day)).isoformat()
        assert head["Metadata"]["a"] == "b"
        assert head["ContentType"] == "text/plain"
        (key,) = pending_keys(sched)
        assert sched.pending().__next__().when == start + timedelta(days=day + 1)
        markers = [k for k in s3.keys(s3.schedule_bucket) if "/.series/" in k]
        assert markers == [keys.series_marker(sched.prefix, key)]
    assert s3.body(s3.target_bucket, "daily") == b"hello"


def test_count_ends_the_series(s3: S3, clock: Clock) -> None:
    """COUNT=2: two deliveries, then nothing pending and no marker left."""
    sched = scheduler(s3, clock)
    sched.schedule(T0, s3.target_bucket, "t", "x", repeat="FREQ=HOURLY;COUNT=2")
    delivered = 0
    for hour in range(4):
        clock.now = T0 + timedelta(hours=hour, seconds=1)
        delivered += len(sched.handle().delivered)
    assert delivered == 2
    assert s3.keys(s3.schedule_bucket) == ["jobs/.lease"] or all(".lease" in k for k in s3.keys(s3.schedule_bucket))


def test_missed_occurrences_are_coalesced(s3: S3, clock: Clock) -> None:
    """After a 3-hour outage an every-15-minutes series is delivered once; the report
    counts the 12 it skipped (12:15 to 15:00) and the series goes on at the first instance after now."""
    sched = scheduler(s3, clock)
    sched.schedule(T0, s3.target_bucket, "t", "x", repeat="FREQ=MINUTELY;INTERVAL=15")
    clock.now = T0 + timedelta(hours=3, minutes=1)
    report = sched.handle()
    assert len(report.delivered) == 1
    assert report.coalesced == 12
    assert "coalesced=12" in report.summary()
    (event,) = list(sched.pending())
    assert event.when == T0 + timedelta(hours=3, minutes=15)


def test_berlin_nine_oclock_stays_local_across_dst(s3: S3, clock: Clock) -> None:
    """A weekday 09:00 Berlin series: 08:00 UTC in winter, 07:00 UTC after the spring change."""
    sched = scheduler(s3, clock)
    when = datetime(2027, 3, 26, 9, 0, tzinfo=BERLIN)  # a Friday, before the change on the 28th
    clock.now = datetime(2027, 3, 25, tzinfo=UTC)
    sched.schedule(when, s3.target_bucket, "t", "x", repeat="FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0")
    times = []
    for _ in range(3):
        (event,) = list(sched.pending())
        times.append(event.when)
        clock.now = event.when + timedelta(seconds=1)
        sched.handle()
    assert times == [
        datetime(2027, 3, 26, 8, 0, tzinfo=UTC),
        datetime(2027, 3, 29, 7, 0, tzinfo=UTC),
        datetime(2027, 3, 30, 7, 0, tzinfo=UTC),
    ]


def test_cancel_ends_the_series(s3: S3, clock: Clock) -> None:
    """cancel() on the pending occurrence leaves nothing: no event, no marker."""
    sched = scheduler(s3, clock)
    key = sched.schedule(T0, s3.target_bucket, "t", "x", repeat="FREQ=DAILY")
    assert sched.cancel(key) is True
    clock.now = T0 + timedelta(days=3)
    assert not sched.handle().delivered
    assert [k for k in s3.keys(s3.schedule_bucket) if not k.endswith(".lease")] == []


@pytest.mark.parametrize("rule", ["FREQ=FOO", "hello", "", "DTSTART:20300101T000000\nRRULE:FREQ=DAILY"])
def test_a_string_that_is_not_a_rule_is_refused_before_any_request(s3: S3, clock: Clock, rule: str) -> None:
    """A bad rule raises ValueError and writes nothing."""
    sched = scheduler(s3, clock)
    before = s3.counter.total
    with pytest.raises(ValueError, match="repeat"):
        sched.schedule(T0, s3.target_bucket, "t", "x", repeat=rule)
    assert s3.counter.total == before


def test_a_rule_with_no_instance_is_refused(s3: S3, clock: Clock) -> None:
    """UNTIL before the start: ValueError, nothing written."""
    sched = scheduler(s3, clock)
    with pytest.raises(ValueError, match="no occurrence"):
        sched.schedule(T0, s3.target_bucket, "t", "x", repeat="FREQ=DAILY;UNTIL=20200101T000000Z")
    assert s3.keys(s3.schedule_bucket) == []


class Death:
    """Kills a client at its ``at``-th request from now: that request and every later one
    fail (``lost``: the ``at``-th reaches S3, its reply is lost), as for a process killed
    there. ``at=None``: alive (it counts the requests)."""

    def __init__(self, client: Any, at: int | None, *, lost: bool) -> None:
        self.at, self.lost, self.count = at, lost, 0
        client.meta.events.register("before-call.s3", self._before)
        client.meta.events.register("after-call.s3", self._after)

    def _dead(self) -> bool:
        return self.at is not None and self.count > self.at

    def _before(self, **_: Any) -> None:
        self.count += 1
        if self._dead() or (self.at is not None and self.count == self.at and not self.lost):
            raise Killed("killed before this request")

    def _after(self, **_: Any) -> None:
        if self.at is not None and self.count == self.at and self.lost:
            self.count += 1
            raise Killed("killed before this reply")


class Killed(EndpointConnectionError):  # type: ignore[misc]
    def __init__(self, message: str) -> None:
        super().__init__(endpoint_url=message)


def series_state(s3: S3, sched: Scheduler) -> tuple[list[ScheduledEvent], int]:
    """The pending occurrences, and how many times the target was written (its version count)."""
    return list(sched.pending()), len(s3.client.list_object_versions(Bucket=s3.target_bucket).get("Versions", ()))


# The delivery of an occurrence, missed by more than one instance or not, costs about a dozen
# requests (listing, markers, lease, HEAD, copy, next marker, HEAD, copy, batch delete, release):
# every one of them with S3_SCHEDULER_FULL_CAMPAIGNS=1 (CI), every third by default.
@pytest.mark.parametrize("lost", [False, True], ids=["before-request", "reply-lost"])
@pytest.mark.parametrize("missed", [False, True], ids=["on-time", "missed"])
@pytest.mark.parametrize("at", range(1, 16) if FULL_SIZE else range(1, 16, 3))
def test_a_run_killed_at_any_request_never_breaks_or_forks_the_series(
    s3: S3, clock: Clock, at: int, missed: bool, lost: bool
) -> None:
    """A run killed at its n-th request (before it, or with its reply lost), then the next
    runs (past the dead run's lease): the series has exactly one pending occurrence, at the
    rule's next instance, and the target was written (missed occurrences coalesced into one delivery)."""
    s3.client.put_bucket_versioning(Bucket=s3.target_bucket, VersioningConfiguration={"Status": "Enabled"})
    sched = scheduler(s3, clock)
    sched.schedule(T0, s3.target_bucket, "t", "x", repeat="FREQ=HOURLY")
    clock.now = T0 + (timedelta(hours=3, minutes=1) if missed else timedelta(seconds=5))
    death = Death(s3.client, at, lost=lost)
    with contextlib.suppress(Killed):
        sched.handle()
    death.at = None
    clock.now += timedelta(hours=1, minutes=10)  # the dead run's lease has lapsed; the next instance is due
    sched.handle()
    pending, written = series_state(s3, sched)
    assert [event.when for event in pending] == [clock.now.replace(minute=0, second=0) + timedelta(hours=1)]
    assert written >= 1
    markers = [k for k in s3.keys(s3.schedule_bucket) if "/.series/" in k]
    assert keys.series_marker(sched.prefix, pending[0].key) in markers  # others mark nothing: orphans
    # A later run deletes the orphans older than ORPHAN_AGE (by the store's clock: moto's is the real one).
    clock.now = datetime.now(UTC) + occurrences.ORPHAN_AGE + timedelta(minutes=1)
    sched.handle()
    (last,) = list(sched.pending())
    assert [k for k in s3.keys(s3.schedule_bucket) if "/.series/" in k] == [keys.series_marker(sched.prefix, last.key)]


@pytest.mark.parametrize("at", range(1, 14) if FULL_SIZE else range(1, 14, 3))
def test_cancel_racing_a_delivery_never_leaves_the_series_alive(s3: S3, clock: Clock, at: int) -> None:
    """cancel() of the due occurrence, made at each request of a run delivering it: when it
    answers True, nothing of the series is pending after the run; when False, the occurrence
    was delivered and exactly the next one is pending."""
    sched = scheduler(s3, clock)
    key = sched.schedule(T0, s3.target_bucket, "t", "x", repeat="FREQ=HOURLY")
    clock.now = T0 + timedelta(seconds=5)
    canceller = scheduler(s3, clock)
    cancelled = cancel_during_handle(s3.client, sched, canceller, key, at)
    pending = list(sched.pending())
    if cancelled:
        assert pending == []
    else:
        assert [event.when for event in pending] == [T0 + timedelta(hours=1)]
    clock.now += timedelta(hours=2)
    sched.handle()
    assert len(list(sched.pending())) == (0 if cancelled else 1)


def test_a_dead_lettered_occurrence_pauses_its_series_and_requeue_resumes_it(s3: S3, clock: Clock) -> None:
    """An occurrence whose target refuses it goes to the dead letters (the series waits there);
    requeued, it is delivered and the series goes on at its next instance."""
    sched = scheduler(s3, clock, dead_letter_after=timedelta(0), dead_letter_attempts=1)
    sched.schedule(T0, "missing-bucket", "t", "x", repeat="FREQ=DAILY")
    clock.now = T0 + timedelta(seconds=5)
    report = sched.handle()
    assert len(report.dead_lettered) == 1
    assert list(sched.pending()) == []
    (letter,) = list(sched.dead_letters())
    s3.client.create_bucket(Bucket="missing-bucket")
    sched.requeue(letter.key)
    assert len(sched.handle().delivered) == 1
    assert [event.when for event in sched.pending()] == [T0 + timedelta(days=1)]


def test_schedule_many_starts_a_series_per_event(s3: S3, clock: Clock) -> None:
    """schedule_many(repeat=) gives each event a series of its own (ids differ), each marked."""
    sched = scheduler(s3, clock)
    written = sched.schedule_many([(T0, s3.target_bucket, f"t/{n}", "x") for n in range(3)], repeat="FREQ=DAILY")
    ids = {sched.show(key).series for key in written}
    assert len(ids) == 3
    assert None not in ids
    assert sorted(k for k in s3.keys(s3.schedule_bucket) if "/.series/" in k) == sorted(
        keys.series_marker(sched.prefix, key) for key in written
    )


def test_reschedule_moves_one_occurrence_and_the_series_goes_on_after_it(s3: S3, clock: Clock) -> None:
    """An occurrence moved from 12:00 to 12:40 is delivered at 12:40; the series goes on at 13:00."""
    sched = scheduler(s3, clock)
    key = sched.schedule(T0, s3.target_bucket, "t", "x", repeat="FREQ=HOURLY")
    moved = sched.reschedule(key, T0 + timedelta(minutes=40))
    assert [k for k in s3.keys(s3.schedule_bucket) if "/.series/" in k] == [keys.series_marker(sched.prefix, moved)]
    clock.now = T0 + timedelta(minutes=40, seconds=1)
    assert [e.key for e in sched.handle().delivered] == [moved]
    assert [e.when for e in sched.pending()] == [T0 + timedelta(hours=1)]


def test_an_occurrence_past_max_lateness_is_put_aside_and_its_series_goes_on(s3: S3, clock: Clock) -> None:
    """max_lateness=1h, found 3 h late: not delivered, put aside; the series goes on at the next hour."""
    sched = scheduler(s3, clock, max_lateness=timedelta(hours=1), dead_letter_after=timedelta(days=1))
    sched.schedule(T0, s3.target_bucket, "t", "x", repeat="FREQ=HOURLY")
    clock.now = T0 + timedelta(hours=3, minutes=1)
    report = sched.handle()
    assert len(report.expired) == 1
    assert report.delivered == []
    assert [e.when for e in sched.pending()] == [T0 + timedelta(hours=4)]
    assert len(list(sched.dead_letters())) == 1


def test_a_series_in_a_sharded_scheduler_lives_in_its_targets_shard(s3: S3, clock: Clock) -> None:
    """With shards, the occurrence and its marker lie in the target's shard, and the next one too."""
    sched = scheduler(s3, clock, shards=4)
    key = sched.schedule(T0, s3.target_bucket, "t", "x", repeat="FREQ=HOURLY")
    shard = keys.shard_of(s3.target_bucket, "t", 4)
    prefix = keys.listing_prefix(keys.shard_path("jobs", shard))
    assert key.startswith(prefix)
    clock.now = T0 + timedelta(seconds=1)
    assert len(sched.handle().delivered) == 1
    (event,) = list(sched.pending())
    assert event.key.startswith(prefix)
    assert [k for k in s3.keys(s3.schedule_bucket) if "/.series/" in k] == [keys.series_marker(prefix, event.key)]


def test_a_marker_on_a_one_time_event_delivers_it_once(s3: S3, clock: Clock) -> None:
    """A marker whose event has no series metadata (stale, or made by hand) costs a HEAD: the event
    is delivered once and nothing follows; the marker goes with it."""
    sched = scheduler(s3, clock)
    key = sched.schedule(T0, s3.target_bucket, "t", "x")
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=keys.series_marker(sched.prefix, key), Body=b"")
    clock.now = T0 + timedelta(seconds=1)
    assert [e.key for e in sched.handle().delivered] == [key]
    assert list(sched.pending()) == []
    assert [k for k in s3.keys(s3.schedule_bucket) if not k.endswith(".lease")] == []


def test_a_target_among_the_series_markers_is_refused(s3: S3, clock: Clock) -> None:
    """No event may be aimed at the scheduler's own series markers."""
    sched = scheduler(s3, clock)
    with pytest.raises(ValueError, match="lease, a dead letter"):
        sched.schedule(T0, s3.schedule_bucket, "jobs/.series/x", "x")


def test_an_old_marker_of_a_pending_occurrence_is_never_taken_for_an_orphan(s3: S3, clock: Clock) -> None:
    """A due 0.0.3 name with an offset sorts after an occurrence not yet due, so the occurrence's
    marker sorts before the first due key; over an hour old, it must still be kept (its event is
    there): the occurrence is delivered as one of its series, which goes on."""
    sched = scheduler(s3, clock)
    real = datetime.now(UTC).replace(microsecond=0)  # the store's clock: markers' LastModified are real
    at = real + timedelta(hours=3)
    key = sched.schedule(at, s3.target_bucket, "daily", "x", repeat="FREQ=DAILY")
    clock.now = real + timedelta(hours=1, minutes=10)  # the marker is older than ORPHAN_AGE
    offset = (clock.now - timedelta(minutes=1)).astimezone(timezone(timedelta(hours=5)))
    legacy = f"{sched.prefix}{quote(str(offset))}|{s3.target_bucket}|legacy"  # due, sorting after the occurrence
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=legacy, Body=b"x")

    assert [e.key for e in sched.handle().delivered] == [legacy]
    assert keys.series_marker(sched.prefix, key) in s3.keys(s3.schedule_bucket)
    clock.now = at + timedelta(seconds=1)
    assert [e.key for e in sched.handle().delivered] == [key]
    assert [e.when for e in sched.pending()] == [at + timedelta(days=1)]


def test_when_the_next_names_hold_other_events_the_series_ends_after_one_delivery(s3: S3, clock: Clock) -> None:
    """The next three instances' names hold one-time events of the same target: the occurrence is
    delivered once (not failed, not delivered again by the next run), the series ends, warned."""
    sched = scheduler(s3, clock)
    key = sched.schedule(T0, s3.target_bucket, "t", "x", repeat="FREQ=HOURLY")
    others = [sched.schedule(T0 + timedelta(hours=h), s3.target_bucket, "t", "other") for h in (1, 2, 3)]
    clock.now = T0 + timedelta(seconds=1)

    first, second = sched.handle(), sched.handle()

    assert ([e.key for e in first.delivered], first.failed) == ([key], [])
    assert second.delivered == []
    assert sorted(e.key for e in sched.pending()) == sorted(others)
    assert all(sched.show(other).series is None for other in others)


def test_cancel_of_the_next_occurrence_also_ends_an_earlier_one_left_pending(s3: S3, clock: Clock) -> None:
    """A run delivered an occurrence and wrote the next, but its batch delete failed: both are pending.
    cancel() of the next one removes the earlier one too, so no later run brings the series back."""
    sched = scheduler(s3, clock)
    first = sched.schedule(T0, s3.target_bucket, "t", "x", repeat="FREQ=DAILY")
    clock.now = T0 + timedelta(seconds=1)

    def refuse(**_: Any) -> None:
        raise Killed("the batch delete's connection broke")

    s3.client.meta.events.register("before-call.s3.DeleteObjects", refuse)
    sched.handle()
    s3.client.meta.events.unregister("before-call.s3.DeleteObjects", refuse)
    following = [e.key for e in sched.pending()]
    assert first in following
    assert len(following) == 2

    assert sched.cancel(following[1]) is True

    assert list(sched.pending()) == []
    clock.now += timedelta(days=3)
    assert sched.handle().delivered == []
    assert list(sched.pending()) == []


def test_metadata_too_large_for_the_series_is_refused_before_any_request(s3: S3, clock: Clock) -> None:
    """User metadata that fits S3's 2 KB alone but not with the series' own and the occurrence's time:
    ValueError, nothing written; the same metadata on a one-time event is written."""
    sched = scheduler(s3, clock)
    metadata = {"note": "x" * 1950}
    before = s3.counter.total
    with pytest.raises(ValueError, match="2048"):
        sched.schedule(T0, s3.target_bucket, "t", "x", repeat="FREQ=DAILY", metadata=metadata)
    assert s3.counter.total == before
    assert sched.schedule(T0, s3.target_bucket, "t", "x", metadata=metadata)
