"""The operator's tools against moto in-process: show one event or dead letter, requeue a dead letter, purge one
(issue 20), with shards and with replies lost after S3 did the work."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from s3_scheduler import (
    EventDetails,
    EventExistsError,
    EventNotPendingError,
    InvalidKeyError,
    Scheduler,
    TargetNotAllowedError,
    keys,
)

from ..conftest import S3, T0, Clock, targets_by_shard
from ..faults import Call, Fault, Injector

GONE_BUCKET = "gone-target"
"""A target bucket that does not exist until a test makes it: its events fail and become dead letters."""

RULE = "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0"


def new_client() -> Any:
    """A client of its own under the active mock_aws (the fixture's client stays clean for checks)."""
    return boto3.client("s3", region_name="us-east-1", config=Config(max_pool_connections=4))


def put_letter(s3: S3, prefix: str, when: datetime, target: str, body: bytes = b"body", **extra: Any) -> str:
    """Write a dead letter of the scheduler at ``prefix`` as `handle` names it, failed 3 times; return its key."""
    key = keys.dead_letter_key(prefix, keys.encode_key(prefix, when, s3.target_bucket, target), "0badcafe")
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=key, Body=body, Tagging=f"{keys.ATTEMPTS_TAG}=3", **extra)
    return key


def dead_lettered(s3: S3, clock: Clock, target: str = "in/a.json", **options: Any) -> tuple[Scheduler, str]:
    """A scheduler with dead letters on, and the key of a dead letter its run made of an event to a missing bucket."""
    scheduler = s3.scheduler(clock=clock, dead_letter_after=timedelta(0), dead_letter_attempts=1, **options)
    scheduler.schedule(
        T0 - timedelta(minutes=5),
        GONE_BUCKET,
        target,
        b"\x00payload\xff",
        content_type="application/json",
        metadata={"order-id": "42"},
    )
    report = scheduler.handle()
    assert len(report.dead_lettered) == 1
    (letter,) = scheduler.dead_letters()
    return scheduler, letter.key


def tags(s3: S3, key: str) -> list[dict[str, str]]:
    tag_set: list[dict[str, str]] = s3.client.get_object_tagging(Bucket=s3.schedule_bucket, Key=key)["TagSet"]
    return tag_set


# show --------------------------------------------------------------------------------------------------------------


def test_show_reads_a_pending_event_with_one_head(s3: S3, clock: Clock) -> None:
    """show() of a one-time event gives its time, target, size, type, metadata and written time, from one HEAD."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(
        T0 + timedelta(hours=1),
        s3.target_bucket,
        "in/a b.json",
        '{"id": 7}',
        content_type="application/json",
        metadata={"Order-Id": "42"},
    )
    head = s3.client.head_object(Bucket=s3.schedule_bucket, Key=key)
    s3.counter.calls.clear()

    shown = scheduler.show(key)

    assert dict(s3.counter.calls) == {"HeadObject": 1}
    assert isinstance(shown, EventDetails)
    assert (shown.key, shown.when, shown.bucket, shown.path) == (
        key,
        T0 + timedelta(hours=1),
        s3.target_bucket,
        "in/a b.json",
    )
    assert (shown.size, shown.content_type, dict(shown.metadata)) == (9, "application/json", {"order-id": "42"})
    assert shown.etag == head["ETag"]
    assert shown.last_modified == head["LastModified"]
    assert shown.failed_runs == 0
    assert (shown.repeat, shown.zone, shown.series, shown.start, shown.recurring) == (None, None, None, None, False)
    assert shown.dead_letter is False


def test_show_is_a_frozen_value_and_serialises_to_json_ready_data(s3: S3, clock: Clock) -> None:
    """The details cannot be changed, and to_dict gives every field, times in ISO 8601."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x", metadata={"a": "1"})

    shown = scheduler.show(key)

    with pytest.raises(AttributeError):
        shown.size = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        shown.metadata["a"] = "2"  # type: ignore[index]
    data = shown.to_dict()
    assert data["when"] == T0.isoformat()
    assert data["metadata"] == {"a": "1"}
    assert data["last_modified"] == shown.last_modified.isoformat()  # type: ignore[union-attr]
    assert set(data) == {
        "key",
        "when",
        "bucket",
        "path",
        "size",
        "content_type",
        "metadata",
        "etag",
        "last_modified",
        "failed_runs",
        "repeat",
        "zone",
        "series",
        "start",
        "dead_letter",
    }


def test_show_reports_a_series_rule_and_zone_from_the_metadata(s3: S3, clock: Clock) -> None:
    """An occurrence of a series shows its rule, zone, series id and start, read from the metadata names in keys."""
    scheduler = s3.scheduler(clock=clock)
    key = keys.encode_key(scheduler.prefix, T0, s3.target_bucket, "daily")
    metadata = {
        keys.REPEAT_META: RULE,
        keys.ZONE_META: "Europe/Berlin",
        keys.SERIES_META: "0123456789abcdef",
        keys.START_META: "2026-11-27T09:00:00",
    }
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=key, Body=b"x", Metadata=metadata)

    shown = scheduler.show(key)

    assert (shown.repeat, shown.zone, shown.series, shown.start) == (
        RULE,
        "Europe/Berlin",
        "0123456789abcdef",
        "2026-11-27T09:00:00",
    )
    assert shown.recurring is True
    assert dict(shown.metadata) == metadata


def test_show_counts_the_failed_runs_reading_the_tags_only_when_there_are_some(s3: S3, clock: Clock) -> None:
    """After a run failed it, show() reads the count from the tags (HEAD, then GetObjectTagging)."""
    scheduler = s3.scheduler(clock=clock, dead_letter_after=timedelta(days=1), dead_letter_attempts=3)
    key = scheduler.schedule(T0 - timedelta(minutes=1), GONE_BUCKET, "k", "x")
    scheduler.handle()
    s3.counter.calls.clear()

    shown = scheduler.show(key)

    assert shown.failed_runs == 1
    assert dict(s3.counter.calls) == {"HeadObject": 1, "GetObjectTagging": 1}


def test_show_counts_zero_when_the_tags_hold_no_count(s3: S3, clock: Clock) -> None:
    """Tags of the user's own and no count: failed_runs is 0."""
    scheduler = s3.scheduler(clock=clock)
    key = keys.encode_key(scheduler.prefix, T0, s3.target_bucket, "k")
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=key, Body=b"x", Tagging="team=ops")

    assert scheduler.show(key).failed_runs == 0


def test_show_answers_none_for_the_count_when_the_tags_may_not_be_read(s3: S3, clock: Clock) -> None:
    """GetObjectTagging refused (AccessDenied): failed_runs is None, the rest is shown."""
    scheduler = s3.scheduler(clock=clock)
    key = keys.encode_key(scheduler.prefix, T0, s3.target_bucket, "k")
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=key, Body=b"x", Tagging=f"{keys.ATTEMPTS_TAG}=2")

    def deny(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObjectTagging")

    s3.client.meta.events.register("before-call.s3.GetObjectTagging", deny)
    shown = scheduler.show(key)

    assert shown.failed_runs is None
    assert shown.size == 1


def test_show_of_a_dead_letter_says_so(s3: S3, clock: Clock) -> None:
    """A dead letter's key shows the event it was (time, target, content type, metadata, failed runs), flagged."""
    scheduler, letter = dead_lettered(s3, clock)

    shown = scheduler.show(letter)

    assert shown.dead_letter is True
    assert (shown.when, shown.bucket, shown.path) == (T0 - timedelta(minutes=5), GONE_BUCKET, "in/a.json")
    assert (shown.content_type, dict(shown.metadata), shown.size) == ("application/json", {"order-id": "42"}, 9)
    assert shown.failed_runs == 1


def test_show_into_a_file_writes_the_body_with_one_get(s3: S3, clock: Clock) -> None:
    """With into, one GET replaces the HEAD and the exact bytes are written."""
    scheduler = s3.scheduler(clock=clock)
    body = bytes(range(256)) * 10
    key = scheduler.schedule(T0, s3.target_bucket, "bin", body)
    s3.counter.calls.clear()
    out = io.BytesIO()

    shown = scheduler.show(key, into=out)

    assert out.getvalue() == body
    assert shown.size == len(body)
    assert dict(s3.counter.calls) == {"GetObject": 1}


def test_show_of_an_unknown_key_raises_event_not_pending(s3: S3, clock: Clock) -> None:
    """A well-formed key with no object (delivered, cancelled, never there): EventNotPendingError, a LookupError."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")
    scheduler.cancel(key)

    with pytest.raises(EventNotPendingError, match="not there"):
        scheduler.show(key)
    with pytest.raises(LookupError):
        scheduler.show(keys.dead_letter_key(scheduler.prefix, key, "0badcafe"))


@pytest.mark.parametrize(
    "key",
    ["other/|2030-01-07%2014%3A05%3A00%2B00%3A00|b|k", "jobs/|not-a-time|b|k", "jobs/.lease", "jobs/3/|x", 7],
)
def test_show_refuses_a_key_of_no_event_before_any_request(s3: S3, clock: Clock, key: Any) -> None:
    """Neither an event nor a dead letter of this scheduler: InvalidKeyError, nothing sent."""
    scheduler = s3.scheduler(clock=clock)
    s3.counter.calls.clear()

    with pytest.raises(InvalidKeyError, match="neither an event nor a dead letter"):
        scheduler.show(key)
    assert s3.counter.total == 0


def test_show_of_a_missing_bucket_raises_the_store_error(s3: S3, clock: Clock) -> None:
    """A scheduler on a bucket that does not exist gets the store's error, not EventNotPendingError."""
    scheduler = Scheduler("no-such-schedule", "jobs", s3_client=s3.client, clock=clock)
    key = keys.encode_key(scheduler.prefix, T0, s3.target_bucket, "k")

    with pytest.raises(ClientError) as raised:
        scheduler.show(key)
    assert not isinstance(raised.value, EventNotPendingError)


def test_show_reads_the_written_time_from_a_client_that_leaves_timestamps_unparsed(s3: S3, clock: Clock) -> None:
    """A scheduler making its own client (timestamps left as text) still gives last_modified as an aware datetime."""
    scheduler = Scheduler(s3.schedule_bucket, "jobs", clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")

    shown = scheduler.show(key)

    assert shown.last_modified == s3.client.head_object(Bucket=s3.schedule_bucket, Key=key)["LastModified"]


def test_show_with_shards_takes_a_key_of_any_shard_of_the_unsharded_prefix_and_of_dead_letters(
    s3: S3, clock: Clock
) -> None:
    """With shards, show() reads an event of a shard, of the unsharded prefix, and a shard's dead letter."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    sharded = scheduler.schedule(T0, s3.target_bucket, "in/x", "x")
    unsharded = s3.scheduler(clock=clock).schedule(T0, s3.target_bucket, "legacy", "y")
    letter = put_letter(s3, keys.listing_prefix(keys.shard_path("jobs", 2)), T0, "dead")

    shown = [scheduler.show(key) for key in (sharded, unsharded, letter)]

    assert [(s.path, s.dead_letter) for s in shown] == [("in/x", False), ("legacy", False), ("dead", True)]
    with pytest.raises(InvalidKeyError):
        s3.scheduler(clock=clock).show(sharded)  # without shards, a shard's key is another scheduler's


# requeue -----------------------------------------------------------------------------------------------------------


def test_requeue_sends_a_dead_letter_again_now_keeping_content_type_and_metadata(s3: S3, clock: Clock) -> None:
    """requeue() writes the dead letter back as an event due now, body, type and metadata kept, no failed runs; the
    dead letter is gone, and the next run delivers it."""
    scheduler, letter = dead_lettered(s3, clock)
    s3.client.create_bucket(Bucket=GONE_BUCKET)

    key = scheduler.requeue(letter)

    assert key == keys.encode_key(scheduler.prefix, T0, GONE_BUCKET, "in/a.json")
    assert list(scheduler.dead_letters()) == []
    assert [e.key for e in scheduler.pending()] == [key]
    shown = scheduler.show(key)
    assert (shown.content_type, dict(shown.metadata), shown.failed_runs) == ("application/json", {"order-id": "42"}, 0)
    assert tags(s3, key) == []
    report = scheduler.handle()
    assert [e.key for e in report.delivered] == [key]
    assert s3.body(GONE_BUCKET, "in/a.json") == b"\x00payload\xff"


@pytest.mark.parametrize(
    ("when", "due"),
    [
        (datetime(2030, 1, 7, 14, 5), datetime(2030, 1, 7, 14, 5)),  # naive: UTC
        (timedelta(hours=2), T0 + timedelta(hours=2)),  # from the scheduler's clock
    ],
)
def test_requeue_at_a_time(s3: S3, clock: Clock, when: Any, due: datetime) -> None:
    """A datetime (naive means UTC) or a timedelta from now sets the new event's time."""
    scheduler = s3.scheduler(clock=clock)
    letter = put_letter(s3, scheduler.prefix, T0 - timedelta(days=1), "k")

    key = scheduler.requeue(letter, when)

    (event,) = scheduler.pending()
    assert (event.key, event.when.replace(tzinfo=None), event.path) == (key, due.replace(tzinfo=None), "k")


def test_requeue_never_replaces_a_pending_event(s3: S3, clock: Clock) -> None:
    """A pending event at the new name: EventExistsError, the event and the dead letter both as they were."""
    scheduler = s3.scheduler(clock=clock)
    letter = put_letter(s3, scheduler.prefix, T0 - timedelta(days=1), "k", b"old")
    pending = scheduler.schedule(T0, s3.target_bucket, "k", "mine")

    with pytest.raises(EventExistsError, match="already pending"):
        scheduler.requeue(letter)

    assert s3.body(s3.schedule_bucket, pending) == b"mine"
    assert s3.body(s3.schedule_bucket, letter) == b"old"


def test_requeue_of_a_dead_letter_no_longer_there(s3: S3, clock: Clock) -> None:
    """A dead letter purged already: EventNotPendingError, nothing written."""
    scheduler = s3.scheduler(clock=clock)
    letter = put_letter(s3, scheduler.prefix, T0, "k")
    assert scheduler.purge(letter) is True

    with pytest.raises(EventNotPendingError, match="not among the dead letters"):
        scheduler.requeue(letter)
    assert s3.keys(s3.schedule_bucket) == []


@pytest.mark.parametrize("key", ["jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|b|k", "jobs/.dead-letters/junk", "x"])
def test_requeue_refuses_a_key_that_is_no_dead_letter_before_any_request(s3: S3, clock: Clock, key: str) -> None:
    """A pending event's key, or any other name: InvalidKeyError, nothing sent."""
    scheduler = s3.scheduler(clock=clock)
    s3.counter.calls.clear()

    with pytest.raises(InvalidKeyError, match="not a dead letter"):
        scheduler.requeue(key)
    assert s3.counter.total == 0


def test_requeue_refuses_bad_times_and_disallowed_targets_before_any_request(s3: S3, clock: Clock) -> None:
    """A when of another type is a TypeError; a target outside allowed_targets a TargetNotAllowedError."""
    scheduler = s3.scheduler(clock=clock, allowed_targets=["other-bucket"])
    letter = put_letter(s3, scheduler.prefix, T0, "k")
    s3.counter.calls.clear()

    with pytest.raises(TypeError, match="when must be a datetime"):
        scheduler.requeue(letter, "tomorrow")  # type: ignore[arg-type]
    with pytest.raises(TargetNotAllowedError):
        scheduler.requeue(letter)
    assert s3.counter.total == 0


@pytest.mark.parametrize(("path", "shards", "aim"), [("jobs", 1, "jobs/.lease"), ("jobs/0", 4, "jobs/2/.lease")])
def test_requeue_refuses_a_dead_letter_aimed_at_a_lease_before_any_request(
    s3: S3, clock: Clock, path: str, shards: int, aim: str
) -> None:
    """A dead letter (a rejected event's) aimed at the scheduler's lease, or with shards at another
    shard's: requeue refuses it as schedule() refuses that target, before any request."""
    scheduler = s3.scheduler(clock=clock, shards=shards)
    prefix = keys.listing_prefix(path)
    letter = keys.dead_letter_key(prefix, keys.encode_key(prefix, T0, s3.schedule_bucket, aim), "0badcafe")
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=letter, Body=b"x")
    s3.counter.calls.clear()

    with pytest.raises(ValueError, match="lease, a dead letter or a series marker"):
        scheduler.requeue(letter)
    assert s3.counter.total == 0


def test_requeue_with_shards_writes_into_the_shard_of_the_target(s3: S3, clock: Clock) -> None:
    """With shards, a dead letter of the unsharded scheduler or of any shard goes back to its target's shard."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    targets = targets_by_shard(s3.target_bucket, 4)
    from_unsharded = put_letter(s3, keys.listing_prefix("jobs"), T0, targets[2])
    from_shard = put_letter(s3, keys.listing_prefix(keys.shard_path("jobs", 0)), T0, targets[3])

    keys_made = [scheduler.requeue(from_unsharded), scheduler.requeue(from_shard)]

    assert [k.split("|")[0] for k in keys_made] == ["jobs/2/", "jobs/3/"]
    assert sorted(e.key for e in scheduler.pending()) == sorted(keys_made)
    assert list(scheduler.dead_letters()) == []


def test_requeue_after_lost_replies_to_its_put_and_its_delete_leaves_one_pending_event(s3: S3, clock: Clock) -> None:
    """S3 wrote the event and deleted the dead letter, both replies lost and retried: one pending event, no dead
    letter, no error."""
    client = new_client()
    injector = Injector(client, clock=clock)
    scheduler = Scheduler(s3.schedule_bucket, "jobs", s3_client=client, clock=clock)
    letter = put_letter(s3, scheduler.prefix, T0 - timedelta(days=1), "k", b"payload")
    lost: list[str] = []

    def decide(call: Call) -> Fault | None:
        if call.op in ("PutObject", "DeleteObject") and call.op not in lost:
            lost.append(call.op)
            return Fault.LOST
        return None

    with injector.faults(decide):
        key = scheduler.requeue(letter)

    assert lost == ["PutObject", "DeleteObject"]
    assert [a.dropped for a in injector.of("PutObject")[0].attempts] == [True, False]
    assert [a.dropped for a in injector.of("DeleteObject")[0].attempts] == [True, False]
    assert s3.keys(s3.schedule_bucket) == [key]
    assert s3.body(s3.schedule_bucket, key) == b"payload"


def test_requeue_takes_its_event_back_when_the_dead_letter_goes_meanwhile(s3: S3, clock: Clock) -> None:
    """Another call purges the dead letter between the read and the delete: the event written is taken back and
    EventNotPendingError raised, so the dead letter is never sent twice."""
    scheduler = s3.scheduler(clock=clock)
    letter = put_letter(s3, scheduler.prefix, T0, "k")
    other = new_client()

    def purge_first(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") != letter:
            other.delete_object(Bucket=s3.schedule_bucket, Key=letter)

    s3.client.meta.events.register("before-call.s3.PutObject", purge_first)

    with pytest.raises(EventNotPendingError):
        scheduler.requeue(letter)
    assert s3.keys(s3.schedule_bucket) == []


def test_requeue_whose_delete_is_refused_keeps_both_and_raises(s3: S3, clock: Clock) -> None:
    """The dead letter's delete refused (AccessDenied): the error is raised, the event written stays and so does the
    dead letter, so nothing is lost."""
    scheduler = s3.scheduler(clock=clock)
    letter = put_letter(s3, scheduler.prefix, T0 - timedelta(days=1), "k")

    def deny(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DeleteObject")

    s3.client.meta.events.register("before-call.s3.DeleteObject", deny)
    with pytest.raises(ClientError, match="AccessDenied"):
        scheduler.requeue(letter)
    s3.client.meta.events.unregister("before-call.s3.DeleteObject", deny)

    assert sorted(s3.keys(s3.schedule_bucket)) == sorted(
        [letter, keys.encode_key(scheduler.prefix, T0, s3.target_bucket, "k")]
    )


# purge -------------------------------------------------------------------------------------------------------------


def test_purge_deletes_a_dead_letter_once(s3: S3, clock: Clock) -> None:
    """purge() answers True when it removed the dead letter, False when it was not there."""
    scheduler, letter = dead_lettered(s3, clock)

    assert scheduler.purge(letter) is True
    assert scheduler.purge(letter) is False
    assert list(scheduler.dead_letters()) == []


def test_purge_refuses_a_pending_event_before_any_request(s3: S3, clock: Clock) -> None:
    """An event's key is no dead letter: InvalidKeyError, the event stays."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")
    s3.counter.calls.clear()

    with pytest.raises(InvalidKeyError):
        scheduler.purge(key)
    assert s3.counter.total == 0
    assert s3.keys(s3.schedule_bucket) == [key]


def test_purge_with_shards_takes_a_dead_letter_of_any_shard(s3: S3, clock: Clock) -> None:
    """With shards, the dead letters of a shard and of the unsharded scheduler are purged; another path's are not
    this scheduler's."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    letters = [put_letter(s3, keys.listing_prefix(path), T0, "k") for path in ("jobs", "jobs/3")]

    assert [scheduler.purge(letter) for letter in letters] == [True, True]
    assert s3.keys(s3.schedule_bucket) == []
    with pytest.raises(InvalidKeyError):
        scheduler.purge(
            keys.dead_letter_key("jobs/03/|", "jobs/03/|2030-01-07%2014%3A05%3A00%2B00%3A00|b|k", "0badcafe")
        )


def test_purge_after_a_lost_reply_to_its_delete_answers_true(s3: S3, clock: Clock) -> None:
    """S3 deleted the dead letter, the reply was lost, the retry found it gone: True, and it is gone."""
    client = new_client()
    injector = Injector(client, clock=clock)
    scheduler = Scheduler(s3.schedule_bucket, "jobs", s3_client=client, clock=clock)
    letter = put_letter(s3, scheduler.prefix, T0, "k")

    def decide(call: Call) -> Fault | None:
        return Fault.LOST if call.op == "DeleteObject" else None

    with injector.faults(decide):
        purged = scheduler.purge(letter)

    assert purged is True
    assert s3.keys(s3.schedule_bucket) == []
