"""One run's delivery pipeline: list, copy, delete, record outcomes, dead letters.

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

The calling thread takes the lease before the first copy, waits for events of the run's
window that are not yet due, records every outcome in the `HandleReport` and calls
``on_delivery``. When the run must stop (its timeout, a stop event, its lease), no copy
starts, the copies in flight finish and are deleted, and the lease is released; then,
where another run held the lease, the rest of the window's listing is read only to count
each due event left as ``deferred``.

0.0.3's tests replace ``s3_scheduler.scheduler.move_file`` and ``warn``: both are looked
up there at call time, and a replaced ``move_file`` delivers each event (copy and delete
in one call) instead of the copy and the batched delete.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, NamedTuple, Union

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from . import _s3
from .exceptions import InvalidKeyError
from .keys import ATTEMPTS_TAG, MAX_KEY_BYTES, Window, dead_letter_key, decode_event, is_reserved, sorts_late
from .lease import Lease, Outcome, RunLease
from .report import FailedDelivery, HandleReport, ScheduledEvent
from .targets import AllowedTarget, is_allowed
from .utils import move_file as _original_move_file

logger = logging.getLogger(__name__)

DELETE_BATCH = 100
"""Keys per ``DeleteObjects`` request, at most (S3 takes 1,000): one request per 100
delivered events, and few delivered events wait for their delete at any moment."""

DELETE_FLUSH_SECONDS = 0.2
"""How long (real seconds) a copied event waits at most for its batch delete to be sent.

A batch is sent when it holds `DELETE_BATCH` keys, when the run waits for the next event
of its window, when the run ends, or when its first key has waited this long."""

UNDELETED_LIMIT = 2 * DELETE_BATCH
"""Copied events whose delete has not come back, at most, for a further copy to start: a
run killed at any moment leaves at most this many plus ``max_workers`` events delivered
and still pending (the next run delivers them again)."""

QUEUE_SIZE = 2000
"""How many listed names may wait for the calling thread: two LIST pages."""

_FLUSH = "flush"
"""Asks the deleter to send its batch now."""

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
    dead_letter_after: timedelta | None
    dead_letter_attempts: int
    max_workers: int
    clock: Callable[[], datetime]
    """Returns an aware UTC time (the scheduler's `Scheduler.now`)."""
    wait: Callable[[float, threading.Event | None], None]
    lease: Lease | None
    max_lateness: timedelta | None = None
    legacy_offsets: bool = True
    notices: set[str] = field(default_factory=set)
    """Warnings given once per scheduler, by name."""


class Due(NamedTuple):
    """An event read from the listing, with the ETag the listing gave."""

    event: ScheduledEvent
    etag: str | None


class _Skip(NamedTuple):
    key: str
    reason: str


class _Reject(NamedTuple):
    due: Due


class _End(NamedTuple):
    error: BaseException | None


_Item = Union[Due, _Skip, _Reject, _End]


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

    Raises what the listing raised, after the deliveries already started have finished.
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
        with self._cond:
            if self.in_flight >= self.limit:
                self._cond.wait(timeout)
            if self.in_flight >= self.limit:
                return False
            self.in_flight += 1
            return True

    def release(self, throttled: bool) -> None:
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
        with self._cond:
            if self.in_flight:
                self._cond.wait(timeout)
            return self.in_flight == 0


class _Lister:
    """Reads the listing in a thread of its own and hands on what it reads."""

    def __init__(self, settings: Settings, window: Window) -> None:
        self._settings = settings
        self._window = window
        self.items: queue.Queue[_Item] = queue.Queue(maxsize=QUEUE_SIZE)
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._read, name="s3-scheduler-list", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
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
            for listed in _s3.list_window(s.resource, s.client, s.bucket, s.prefix, self._window):
                if not self._put(self._classify(listed)):
                    return
        except BaseException as exc:  # noqa: BLE001 - raised in the calling thread
            error = exc
        finally:
            self._put(_End(error))

    def _classify(self, listed: _s3.Listed) -> _Item:
        try:
            event = decode_event(listed.key, self._settings.prefix)
        except InvalidKeyError as exc:
            return _Skip(listed.key, str(exc))
        due = Due(event, listed.etag)
        s = self._settings
        if is_reserved(s.prefix, s.bucket, event.bucket, event.path):
            return _Reject(due)  # an event aimed at the lease or a dead letter: never delivered
        if s.allowed is not None and not is_allowed(s.allowed, event.bucket, event.path):
            return _Reject(due)
        return due


class _Run:
    def __init__(
        self,
        settings: Settings,
        window: Window,
        horizon: datetime,
        deadline: datetime | None,
        on_delivery: Callable[[ScheduledEvent, float], None] | None,
        stop: threading.Event | None,
    ) -> None:
        from . import scheduler as api  # looked up at call time: 0.0.3's tests patch it

        self.s = settings
        self.window = window
        self.horizon = horizon
        self.deadline = deadline
        self.on_delivery = on_delivery
        self.stop = stop
        self.api = api
        self.legacy_move = api.move_file is not _original_move_file
        self.report = HandleReport.under(settings.prefix)
        self.results: queue.Queue[tuple[str, Due, Any, datetime]] = queue.Queue()
        self.limit = _Limit(settings.max_workers)
        self.lease: RunLease | None = None
        self.lease_state = "none" if settings.lease is not None else "off"
        self.failed: list[Due] = []
        self.rejected: list[Due] = []
        self.deleter: _Deleter | None = None
        self.stopped_by: str | None = None
        self.callback_error: Exception | None = None
        self.latency = _s3.Latency.watch(settings.client)
        listing = getattr(getattr(settings.resource, "meta", None), "client", None)
        self.listing_latency = self.latency if listing is None else _s3.Latency.watch(listing)
        self.in_flight: dict[str, Due] = {}
        """The events whose copy (or put-aside) has started and not come back, by key."""
        self.handing_on = threading.Lock()
        self.closed = False
        """Set once the run stops taking outcomes: a copy that comes back later was reported."""

    # the loop ------------------------------------------------------------------------

    def go(self) -> HandleReport:
        lister = _Lister(self.s, self.window)
        pool = ThreadPoolExecutor(max_workers=self.s.max_workers, thread_name_prefix="s3-scheduler")
        if not self.legacy_move:
            self.deleter = _Deleter(self.s, self.results)
            if self.deadline is not None:
                self.deleter.hold_back = self._near_the_end
                self.deleter.out_of_time = self._out_of_time
        waiting: list[tuple[datetime, int, Due]] = []
        order = itertools.count()
        listing_error: BaseException | None = None
        listing_done = False
        try:
            while True:
                self._drain()
                now = self._now()
                if self._must_stop(now):
                    break
                due: Due | None = None
                if waiting and waiting[0][0] <= now:
                    due = heapq.heappop(waiting)[2]
                elif not listing_done:
                    try:
                        item = lister.items.get(timeout=_POLL)
                    except queue.Empty:
                        continue
                    if isinstance(item, _End):
                        listing_done, listing_error = True, item.error
                        if listing_error is not None:
                            break
                        continue
                    if isinstance(item, _Skip):
                        logger.warning("Ignoring %r: not a scheduled event (%s)", item.key, item.reason)
                        self.report.skipped.append(item.key)
                        continue
                    if isinstance(item, _Reject):
                        self._reject(item.due)
                        continue
                    if item.event.when > self.horizon:
                        continue
                    if item.event.when > now:
                        heapq.heappush(waiting, (item.event.when, next(order), item))
                        continue
                    due = item
                elif waiting:
                    self._wait_for(waiting[0][0], now)
                    continue
                else:
                    break
                if self.lease_state == "none" and self._no_time_for_the_lease(now):
                    self.report.deferred.append(due.event)
                    break
                if not self._hold_lease():
                    self.report.deferred.append(due.event)
                    break
                task = self._expire if self._expired_by(due, now) else self._copy
                while not self.limit.acquire(_POLL):
                    self._drain()
                while self.deleter is not None and not self.deleter.has_room(_POLL):
                    self._drain()  # few copied events wait for their delete: see UNDELETED_LIMIT
                self._drain()
                if self._must_stop(self._now()):  # the time waited for a free copier counts
                    self.limit.release(throttled=False)
                    self.report.deferred.append(due.event)
                    break
                self.in_flight[due.event.key] = due
                pool.submit(task, due)
        finally:
            finished = True
            try:
                try:
                    for _, _, due in waiting:
                        self.report.deferred.append(due.event)
                    pool.shutdown(wait=False)
                    finished = self._await_copies()
                    with self.handing_on:  # a copy that comes back from now on is reported as on its way
                        self.closed = True
                    if self.deleter is not None:  # the last deletes give up in time for the release
                        self.deleter.close(self._in_time(2))
                    self._drain()
                    if finished:
                        self._dead_letter()
                    else:
                        self._report_unfinished()
                finally:
                    # Whatever happened, the heartbeat ends and the lease goes, in time; but a
                    # copy still on its way (given up and reported) keeps it: it lapses by itself
                    # after lease_ttl, so no other run copies that event meanwhile.
                    if self.lease is not None and finished:
                        in_time = self._in_time(1)
                        self.lease.release(in_time and in_time(), wait=min(60.0, self._left()))
                    elif self.lease is not None:
                        self.lease.stop_heartbeat()
                # With the lease released and the deletes sent, count what the run leaves:
                # the rest of the window's listing when another run held the lease, what
                # was already read when the run's own time (timeout, stop) ran out.
                if not listing_done and listing_error is None and self.stopped_by is not None:
                    listing_error = self._defer_unread(lister, read_rest=self.stopped_by == "held")
            finally:
                lister.cancel()  # whatever happened, the lister thread ends
        if self.callback_error is not None:
            raise self.callback_error
        if listing_error is not None:
            raise listing_error
        return self.report

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

    def _must_stop(self, now: datetime) -> bool:
        if self.stopped_by is None:
            if self.stop is not None and self.stop.is_set():
                self.stopped_by = "stop"
            elif self.deadline is not None and now + self._wind_down(WIND_DOWN_REQUESTS) >= self.deadline:
                self.stopped_by = "timeout"
            elif self.lease is not None and not self.lease.may_start(now):
                self.stopped_by = "lease"
                logger.warning(
                    "The lease %r is no longer this run's for long enough: no further delivery starts", self.lease.key
                )
        return self.stopped_by is not None

    def _wind_down(self, requests: int) -> timedelta:
        """The time ``requests`` requests one after the other take (one more while a batch
        delete is on its way), at the slowest this run's client has seen lately, and the
        run's own slack."""
        if self.deleter is not None and self.deleter.sending:
            requests += 1
        worst = max(self.latency.worst, self.listing_latency.worst)
        return timedelta(seconds=requests * worst * WIND_DOWN_FACTOR + WIND_DOWN_SLACK)

    def _await_copies(self) -> bool:
        """Wait for the copies in flight, recording their outcomes; with a deadline, only
        while a batch delete and the lease's release still fit. Return whether all came back."""
        while not self.limit.wait_idle(_POLL):
            self._drain()
            if self.deadline is not None and self._now() + self._wind_down(WIND_DOWN_REQUESTS - 1) >= self.deadline:
                return self.limit.in_flight == 0
        return True

    def _report_unfinished(self) -> None:
        """Report each copy still on its way at the deadline: it may land after the run returns."""
        for due in list(self.in_flight.values()):
            error = TimeoutError("its copy was still on its way when the run had to end: it may be delivered again")
            self.report.failed.append(FailedDelivery(due.event, error))
            logger.warning("%r: its copy was still on its way at the run's deadline; it stays pending", due.event.key)

    def _near_the_end(self) -> bool:
        """Whether a batch delete sent now could still be on its way when the run winds down."""
        return self.deadline is not None and self._now() + self._wind_down(WIND_DOWN_REQUESTS + 1) >= self.deadline

    def _in_time(self, share: int) -> Callable[[], Any] | None:
        """For a run with a deadline, what returns a client whose requests give up within
        a ``share``-th of the time left (where the scheduler built its own client)."""
        if self.deadline is None:
            return None
        return lambda: _s3.bounded(self.s.client, self._left() / share)

    def _out_of_time(self) -> bool:
        """Whether one more request and the lease's release no longer fit before the deadline."""
        return self.deadline is not None and self._now() + self._wind_down(2) >= self.deadline

    def _left(self) -> float:
        """Seconds until the deadline (a day when there is none)."""
        if self.deadline is None:
            return 86400.0
        return max(0.0, (self.deadline - self._now()).total_seconds())

    def _defer_unread(self, lister: _Lister, *, read_rest: bool) -> BaseException | None:
        """Count each due event the lister read as deferred, delivering nothing; with
        ``read_rest``, read the rest of the window's listing first (up to the deadline).
        Return a listing error."""
        while True:
            if read_rest and (self.deadline is None or self._now() < self.deadline):
                try:
                    item = lister.items.get(timeout=_POLL)
                except queue.Empty:
                    continue
            else:
                try:
                    item = lister.items.get_nowait()
                except queue.Empty:
                    return None
            if isinstance(item, _End):
                return item.error
            if isinstance(item, _Skip):
                logger.warning("Ignoring %r: not a scheduled event (%s)", item.key, item.reason)
                self.report.skipped.append(item.key)
            elif isinstance(item, _Reject):
                self.report.rejected.append_key(item.due.event.key)
            elif item.event.when <= self.horizon:
                self.report.deferred.append_key(item.event.key)

    def _wait_for(self, when: datetime, now: datetime) -> None:
        """Wait for the next event of the window, once the copies in flight are recorded."""
        if self.deadline is not None and when + self._wind_down(WIND_DOWN_REQUESTS) >= self.deadline:
            self.stopped_by = "timeout"
            return
        while not self.limit.wait_idle(_POLL):
            self._drain()
        if self.deleter is not None:
            self.deleter.flush()
        self._drain()
        now = self._now()
        if when > now:
            self.s.wait((when - now).total_seconds(), self.stop)

    # the lease -----------------------------------------------------------------------

    def _no_time_for_the_lease(self, now: datetime) -> bool:
        """Whether taking the lease now would leave no time to deliver and release it by the deadline."""
        if self.deadline is None or now + self._wind_down(WIND_DOWN_REQUESTS + 1) < self.deadline:
            return False
        self.stopped_by = "timeout"
        return True

    def _hold_lease(self) -> bool:
        """Take the lease before the run's first change; False when another run holds it."""
        if self.lease_state != "none":
            return self.lease_state != "held"
        assert self.s.lease is not None
        acquired = self.s.lease.acquire(self.horizon)
        if acquired.outcome is Outcome.TAKEN:
            assert acquired.run is not None
            self.lease = acquired.run
            self.lease.start_heartbeat()
            self.lease_state = "taken"
            return True
        if acquired.outcome is Outcome.HELD:
            self.lease_state = "held"
            self.stopped_by = "held"
            holder = acquired.holder
            overstayed = None if holder is None else holder.overstayed(self._now())
            if holder is not None and overstayed is not None:
                logger.warning(
                    "Deferred: another run has held the lease %r since %s, %.0f s past its term; one of its"
                    " requests may hang. Runs wait until it ends or its lease lapses (at %s)",
                    self.s.lease.key,
                    holder.since.isoformat() if holder.since else "?",
                    overstayed.total_seconds(),
                    holder.expires.isoformat(),
                )
            else:
                logger.info("Deferred: another run holds the lease %r", self.s.lease.key)
            return False
        self.lease_state = "off"
        name = acquired.outcome.value
        if name not in self.s.notices:
            self.s.notices.add(name)
            if acquired.outcome is Outcome.UNSUPPORTED:
                logger.warning(
                    "This S3 store rejects conditional writes: running without the lease %r", self.s.lease.key
                )
            else:
                logger.warning(
                    "Access denied (%s) to the lease %r: running without it; grant s3:PutObject, s3:GetObject"
                    " and s3:DeleteObject on it for exclusive runs, or pass exclusive=False",
                    acquired.action or "s3:PutObject",
                    self.s.lease.key,
                )
        return True

    # copies --------------------------------------------------------------------------

    def _copy(self, due: Due) -> None:
        """In a copier thread: deliver one event; hand the outcome to the calling thread."""
        event = due.event
        outcome: BaseException | None = None
        try:
            if self.legacy_move:
                self.api.move_file(self.s.bucket, event.bucket, event.key, self.s.client, event.path)
            else:
                extra: dict[str, Any] = {}
                if due.etag:
                    extra["CopySourceIfMatch"] = due.etag
                if self.s.dead_letter_after is not None:
                    extra["TaggingDirective"] = "REPLACE"  # the attempts tag stays behind
                self.s.client.copy_object(
                    Bucket=event.bucket,
                    Key=event.path,
                    CopySource={"Bucket": self.s.bucket, "Key": event.key},
                    **extra,
                )
        except Exception as exc:  # noqa: BLE001 - recorded by the calling thread
            outcome = exc
        try:  # the outcome is handed on before the copier is free, so it is seen first
            with self.handing_on:
                if not self.closed:  # else the run reported it as still on its way
                    self.results.put(("copy", due, outcome, self._now()))
                    if outcome is None and self.deleter is not None:
                        self.deleter.add(due)
        finally:
            self.limit.release(throttled=outcome is not None and _s3.is_throttled(outcome))

    def _expire(self, due: Due) -> None:
        """In a copier thread: put aside (or remove) an event found later than max_lateness."""
        outcome: BaseException | None = None
        try:
            if self.s.dead_letter_after is not None:
                self._put_aside(due)
            else:
                condition = {"IfMatch": due.etag} if due.etag else {}
                self.s.client.delete_object(Bucket=self.s.bucket, Key=due.event.key, **condition)
        except Exception as exc:  # noqa: BLE001 - recorded by the calling thread
            outcome = exc
        try:
            with self.handing_on:
                if not self.closed:  # else the run reported it as still on its way
                    self.results.put(("expire", due, outcome, self._now()))
        finally:
            self.limit.release(throttled=False)

    def _drain(self) -> None:
        """Record the outcomes the copiers and the deleter have handed on."""
        while True:
            try:
                kind, due, outcome, at = self.results.get_nowait()
            except queue.Empty:
                return
            if kind == "copy":
                self.in_flight.pop(due.event.key, None)
                self._copied(due, outcome, at)
            elif kind == "expire":
                self.in_flight.pop(due.event.key, None)
                self._expired(due, outcome, at)
            else:
                self._deleted(due, outcome)

    def _expired(self, due: Due, error: BaseException | None, at: datetime) -> None:
        event = due.event
        late = (at - event.when).total_seconds()
        if error is None:
            self.report.expired.append_key(event.key)
            where = "moved to the dead letters" if self.s.dead_letter_after is not None else "removed"
            logger.warning("Not delivering %r: %.0f s late, past max_lateness; %s", event.key, late, where)
        elif _s3.is_missing(error) or _s3.is_lost(error):
            self.report.vanished.append_key(event.key)
        else:
            self.report.failed.append(FailedDelivery(event, error.with_traceback(None)))
            logger.warning("Unable to put aside the expired event %r: %s", event.key, _describe(error))

    def _copied(self, due: Due, error: BaseException | None, at: datetime) -> None:
        event = due.event
        if error is None:
            self.report.delivered.append_key(event.key)
            late = (at - event.when).total_seconds()
            self.report.worst_lateness = max(self.report.worst_lateness, late)
            logger.info("Delivered %r to %r, %.3f s late", event.key, _url(event), late)
            if self.on_delivery is not None:
                try:
                    self.on_delivery(event, late)
                except Exception as exc:  # noqa: BLE001 - raised once the run has cleaned up
                    # No further copy starts and no further call is made; the copies in
                    # flight finish, are deleted and reported, the lease is released, and
                    # handle() raises this.
                    self.callback_error, self.on_delivery = exc, None
                    self.stopped_by = "on_delivery"
        elif _s3.is_missing(error):
            self.report.vanished.append_key(event.key)
            logger.info("Not delivering %r: it was cancelled or delivered by another run", event.key)
        elif _s3.is_lost(error):
            self.report.deferred.append_key(event.key)
            logger.info(
                "Not delivering %r now: it was rewritten since it was listed; the next run delivers it", event.key
            )
        else:
            self.report.failed.append(FailedDelivery(event, error.with_traceback(None)))
            self.failed.append(due)
            self.api.warn("Unable to deliver %r to %r: %s", event.key, _url(event), error)

    def _deleted(self, due: Due, error: BaseException | None) -> None:
        event = due.event
        if error is None or _s3.is_missing(error):
            return
        if _s3.is_lost(error):
            logger.info("%r was rewritten after its copy: its new content stays pending", event.key)
            return
        self.report.failed.append(FailedDelivery(event, error.with_traceback(None)))
        logger.warning(
            "Delivered %r but could not remove it (%s): a later run delivers it again", event.key, _describe(error)
        )

    def _reject(self, due: Due) -> None:
        event = due.event
        logger.warning("Not delivering %r: %r is not an allowed target", event.key, _url(event))
        self.report.rejected.append_key(event.key)
        if self.s.dead_letter_after is not None:
            self.rejected.append(due)

    # dead letters --------------------------------------------------------------------

    def _dead_letter(self) -> None:
        """Move aside the events that failed in enough runs, or stay rejected, past ``dead_letter_after``."""
        after = self.s.dead_letter_after
        if after is None or not (self.failed or self.rejected):
            return
        now = self._now()
        candidates = [d for d in self.rejected if now - d.event.when >= after]
        for due in self.failed:
            if self._out_of_time():  # counted by a later run: the deadline comes first
                break
            runs = self._count_failed_run(due)
            if runs >= self.s.dead_letter_attempts and now - due.event.when >= after:
                candidates.append(due)
        if not candidates or self._out_of_time() or not self._hold_lease():
            return
        for due in candidates:
            if self._out_of_time():
                break
            self._move_aside(due)

    def _count_failed_run(self, due: Due) -> int:
        """Add this run to the failed runs the event's tag counts; return the new count (0: unknown)."""
        client, bucket, key = self.s.client, self.s.bucket, due.event.key
        try:
            tags = client.get_object_tagging(Bucket=bucket, Key=key).get("TagSet", [])
            counts = [t["Value"] for t in tags if t.get("Key") == ATTEMPTS_TAG]
            runs = (int(counts[0]) if counts and counts[0].isdigit() else 0) + 1
            others = [t for t in tags if t.get("Key") != ATTEMPTS_TAG]
            client.put_object_tagging(
                Bucket=bucket, Key=key, Tagging={"TagSet": [*others, {"Key": ATTEMPTS_TAG, "Value": str(runs)}]}
            )
        except Exception as exc:  # noqa: BLE001 - without the count, the event is never dead-lettered
            if _s3.is_missing(exc):
                return 0
            if "tagging" not in self.s.notices:
                self.s.notices.add("tagging")
                logger.warning(
                    "Unable to count the failed runs of %r in its tags (%s): grant s3:GetObjectTagging and"
                    " s3:PutObjectTagging on the events; until then no event is dead-lettered",
                    key,
                    _describe(exc),
                )
            return 0
        return runs

    def _move_aside(self, due: Due) -> None:
        key = due.event.key
        size = len(dead_letter_key(self.s.prefix, key, "0" * 8).encode("utf-8"))
        if size > MAX_KEY_BYTES:
            notice = f"too long: {key}"
            if notice not in self.s.notices:
                self.s.notices.add(notice)
                logger.warning(
                    "%r is too long to be moved to the dead letters (its name there would be %d bytes, over S3's"
                    " 1,024): it stays pending and failing; cancel it or shorten the scheduler path",
                    key,
                    size,
                )
            return
        try:
            target = self._put_aside(due)
        except Exception as exc:  # noqa: BLE001 - the event stays where it was
            logger.warning("Unable to move %r to the dead letters: %s", due.event.key, _describe(exc))
            return
        logger.warning("Moved %r to the dead letters as %r", due.event.key, target)
        self.report.dead_lettered.append_key(due.event.key)

    def _put_aside(self, due: Due) -> str:
        """Copy the event, name and body kept, to a dead letter of its own, then remove it; return its new key."""
        event, client, bucket = due.event, self.s.client, self.s.bucket
        target = _s3.copy_to_new_name(
            client, bucket, event.key, due.etag, lambda: dead_letter_key(self.s.prefix, event.key, secrets.token_hex(4))
        )
        delete_condition = {"IfMatch": due.etag} if due.etag else {}
        try:
            client.delete_object(Bucket=bucket, Key=event.key, **delete_condition)
        except ClientError as exc:
            # Gone already (an earlier attempt whose reply was lost, or another run): the
            # event is no longer pending and its copy is among the dead letters.
            if not (_s3.is_missing(exc) or (_s3.is_lost(exc) and _s3.was_retried(exc))):
                raise
        return target


class _Deleter:
    """Removes copied events in batches of up to `DELETE_BATCH` keys, in a thread of its own."""

    def __init__(self, settings: Settings, results: queue.Queue[tuple[str, Due, Any, datetime]]) -> None:
        self._s = settings
        self._results = results
        self._queue: queue.Queue[Due | str | None] = queue.Queue()
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
        self._room = threading.Condition()
        self._client = settings.client
        self._thread = threading.Thread(target=self._work, name="s3-scheduler-delete", daemon=True)
        self._thread.start()

    def add(self, due: Due) -> None:
        with self._room:
            self._undeleted += 1
        self._queue.put(due)

    def has_room(self, timeout: float) -> bool:
        """Whether fewer than `UNDELETED_LIMIT` copied events wait for their delete (waiting up to ``timeout``)."""
        with self._room:
            if self._undeleted >= UNDELETED_LIMIT:
                self._room.wait(timeout)
            return self._undeleted < UNDELETED_LIMIT

    def flush(self) -> None:
        """Send the batch gathered so far without waiting for more."""
        self._queue.put(_FLUSH)

    def close(self, client: Callable[[], Any] | None = None) -> None:
        """Send what is gathered (through the client ``client()`` returns, if given) and end the thread."""
        self._last_client = client
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        batch: list[Due] = []
        oldest = 0.0
        while True:
            try:
                wait = max(0.0, oldest + self._flush_after - time.monotonic()) if batch else None
                item = self._queue.get(timeout=wait if wait is None or not self.hold_back() else _POLL)
            except queue.Empty:
                if not self.hold_back():
                    self._flush(batch)
                    batch = []
                continue
            if item is None:
                if batch and self._last_client is not None:
                    self._client = self._last_client()
                self._flush(batch)
                return
            if isinstance(item, str):  # _FLUSH
                self._flush(batch)
                batch = []
                continue
            if not batch:
                oldest = time.monotonic()
            batch.append(item)
            if len(batch) >= DELETE_BATCH or (time.monotonic() - oldest >= self._flush_after and not self.hold_back()):
                self._flush(batch)
                batch = []

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
            self._results.put(("delete", due, errors.get(due.event.key), at))
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
        try:
            response = self._client.delete_objects(Bucket=self._s.bucket, Delete={"Objects": objects, "Quiet": True})
        except Exception as exc:  # noqa: BLE001 - falls back to one delete per key
            if isinstance(exc, (BotoConnectionError, HTTPClientError)):  # a timeout, a lost connection
                return {due.event.key: exc for due in batch}  # the keys stay pending, reported
            logger.info("DeleteObjects was refused (%s): deleting the %d keys one by one", _describe(exc), len(batch))
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


def _url(event: ScheduledEvent) -> str:
    return f"s3://{event.bucket}/{event.path}"


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
