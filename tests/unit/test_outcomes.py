"""A run's outcomes as typed values, and the recorder that turns them into the report and its log lines."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3_scheduler.outcomes import Due, Outcome, Recorder, Reject, Result, Skip, Step, StopReason
from s3_scheduler.report import ScheduledEvent

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc)
PREFIX = "jobs/|"
KEY = "jobs/|2026-11-27%2012%3A00%3A00%2B00%3A00|target|in~~k.json"


class Warnings:
    """Stands in for 0.0.3's ``warn``: keeps each message, formatted."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)


def error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "CopyObject")


def due(key: str = KEY) -> Due:
    return Due(ScheduledEvent.from_key(key, PREFIX), '"etag"')


def recorder(**options: Any) -> Recorder:
    options.setdefault("warn", Warnings())
    return Recorder(PREFIX, clock=lambda: T0 + timedelta(seconds=2), **options)


def record(
    rec: Recorder, step: Step, result: Result, exc: BaseException | None = None, *, of: Due | None = None
) -> None:
    rec.record(Outcome(step, of or due(), result, T0 + timedelta(seconds=2), exc))


@pytest.mark.parametrize(
    ("raised", "result"),
    [
        (None, Result.DONE),
        (error("NoSuchKey"), Result.GONE),
        (error("404"), Result.GONE),
        (error("PreconditionFailed"), Result.CHANGED),
        (error("ConditionalRequestConflict"), Result.CHANGED),
        (error("AccessDenied"), Result.FAILED),
        (TimeoutError("slow"), Result.FAILED),
    ],
)
def test_an_error_tells_what_a_step_came_to(raised: BaseException | None, result: Result) -> None:
    """No error is done; a missing object is gone; a refused condition is changed; anything else failed."""
    assert Result.of(raised) is result


def test_stop_reasons_read_as_the_words_they_always_were() -> None:
    """StopReason is a str enum whose values are the old string tags, so each reads as its word."""
    assert [reason.value for reason in StopReason] == ["stop", "timeout", "lease", "held", "on_delivery"]
    assert all(isinstance(reason, str) for reason in StopReason)
    assert StopReason("held") is StopReason.HELD


def test_a_copy_done_is_delivered_with_its_lateness_and_called_back(caplog: pytest.LogCaptureFixture) -> None:
    """A copy done is delivered, its lateness by the outcome's time, and on_delivery gets the event and lateness."""
    calls: list[tuple[ScheduledEvent, float]] = []
    rec = recorder(on_delivery=lambda event, late: calls.append((event, late)))

    with caplog.at_level(logging.INFO, logger="s3_scheduler"):
        record(rec, Step.COPY, Result.DONE)

    assert [e.key for e in rec.report.delivered] == [KEY]
    assert rec.report.worst_lateness == 2.0
    assert calls == [(due().event, 2.0)]
    assert f"Delivered {KEY!r} to 's3://target/in/k.json', 2.000 s late" in caplog.text


def test_a_copy_gone_vanished_and_a_copy_changed_is_left_for_the_next_run() -> None:
    """An event gone before its copy vanished; one rewritten since it was listed is deferred, not failed."""
    rec = recorder()
    changed = due("jobs/|2026-11-27%2012%3A00%3A00%2B00%3A00|target|other")

    record(rec, Step.COPY, Result.GONE)
    record(rec, Step.COPY, Result.CHANGED, of=changed)

    assert [e.key for e in rec.report.vanished] == [KEY]
    assert [e.key for e in rec.report.deferred] == [changed.event.key]
    assert rec.report.failed == []
    assert rec.report.delivered == []


def test_a_failed_copy_is_warned_through_warn_and_kept_for_the_dead_letters() -> None:
    """A failed copy is reported with its error (no traceback), warned once through warn, a dead-letter candidate."""
    warned = Warnings()
    rec = recorder(warn=warned)
    try:
        raise error("AccessDenied")
    except ClientError as exc:
        raised = exc

    record(rec, Step.COPY, Result.FAILED, raised)

    (failed,) = rec.report.failed
    assert failed.event.key == KEY
    assert failed.error is raised
    assert failed.error.__traceback__ is None
    assert rec.failed_copies == [due()]
    assert len(warned.lines) == 1
    assert warned.lines[0].startswith(f"Unable to deliver {KEY!r} to 's3://target/in/k.json': An error occurred")


def test_an_on_delivery_that_raises_is_kept_and_never_called_again() -> None:
    """The callback's error is kept for handle() to raise; later deliveries are recorded without calling it."""
    calls: list[str] = []

    def boom(event: ScheduledEvent, late: float) -> None:
        calls.append(event.key)
        raise ValueError("boom")

    rec = recorder(on_delivery=boom)

    record(rec, Step.COPY, Result.DONE)
    record(rec, Step.COPY, Result.DONE)

    assert isinstance(rec.callback_error, ValueError)
    assert calls == [KEY]
    assert len(rec.report.delivered) == 2


@pytest.mark.parametrize(("dead_letters", "where"), [(True, "moved to the dead letters"), (False, "removed")])
def test_an_expired_event_is_warned_saying_where_it_went(
    dead_letters: bool, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An event put aside for lateness is expired, with a WARNING naming where it went."""
    rec = recorder(dead_letters=dead_letters)

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        record(rec, Step.EXPIRE, Result.DONE)

    assert [e.key for e in rec.report.expired] == [KEY]
    assert f"Not delivering {KEY!r}: 2 s late, past max_lateness; {where}" in caplog.text


@pytest.mark.parametrize("result", [Result.GONE, Result.CHANGED])
def test_an_expired_event_gone_or_changed_meanwhile_vanished(result: Result) -> None:
    """Gone or rewritten before it was put aside: vanished, neither expired nor failed."""
    rec = recorder()

    record(rec, Step.EXPIRE, result)

    assert [e.key for e in rec.report.vanished] == [KEY]
    assert rec.report.expired == []
    assert rec.report.failed == []


def test_an_expired_event_not_put_aside_failed() -> None:
    """An error putting an expired event aside is reported as failed; it stays pending."""
    rec = recorder()

    record(rec, Step.EXPIRE, Result.FAILED, error("AccessDenied"))

    assert [f.event.key for f in rec.report.failed] == [KEY]
    assert rec.failed_copies == []


@pytest.mark.parametrize("result", [Result.DONE, Result.GONE, Result.CHANGED])
def test_a_delete_done_gone_or_refused_reports_nothing(result: Result) -> None:
    """A delete done or finding the event gone is fine; one refused for a rewrite leaves the new content pending."""
    rec = recorder()

    record(rec, Step.DELETE, result)

    assert rec.report.summary() == rec.report.under(PREFIX).summary()


def test_a_failed_delete_is_reported_and_warned(caplog: pytest.LogCaptureFixture) -> None:
    """A delivered event whose delete failed is failed: a later run delivers it again."""
    rec = recorder()

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        record(rec, Step.DELETE, Result.FAILED, TimeoutError("slow"))

    assert [f.event.key for f in rec.report.failed] == [KEY]
    assert f"Delivered {KEY!r} but could not remove it (TimeoutError: slow)" in caplog.text


def test_outcomes_handed_on_are_recorded_by_drain_and_end_their_flight() -> None:
    """hand_on times the outcome by the clock and calls ``then``; drain records it, and its flight ends."""
    rec = recorder()
    then: list[str] = []
    rec.started(due())

    rec.hand_on(Step.COPY, due(), Result.DONE, then=lambda: then.append("deleted"))
    assert rec.in_flight == {KEY: due()}
    rec.drain()

    assert then == ["deleted"]
    assert rec.in_flight == {}
    assert rec.report.worst_lateness == 2.0


def test_a_closed_recorder_takes_no_outcome_and_reports_what_is_in_flight() -> None:
    """After close a late copy is neither recorded nor handed to the deleter; it is reported as still on its way."""
    rec = recorder()
    then: list[str] = []
    rec.started(due())

    rec.close()
    rec.hand_on(Step.COPY, due(), Result.DONE, then=lambda: then.append("deleted"))
    rec.drain()
    rec.unfinished()

    assert then == []
    assert rec.report.delivered == []
    (failed,) = rec.report.failed
    assert isinstance(failed.error, TimeoutError)
    assert "may be delivered again" in str(failed.error)


def test_the_deleters_outcomes_are_taken_after_close() -> None:
    """put() is the deleter's way in: waited for at the end of the run, it is recorded even once closed."""
    rec = recorder()

    rec.close()
    rec.put(Outcome(Step.DELETE, due(), Result.FAILED, T0, TimeoutError("slow")))
    rec.drain()

    assert len(rec.report.failed) == 1


@pytest.mark.parametrize(("dead_letters", "kept"), [(True, 1), (False, 0)])
def test_a_rejected_event_is_warned_and_kept_for_the_dead_letters_only_where_they_are_on(
    dead_letters: bool, kept: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A target outside the allowlist is warned and reported rejected; a dead-letter candidate where they are on."""
    rec = recorder(dead_letters=dead_letters)

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        rec.reject(due())

    assert [e.key for e in rec.report.rejected] == [KEY]
    assert len(rec.rejected) == kept
    assert "is not an allowed target" in caplog.text


def test_what_the_listing_read_after_the_run_stopped_is_counted_without_a_delivery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unread names: a due event is deferred, one past the horizon not counted, a rejected one counted silently, a
    name that is not an event skipped with a warning."""
    rec = recorder()
    later = due("jobs/|2026-11-27%2012%3A30%3A00%2B00%3A00|target|later")

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        rec.unread(due(), T0)
        rec.unread(later, T0)
        rec.unread(Reject(due()), T0)
        rec.unread(Skip("jobs/|odd", "not a time"), T0)

    assert [e.key for e in rec.report.deferred] == [KEY]
    assert [e.key for e in rec.report.rejected] == [KEY]
    assert rec.report.skipped == ["jobs/|odd"]
    assert "not an allowed target" not in caplog.text
    assert "Ignoring 'jobs/|odd': not a scheduled event (not a time)" in caplog.text
