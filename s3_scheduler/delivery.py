"""One run's delivery pipeline: list, copy, delete, and hand the outcomes to the recorder.

A run is three kinds of thread around a loop in the calling thread:

- the **lister** reads the listing page by page, in key order, up to the listing bound,
  decodes each name and hands it on through a bounded queue: delivery starts after the
  first page, and memory does not grow with the number of due events;
- the **copiers** (up to ``max_workers``, fewer while S3 asks to slow down) copy each due
  event to its target, conditional on the ETag the listing gave (``CopySourceIfMatch``),
  so a name rewritten since it was listed is left for the next run;
- the **deleter** removes the copied events with ``DeleteObjects``, up to 100 keys a
  request, each conditional on its listed ETag; a key the batch does not delete stays
  pending, is reported, and is delivered again by a later run. A copied event waits at
  most 0.2 s for its delete to be sent, and no copy starts while 200 copied events wait
  for theirs, so a run killed at any moment leaves at most ``max_workers`` + 200 events
  delivered and still pending.

The calling thread takes the lease before the first copy (`Lease.hold`), waits for events
of the run's window that are not yet due, and hands every outcome to the run's
`Recorder`, which keeps the `HandleReport` and calls ``on_delivery``. When the run must
stop (a `StopReason`: its timeout, a stop event, its lease), no copy starts, the copies in
flight finish and are deleted, the failed events that are through go to the dead letters
(`DeadLetters`), and the lease is released; then, where another run held the lease, the
rest of the window's listing is read only to count each due event left as ``deferred``.

The scheduler passes in what the run calls that 0.0.3's tests replace: ``warn``, and
``move_file`` when it was replaced, which then delivers each event (copy and delete in one
call) instead of the copy and the batched delete. The run waits for its next event
through the scheduler's ``wait``.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Callable, NamedTuple, Union

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from . import _s3, occurrences
from ._direct import Direct
from .deadletters import DeadLetters
from .exceptions import InvalidKeyError
from .keys import Window, is_reserved, is_reserved_in_shards, series_marker, sorts_late
from .lease import Acquisition, Lease, Outcome, RunLease
from .outcomes import Due, Listed, Recorder, Reject, Result, Skip, Step, StopReason
from .outcomes import Outcome as StepOutcome
from .report import HandleReport, ScheduledEvent
from .targets import AllowedTarget, is_allowed

logger = logging.getLogger(__name__)

DELETE_BATCH = 100
"""Keys per ``DeleteObjects`` request, at most (S3 takes 1,000): one request per 100
delivered events, and few delivered events wait for their delete at any moment."""

DELETE_FLUSH_SECONDS = 0.2
"""How long (real seconds) a copied event waits at most for its batch delete to be sent.

A batch is sent when it holds `DELETE_BATCH` keys, when the run waits this long or longer
for the next event of its window, when the run ends, or when its first key has waited
this long."""

UNDELETED_LIMIT = 2 * DELETE_BATCH
"""Copied events whose delete has not come back, at most, for a further copy to start: a
run killed at any moment leaves at most this many plus ``max_workers`` events delivered
and still pending (the next run delivers them again)."""

QUEUE_SIZE = 2000
"""How many listed names may wait for the calling thread: two LIST pages."""

_POLL = 0.05
"""How long (real seconds) the calling thread waits at once for the lister or a copier."""

WIND_DOWN_REQUESTS = 3
"""Requests, one after the other, that a run with a deadline keeps time for once it
stops starting copies: the last copy started, the last batch delete, and the release of
the lease. A batch delete on its way adds one, and so does taking the lease."""

WIND_DOWN_SLACK = 0.1
"""Seconds kept for the run's own work besides those requests."""

WIND_DOWN_FACTOR = 1.0
"""How much slower than the slowest recent request each wind-down request is taken to
be: copies in flight at once answer slower than one request alone."""


@dataclass
class Settings:
    """What a run needs of its scheduler."""

    bucket: str
    prefix: str
    client: Any
    resource: Any
    allowed: tuple[AllowedTarget, ...] | None
    max_workers: int
    clock: Callable[[], datetime]
    """Returns an aware UTC time (the scheduler's `Scheduler.now`)."""
    wait: Callable[[float, threading.Event | None], None]
    """Waits that many seconds, or less once the event is set, if it can tell."""
    warn: Callable[..., None]
    """Warns of a failed delivery (0.0.3's ``warn``, which its tests replace)."""
    lease: Lease | None
    dead_letters: DeadLetters | None = None
    """Where events go that are through (None: dead letters are off)."""
    move_file: Callable[[str, str, str, Any, str], None] | None = None
    """0.0.3's ``move_file``, where a test replaced it: each event is then delivered
    through it (copy and delete in one call) instead of the copy and the batch delete."""
    max_lateness: timedelta | None = None
    legacy_offsets: bool = True
    within: str | None = None
    """The path of the sharded scheduler this run delivers a shard (or the unsharded
    prefix) of: an event aimed at any of its shards' leases, dead letters or markers is
    rejected as one aimed at this prefix's own (None: a scheduler of one prefix)."""
    series: bool = True
    """Whether the listing looks for series markers (not with 0.0.3's stand-in resources)."""
    notices: set[str] = field(default_factory=set)
    """Warnings given once per scheduler, by name."""


class _End(NamedTuple):
    """The end of the listing, with the error that ended it (None: it was read to its end)."""

    error: BaseException | None


_Item = Union[Listed, _End]


class _Turn(enum.Enum):
    """What the loop does when no event is due to start."""

    AGAIN = "again"
    """Look again: something was recorded, waited for or put off."""
    DONE = "done"
    """Stop: the listing is read and every event of the window started."""


class _LeaseState(enum.Enum):
    """Where the run stands with the lease."""

    NOT_YET = "not yet"
    """Not taken yet: the run takes it before its first change."""
    TAKEN = "taken"
    HELD = "held"
    """Another run holds it: this one changes nothing."""
    OFF = "off"
    """Runs without it: ``exclusive=False``, or a store or credentials that cannot have it."""


def run(
    settings: Settings,
    *,
    window: Window,
    horizon: datetime,
    deadline: datetime | None,
    on_delivery: Callable[[ScheduledEvent, float], None] | None,
    stop: threading.Event | None,
) -> HandleReport:
    """Deliver the events due by ``horizon`` found in ``window``; return the report.

    Raises what the listing raised, after the deliveries already started have finished,
    and what ``on_delivery`` raised, once the run has cleaned up.
    """
    return _Run(settings, window, horizon, deadline, on_delivery, stop).go()


class _Limit:
    """At most ``limit`` copies in flight: halved when S3 asks to slow down, grown back by
    one after ``limit`` copies in a row went through."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.in_flight = 0
        self._streak = 0
        self._cond = threading.Condition()

    def acquire(self, timeout: float) -> bool:
        """Take a place for a copy, waiting up to ``timeout`` for one; return whether taken."""
        with self._cond:
            if self.in_flight >= self.limit:
                self._cond.wait(timeout)
            if self.in_flight >= self.limit:
                return False
            self.in_flight += 1
            return True

    def release(self, throttled: bool) -> None:
        """Give a place back, after a copy that S3 asked to slow down (``throttled``) or not."""
        with self._cond:
            self.in_flight -= 1
            if throttled:
                if self.limit > 1:
                    logger.warning("S3 asks to slow down: %d copies at once from now on", max(1, self.limit // 2))
                self.limit = max(1, self.limit // 2)
                self._streak = 0
            else:
                self._streak += 1
                if self._streak >= self.limit and self.limit < self.maximum:
                    self.limit += 1
                    self._streak = 0
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the copies in flight to end; return whether none is left."""
        with self._cond:
            if self.in_flight:
                self._cond.wait(timeout)
            return self.in_flight == 0


class _Copiers:
    """The run's copier threads: up to ``size``, each started when a copy is handed on and
    no copier is idle, each taking the next copy from one queue.

    Lighter than a ``ThreadPoolExecutor`` (no future per copy: a copy's outcome goes to
    the `Recorder`), and like one, its threads are not daemons: a process that exits
    while a copy is on its way waits for that copy to come back.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._tasks: queue.SimpleQueue[tuple[Callable[[Due], None], Due] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._started = 0

    def start(self, task: Callable[[Due], None], due: Due) -> None:
        """Have a copier call ``task(due)``: an idle one, else a new one while fewer than ``size`` run."""
        with self._lock:
            number = 0 if self._idle or self._started >= self._size else self._started + 1
            if number:
                self._started = number
            elif self._idle:
                self._idle -= 1
        self._tasks.put((task, due))
        if number:
            threading.Thread(target=self._work, name=f"s3-scheduler-copy-{number}").start()

    def shutdown(self) -> None:
        """End each copier once the copies handed on are done; return at once."""
        with self._lock:
            started = self._started
            self._size = 0  # no copier starts from now on
        for _ in range(started):
            self._tasks.put(None)

    def _work(self) -> None:
        while True:
            item = self._tasks.get()
            if item is None:
                return
            task, due = item
            try:
                task(due)
            except BaseException:  # a task hands on its own outcome: this is a bug, said and survived
                logger.exception("Unexpected error in a copier, delivering %r", due.event.key)
            with self._lock:
                self._idle += 1


class _Lister:
    """Reads the listing in a thread of its own and hands on what it reads; used as a
    context manager, its thread ends on the way out."""

    def __init__(self, settings: Settings, window: Window, horizon: datetime) -> None:
        self._settings = settings
        self._window = window
        self._horizon = horizon
        self.items: queue.Queue[_Item] = queue.Queue(maxsize=QUEUE_SIZE)
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._read, name="s3-scheduler-list", daemon=True)
        self._thread.start()

    def __enter__(self) -> _Lister:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.cancel()

    def cancel(self) -> None:
        """Stop reading and end the thread, discarding what it had read."""
        self._cancel.set()
        while self._thread.is_alive():
            self._drain()
            self._thread.join(_POLL)

    def _drain(self) -> None:
        try:
            while True:
                self.items.get_nowait()
        except queue.Empty:
            pass

    def _put(self, item: _Item) -> bool:
        while not self._cancel.is_set():
            try:
                self.items.put(item, timeout=_POLL)
            except queue.Full:
                continue
            return True
        return False

    def _read(self) -> None:
        s = self._settings
        error: BaseException | None = None
        try:
            after: str | None = None
            for page in _s3.list_window_pages(s.resource, s.client, s.bucket, s.prefix, self._window):
                items = [self._classify(listed) for listed in page]
                due = [item.event.key for item in items if isinstance(item, Due) and item.event.when <= self._horizon]
                if due and s.series:
                    items = self._mark(items, after, due[0], due[-1])
                    after = due[-1]
                for item in items:
                    if not self._put(item):
                        return
        except BaseException as exc:  # noqa: BLE001 - raised in the calling thread
            error = exc
        finally:
            self._put(_End(error))

    def _mark(self, items: list[Listed], after: str | None, first: str, last: str) -> list[Listed]:
        """Mark the events of ``items`` (a page read) from ``first`` to ``last`` that a series
        marker marks: the markers are listed after the page, as a marker is written before
        its event (``after``: the last key the previous listing of markers covered)."""
        s = self._settings
        marked = occurrences.marked_in(s.client, s.bucket, s.prefix, after, first, last, now=s.clock())
        if not marked:
            return items
        return [
            item._replace(marked=True) if isinstance(item, Due) and item.event.key in marked else item for item in items
        ]

    def _classify(self, listed: _s3.Listed) -> Listed:
        try:
            event = ScheduledEvent.from_key(listed.key, self._settings.prefix)
        except InvalidKeyError as exc:
            return Skip(listed.key, str(exc))
        due = Due(event, listed.etag)
        s = self._settings
        if is_reserved(s.prefix, s.bucket, event.bucket, event.path) or (
            s.within is not None and is_reserved_in_shards(s.within, s.bucket, event.bucket, event.path)
        ):
            return Reject(due)  # an event aimed at a lease, a dead letter or a marker: never delivered
        if s.allowed is not None and not is_allowed(s.allowed, event.bucket, event.path):
            return Reject(due)
        return due


class _Budget:
    """A run's deadline, and the time its wind-down takes: the requests it still sends one
    after the other, at the slowest its clients have seen lately (`_s3.Latency`)."""

    def __init__(self, deadline: datetime | None, settings: Settings, sending: Callable[[], bool]) -> None:
        self.deadline = deadline
        self._clock = settings.clock
        self._client = settings.client
        self._sending = sending
        self._latency = _s3.Latency.watch(settings.client)
        listing = getattr(getattr(settings.resource, "meta", None), "client", None)
        self._listing_latency = self._latency if listing is None else _s3.Latency.watch(listing)

    def wind_down(self, requests: int) -> timedelta:
        """The time ``requests`` requests one after the other take (one more while a batch
        delete is on its way), at the slowest this run's clients have seen lately, and the
        run's own slack."""
        if self._sending():
            requests += 1
        worst = max(self._latency.worst, self._listing_latency.worst)
        return timedelta(seconds=requests * worst * WIND_DOWN_FACTOR + WIND_DOWN_SLACK)

    def past(self, at: datetime, requests: int) -> bool:
        """Whether ``requests`` more requests, one after the other from ``at`` on, would end
        at or past the deadline. Never, without a deadline."""
        return self.deadline is not None and at + self.wind_down(requests) >= self.deadline

    def reached(self, at: datetime) -> bool:
        """Whether ``at`` is at or past the deadline. Never, without a deadline."""
        return self.deadline is not None and at >= self.deadline

    def near_the_end(self) -> bool:
        """Whether a batch delete sent now could still be on its way when the run winds down."""
        return self.past(self._clock(), WIND_DOWN_REQUESTS + 1)

    def out_of_time(self) -> bool:
        """Whether one more request and the lease's release no longer fit before the deadline."""
        return self.past(self._clock(), 2)

    def in_time(self, share: int) -> Callable[[], Any] | None:
        """For a run with a deadline, what returns a client whose requests give up within
        a ``share``-th of the time left (where the scheduler built its own client)."""
        if self.deadline is None:
            return None
        return lambda: _s3.bounded(self._client, self.left() / share)

    def left(self) -> float:
        """Seconds until the deadline (a day when there is none)."""
        if self.deadline is None:
            return 86400.0
        return max(0.0, (self.deadline - self._clock()).total_seconds())


class _Run:
    """One `run`: the loop in the calling thread, and what the copier threads call."""

    def __init__(
        self,
        settings: Settings,
        window: Window,
        horizon: datetime,
        deadline: datetime | None,
        on_delivery: Callable[[ScheduledEvent, float], None] | None,
        stop: threading.Event | None,
    ) -> None:
        self.s = settings
        self.window = window
        self.horizon = horizon
        self.budget = _Budget(deadline, settings, lambda: self.deleter is not None and self.deleter.sending)
        self.stop = stop
        self.recorder = Recorder(
            settings.prefix,
            clock=settings.clock,
            warn=settings.warn,
            on_delivery=on_delivery,
            dead_letters=settings.dead_letters is not None,
        )
        self.limit = _Limit(settings.max_workers)
        self.lease: RunLease | None = None
        self.lease_state = _LeaseState.NOT_YET if settings.lease is not None else _LeaseState.OFF
        self.deleter: _Deleter | None = None
        self.stopped_by: StopReason | None = None
        self.waiting: list[tuple[datetime, int, Due]] = []
        """The events of the window read before their time, soonest first."""
        self.order = itertools.count()
        self.listing_done = False
        self.listing_error: BaseException | None = None
        self.direct = Direct.of(settings.client)
        """Where the client is one this package built: its copies without botocore's per-call machinery."""

    def go(self) -> HandleReport:
        """Run the loop, wind down whatever happened, and return the report."""
        with _Lister(self.s, self.window, self.horizon) as lister:
            copiers = _Copiers(self.s.max_workers)
            self._start_deleter()
            try:
                self._deliver(lister, copiers)
            finally:
                self._wind_up(copiers)
                self._count_the_rest(lister)
        if self.recorder.callback_error is not None:
            raise self.recorder.callback_error
        if self.listing_error is not None:
            raise self.listing_error
        return self.recorder.report

    # the loop ------------------------------------------------------------------------

    def _start_deleter(self) -> None:
        if self.s.move_file is not None:  # 0.0.3's move_file deletes each event itself
            return
        self.deleter = _Deleter(self.s, self.recorder)
        if self.budget.deadline is not None:
            self.deleter.hold_back = self.budget.near_the_end
            self.deleter.out_of_time = self.budget.out_of_time

    def _deliver(self, lister: _Lister, copiers: _Copiers) -> None:
        """Start each event of the window at its time, until the window is done or the run must stop."""
        while True:
            self.recorder.drain()
            now = self._now()
            if self._must_stop(now):
                return
            due = self._next_due(lister, now)
            if due is _Turn.DONE:
                return
            if due is not _Turn.AGAIN and not self._start(due, now, copiers):
                return

    def _next_due(self, lister: _Lister, now: datetime) -> Due | _Turn:
        """Return the next event due now; else `_Turn.AGAIN` once something was read, recorded
        or waited for (the next event of the window, when the listing is done), or `_Turn.DONE`."""
        if self.waiting and self.waiting[0][0] <= now:
            return heapq.heappop(self.waiting)[2]
        if not self.listing_done:
            return self._read(lister, now)
        if self.waiting:
            self._wait_for(self.waiting[0][0], now)
            return _Turn.AGAIN
        return _Turn.DONE

    def _read(self, lister: _Lister, now: datetime) -> Due | _Turn:
        """Take what the lister read next: return a due event; record, or keep for later, the rest."""
        try:
            item = lister.items.get(timeout=_POLL)
        except queue.Empty:
            return _Turn.AGAIN
        if isinstance(item, _End):
            self.listing_done, self.listing_error = True, item.error
            return _Turn.DONE if item.error is not None else _Turn.AGAIN
        if isinstance(item, Skip):
            self.recorder.skip(item)
        elif isinstance(item, Reject):
            self.recorder.reject(item.due)
        elif item.event.when > self.horizon:
            pass  # due after the horizon: the listing reads further (to the minute; 14 h for offset names)
        elif item.event.when > now:
            heapq.heappush(self.waiting, (item.event.when, next(self.order), item))
        else:
            return item
        return _Turn.AGAIN

    def _start(self, due: Due, now: datetime, copiers: _Copiers) -> bool:
        """Start copying (or putting aside) ``due`` once a copier is free; False when the run must stop instead."""
        if self.lease_state is _LeaseState.NOT_YET and self._no_time_for_the_lease(now):
            self.recorder.defer(due.event)
            return False
        if not self._hold_lease():
            self.recorder.defer(due.event)
            return False
        task = self._expire if self._expired_by(due, now) else self._copy
        self._wait_for_a_copier()
        if self._must_stop(self._now()):  # the time waited for a free copier counts
            self.limit.release(throttled=False)
            self.recorder.defer(due.event)
            return False
        self.recorder.started(due)
        copiers.start(task, due)
        return True

    def _wait_for_a_copier(self) -> None:
        """Take a copier's place, recording outcomes while waiting; then wait while too
        many copied events wait for their delete (see `UNDELETED_LIMIT`)."""
        while not self.limit.acquire(_POLL):
            self.recorder.drain()
        while self.deleter is not None and not self.deleter.has_room(_POLL):
            self.recorder.drain()
        self.recorder.drain()

    def _wait_for(self, when: datetime, now: datetime) -> None:
        """Wait for the next event of the window.

        Before a wait of `DELETE_FLUSH_SECONDS` or more, the copies in flight are recorded
        and the batch delete gathered so far is sent: no copied event waits through the gap
        for its delete. A shorter wait (events closer together, as in a busy ``until`` run)
        lets the copies come back and the batch fill meanwhile, sent by the deleter in its
        time: a batch delete for each such wait would cost nearly a request per event.
        """
        if self.budget.past(when, WIND_DOWN_REQUESTS):
            self.stopped_by = StopReason.TIMEOUT
            return
        if (when - now).total_seconds() >= DELETE_FLUSH_SECONDS:
            while not self.limit.wait_idle(_POLL):
                self.recorder.drain()
            if self.deleter is not None:
                self.deleter.flush()
        self.recorder.drain()
        now = self._now()
        if when > now:
            self.s.wait((when - now).total_seconds(), self.stop)

    def _now(self) -> datetime:
        return self.s.clock()

    def _expired_by(self, due: Due, now: datetime) -> bool:
        """Whether ``due`` is later than ``max_lateness`` at ``now`` although runs could read it in time.

        A name that sorts outside the listing window at its own time (0.0.3's names with
        an offset, under ``legacy_offsets=False``) was read late by this configuration,
        not by an outage: it is delivered, never expired.
        """
        s, event = self.s, due.event
        if s.max_lateness is None or now - event.when <= s.max_lateness:
            return False
        return not sorts_late(event.key, s.prefix, event.when, legacy_offsets=s.legacy_offsets)

    # stopping ------------------------------------------------------------------------

    def _must_stop(self, now: datetime) -> bool:
        """Whether no further delivery may start; the first reason found is kept in ``stopped_by``."""
        if self.stopped_by is None:
            self.stopped_by = self._reason_to_stop(now)
        return self.stopped_by is not None

    def _reason_to_stop(self, now: datetime) -> StopReason | None:
        if self.recorder.callback_error is not None:
            return StopReason.ON_DELIVERY
        if self.stop is not None and self.stop.is_set():
            return StopReason.STOP
        if self.budget.past(now, WIND_DOWN_REQUESTS):
            return StopReason.TIMEOUT
        if self.lease is not None and not self.lease.may_start(now):
            logger.warning(
                "The lease %r is no longer this run's for long enough: no further delivery starts", self.lease.key
            )
            return StopReason.LEASE
        return None

    # winding up ----------------------------------------------------------------------

    def _wind_up(self, copiers: _Copiers) -> None:
        """Whatever stopped the loop: let the copies in flight finish, send the last
        deletes, move aside what is through, and let go of the lease."""
        finished = True
        try:
            copiers.shutdown()  # first: its threads are not daemons
            for _, _, due in self.waiting:
                self.recorder.defer(due.event)
            finished = self._await_copies()
            self.recorder.close()  # a copy that comes back from now on is reported as on its way
            if self.deleter is not None:  # the last deletes give up in time for the release
                self.deleter.close(self.budget.in_time(2))
            self.recorder.drain()
            if finished:
                self._dead_letter()
            else:
                self.recorder.unfinished()
        finally:
            self._let_go_of_the_lease(finished)

    def _await_copies(self) -> bool:
        """Wait for the copies in flight, recording their outcomes; with a deadline, only
        while a batch delete and the lease's release still fit. Return whether all came back."""
        while not self.limit.wait_idle(_POLL):
            self.recorder.drain()
            if self.budget.past(self._now(), WIND_DOWN_REQUESTS - 1):
                return self.limit.in_flight == 0
        return True

    def _dead_letter(self) -> None:
        """Move aside the events that failed in enough runs, or stay rejected, past ``dead_letter_after``."""
        letters, recorder = self.s.dead_letters, self.recorder
        if letters is None or not (recorder.failed_copies or recorder.rejected):
            return
        moved = letters.settle(
            recorder.failed_copies,
            recorder.rejected,
            now=self._now(),
            out_of_time=self.budget.out_of_time,
            hold=self._hold_lease,
        )
        for key in moved:
            recorder.dead_lettered(key)

    def _let_go_of_the_lease(self, finished: bool) -> None:
        """End the heartbeat and release the lease, in time. A copy still on its way (given
        up and reported) keeps it: it lapses by itself after lease_ttl, so no other run
        copies that event meanwhile."""
        if self.lease is None:
            return
        if finished:
            in_time = self.budget.in_time(1)
            self.lease.release(in_time and in_time(), wait=min(60.0, self.budget.left()))
        else:
            self.lease.stop_heartbeat()

    def _count_the_rest(self, lister: _Lister) -> None:
        """With the lease released and the deletes sent, count what the run leaves: the rest
        of the window's listing when another run held the lease, what was already read when
        the run's own time (timeout, stop) ran out."""
        if self.listing_done or self.listing_error is not None or self.stopped_by is None:
            return
        self.listing_error = self._defer_unread(lister, read_rest=self.stopped_by is StopReason.HELD)

    def _defer_unread(self, lister: _Lister, *, read_rest: bool) -> BaseException | None:
        """Count each due event the lister read as deferred, delivering nothing; with
        ``read_rest``, read the rest of the window's listing first (up to the deadline).
        Return a listing error."""
        while True:
            reading = read_rest and not self.budget.reached(self._now())
            try:
                item = lister.items.get(timeout=_POLL) if reading else lister.items.get_nowait()
            except queue.Empty:
                if reading:
                    continue
                return None
            if isinstance(item, _End):
                return item.error
            self.recorder.unread(item, self.horizon)

    # the lease -----------------------------------------------------------------------

    def _no_time_for_the_lease(self, now: datetime) -> bool:
        """Whether taking the lease now would leave no time to deliver and release it by the deadline."""
        if not self.budget.past(now, WIND_DOWN_REQUESTS + 1):
            return False
        self.stopped_by = StopReason.TIMEOUT
        return True

    def _hold_lease(self) -> bool:
        """Take the lease before the run's first change; False when another run holds it."""
        if self.lease_state is not _LeaseState.NOT_YET:
            return self.lease_state is not _LeaseState.HELD
        assert self.s.lease is not None
        acquired = self.s.lease.hold(self.horizon)
        if acquired.outcome is Outcome.TAKEN:
            self.lease, self.lease_state = acquired.run, _LeaseState.TAKEN
            return True
        if acquired.outcome is Outcome.HELD:
            self.lease_state, self.stopped_by = _LeaseState.HELD, StopReason.HELD
            _log_deferred(self.s.lease, acquired, self._now())
            return False
        self.lease_state = _LeaseState.OFF
        _log_without_lease(self.s.lease, acquired, self.s.notices)
        return True

    # in the copier threads -----------------------------------------------------------

    def _copy(self, due: Due) -> None:
        """In a copier thread: deliver one event; hand the outcome to the recorder."""
        event = due.event
        error: BaseException | None = None
        missed = 0
        try:
            if due.marked:
                missed = self._deliver_occurrence(due)
            elif self.s.move_file is not None:
                self.s.move_file(self.s.bucket, event.bucket, event.key, self.s.client, event.path)
            elif self.direct is not None:  # the same CopyObject, for less client CPU
                self.direct.copy(
                    event.bucket,
                    event.path,
                    self.s.bucket,
                    event.key,
                    if_match=due.etag,
                    replace_tags=self.s.dead_letters is not None,
                )
            else:
                extra: dict[str, Any] = {}
                if due.etag:
                    extra["CopySourceIfMatch"] = due.etag
                if self.s.dead_letters is not None:
                    extra["TaggingDirective"] = "REPLACE"  # the attempts tag stays behind
                self.s.client.copy_object(
                    Bucket=event.bucket,
                    Key=event.path,
                    CopySource={"Bucket": self.s.bucket, "Key": event.key},
                    **extra,
                )
        except Exception as exc:  # noqa: BLE001 - recorded by the calling thread
            error = exc
        deleter = self.deleter if error is None else None
        try:  # the outcome is handed on before the copier is free, so it is seen first
            then = None if deleter is None else lambda: deleter.add(due)
            self.recorder.hand_on(Step.COPY, due, Result.of(error), error, then=then, missed=missed)
        finally:
            self.limit.release(throttled=error is not None and _s3.is_throttled(error))

    def _deliver_occurrence(self, due: Due) -> int:
        """Deliver a marked event (an occurrence of a series) and write the next; return
        how many occurrences were skipped (see `occurrences.deliver`)."""
        extra = {"TaggingDirective": "REPLACE"} if self.s.dead_letters is not None else {}
        event = due.event
        delivered = occurrences.deliver(
            self.s.client, self.s.bucket, self.s.prefix, event, due.etag, now=self._now(), copy_extra=extra
        )
        if self.s.move_file is not None:  # a 0.0.3 test's move_file deletes the event itself
            self.s.client.delete_object(Bucket=self.s.bucket, Key=event.key)
        return delivered.missed

    def _expire(self, due: Due) -> None:
        """In a copier thread: put aside (or remove) an event found later than max_lateness."""
        error: BaseException | None = None
        result = Result.DONE
        missed = 0
        try:
            if due.marked:  # its series goes on
                s = self.s
                missed = occurrences.skip(s.client, s.bucket, s.prefix, due.event, due.etag, now=self._now()).missed
            if self.s.dead_letters is not None:
                self.s.dead_letters.put_aside(due)
            else:
                result = _EXPIRED[_s3.delete_if_match(self.s.client, self.s.bucket, due.event.key, due.etag)]
        except Exception as exc:  # noqa: BLE001 - recorded by the calling thread
            error, result = exc, Result.of(exc)
        try:
            self.recorder.hand_on(Step.EXPIRE, due, result, error, missed=missed)
        finally:
            self.limit.release(throttled=False)


_EXPIRED = {
    _s3.Deleted.DELETED: Result.DONE,
    _s3.Deleted.GONE: Result.GONE,
    _s3.Deleted.GONE_ON_RETRY: Result.GONE,
    _s3.Deleted.CHANGED: Result.CHANGED,
    _s3.Deleted.CHANGED_ON_RETRY: Result.CHANGED,
}
"""What the delete of an expired event (dead letters off) came to: gone or changed, it vanished."""


def _log_deferred(lease: Lease, acquired: Acquisition, now: datetime) -> None:
    """Say that the run defers to the run holding the lease: a WARNING when that run has overstayed."""
    holder = acquired.holder
    overstayed = None if holder is None else holder.overstayed(now)
    if holder is not None and overstayed is not None:
        logger.warning(
            "Deferred: another run has held the lease %r since %s, %.0f s past its term; one of its"
            " requests may hang. Runs wait until it ends or its lease lapses (at %s)",
            lease.key,
            holder.since.isoformat() if holder.since else "?",
            overstayed.total_seconds(),
            holder.expires.isoformat(),
        )
    else:
        logger.info("Deferred: another run holds the lease %r", lease.key)


def _log_without_lease(lease: Lease, acquired: Acquisition, notices: set[str]) -> None:
    """Warn, once per scheduler and cause, that runs go on without the lease."""
    name = acquired.outcome.value
    if name in notices:
        return
    notices.add(name)
    if acquired.outcome is Outcome.UNSUPPORTED:
        logger.warning("This S3 store rejects conditional writes: running without the lease %r", lease.key)
    else:
        logger.warning(
            "Access denied (%s) to the lease %r: running without it; grant s3:PutObject, s3:GetObject"
            " and s3:DeleteObject on it for exclusive runs, or pass exclusive=False",
            acquired.action or "s3:PutObject",
            lease.key,
        )


class _Deleter:
    """Removes copied events in batches of up to `DELETE_BATCH` keys, in a thread of its own.

    A copier adds its event to the pending list under a lock; the deleter's thread is woken
    only when there is something to do: a first event to wait `DELETE_FLUSH_SECONDS` for,
    a full batch, a flush or the close (not once for every event). Events that come while
    a batch delete is on its way wait their time from when it comes back.
    """

    def __init__(self, settings: Settings, recorder: Recorder) -> None:
        self._s = settings
        self._recorder = recorder
        self._flush_after = DELETE_FLUSH_SECONDS
        self._undeleted = 0
        self._last_client: Callable[[], Any] | None = None
        self.out_of_time: Callable[[], bool] = lambda: False
        """Whether the run's deadline leaves no time for a further delete: set by a run with one."""
        self.hold_back: Callable[[], bool] = lambda: False
        """Whether a batch that waited its time should wait on for the run's last one: set
        by a run with a deadline, so that its last batch delete never queues behind another."""
        self.sending = False
        """Whether a batch delete is on its way."""
        lock = threading.Lock()
        self._wake = threading.Condition(lock)
        """Wakes the deleter's thread: an event to wait for, a full batch, a flush, the close."""
        self._room = threading.Condition(lock)
        """Wakes a run waiting for fewer copied events to wait for their delete."""
        self._pending: list[Due] = []
        """The copied events not yet in a batch, in the order they came."""
        self._oldest = 0.0
        """When (monotonic seconds) the first of them came, or the last batch delete came
        back if that is later: a batch is sent `DELETE_FLUSH_SECONDS` after it."""
        self._flush_due = 0
        """How many of them a flush asked to send without waiting for more."""
        self._closing = False
        self._client = settings.client
        self._thread = threading.Thread(target=self._work, name="s3-scheduler-delete", daemon=True)
        self._thread.start()

    def add(self, due: Due) -> None:
        """Delete ``due`` with a coming batch."""
        with self._wake:
            self._undeleted += 1
            self._pending.append(due)
            if len(self._pending) == 1:
                self._oldest = time.monotonic()
                self._wake.notify()
            elif len(self._pending) == DELETE_BATCH:
                self._wake.notify()

    def has_room(self, timeout: float) -> bool:
        """Whether fewer than `UNDELETED_LIMIT` copied events wait for their delete (waiting up to ``timeout``)."""
        with self._room:
            if self._undeleted >= UNDELETED_LIMIT:
                self._room.wait(timeout)
            return self._undeleted < UNDELETED_LIMIT

    def flush(self) -> None:
        """Send the batch gathered so far without waiting for more."""
        with self._wake:
            self._flush_due = len(self._pending)
            self._wake.notify()

    def close(self, client: Callable[[], Any] | None = None) -> None:
        """Send what is gathered (its last batch through the client ``client()`` returns, if
        given) and end the thread."""
        with self._wake:
            self._last_client = client
            self._closing = True
            self._wake.notify()
        self._thread.join()

    def _work(self) -> None:
        while True:
            batch, last = self._next_batch()
            if last and batch and self._last_client is not None:
                self._client = self._last_client()
            self._flush(batch)
            if last:
                return
            with self._wake:  # what came during that delete waits its time from now on
                if self._pending:
                    self._oldest = time.monotonic()

    def _next_batch(self) -> tuple[list[Due], bool]:
        """Wait for the next batch to send: `DELETE_BATCH` events, what a flush or the close
        asks for, or the events gathered once the first has waited its time (unless the run
        holds it back). Return it, and whether it is the run's last."""
        overdue = False
        while True:
            with self._wake:
                pending = self._pending
                if self._closing or self._flush_due or len(pending) >= DELETE_BATCH or (overdue and pending):
                    return self._take()
                wait = self._oldest + self._flush_after - time.monotonic() if pending else None
                if wait is None or wait > 0:
                    self._wake.wait(wait)
                    continue
            overdue = not self.hold_back()  # outside the lock: copiers add meanwhile
            if not overdue:
                with self._wake:
                    self._wake.wait(_POLL)

    def _take(self) -> tuple[list[Due], bool]:
        """Take the next batch off the pending events (the lock held); return it, and whether it is the last."""
        batch = self._pending[:DELETE_BATCH]
        del self._pending[:DELETE_BATCH]
        self._flush_due = max(0, self._flush_due - len(batch))
        return batch, self._closing and not self._pending

    def _flush(self, batch: list[Due]) -> None:
        if not batch:
            return
        self.sending = True
        try:
            errors = self._delete(batch)
        except Exception as exc:  # noqa: BLE001 - every key of the batch stays pending
            errors = {due.event.key: exc for due in batch}
        finally:
            self.sending = False
        at = self._s.clock()
        for due in batch:
            error = errors.get(due.event.key)
            self._recorder.put(StepOutcome(Step.DELETE, due, Result.of(error), at, error))
        with self._room:
            self._undeleted -= len(batch)
            self._room.notify_all()

    def _delete(self, batch: list[Due]) -> dict[str, BaseException]:
        """Send one ``DeleteObjects``; return the error of each key not deleted.

        When the store refuses the whole request (a key it cannot put in XML, a store
        without the ETag condition), each key is deleted on its own, conditional on its
        ETag, so one odd key never keeps a batch of delivered events pending.
        """
        objects = [{"Key": due.event.key, **({"ETag": due.etag} if due.etag else {})} for due in batch]
        objects += [{"Key": series_marker(self._s.prefix, due.event.key)} for due in batch if due.marked]
        try:
            response = _s3.delete_batch(self._client, self._s.bucket, objects)
        except Exception as exc:  # noqa: BLE001 - falls back to one delete per key
            if isinstance(exc, (BotoConnectionError, HTTPClientError)):  # a timeout, a lost connection
                return {due.event.key: exc for due in batch}  # the keys stay pending, reported
            logger.info(
                "DeleteObjects was refused (%s): deleting the %d keys one by one", _s3.describe(exc), len(batch)
            )
            return self._delete_each(batch)
        errors: dict[str, BaseException] = {}
        for error in response.get("Errors", ()):
            errors[error.get("Key", "")] = ClientError(
                {"Error": {"Code": error.get("Code", ""), "Message": error.get("Message", "")}}, "DeleteObjects"
            )
        return errors

    def _delete_each(self, batch: list[Due]) -> dict[str, BaseException]:
        errors: dict[str, BaseException] = {}
        for due in batch:
            if self.out_of_time():  # the run must return: these keys stay pending, reported
                errors[due.event.key] = TimeoutError("not deleted: the run's deadline came first")
                continue
            condition = {"IfMatch": due.etag} if due.etag else {}
            try:
                self._client.delete_object(Bucket=self._s.bucket, Key=due.event.key, **condition)
            except Exception as exc:  # noqa: BLE001 - this key stays pending, reported
                errors[due.event.key] = exc
        return errors
