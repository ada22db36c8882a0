"""The `Scheduler`: write one-time events to S3 and deliver them when they fall due.

An event is one object under ``{path}/|`` in the scheduler's bucket. Its name says when
it is due and where it goes (see `s3_scheduler.keys`); its body is what gets delivered.
`Scheduler.handle`, run every minute, copies each due event to its target and then
deletes it.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Callable, Union

from botocore.exceptions import ClientError

from .exceptions import EventExistsError, EventNotPendingError, InvalidKeyError, is_missing_object, s3_error_code
from .keys import (
    dead_letter_prefix,
    decode_key,
    encode_key,
    lease_key,
    listing_bound,
    listing_prefix,
    normalize_path,
    to_utc,
)
from .lease import Acquired, Lease
from .report import FailedDelivery, HandleReport, ScheduledEvent
from .targets import check_allowed, is_allowed, parse_allowed_targets
from .utils import info, move_file, nowut, warn

Content = Union[str, bytes, bytearray, memoryview, BinaryIO]
"""What `Scheduler.schedule` delivers: text (sent as UTF-8), bytes, or a binary file."""

DEFAULT_MAX_WORKERS = 10
"""Delivery threads when the client does not tell its pool size (botocore's default)."""

DEFAULT_LEASE_TTL = timedelta(minutes=15)
"""How long a run's lease lasts past the end of its ``until`` window (Lambda's longest run)."""

LEASE_MARGIN = timedelta(seconds=30)
"""No delivery starts this close to the end of the run's lease, so runs never overlap."""

MAX_UNTIL = timedelta(minutes=15)
"""How far ahead `Scheduler.handle` may deliver events at their own time (Lambda's limit)."""


def _now() -> datetime:
    # Looked up at call time, so code that patches ``s3_scheduler.scheduler.nowut``
    # (as tests written for 0.0.3 may) still moves this package's clock.
    return nowut()


class Scheduler:
    """One-time events stored under ``path`` in ``bucket``.

    ``s3_resource`` and ``s3_client`` are boto3's S3 resource and client, as in 0.0.3.
    Either may be left out: the client then defaults to the resource's own client, and
    both to ``boto3.resource("s3")``. Given only a client, the scheduler lists with it.
    Clients are thread-safe and the deliveries share one; the resource is only used to
    list, from the calling thread.

    Keyword-only options, beyond 0.0.3:

    - ``exclusive`` (default ``True``): a `handle` run with due work takes a lease object
      (``{path}/.lease``) with conditional writes, so overlapping runs never deliver the
      same event twice; ``lease_ttl`` is how long it lasts past the run's window.
    - ``allowed_targets``: ``"bucket"`` or ``"bucket/key-prefix"`` entries; nothing else
      is scheduled (`TargetNotAllowedError`) or delivered (reported as rejected).
    - ``dead_letter_after``: a ``timedelta`` after which an event still failing or
      rejected is moved to ``{path}/.dead-letters/`` (off by default, as in 0.0.3).
    - ``clock`` and ``sleep`` default to `nowut` and `time.sleep`; they exist so tests
      can set the time and wait without waiting. A naive time ``clock`` returns is UTC.
    """

    def __init__(
        self,
        bucket: str,
        path: str,
        s3_resource: Any = None,
        s3_client: Any = None,
        *,
        exclusive: bool = True,
        allowed_targets: Iterable[str] | None = None,
        dead_letter_after: timedelta | None = None,
        lease_ttl: timedelta = DEFAULT_LEASE_TTL,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if not isinstance(bucket, str) or not bucket:
            msg = f"bucket must be the name of the scheduler's bucket, not {bucket!r}"
            raise ValueError(msg)
        if not isinstance(path, str):
            msg = f"path must be a str such as 'jobs', not {type(path).__name__}"
            raise TypeError(msg)
        if dead_letter_after is not None and (
            not isinstance(dead_letter_after, timedelta) or dead_letter_after < timedelta(0)
        ):
            msg = (
                f"dead_letter_after must be a timedelta of zero or more (timedelta(days=1)), not {dead_letter_after!r}"
            )
            raise ValueError(msg)
        if not isinstance(lease_ttl, timedelta) or lease_ttl <= LEASE_MARGIN:
            msg = f"lease_ttl must be a timedelta longer than {LEASE_MARGIN}, not {lease_ttl!r}"
            raise ValueError(msg)
        if s3_resource is None and s3_client is None:
            import boto3

            s3_resource = boto3.resource("s3")
        if s3_client is None:
            s3_client = s3_resource.meta.client
        self._bucket = bucket
        self._path = normalize_path(path)
        self._prefix = listing_prefix(path)
        self._s3_resource = s3_resource
        self._s3_client = s3_client
        self._clock = clock if clock is not None else _now
        self._sleep = sleep if sleep is not None else time.sleep
        self._exclusive = exclusive
        self._allowed = None if allowed_targets is None else parse_allowed_targets(allowed_targets)
        self._dead_letter_after = dead_letter_after
        self._lease_ttl = lease_ttl
        self._lease = Lease(s3_client, bucket, lease_key(self._prefix))
        self._warned_no_lease = False

    @property
    def bucket(self) -> str:
        """The bucket that holds the events."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The prefix every event's key starts with: ``{path}/|``."""
        return self._prefix

    def now(self) -> datetime:
        """Return the scheduler's clock reading, as an aware UTC datetime."""
        return to_utc(self._clock())

    def schedule(self, when: datetime, bucket: str, path: str, what: Content, *, replace: bool = True) -> str:
        """Schedule ``what`` to be copied to ``bucket``/``path`` at ``when``; return the
        event's key.

        ``when`` is a datetime; a naive one means UTC, an aware one is stored in UTC.
        A time already past is delivered by the next `handle`. ``path`` is the target
        key; one leading ``/`` is dropped. ``what`` is ``str`` (sent as UTF-8),
        bytes-like, or a binary file object (streamed, in parts when large).

        Bad input raises before any request to S3: `TypeError` for a ``when`` that is
        not a datetime or a ``what`` of another type, `ValueError` for an empty target
        bucket or key or a key over S3's 1,024 bytes, and `TargetNotAllowedError` (a
        `ValueError`) for a target outside ``allowed_targets``. The content is never
        logged.
        """
        if not isinstance(when, datetime):
            msg = f"when must be a datetime (naive means UTC), not {type(when).__name__}"
            raise TypeError(msg)
        if not isinstance(bucket, str) or not isinstance(path, str):
            msg = "bucket and path must be str: the target bucket name and object key"
            raise TypeError(msg)
        body = _body(what)
        key = encode_key(self._prefix, when, bucket, path)
        check_allowed(self._allowed, bucket, path[1:] if path.startswith("/") else path)
        if isinstance(body, bytes):
            extra = {} if replace else {"IfNoneMatch": "*"}
            try:
                self._s3_client.put_object(Bucket=self._bucket, Key=key, Body=body, **extra)
            except ClientError as exc:
                if not replace and s3_error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise EventExistsError(_exists(key)) from None
                raise
        else:
            if not replace:
                body = io.BytesIO(body.read())
                return self.schedule(when, bucket, path, body.getvalue(), replace=False)
            self._s3_client.upload_fileobj(body, self._bucket, key)
        info("Scheduled %s to s3://%s/%s at %s", key, bucket, path, to_utc(when).isoformat())
        return key

    def stop(self, key: Any) -> bool:
        """Delete the event ``key``; return whether S3 accepted the delete.

        As in 0.0.3: ``True`` also when there was no such event (S3 deletes are
        idempotent), ``False`` on any error, which is warned. Never raises.
        """
        try:
            result = self._s3_client.delete_object(Bucket=self._bucket, Key=key)
            info("Deleted the scheduled event %s", key)
            return result["ResponseMetadata"]["HTTPStatusCode"] in (200, 204)
        except Exception as exc:  # noqa: BLE001 - 0.0.3's contract: never raises
            warn("Unable to delete the scheduled event %s: %s", key, exc)
            return False

    def pending(self, *, until: datetime | None = None) -> Iterator[ScheduledEvent]:
        """Yield the pending events in key order, read from their names alone.

        Key order is time order for every key this package writes (0.0.3 kept the
        caller's UTC offset in the name, and such keys sort by their local time). No
        object is read: one LIST request per 1,000 names, fetched lazily page by page.
        With ``until`` (naive means UTC), only events due at or before it are yielded
        and the listing stops at ``until + 14 h``, past which no such event can sort.
        Names under the prefix that are not events are not yielded.
        """
        bound = None if until is None else listing_bound(self._prefix, _check_time("until", until))
        limit = None if until is None else to_utc(until)
        return (event for event in self._events(bound) if limit is None or event.when <= limit)

    def cancel(self, key: str) -> bool:
        """Remove the pending event ``key``; return ``True`` only if this call removed it.

        ``False`` when it was already delivered, cancelled, or never existed. The delete
        is conditional on the object this call found (S3's ``If-Match`` with its ETag),
        so a `handle` run that delivers the event meanwhile makes the answer ``False``,
        never a silent loss: either the event was delivered or ``cancel`` answered
        ``True`` (if a run was between its copy and its delete, both can hold).
        On a store that ignores ``If-Match`` on deletes (Ceph radosgw 16 does),
        ``True`` means the event was pending a moment before the delete: a delivery
        running at that very moment may still have taken it.

        Raises `InvalidKeyError` for a key that is not an event of this scheduler, and
        lets every other S3 error (access denied, no such bucket) propagate.
        `stop` keeps its 0.0.3 meaning.
        """
        decode_key(key, self._prefix)
        etag = self._etag(key)
        if etag is None:
            return False
        try:
            self._s3_client.delete_object(Bucket=self._bucket, Key=key, IfMatch=etag)
        except ClientError as exc:
            if is_missing_object(exc) or s3_error_code(exc) == "PreconditionFailed":
                return False
            raise
        info("Cancelled the scheduled event %s", key)
        return True

    def reschedule(self, key: str, when: datetime) -> str:
        """Move the pending event ``key`` to ``when`` (naive means UTC); return its new key.

        The event is copied to its new name first and only then removed from the old
        one (with `cancel`), so at no moment is it in neither place. If the event is no
        longer pending (delivered, cancelled, never scheduled), even when a `handle`
        run takes it during the move, `EventNotPendingError` is raised and no new
        event is left behind. Raises `InvalidKeyError` for a key that is not an event
        of this scheduler, and `TypeError` for a ``when`` that is not a datetime.
        """
        _check_time("when", when)
        event = decode_key(key, self._prefix)
        new_key = encode_key(self._prefix, when, event.bucket, event.target)
        if new_key == key:
            if self._etag(key) is None:
                raise EventNotPendingError(_not_pending(key))
            return key
        try:
            self._s3_client.copy_object(
                Bucket=self._bucket, Key=new_key, CopySource={"Bucket": self._bucket, "Key": key}
            )
        except ClientError as exc:
            if is_missing_object(exc):
                raise EventNotPendingError(_not_pending(key)) from exc
            raise
        if not self.cancel(key):
            self._s3_client.delete_object(Bucket=self._bucket, Key=new_key)
            raise EventNotPendingError(_not_pending(key))
        info("Rescheduled %s as %s", key, new_key)
        return new_key

    def handle(
        self,
        *,
        until: datetime | None = None,
        timeout: float | None = None,
        on_delivery: Callable[[ScheduledEvent, float], None] | None = None,
        stop: threading.Event | None = None,
    ) -> HandleReport:
        """Deliver every due event: copy it to its target, then delete it.

        Called with no arguments it does what 0.0.3's did, faster: the listing is read
        in key order and stops at the first name past ``now + 14 h`` (see
        `s3_scheduler.keys.LOOKAHEAD`), so a run costs one LIST request per 1,000
        names in that window, however many events lie beyond it. The due events are
        delivered concurrently, on as many threads as the client's connection pool
        holds, each one copied and then deleted through `move_file`.

        - ``until`` (at most 15 minutes ahead, naive means UTC): also deliver the
          events that fall due up to ``until``, each at its own time, waiting in
          between: second-level precision from a one-minute tick. Events scheduled
          after the run started are left to the next run.
        - ``timeout`` (seconds): no delivery starts after it; the events of the window
          not started stay pending and are counted as ``deferred``.
        - ``on_delivery``: called in the calling thread after each delivery, with the
          event and its lateness in seconds (the command line prints deliveries with it).
        - ``stop``: a `threading.Event`; once it is set no delivery starts, a wait for
          the next event ends at once, and the run returns its report so far, the events
          not started counted as ``deferred``. Deliveries in flight finish first.

        An event whose copy or delete fails is warned once and stays for the next run;
        the others still go. An event gone before its copy (cancelled, or delivered by
        another run) is reported as ``vanished``, not as a failure. A name under the
        prefix that is not an event is warned and left alone, never deleted. Delivery
        is at-least-once: a run that dies between copy and delete delivers again next
        time. Each delivery is logged at INFO with its key, target and lateness, and the
        run ends with one INFO summary. With ``exclusive`` (the default) the run first
        takes the lease; if another run holds it, it returns at once with its due events
        counted as ``deferred``.
        """
        start = to_utc(self._clock())
        horizon = start
        if until is not None:
            horizon = max(start, to_utc(_check_time("until", until)))
            if horizon - start > MAX_UNTIL:
                msg = f"until must be at most {MAX_UNTIL} ahead of now, not {horizon - start}"
                raise ValueError(msg)
        deadline = None if timeout is None else start + timedelta(seconds=_check_timeout(timeout))
        report = HandleReport()
        window: list[ScheduledEvent] = []
        for event in self._events(listing_bound(self._prefix, horizon), report.skipped):
            if event.when > horizon:
                continue
            if self._allowed is None or is_allowed(self._allowed, event.bucket, event.path):
                window.append(event)
            else:
                warn("Not delivering %s: s3://%s/%s is not an allowed target", event.key, event.bucket, event.path)
                report.rejected.append(event)
        window.sort(key=lambda e: e.when)
        taken: bool | None = False
        if window or (report.rejected and self._dead_letter_after is not None):
            taken, deadline = self._take_lease(start, horizon, deadline)
            if taken is None:
                report.deferred.extend(window)
                info(
                    "Handled s3://%s/%s: another run holds the lease; %s", self._bucket, self._prefix, report.summary()
                )
                return report
        try:
            self._run(window, deadline, report, on_delivery, stop)
            self._dead_letter(report)
        finally:
            if taken:
                self._lease.release(to_utc(self._clock()), LEASE_MARGIN)
        info("Handled s3://%s/%s: %s", self._bucket, self._prefix, report.summary())
        return report

    def dead_letters(self) -> Iterator[ScheduledEvent]:
        """Yield the dead letters in key order, as `ScheduledEvent`s whose ``key`` is the
        dead letter's own key.

        A dead letter is an event that was still failing, or still rejected, when
        ``dead_letter_after`` had passed since its time: `handle` moved it (name and body
        kept) to ``{path}/.dead-letters/``. Nothing delivers or deletes it there.
        """
        prefix = dead_letter_prefix(self._prefix)
        for key in self._keys(prefix):
            try:
                when, bucket, target = decode_key(key, prefix)
            except InvalidKeyError:
                continue
            yield ScheduledEvent(key, when, bucket, target)

    def _take_lease(
        self, start: datetime, horizon: datetime, deadline: datetime | None
    ) -> tuple[bool | None, datetime | None]:
        """Take the run lease if the scheduler is exclusive.

        Return whether this run holds it (None: another run does) and the time after
        which no delivery may start: the timeout's, or the lease's less a margin.
        """
        if not self._exclusive:
            return False, deadline
        expires = start + (horizon - start) + self._lease_ttl
        acquired = self._lease.acquire(start, expires)
        if acquired is Acquired.HELD:
            return None, deadline
        if acquired in (Acquired.UNSUPPORTED, Acquired.DENIED):
            if not self._warned_no_lease:
                self._warned_no_lease = True
                if acquired is Acquired.UNSUPPORTED:
                    warn("This S3 store rejects conditional writes: running without the lease %s", self._lease.key)
                else:
                    warn(
                        "Access denied to the lease %s: running without it; grant s3:PutObject, s3:GetObject and"
                        " s3:DeleteObject on it for exclusive runs, or pass exclusive=False",
                        self._lease.key,
                    )
            return False, deadline
        cutoff = expires - LEASE_MARGIN
        return True, cutoff if deadline is None else min(deadline, cutoff)

    def _run(
        self,
        window: list[ScheduledEvent],
        deadline: datetime | None,
        report: HandleReport,
        on_delivery: Callable[[ScheduledEvent, float], None] | None,
        stop: threading.Event | None,
    ) -> None:
        """Deliver ``window`` (sorted by time), each event once it is due, until ``deadline``."""
        while window:
            if stop is not None and stop.is_set():
                report.deferred.extend(window)
                return
            now = to_utc(self._clock())
            if window[0].when > now:
                if deadline is not None and window[0].when >= deadline:
                    report.deferred.extend(window)
                    return
                self._wait((window[0].when - now).total_seconds(), stop)
                continue
            count = next((i for i, e in enumerate(window) if e.when > now), len(window))
            batch, window = window[:count], window[count:]
            self._deliver(batch, deadline, report, on_delivery)

    def _wait(self, seconds: float, stop: threading.Event | None) -> None:
        """Wait ``seconds``, or until ``stop`` is set when the scheduler sleeps for real."""
        if stop is not None and self._sleep is time.sleep:
            stop.wait(seconds)
        else:
            self._sleep(seconds)

    def _dead_letter(self, report: HandleReport) -> None:
        """Move the failed and rejected events older than ``dead_letter_after`` aside."""
        if self._dead_letter_after is None:
            return
        now = to_utc(self._clock())
        prefix = dead_letter_prefix(self._prefix)
        for event in [f.event for f in report.failed] + report.rejected:
            if now - event.when < self._dead_letter_after:
                continue
            target = prefix + event.key[len(self._prefix) :]
            try:
                move_file(self._bucket, self._bucket, event.key, self._s3_client, target)
            except Exception as exc:  # noqa: BLE001 - the event stays where it was
                warn("Unable to move %s to the dead letters: %s", event.key, exc)
                continue
            warn("Moved %s to the dead letters as %s", event.key, target)
            report.dead_lettered.append(event)

    def _etag(self, key: str) -> str | None:
        """Return the ETag of the object ``key``, or None when there is no such object.

        A HEAD answers a bare 404 for a missing bucket too: that case is told apart by
        a HEAD of the bucket, which raises.
        """
        try:
            etag: str = self._s3_client.head_object(Bucket=self._bucket, Key=key)["ETag"]
        except ClientError as exc:
            if not is_missing_object(exc):
                raise
            self._s3_client.head_bucket(Bucket=self._bucket)
            return None
        return etag

    def _keys(self, prefix: str | None = None) -> Iterator[str]:
        """Yield the names under ``prefix`` (the events' prefix) in key order, page by page."""
        prefix = self._prefix if prefix is None else prefix
        if self._s3_resource is not None:
            bucket = self._s3_resource.Bucket(self._bucket)
            for obj in bucket.objects.filter(Prefix=prefix):
                yield obj.key
        else:
            pages = self._s3_client.get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self._bucket, Prefix=prefix):
                for obj in page.get("Contents", ()):
                    yield obj["Key"]

    def _events(self, bound: str | None, skipped: list[str] | None = None) -> Iterator[ScheduledEvent]:
        """Yield the events named up to ``bound`` (all, if None) in key order.

        Other names are passed over; with ``skipped`` given they are warned and added to it.
        """
        for key in self._keys():
            if bound is not None and key > bound:
                return
            try:
                when, bucket, target = decode_key(key, self._prefix)
            except InvalidKeyError as exc:
                if skipped is not None:
                    warn("Ignoring %s: not a scheduled event (%s)", key, exc)
                    skipped.append(key)
                continue
            yield ScheduledEvent(key, when, bucket, target)

    def _max_workers(self) -> int:
        size = getattr(getattr(getattr(self._s3_client, "meta", None), "config", None), "max_pool_connections", None)
        return size if isinstance(size, int) and size > 0 else DEFAULT_MAX_WORKERS

    def _deliver(
        self,
        events: list[ScheduledEvent],
        deadline: datetime | None,
        report: HandleReport,
        on_delivery: Callable[[ScheduledEvent, float], None] | None,
    ) -> None:
        """Move each event to its target, concurrently; record each outcome in ``report``."""
        workers = min(len(events), self._max_workers())

        def attempt(event: ScheduledEvent) -> tuple[ScheduledEvent, Exception | _Deferred | None, datetime]:
            return (event, *self._move(event, deadline))

        if workers <= 1:
            outcomes = [attempt(event) for event in events]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-scheduler") as pool:
                outcomes = list(pool.map(attempt, events))
        for event, outcome, at in outcomes:
            if outcome is DEFERRED:
                report.deferred.append(event)
            elif isinstance(outcome, ClientError) and s3_error_code(outcome) == "NoSuchKey":
                report.vanished.append(event)
                info("Not delivering %s: it was cancelled or delivered by another run", event.key)
            elif isinstance(outcome, Exception):
                report.failed.append(FailedDelivery(event, outcome))
                warn("Unable to deliver %s to s3://%s/%s: %s", event.key, event.bucket, event.path, outcome)
            else:
                report.delivered.append(event)
                late = (at - event.when).total_seconds()
                report.max_lateness = max(report.max_lateness, late)
                info("Delivered %s to s3://%s/%s, %.3f s late", event.key, event.bucket, event.path, late)
                if on_delivery is not None:
                    on_delivery(event, late)

    def _move(self, event: ScheduledEvent, deadline: datetime | None) -> tuple[Exception | _Deferred | None, datetime]:
        """Deliver one event unless ``deadline`` has passed; return the outcome and when."""
        now = to_utc(self._clock())
        if deadline is not None and now >= deadline:
            return DEFERRED, now
        try:
            move_file(self._bucket, event.bucket, event.key, self._s3_client, event.path)
        except Exception as exc:  # noqa: BLE001 - reported by handle(), the event stays
            return exc, to_utc(self._clock())
        return None, to_utc(self._clock())


class _Deferred:
    """The outcome of a delivery that did not start because the run's time was up."""


DEFERRED = _Deferred()


def _check_time(name: str, value: Any) -> datetime:
    if not isinstance(value, datetime):
        msg = f"{name} must be a datetime (naive means UTC), not {type(value).__name__}"
        raise TypeError(msg)
    return value


def _check_timeout(timeout: Any) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        msg = f"timeout must be a number of seconds, not {type(timeout).__name__}"
        raise TypeError(msg)
    if not timeout >= 0:
        msg = f"timeout must be zero or more seconds, not {timeout}"
        raise ValueError(msg)
    return float(timeout)


def _exists(key: str) -> str:
    return f"{key} is already pending: pass replace=True to replace its content"


def _not_pending(key: str) -> str:
    return f"{key} is no longer pending: it was delivered, cancelled or never scheduled"


def _body(what: Content) -> bytes | BinaryIO:
    """Return ``what`` as bytes, or the binary file object itself to be streamed."""
    if isinstance(what, str):
        return what.encode("utf-8")
    if isinstance(what, (bytes, bytearray, memoryview)):
        return bytes(what)
    if callable(getattr(what, "read", None)) and not isinstance(what, io.TextIOBase):
        return what
    msg = (
        "what must be str (sent as UTF-8), bytes-like, or a binary file object"
        f" (opened with 'rb'), not {type(what).__name__}"
    )
    raise TypeError(msg)
