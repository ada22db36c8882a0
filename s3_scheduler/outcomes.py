"""What a run's steps come to, and the one place that records them in its report.

A run's copiers and its batch deleter work in threads of their own. Each step they finish
(a copy, the putting aside of an expired event, a delete) comes back as an `Outcome`: a
small typed value naming its `Step`, the `Due` event, the `Result` and when it came back.
The `Recorder` takes them from any thread and records them in the calling thread, in the
run's `HandleReport`: what was delivered, failed, vanished, left for the next run, with the
log line each one gets. Nothing here sends a request.

>>> from datetime import datetime, timezone
>>> event = ScheduledEvent.from_key("jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|b|k", "jobs/|")
>>> recorder = Recorder("jobs/|", clock=lambda: event.when, warn=print)
>>> recorder.hand_on(Step.COPY, Due(event, '"etag"'), Result.DONE)
>>> recorder.drain()
>>> recorder.report.summary()
'delivered=1 failed=0 skipped=0 deferred=0 vanished=0 rejected=0 dead_lettered=0 expired=0'
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
from datetime import datetime
from typing import Callable, NamedTuple, Union

from . import _s3
from .report import FailedDelivery, HandleReport, ScheduledEvent

logger = logging.getLogger("s3_scheduler.delivery")
"""A run's own logger: these lines are part of a run's log, under the name they always had."""


class Due(NamedTuple):
    """An event read from the listing, with the ETag the listing gave (None where it gave none)."""

    event: ScheduledEvent
    etag: str | None
    marked: bool = False
    """Whether a series marker marks it: its metadata is read, and a series goes on after it."""


class Skip(NamedTuple):
    """A listed name that is not an event, and why: warned, left alone."""

    key: str
    reason: str


class Reject(NamedTuple):
    """A listed event aimed outside ``allowed_targets``, or at the scheduler's lease, dead
    letters or series markers (with shards, any shard's)."""

    due: Due


Listed = Union[Due, Skip, Reject]
"""What the listing hands on for each name it reads."""


class Step(enum.Enum):
    """What a run did to an event in another thread."""

    COPY = "copy"
    """Copied it to its target (or delivered it through 0.0.3's ``move_file``)."""
    EXPIRE = "expire"
    """Put it aside (or removed it) for being later than ``max_lateness``."""
    DELETE = "delete"
    """Removed it after its copy, in a batch delete."""


class Result(enum.Enum):
    """What a step came to."""

    DONE = "done"
    """The step did what it set out to do."""
    GONE = "gone"
    """The event was not there: cancelled, or delivered by another run."""
    CHANGED = "changed"
    """The event's name holds other content than was listed: the condition on its ETag failed."""
    FAILED = "failed"
    """Any other error, kept in `Outcome.error`."""

    @classmethod
    def of(cls, error: BaseException | None) -> Result:
        """Return what a step that raised ``error`` (None: raised nothing) came to."""
        if error is None:
            return cls.DONE
        if _s3.is_missing(error):
            return cls.GONE
        if _s3.is_lost(error):
            return cls.CHANGED
        return cls.FAILED


class Outcome(NamedTuple):
    """One step's outcome, handed from the thread that took it to the calling thread."""

    step: Step
    due: Due
    result: Result
    at: datetime
    """When it came back, by the scheduler's clock."""
    error: BaseException | None = None
    """The error, for `Result.FAILED`."""
    missed: int = 0
    """For the copy of an occurrence of a series: the occurrences it skipped (coalesced)."""


class StopReason(str, enum.Enum):
    """Why a run stopped starting deliveries before the end of its window."""

    STOP = "stop"
    """The caller's stop event was set."""
    TIMEOUT = "timeout"
    """The run's deadline leaves no time for another delivery and the wind-down."""
    LEASE = "lease"
    """The run's lease is no longer its own for long enough."""
    HELD = "held"
    """Another run holds the lease: this one delivers nothing."""
    ON_DELIVERY = "on_delivery"
    """The ``on_delivery`` callback raised: `Scheduler.handle` raises it once the run is over."""


class Recorder:
    """Keeps one run's `HandleReport`, and what the run needs to know of its outcomes.

    Copiers and the deleter hand their outcomes on from their threads (`hand_on`, `put`);
    the calling thread records them (`drain`) and everything it decides itself (`skip`,
    `reject`, `defer`...). Besides the report it keeps the events in flight, the copies
    that failed and the events rejected (the dead-letter candidates), and the error of an
    ``on_delivery`` callback that raised: no further call is made after it.

    Log lines: INFO for each delivery (``Delivered 'key' to 's3://bucket/path', 0.512 s
    late``), an event gone or rewritten before its copy; WARNING for a name that is not an
    event, a rejected target, an expired event and anything that failed. A failed copy is
    warned through ``warn`` (0.0.3's ``s3_scheduler.scheduler.warn``).
    """

    def __init__(
        self,
        prefix: str,
        *,
        clock: Callable[[], datetime],
        warn: Callable[..., None],
        on_delivery: Callable[[ScheduledEvent, float], None] | None = None,
        dead_letters: bool = False,
    ) -> None:
        self.report = HandleReport.under(prefix)
        self.in_flight: dict[str, Due] = {}
        """The events whose copy (or putting aside) has started and not come back, by key."""
        self.failed_copies: list[Due] = []
        """The events whose copy failed in this run."""
        self.rejected: list[Due] = []
        """The events rejected in this run, kept where dead letters are on."""
        self.callback_error: Exception | None = None
        """What ``on_delivery`` raised; the run stops starting deliveries once it is set."""
        self._clock = clock
        self._warn = warn
        self._on_delivery = on_delivery
        self._dead_letters = dead_letters
        self._outcomes: collections.deque[Outcome] = collections.deque()
        """Outcomes handed on and not yet recorded: appended by any thread, taken by the
        calling thread alone (a deque's append and popleft are atomic, so no lock)."""
        self._lock = threading.Lock()
        self._closed = False

    # from any thread ---------------------------------------------------------------

    def hand_on(
        self,
        step: Step,
        due: Due,
        result: Result,
        error: BaseException | None = None,
        *,
        then: Callable[[], None] | None = None,
        missed: int = 0,
    ) -> None:
        """Hand on a step's outcome, timed now, and call ``then`` with it, at once
        (``missed``: see `Outcome.missed`).

        Once the recorder is closed nothing is handed on and ``then`` is not called: the
        run reported that event as still on its way.
        """
        with self._lock:
            if self._closed:
                return
            self._outcomes.append(Outcome(step, due, result, self._clock(), error, missed))
            if then is not None:
                then()

    def put(self, outcome: Outcome) -> None:
        """Hand on ``outcome`` (the deleter's: it is waited for, so it is never late)."""
        self._outcomes.append(outcome)

    def close(self) -> None:
        """Take no further `hand_on`: the copies still on their way are reported as such."""
        with self._lock:
            self._closed = True

    # in the calling thread ---------------------------------------------------------

    def started(self, due: Due) -> None:
        """Note that ``due``'s copy (or putting aside) has started."""
        self.in_flight[due.event.key] = due

    def drain(self) -> None:
        """Record every outcome handed on so far."""
        outcomes = self._outcomes
        while outcomes:
            self.record(outcomes.popleft())

    def record(self, outcome: Outcome) -> None:
        """Record one outcome in the report, with its log line."""
        if outcome.step is Step.DELETE:
            self._deleted(outcome)
            return
        self.in_flight.pop(outcome.due.event.key, None)
        if outcome.step is Step.COPY:
            self._copied(outcome)
        else:
            self._expired(outcome)

    def skip(self, item: Skip) -> None:
        """Record a name that is not an event (WARNING): it is left alone."""
        logger.warning("Ignoring %r: not a scheduled event (%s)", item.key, item.reason)
        self.report.skipped.append(item.key)

    def reject(self, due: Due) -> None:
        """Record an event whose target is not allowed (WARNING): it is never delivered."""
        event = due.event
        logger.warning("Not delivering %r: %r is not an allowed target", event.key, _url(event))
        self.report.rejected.append_key(event.key)
        if self._dead_letters:
            self.rejected.append(due)

    def defer(self, event: ScheduledEvent) -> None:
        """Record a due event whose delivery did not start: the next run delivers it."""
        self.report.deferred.append(event)

    def unread(self, item: Listed, horizon: datetime) -> None:
        """Count what the listing read after the run stopped delivering: a due event as
        deferred, a rejected one as rejected (not warned again), a name that is not an event
        as skipped."""
        if isinstance(item, Skip):
            self.skip(item)
        elif isinstance(item, Reject):
            self.report.rejected.append_key(item.due.event.key)
        elif item.event.when <= horizon:
            self.report.deferred.append_key(item.event.key)

    def dead_lettered(self, key: str) -> None:
        """Record an event moved to the dead letters."""
        self.report.dead_lettered.append_key(key)

    def unfinished(self) -> None:
        """Report each copy still on its way when the run had to end: it may land after the run returns."""
        for due in list(self.in_flight.values()):
            error = TimeoutError("its copy was still on its way when the run had to end: it may be delivered again")
            self.report.failed.append(FailedDelivery(due.event, error))
            logger.warning("%r: its copy was still on its way at the run's deadline; it stays pending", due.event.key)

    def _copied(self, outcome: Outcome) -> None:
        event = outcome.due.event
        if outcome.result is Result.DONE:
            self.report.delivered.append_key(event.key)
            self.report.coalesced += outcome.missed
            late = (outcome.at - event.when).total_seconds()
            self.report.worst_lateness = max(self.report.worst_lateness, late)
            logger.info("Delivered %r to %r, %.3f s late", event.key, _url(event), late)
            self._call_back(event, late)
        elif outcome.result is Result.GONE:
            self.report.vanished.append_key(event.key)
            logger.info("Not delivering %r: it was cancelled or delivered by another run", event.key)
        elif outcome.result is Result.CHANGED:
            self.report.deferred.append_key(event.key)
            logger.info(
                "Not delivering %r now: it was rewritten since it was listed; the next run delivers it", event.key
            )
        else:
            error = _error(outcome)
            self.report.failed.append(FailedDelivery(event, error))
            self.failed_copies.append(outcome.due)
            self._warn("Unable to deliver %r to %r: %s", event.key, _url(event), error)

    def _call_back(self, event: ScheduledEvent, late: float) -> None:
        if self._on_delivery is None:
            return
        try:
            self._on_delivery(event, late)
        except Exception as exc:  # noqa: BLE001 - raised once the run has cleaned up
            # No further copy starts and no further call is made; the copies in flight
            # finish, are deleted and reported, the lease is released, and handle()
            # raises this.
            self.callback_error, self._on_delivery = exc, None

    def _expired(self, outcome: Outcome) -> None:
        event = outcome.due.event
        if outcome.result is Result.DONE:
            late = (outcome.at - event.when).total_seconds()
            self.report.expired.append_key(event.key)
            self.report.coalesced += outcome.missed
            where = "moved to the dead letters" if self._dead_letters else "removed"
            logger.warning("Not delivering %r: %.0f s late, past max_lateness; %s", event.key, late, where)
        elif outcome.result in (Result.GONE, Result.CHANGED):
            self.report.vanished.append_key(event.key)
        else:
            error = _error(outcome)
            self.report.failed.append(FailedDelivery(event, error))
            logger.warning("Unable to put aside the expired event %r: %s", event.key, _s3.describe(error))

    def _deleted(self, outcome: Outcome) -> None:
        event = outcome.due.event
        if outcome.result in (Result.DONE, Result.GONE):
            return
        if outcome.result is Result.CHANGED:
            logger.info("%r was rewritten after its copy: its new content stays pending", event.key)
            return
        error = _error(outcome)
        self.report.failed.append(FailedDelivery(event, error))
        logger.warning(
            "Delivered %r but could not remove it (%s): a later run delivers it again", event.key, _s3.describe(error)
        )


def _error(outcome: Outcome) -> BaseException:
    """Return a failed outcome's error, without its traceback (a report keeps no frames alive)."""
    error = outcome.error if outcome.error is not None else RuntimeError(f"{outcome.step.value} failed")
    return error.with_traceback(None)


def _url(event: ScheduledEvent) -> str:
    return f"s3://{event.bucket}/{event.path}"
