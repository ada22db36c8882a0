"""The promises under misuse and odd data: strict names, check(), no silent overwrite,
a lease that never blocks for long, dead letters only after real attempts (issue 9)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from s3_scheduler import EventExistsError, InvalidKeyError, Scheduler, keys

from ..conftest import S3, T0, Clock

LEASE = "jobs/.lease"
ODD_TIMES_READ = [
    "0001-01-01 00:00:00+01:00",  # overflows when converted to UTC
    "2020-01-01 00:00 +2400",  # an offset of 24 h
    "-23:599999999999999999600000190024",  # made decimal parsing fail
    "01/05/2030",  # day and month order
]
"""Odd times whose names sort before the listing bound at T0: a run at T0 reads them."""

ODD_TIMES_PAST_THE_BOUND = [
    "2030-01-07 14:05:00 EST",  # a zone abbreviation: 5 h early if taken as UTC
    "GMT-3",  # 6 h early if taken as UTC+3
    "Feb 1 2026 00:00 +0000",  # a month name
    "20260201T000000Z",  # ISO 8601's basic format
    "2026-2-1 00:00:00",  # one-digit month and day
    "9999-12-31 23:00:00-05:00",  # past year 9999 in UTC
]
"""Odd times whose names sort past the listing bound at T0: a run at T0 never reads them."""

ODD_TIMES = ODD_TIMES_READ + ODD_TIMES_PAST_THE_BOUND


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def put(s3: S3, key: str, body: bytes = b"x") -> None:
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=key, Body=body)


def lease_body(s3: S3) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(s3.body(s3.schedule_bucket, LEASE))
    return data


# names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time", "read"), [(time, True) for time in ODD_TIMES_READ] + [(time, False) for time in ODD_TIMES_PAST_THE_BOUND]
)
def test_an_odd_name_never_stops_a_run(
    s3: S3, clock: Clock, time: str, read: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A name whose time overflows, guesses or is malformed is skipped and warned when the run reads it (never
    read when it sorts past the listing bound); the due event beside it goes, and the name stays."""
    scheduler = s3.scheduler(clock=clock)
    odd = f"jobs/|{time}|{s3.target_bucket}|odd"
    put(s3, odd)
    good = scheduler.schedule(T0 - seconds(1), s3.target_bucket, "good", "g")

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        report = scheduler.handle()

    bound = keys.listing_bound(scheduler.prefix, T0)
    assert bound is not None
    assert (odd <= bound) is read  # why this name is read or not: where it sorts
    assert [e.key for e in report.delivered] == [good]
    assert report.skipped == ([odd] if read else [])
    assert s3.keys(s3.target_bucket) == ["good"]
    assert odd in s3.keys(s3.schedule_bucket)
    assert (repr(odd) in caplog.text) is read
    assert [e.key for e in scheduler.pending()] == []
    with pytest.raises(InvalidKeyError):
        scheduler.cancel(odd)
    assert [k for k, _ in scheduler.check().not_events] == [odd]


def test_a_newline_in_a_name_cannot_forge_a_log_line(s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """Names are logged with repr, so a newline inside one stays inside its own line."""
    scheduler = s3.scheduler(clock=clock)
    forged = f"jobs/|2026-01-01 00:00:00+00:00|{s3.target_bucket}|x\nWARNING forged line"
    put(s3, forged)

    with caplog.at_level(logging.INFO, logger="s3_scheduler"):
        scheduler.handle()

    assert "\nWARNING forged line" not in caplog.text
    assert "\\nWARNING forged line" in caplog.text


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        ("2026-02-01 00:00:00+00:00", datetime(2026, 2, 1, tzinfo=timezone.utc)),
        ("2026-02-01T00:00:00Z", datetime(2026, 2, 1, tzinfo=timezone.utc)),
        ("2026-02-01T02:00:00+02:00", datetime(2026, 2, 1, tzinfo=timezone.utc)),
        ("2026-02-01 05:30+0530", datetime(2026, 2, 1, tzinfo=timezone.utc)),
        ("2026-02-01 00:00:00.5", datetime(2026, 2, 1, 0, 0, 0, 500000, tzinfo=timezone.utc)),
        ("2026-02-01", datetime(2026, 2, 1, tzinfo=timezone.utc)),
    ],
)
def test_unambiguous_times_are_read(time: str, expected: datetime) -> None:
    """str(datetime)'s form and ISO 8601's extended format are events; no offset means UTC."""
    prefix = keys.listing_prefix("jobs")

    assert keys.decode_key(prefix + quote(time) + "|bkt|k", prefix).when == expected


@pytest.mark.parametrize("time", ODD_TIMES)
def test_ambiguous_or_impossible_times_are_not_events(time: str) -> None:
    """Anything a parser would guess at, or that has no UTC time, raises InvalidKeyError and nothing else."""
    prefix = keys.listing_prefix("jobs")

    with pytest.raises(InvalidKeyError):
        keys.decode_key(prefix + time + "|bkt|k", prefix)


# check ---------------------------------------------------------------------------------


def test_check_reports_names_a_run_will_not_read_in_time(s3: S3, clock: Clock) -> None:
    """check() lists names that are not events, events that sort late under the scheduler's settings (0.0.3's
    offset names without the look-ahead), and offset names, each with a reason; T names are read in time."""
    scheduler = s3.scheduler(clock=clock, legacy_offsets=False)
    fine = scheduler.schedule(T0, s3.target_bucket, "fine", "x")
    not_event = f"jobs/|GMT-3|{s3.target_bucket}|k"
    t_name = f"jobs/|2026-11-27T05:00:00Z|{s3.target_bucket}|t"
    offset = "jobs/|" + quote(str(datetime(2026, 11, 27, 14, tzinfo=timezone(timedelta(hours=2))))) + "|target-bucket|o"
    for key in (not_event, t_name, offset):
        put(s3, key)

    report = scheduler.check()

    assert report.events == 3
    assert [k for k, _ in report.not_events] == [not_event]
    assert [k for k, _ in report.late] == [offset]
    assert "2026-11-27%2012%3A00%3A00%2B00%3A00" in report.late[0][1]
    assert report.offset_keys == [offset]  # the T name is read in time without the look-ahead
    assert not report.ok
    assert fine not in [k for k, _ in report.late]


def test_check_of_a_clean_schedule_is_ok(s3: S3, clock: Clock) -> None:
    """A schedule this package wrote has nothing to report."""
    scheduler = s3.scheduler(clock=clock)
    for i in range(3):
        scheduler.schedule(T0 + timedelta(hours=i), s3.target_bucket, f"k{i}", "x")

    report = scheduler.check()

    assert report.ok
    assert report.summary() == "events=3 not_events=0 late=0 offset_keys=0"


# never overwrite without being asked ---------------------------------------------------


def test_schedule_without_replace_refuses_an_existing_event(s3: S3, clock: Clock) -> None:
    """replace=False writes with If-None-Match and raises EventExistsError, keeping the first content."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "first")

    with pytest.raises(EventExistsError, match="already pending") as raised:
        scheduler.schedule(T0, s3.target_bucket, "k", "second", replace=False)

    assert isinstance(raised.value, ValueError)
    assert s3.body(s3.schedule_bucket, key) == b"first"
    assert scheduler.schedule(T0, s3.target_bucket, "k", "third") == key  # 0.0.3's default replaces
    assert s3.body(s3.schedule_bucket, key) == b"third"


def test_reschedule_onto_a_pending_event_raises_and_keeps_both(s3: S3, clock: Clock) -> None:
    """reschedule() never replaces another event's content: EventExistsError, both stay."""
    scheduler = s3.scheduler(clock=clock)
    moving = scheduler.schedule(T0 + timedelta(hours=1), s3.target_bucket, "k", "moving")
    there = scheduler.schedule(T0 + timedelta(hours=2), s3.target_bucket, "k", "there")

    with pytest.raises(EventExistsError):
        scheduler.reschedule(moving, T0 + timedelta(hours=2))

    assert s3.body(s3.schedule_bucket, moving) == b"moving"
    assert s3.body(s3.schedule_bucket, there) == b"there"


def test_a_name_rewritten_after_listing_is_left_for_the_next_run(s3: S3, clock: Clock) -> None:
    """A copy refused by its ETag condition (the name was rewritten) keeps the event pending, deferred."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "old")
    sent: list[dict[str, Any]] = []

    def refuse(params: dict[str, Any], **_: Any) -> None:
        sent.append(dict(params))
        raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": "etag"}}, "CopyObject")

    s3.client.meta.events.register("before-parameter-build.s3.CopyObject", refuse)
    report = scheduler.handle()
    s3.client.meta.events.unregister("before-parameter-build.s3.CopyObject", refuse)

    assert sent[0]["CopySourceIfMatch"] == s3.client.head_object(Bucket=s3.schedule_bucket, Key=key)["ETag"]
    assert [e.key for e in report.deferred] == [key]
    assert report.failed == []
    assert s3.keys(s3.schedule_bucket) == [key]
    assert len(scheduler.handle().delivered) == 1


def test_the_batch_delete_names_the_listed_etag_of_each_key(s3: S3, clock: Clock) -> None:
    """DeleteObjects carries each key's listed ETag, so a name rewritten after its copy is not deleted on AWS."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")
    etag = s3.client.head_object(Bucket=s3.schedule_bucket, Key=key)["ETag"]
    sent: list[dict[str, Any]] = []
    s3.client.meta.events.register("before-parameter-build.s3.DeleteObjects", lambda params, **_: sent.append(params))

    scheduler.handle()

    assert sent[0]["Delete"]["Objects"] == [{"Key": key, "ETag": etag}]


def test_keys_the_batch_did_not_delete_stay_pending_and_are_reported(s3: S3, clock: Clock) -> None:
    """A DeleteObjects answer with per-key errors: those events stay, reported failed; a later run delivers them."""
    scheduler = s3.scheduler(clock=clock)
    kept = scheduler.schedule(T0 - seconds(2), s3.target_bucket, "kept", "x")
    scheduler.schedule(T0 - seconds(1), s3.target_bucket, "gone", "y")

    asked: list[dict[str, Any]] = []
    s3.client.meta.events.register("before-parameter-build.s3.DeleteObjects", lambda params, **_: asked.append(params))

    def partial(**_: Any) -> Any:
        others = [o for o in asked[0]["Delete"]["Objects"] if o["Key"] != kept]
        s3.client.meta.events.unregister("before-call.s3.DeleteObjects", partial)
        s3.client.delete_objects(Bucket=s3.schedule_bucket, Delete={"Objects": others})
        error = {"Key": kept, "Code": "InternalError", "Message": "try again"}
        return AWSResponse("http://s3", 200, {}, None), {"Errors": [error], "ResponseMetadata": {"HTTPStatusCode": 200}}

    s3.client.meta.events.register("before-call.s3.DeleteObjects", partial)
    report = scheduler.handle()

    assert [f.event.key for f in report.failed] == [kept]
    assert "InternalError" in str(report.failed[0].error)
    assert s3.keys(s3.schedule_bucket) == [kept]
    assert sorted(s3.keys(s3.target_bucket)) == ["gone", "kept"]
    assert [e.key for e in scheduler.handle().delivered] == [kept]


# dead letters --------------------------------------------------------------------------


def test_an_overdue_event_is_not_dead_lettered_on_its_first_transient_error(s3: S3, clock: Clock) -> None:
    """Two days overdue and failing once with SlowDown: retried, not dead-lettered, and the failed run is counted."""
    scheduler = s3.scheduler(clock=clock, dead_letter_after=timedelta(hours=1))
    key = scheduler.schedule(T0 - timedelta(days=2), s3.target_bucket, "k", "x")

    def slow_down(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow"}}, "CopyObject")

    s3.client.meta.events.register("before-call.s3.CopyObject", slow_down)
    first = scheduler.handle()
    s3.client.meta.events.unregister("before-call.s3.CopyObject", slow_down)
    tags = s3.client.get_object_tagging(Bucket=s3.schedule_bucket, Key=key)["TagSet"]
    second = scheduler.handle()

    assert len(first.failed) == 1
    assert first.dead_lettered == []
    assert tags == [{"Key": keys.ATTEMPTS_TAG, "Value": "1"}]
    assert [e.key for e in second.delivered] == [key]
    assert s3.client.get_object_tagging(Bucket=s3.target_bucket, Key="k")["TagSet"] == []


def test_an_event_is_dead_lettered_after_its_attempts_and_its_age(s3: S3, clock: Clock) -> None:
    """Dead-lettered on the third failed run (the default), not before."""
    scheduler = s3.scheduler(clock=clock, dead_letter_after=timedelta(minutes=1))
    key = scheduler.schedule(T0 - timedelta(hours=1), "no-such-bucket", "k", "x")

    reports = [scheduler.handle() for _ in range(3)]

    assert [len(r.dead_lettered) for r in reports] == [0, 0, 1]
    assert [e.key for e in reports[2].dead_lettered] == [key]
    assert list(scheduler.pending()) == []


def test_reschedule_racing_an_exclusive_run_delivers_once(s3: S3, clock: Clock) -> None:
    """A run started while a due event is moved to another due time delivers it once: the move holds the lease."""
    scheduler = s3.scheduler(clock=clock, sleep=clock.advance)
    runner = s3.scheduler(clock=clock)
    old = scheduler.schedule(T0 - seconds(10), s3.target_bucket, "k", "x")
    during: list[Any] = []

    def run_meanwhile(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] != LEASE and not during:
            during.append(runner.handle())

    s3.client.meta.events.register("before-parameter-build.s3.DeleteObject", run_meanwhile)

    new = scheduler.reschedule(old, T0 - seconds(5))
    after = runner.handle()

    assert during[0].delivered == []
    assert [e.key for e in after.delivered] == [new]
    versions = s3.client.list_object_versions(Bucket=s3.target_bucket).get("Versions", [])
    assert len(versions) == 1


def test_without_the_lease_a_reschedule_racing_a_run_can_deliver_twice(s3: S3, clock: Clock) -> None:
    """exclusive=False: a run between the move's copy and delete delivers both names, as Guarantees says."""
    scheduler = s3.scheduler(clock=clock, exclusive=False)
    runner = s3.scheduler(clock=clock, exclusive=False)
    old = scheduler.schedule(T0 - seconds(10), s3.target_bucket, "k", "x")
    during: list[Any] = []

    def run_meanwhile(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == old and not during:  # the delete of the old name: the new one exists
            during.append(runner.handle())

    s3.client.meta.events.register("before-parameter-build.s3.DeleteObject", run_meanwhile)
    copies: list[str] = []
    s3.client.meta.events.register(
        "before-parameter-build.s3.CopyObject",
        lambda params, **_: copies.append(params["Key"]) if params["Bucket"] == s3.target_bucket else None,
    )

    with pytest.raises(Exception, match="no longer pending"):
        scheduler.reschedule(old, T0 - seconds(5))

    assert copies == ["k", "k"]
    assert len(during[0].delivered) == 2


def test_schedule_refuses_bucket_names_s3_cannot_accept(s3: S3) -> None:
    """A bucket name with a space or '!' raises ValueError before any request."""
    scheduler = s3.scheduler()
    before = s3.counter.total

    for bad in ("Work Bucket", "Bad_Bucket!", "ab", "x" * 256):
        with pytest.raises(ValueError, match="not a bucket name"):
            scheduler.schedule(T0, bad, "k", "x")

    assert s3.counter.total == before


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.schedule(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), "bkt", "k", "x"), "UTC"),
        (lambda s: s.schedule(datetime.max.replace(tzinfo=timezone(timedelta(hours=-1))), "bkt", "k", "x"), "UTC"),
        (
            lambda s: s.reschedule("jobs/|2030-01-01|bkt|k", datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))),
            "UTC",
        ),
    ],
)
def test_out_of_range_times_raise_value_error(s3: S3, call: Any, message: str) -> None:
    """A time with no UTC equivalent raises ValueError naming why, never OverflowError."""
    with pytest.raises(ValueError, match=message):
        call(s3.scheduler())


def test_huge_bounds_do_not_overflow(s3: S3, clock: Clock) -> None:
    """pending(until=datetime.max) lists everything; handle(timeout=1e20) has no deadline."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")

    assert [e.key for e in scheduler.pending(until=datetime.max)] == [key]
    assert len(scheduler.handle(timeout=1e20).delivered) == 1


def test_a_scheduler_builds_its_own_client_with_a_pool_for_its_workers(s3: S3) -> None:
    """With neither client nor resource, the client's pool holds max_workers connections and one each for the
    listing, the batch delete and the lease's renewal."""
    scheduler = Scheduler(s3.schedule_bucket, "jobs", max_workers=48)

    assert scheduler._s3_client.meta.config.max_pool_connections == 51
    assert scheduler.max_workers == 48
    assert scheduler.max_workers == 48


def test_a_batch_delete_refused_whole_falls_back_to_one_delete_per_key(s3: S3, clock: Clock) -> None:
    """A DeleteObjects refused as a whole (a key the store cannot put in XML) deletes key by key: one odd key
    never keeps the batch's other delivered events pending."""
    scheduler = s3.scheduler(clock=clock)
    poison = scheduler.schedule(T0 - seconds(2), s3.target_bucket, "poison", "p")
    scheduler.schedule(T0 - seconds(1), s3.target_bucket, "fine", "f")

    def malformed(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "MalformedXML", "Message": "bad key"}}, "DeleteObjects")

    def refuse_poison(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == poison:
            raise ClientError({"Error": {"Code": "InvalidArgument", "Message": "bad key"}}, "DeleteObject")

    s3.client.meta.events.register("before-call.s3.DeleteObjects", malformed)
    s3.client.meta.events.register("before-parameter-build.s3.DeleteObject", refuse_poison)
    report = scheduler.handle()

    assert sorted(s3.keys(s3.target_bucket)) == ["fine", "poison"]
    assert s3.keys(s3.schedule_bucket) == [poison]
    assert [f.event.key for f in report.failed] == [poison]


def test_an_on_delivery_that_raises_ends_the_run_cleanly(s3: S3, clock: Clock) -> None:
    """A callback error stops new copies; the copy made is deleted, the lease released, no thread left; it raises."""
    import threading

    scheduler = s3.scheduler(clock=clock, max_workers=1)
    for i in range(3):
        scheduler.schedule(T0 - seconds(3 - i), s3.target_bucket, f"k{i}", "x")
    before = {t.name for t in threading.enumerate()}

    def fail(event: Any, late: float) -> None:
        raise RuntimeError("the caller's callback broke")

    with pytest.raises(RuntimeError, match="callback broke"):
        scheduler.handle(on_delivery=fail)

    assert s3.keys(s3.target_bucket) == ["k0"]  # one copier: its outcome is seen before the next copy starts
    assert len(s3.keys(s3.schedule_bucket)) == 2  # k0 was removed, k1 and k2 wait
    assert LEASE not in s3.keys(s3.schedule_bucket)
    assert not [t for t in threading.enumerate() if t.name.startswith("s3-scheduler") and t.name not in before]


@pytest.mark.parametrize("time", ["2026-11-27 14:00:00+02:00", "2026-11-27T17:30+0530", "2026-11-27T07:00-05"])
def test_check_finds_every_form_of_offset(s3: S3, clock: Clock, time: str) -> None:
    """check() reports a name with a non-zero offset in any form it reads, so legacy_offsets=False is known safe."""
    key = f"jobs/|{quote(time)}|{s3.target_bucket}|o"
    put(s3, key)

    assert s3.scheduler(clock=clock).check().offset_keys == [key]


@pytest.mark.parametrize(
    ("body", "held"),
    [
        (json.dumps({"owner": "x", "expires": "2020-01-01T00:00:00+00:00", "ttl": 10**400}), False),  # expired
        (  # live until 12:05 (T0 is 12:00); the odd ttl is read as none
            json.dumps(
                {
                    "owner": "x",
                    "expires": "2026-11-27T12:05:00+00:00",
                    "ttl": 1e308,
                    "since": "2026-11-27T11:00:00+00:00",
                    "until": "2026-11-27T11:00:00+00:00",
                }
            ),
            True,
        ),
        ("[" * 100_000 + "]" * 100_000, False),  # too long to be a lease: expired
        (json.dumps({"owner": None, "expires": "2026-11-27T12:05:00"}), False),  # a naive expiry says none: expired
        (json.dumps([1, 2, 3]), False),  # not an object: expired
    ],
)
def test_no_lease_body_makes_a_run_raise(s3: S3, clock: Clock, body: str, held: bool) -> None:
    """Huge numbers, deep nesting, a list, a naive expiry: a run defers to a live lease and takes over any
    other, it never raises."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=LEASE, Body=body.encode())

    report = scheduler.handle()

    assert [e.key for e in report.deferred] == ([key] if held else [])
    assert [e.key for e in report.delivered] == ([] if held else [key])


def test_no_event_may_target_the_lease_or_a_dead_letter(s3: S3, clock: Clock) -> None:
    """schedule() refuses the scheduler's own lease and dead letters as targets; handle() rejects such a name."""
    scheduler = s3.scheduler(clock=clock)
    for target in ("jobs/.lease", "jobs/.dead-letters/x"):
        with pytest.raises(ValueError, match="lease, a dead letter"):
            scheduler.schedule(T0, s3.schedule_bucket, target, "x")
    forged = f"jobs/|{quote(str(T0))}|{s3.schedule_bucket}|jobs~~.lease"
    put(s3, forged, b'{"expires": "9999-01-01T00:00:00+00:00", "ttl": 1e999}')

    report = scheduler.handle()

    assert [e.key for e in report.rejected] == [forged]
    assert LEASE not in s3.keys(s3.schedule_bucket)


def test_a_failed_event_keeps_no_traceback(s3: S3, clock: Clock) -> None:
    """The report keeps each failure's error without its traceback, so a mass failure stays small."""
    scheduler = s3.scheduler(clock=clock)
    scheduler.schedule(T0, "no-such-bucket", "k", "x")

    report = scheduler.handle()

    assert report.failed[0].error.__traceback__ is None


def test_offset_minutes_past_59_are_not_a_time() -> None:
    """'+05:75' would be a guess (+06:15): not an event."""
    prefix = keys.listing_prefix("jobs")

    with pytest.raises(InvalidKeyError):
        keys.decode_key(prefix + "2026-11-27 12:00+05:75|bkt|k", prefix)


def test_check_flags_no_t_name_as_needing_the_lookahead(s3: S3, clock: Clock) -> None:
    """A T-form name in UTC is read in time with or without the 14 h look-ahead: nothing to report."""
    key = f"jobs/|2030-01-07T10:00:00Z|{s3.target_bucket}|t"
    put(s3, key)

    for legacy_offsets in (True, False):
        report = s3.scheduler(clock=clock, legacy_offsets=legacy_offsets).check()

        assert (report.late, report.offset_keys) == ([], [])


def test_a_run_that_raises_leaves_no_thread_behind(s3: S3, clock: Clock) -> None:
    """An error taking the lease propagates; the lister, copiers and deleter threads all end."""
    import threading

    scheduler = s3.scheduler(clock=clock)
    for i in range(3):
        scheduler.schedule(T0, s3.target_bucket, f"k{i}", "x")
    before = {t.ident for t in threading.enumerate()}

    def unreachable(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == LEASE:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "down"}}, "PutObject")

    s3.client.meta.events.register("before-parameter-build.s3.PutObject", unreachable)

    with pytest.raises(ClientError, match="down"):
        scheduler.handle()

    left = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("s3-scheduler")]
    assert left == []
    assert s3.keys(s3.target_bucket) == []
