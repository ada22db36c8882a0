"""Recurring events over HTTP: moto's server, and a real S3 server (Ceph radosgw) when one is set (issue 20).

What crosses the wire: the series' user metadata (names back in lower case), the markers'
listing and its LastModified, the HEAD conditional on the listed ETag, the copy with its
metadata replaced, and the next occurrence's copy without tags.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest

from s3_scheduler import Scheduler, keys

from ..conftest import FULL_SIZE, S3, T0, Clock, Endpoint, cancel_during_handle

TARGET = "ü dir/a+b|c~d.json"
"""A target whose characters are quoted and escaped in the names of the events and the markers."""
UTC = timezone.utc


def markers(s3: S3) -> list[str]:
    return [key for key in s3.keys(s3.schedule_bucket) if "/.series/" in key]


def test_a_berlin_series_is_delivered_and_goes_on_over_the_wire(wire: S3, clock: Clock) -> None:
    """A daily 02:30 Berlin series across the spring change: each run delivers one occurrence
    (content type, metadata and the occurrence's time at the target) and leaves the next one
    pending with its marker; the day of the gap fires at 03:00 local."""
    sched = wire.scheduler("series", clock=clock, sleep=lambda _: None)
    start = datetime(2027, 3, 27, 2, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    key = sched.schedule(start, wire.target_bucket, TARGET, b"\x00x", repeat="FREQ=DAILY", content_type="a/b")
    expected = [datetime(2027, 3, 27, 1, 30, tzinfo=UTC), datetime(2027, 3, 28, 1, 0, tzinfo=UTC)]
    for at in expected:
        (event,) = list(sched.pending())
        assert (event.key, event.when) == (key, at)
        assert markers(wire) == [keys.series_marker(sched.prefix, key)]
        clock.now = at + timedelta(seconds=3)
        assert [e.key for e in sched.handle().delivered] == [key]
        head = wire.client.head_object(Bucket=wire.target_bucket, Key=TARGET)
        assert head["Metadata"][keys.OCCURRENCE_META] == at.isoformat()
        assert head["Metadata"][keys.ZONE_META] == "Europe/Berlin"
        assert head["ContentType"] == "a/b"
        (following,) = list(sched.pending())
        key = following.key
    assert following.when == datetime(2027, 3, 29, 0, 30, tzinfo=UTC)
    assert sched.show(key).repeat == "FREQ=DAILY"
    assert sched.cancel(key) is True
    assert list(sched.pending()) == []
    assert markers(wire) == []


def test_a_lost_reply_to_the_next_occurrences_copy_neither_breaks_nor_forks_it(wire: S3, clock: Clock) -> None:
    """The reply to the copy that writes the next occurrence is lost and the run dies there:
    the next run, hours later, delivers the missed occurrences once and leaves exactly one pending."""
    sched = wire.scheduler("series", clock=clock, sleep=lambda _: None)
    sched.schedule(T0, wire.target_bucket, TARGET, "x", repeat="FREQ=HOURLY")
    clock.now = T0 + timedelta(seconds=5)
    copies = [0]

    def count(**_: Any) -> None:
        copies[0] += 1

    def lose(**_: Any) -> None:
        if copies[0] == 2:  # the first copy delivers; the second writes the next occurrence
            raise ConnectionResetError("reply lost")

    wire.client.meta.events.register("before-call.s3.CopyObject", count)
    wire.client.meta.events.register("after-call.s3.CopyObject", lose)
    sched.handle()  # the lost reply is retried by the run's own rules or reported; nothing raises
    wire.client.meta.events.unregister("before-call.s3.CopyObject", count)
    wire.client.meta.events.unregister("after-call.s3.CopyObject", lose)
    assert copies[0] >= 2
    clock.now = T0 + timedelta(hours=3, minutes=10)
    report = sched.handle()
    pending = list(sched.pending())
    assert [event.when for event in pending] == [T0 + timedelta(hours=4)]
    assert report.coalesced >= 1


NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
CASES = {
    "new-york-0130-autumn-overlap": (
        datetime(2027, 11, 6, 1, 30, tzinfo=NEW_YORK),
        "FREQ=DAILY",
        ["2027-11-06T05:30", "2027-11-07T05:30", "2027-11-08T06:30"],
    ),
    "new-york-0230-spring-gap": (
        datetime(2027, 3, 13, 2, 30, tzinfo=NEW_YORK),
        "FREQ=DAILY",
        ["2027-03-13T07:30", "2027-03-14T07:00", "2027-03-15T06:30"],
    ),
    "berlin-0130-autumn-overlap": (
        datetime(2027, 10, 30, 2, 30, tzinfo=BERLIN),
        "FREQ=DAILY",
        ["2027-10-30T00:30", "2027-10-31T00:30", "2027-11-01T01:30"],
    ),
    "weekdays-count": (
        datetime(2027, 3, 26, 9, 0, tzinfo=BERLIN),
        "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0;COUNT=3",
        ["2027-03-26T08:00", "2027-03-29T07:00", "2027-03-30T07:00"],
    ),
    "until-utc": (
        datetime(2030, 1, 1, 9, 0),
        "FREQ=DAILY;UNTIL=20300102T090000Z",
        ["2030-01-01T09:00", "2030-01-02T09:00"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_rule_cases_deliver_at_their_times_over_the_wire(wire: S3, clock: Clock, case: str) -> None:
    """Daylight-saving gaps and overlaps (Berlin, New York), weekdays with COUNT, UNTIL: each
    occurrence is delivered at its time (UTC below), and the series ends where the rule does."""
    when, rule, expected = CASES[case]
    sched = wire.scheduler("cases", clock=clock, sleep=lambda _: None)
    sched.schedule(when, wire.target_bucket, TARGET, "x", repeat=rule)
    delivered = []
    for _ in range(len(expected)):
        (event,) = list(sched.pending())
        clock.now = event.when + timedelta(seconds=1)
        assert [e.key for e in sched.handle().delivered] == [event.key]
        delivered.append(event.when.strftime("%Y-%m-%dT%H:%M"))
    assert delivered == expected
    if "COUNT" in rule or "UNTIL" in rule:
        assert list(sched.pending()) == []


@pytest.mark.parametrize("at", range(1, 14) if FULL_SIZE else range(2, 14, 5))
def test_cancel_racing_a_delivery_never_leaves_the_series_alive_over_the_wire(
    endpoint: Endpoint, make_wire: Callable[..., S3], clock: Clock, at: int
) -> None:
    """cancel() of the due occurrence, by another client, made after each request of a run delivering it:
    when it answers True nothing of the series is pending after the run; when False, exactly the next
    occurrence is."""
    wire = make_wire(endpoint)
    other = make_wire(endpoint)  # a client of its own for the cancel (its buckets unused)
    sched = wire.scheduler("race", clock=clock, sleep=lambda _: None)
    canceller = Scheduler(wire.schedule_bucket, "race", s3_client=other.client, clock=clock)
    key = sched.schedule(T0, wire.target_bucket, TARGET, "x", repeat="FREQ=HOURLY")
    clock.now = T0 + timedelta(seconds=5)
    cancelled = cancel_during_handle(wire.client, sched, canceller, key, at)
    pending = [event.when for event in sched.pending()]
    assert pending == ([] if cancelled else [T0 + timedelta(hours=1)])
