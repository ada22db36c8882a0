"""The operator's tools over HTTP: moto's server, and a real S3 server (Ceph radosgw) when one is set (issue 20).

What crosses the wire: the HEAD's user metadata (its names come back in lower case) and
its tag count (``x-amz-tagging-count``, which decides whether the tags are read), the
last-modified time, the conditional PUT and DELETE of a requeue, and targets with special
characters in the names of dead letters.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from s3_scheduler import EventExistsError, EventNotPendingError, keys

from ..conftest import S3, T0, Clock

TARGET = "ü dir/a+b|c~d.json"
"""A target whose characters are quoted and escaped in the event's and the dead letter's names."""


def test_a_dead_letter_is_shown_requeued_and_delivered(wire: S3, clock: Clock) -> None:
    """A rejected event put aside is shown as a dead letter (failed runs from its tags, metadata, content type);
    requeue() writes it back due now without its count, refuses a second time, and the next run delivers it."""
    writer = wire.scheduler("ops", clock=clock)
    rejecting = wire.scheduler("ops", clock=clock, allowed_targets=["elsewhere"], dead_letter_after=timedelta(0))
    key = writer.schedule(
        T0 - timedelta(minutes=5),
        wire.target_bucket,
        TARGET,
        b"\x00body\xff",
        content_type="application/json",
        metadata={"Order-Id": "42", keys.REPEAT_META: "FREQ=DAILY", keys.ZONE_META: "Europe/Berlin"},
    )
    wire.client.put_object_tagging(
        Bucket=wire.schedule_bucket, Key=key, Tagging={"TagSet": [{"Key": keys.ATTEMPTS_TAG, "Value": "2"}]}
    )
    assert [e.key for e in rejecting.handle().dead_lettered] == [key]
    (letter,) = writer.dead_letters()

    shown = writer.show(letter.key)
    new_key = writer.requeue(letter.key)
    requeued = writer.show(new_key)
    with pytest.raises(EventNotPendingError):
        writer.requeue(letter.key)
    report = writer.handle()

    assert (shown.dead_letter, shown.path, shown.failed_runs, shown.size) == (True, TARGET, 2, 6)
    assert (shown.content_type, shown.metadata["order-id"]) == ("application/json", "42")
    assert (shown.repeat, shown.zone) == ("FREQ=DAILY", "Europe/Berlin")
    assert shown.last_modified is not None
    assert new_key == keys.encode_key(keys.listing_prefix("ops"), T0, wire.target_bucket, TARGET)
    assert (requeued.dead_letter, requeued.failed_runs, requeued.when) == (False, 0, T0)
    assert dict(requeued.metadata) == dict(shown.metadata)
    assert requeued.content_type == "application/json"
    assert [e.key for e in report.delivered] == [new_key]
    assert wire.body(wire.target_bucket, TARGET) == b"\x00body\xff"
    assert list(writer.dead_letters()) == []


def test_requeue_never_replaces_a_pending_event_over_http(wire: S3, clock: Clock) -> None:
    """The store refuses the requeue's conditional PUT onto a pending event: EventExistsError, both kept; purge()
    then removes the dead letter once."""
    scheduler = wire.scheduler("ops", clock=clock)
    prefix = scheduler.prefix
    letter = keys.dead_letter_key(prefix, keys.encode_key(prefix, T0, wire.target_bucket, TARGET), "0badcafe")
    wire.client.put_object(Bucket=wire.schedule_bucket, Key=letter, Body=b"old")
    pending = scheduler.schedule(T0, wire.target_bucket, TARGET, "mine")

    with pytest.raises(EventExistsError):
        scheduler.requeue(letter)

    assert wire.body(wire.schedule_bucket, pending) == b"mine"
    assert wire.body(wire.schedule_bucket, letter) == b"old"
    assert scheduler.purge(letter) is True
    assert scheduler.purge(letter) is False
    assert wire.keys(wire.schedule_bucket) == [pending]


def test_show_over_http_with_one_head_and_into_a_file(wire: S3, clock: Clock) -> None:
    """An event never failed costs one HEAD (the tag count says there is nothing to read); into= gets the body."""
    scheduler = wire.scheduler("ops", clock=clock)
    key = scheduler.schedule(T0, wire.target_bucket, TARGET, b"\x01\x02")
    wire.counter.calls.clear()

    shown = scheduler.show(key)
    out = io.BytesIO()
    scheduler.show(key, into=out)

    assert (shown.path, shown.size, shown.failed_runs, shown.repeat) == (TARGET, 2, 0, None)
    assert dict(wire.counter.calls) == {"HeadObject": 1, "GetObject": 1}
    assert out.getvalue() == b"\x01\x02"
