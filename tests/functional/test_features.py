"""What users of other schedulers expect (issue 11): a late-event policy, relative times,
a content type and metadata carried to the target."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from s3_scheduler import Scheduler

from ..conftest import S3, T0, Clock


def test_an_event_later_than_max_lateness_is_dead_lettered_not_delivered(s3: S3, clock: Clock) -> None:
    """With dead letters on, an event found past max_lateness is moved aside and reported expired."""
    scheduler = s3.scheduler(clock=clock, max_lateness=timedelta(hours=1), dead_letter_after=timedelta(days=1))
    stale = scheduler.schedule(T0 - timedelta(hours=2), s3.target_bucket, "stale", "s")
    fresh = scheduler.schedule(T0 - timedelta(minutes=30), s3.target_bucket, "fresh", "f")

    report = scheduler.handle()

    assert [e.key for e in report.expired] == [stale]
    assert [e.key for e in report.delivered] == [fresh]
    assert s3.keys(s3.target_bucket) == ["fresh"]
    assert [e.path for e in scheduler.dead_letters()] == ["stale"]
    assert "expired=1" in report.summary()


def test_without_dead_letters_an_expired_event_is_removed_with_a_warning(
    s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """With dead letters off, an expired event is removed, never delivered, and a WARNING says so."""
    scheduler = s3.scheduler(clock=clock, max_lateness=timedelta(minutes=5))
    stale = scheduler.schedule(T0 - timedelta(minutes=6), s3.target_bucket, "stale", "s")

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        report = scheduler.handle()

    assert [e.key for e in report.expired] == [stale]
    assert s3.keys(s3.target_bucket) == []
    assert s3.keys(s3.schedule_bucket) == []
    assert "past max_lateness; removed" in caplog.text


def test_max_lateness_is_off_by_default(s3: S3, clock: Clock) -> None:
    """As in 0.0.3, an event a year late is still delivered."""
    scheduler = s3.scheduler(clock=clock)
    scheduler.schedule(T0 - timedelta(days=365), s3.target_bucket, "old", "o")

    assert len(scheduler.handle().delivered) == 1


def test_max_lateness_must_be_a_timedelta(s3: S3) -> None:
    """A number of seconds is refused, naming the form."""
    with pytest.raises(ValueError, match="max_lateness must be a timedelta"):
        s3.scheduler(max_lateness=60)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"content_type": ""}, "content_type must be a MIME type"),
        ({"content_type": 7}, "content_type must be a MIME type"),
        ({"metadata": {"é": "x"}}, "metadata must map ASCII names"),
        ({"metadata": {"k": 1}}, "metadata must map ASCII names"),
        ({"metadata": "k=v"}, "metadata must map ASCII names"),
    ],
)
def test_bad_content_type_or_metadata_raise_before_any_request(
    s3: S3, options: dict[str, object], message: str
) -> None:
    """A malformed content type or metadata raises ValueError naming the form, sending nothing."""
    scheduler = s3.scheduler()
    before = s3.counter.total

    with pytest.raises(ValueError, match=message):
        scheduler.schedule(T0, s3.target_bucket, "k", "x", **options)  # type: ignore[arg-type]

    assert s3.counter.total == before


def test_a_file_keeps_its_content_type(s3: S3, clock: Clock) -> None:
    """A binary file streamed as the content keeps the content type given."""
    import io

    scheduler = s3.scheduler(clock=clock)
    scheduler.schedule(T0, s3.target_bucket, "f.bin", io.BytesIO(b"\x00" * 10), content_type="application/octet-stream")

    scheduler.handle()

    assert s3.client.head_object(Bucket=s3.target_bucket, Key="f.bin")["ContentType"] == "application/octet-stream"


def test_relative_times_are_from_the_schedulers_clock(s3: S3, clock: Clock) -> None:
    """schedule(timedelta) and reschedule(timedelta) count from the scheduler's clock, like rq's enqueue_in."""
    scheduler: Scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(timedelta(minutes=10), s3.target_bucket, "k", "x")

    moved = scheduler.reschedule(key, timedelta(hours=1))

    assert [e.when for e in scheduler.pending()] == [T0 + timedelta(hours=1)]
    assert moved != key
