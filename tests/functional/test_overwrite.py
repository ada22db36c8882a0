"""Nothing is overwritten that was not asked to be: each dead letter has a name of its own,
and reschedule never replaces an event written at its new name, on every store we test
(issue 17, items 4 and 5)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from s3_scheduler import keys

from ..conftest import S3, T0, Clock

HOUR = timedelta(hours=1)


def test_a_dead_letter_is_never_overwritten_by_a_later_one(s3: S3, clock: Clock) -> None:
    """Two events of one time and target dead-lettered by two runs keep both bodies, each under its own name."""
    scheduler = s3.scheduler(clock=clock, dead_letter_after=timedelta(0), dead_letter_attempts=1)
    key = scheduler.schedule(T0 - HOUR, "no-such-bucket", "k", "first")
    scheduler.handle()
    assert scheduler.schedule(T0 - HOUR, "no-such-bucket", "k", "second") == key

    scheduler.handle()

    letters = list(scheduler.dead_letters())
    assert len({e.key for e in letters}) == 2
    assert {(e.when, e.bucket, e.path) for e in letters} == {(T0 - HOUR, "no-such-bucket", "k")}
    assert sorted(s3.body(s3.schedule_bucket, e.key) for e in letters) == [b"first", b"second"]
    assert list(scheduler.pending()) == []


def test_an_expired_event_put_aside_never_overwrites_an_earlier_one(s3: S3, clock: Clock) -> None:
    """max_lateness puts aside under a name of its own too: the earlier dead letter of that name stays."""
    scheduler = s3.scheduler(clock=clock, dead_letter_after=timedelta(days=1), max_lateness=HOUR)
    scheduler.schedule(T0 - 2 * HOUR, s3.target_bucket, "k", "first")
    assert [len(scheduler.handle().expired)] == [1]
    scheduler.schedule(T0 - 2 * HOUR, s3.target_bucket, "k", "second")

    report = scheduler.handle()

    assert len(report.expired) == 1
    letters = list(scheduler.dead_letters())
    assert sorted(s3.body(s3.schedule_bucket, e.key) for e in letters) == [b"first", b"second"]
    assert s3.keys(s3.target_bucket) == []


def test_dead_letters_written_before_tokens_are_still_listed(s3: S3, clock: Clock) -> None:
    """A dead letter named without a token (as 0.2 wrote them) is listed with its time and target."""
    scheduler = s3.scheduler(clock=clock)
    key = keys.encode_key(scheduler.prefix, T0, s3.target_bucket, "old/deadbeef")
    name = keys.dead_letter_prefix(scheduler.prefix) + key[len(scheduler.prefix) :]
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=name, Body=b"x")

    (letter,) = scheduler.dead_letters()

    assert (letter.key, letter.when, letter.bucket, letter.path) == (name, T0, s3.target_bucket, "old/deadbeef")


def test_a_name_too_long_for_the_dead_letters_is_reported_as_such(
    s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """An event whose dead-letter name would pass 1,024 bytes stays pending, warned as too long to move."""
    scheduler = s3.scheduler(clock=clock, dead_letter_after=timedelta(0), dead_letter_attempts=1)
    room = keys.MAX_KEY_BYTES - len(keys.encode_key(scheduler.prefix, T0, "no-such-bucket", "k"))
    key = scheduler.schedule(T0 - HOUR, "no-such-bucket", "k" * (room - 4), "x")
    assert 1012 <= len(key.encode()) <= 1024

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        report = scheduler.handle()

    assert report.dead_lettered == []
    assert [e.key for e in scheduler.pending()] == [key]
    assert "too long to be moved to the dead letters" in caplog.text
    assert "1,024" in caplog.text


def _write_meanwhile(s3: S3, taken: str, body: str) -> Any:
    """A handler that writes ``taken`` (as another writer would) just before the move writes it."""
    done: list[bool] = []

    def handler(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == taken and not done:
            done.append(True)
            s3.client.put_object(Bucket=s3.schedule_bucket, Key=taken, Body=body.encode())

    return handler


def test_reschedule_keeps_content_type_and_metadata(s3: S3, clock: Clock) -> None:
    """The moved event carries the content type and metadata it was scheduled with."""
    scheduler = s3.scheduler(clock=clock)
    old = scheduler.schedule(
        T0 + HOUR, s3.target_bucket, "k", "{}", content_type="application/json", metadata={"order-id": "42"}
    )

    new = scheduler.reschedule(old, T0 + 2 * HOUR)

    head = s3.client.head_object(Bucket=s3.schedule_bucket, Key=new)
    assert (head["ContentType"], head["Metadata"]) == ("application/json", {"order-id": "42"})
    assert s3.keys(s3.schedule_bucket) == [new]
