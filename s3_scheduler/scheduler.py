"""The `Scheduler`: write one-time events to S3 and deliver them when they fall due.

An event is one object under ``{path}/|`` in the scheduler's bucket. Its name says when
it is due and where it goes (see `s3_scheduler.keys`); its body is what gets delivered.
`Scheduler.handle`, run every minute, copies each due event to its target and then
deletes it (see `s3_scheduler.delivery`).

The public API lives here and delegates: names to `keys`, a run to `delivery`, the run
lease to `lease`, what stores differ in to `_s3`. ``move_file`` and ``warn`` are looked
up in this module at call time, so tests written for 0.0.3 that patch them still work.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Callable, Union

from botocore.exceptions import ClientError

from . import _s3, delivery
from .exceptions import (
    EventExistsError,
    EventNotPendingError,
    InvalidKeyError,
    RunInProgressError,
    ScheduleManyError,
)
from .keys import (
    Window,
    dead_letter_prefix,
    decode_dead_letter,
    decode_event,
    decode_key,
    encode_key,
    encode_time,
    has_offset,
    is_canonical,
    is_reserved,
    lease_key,
    listing_prefix,
    listing_window,
    normalize_target,
    sorts_late,
    to_utc,
)
from .lease import CLOCK_SKEW, DEFAULT_LEASE_TTL, MAX_LEASE_TTL, MAX_UNTIL, MIN_LEASE_TTL, Lease, Outcome
from .report import CheckReport, HandleReport, ScheduledEvent
from .targets import check_allowed, parse_allowed_targets
from .utils import info, move_file, nowut, warn

__all__ = [
    "DEFAULT_LEASE_TTL",
    "DEFAULT_MAX_WORKERS",
    "MAX_UNTIL",
    "MIN_MAX_LATENESS",
    "Content",
    "Scheduler",
    "info",
    "move_file",
    "nowut",
    "warn",
]

Content = Union[str, bytes, bytearray, memoryview, BinaryIO]
"""What `Scheduler.schedule` delivers: text (sent as UTF-8), bytes, or a binary file."""

When = Union[datetime, timedelta]
"""When an event is due: a datetime (naive means UTC), or a timedelta from now."""

MAX_WORKERS = 1000
"""The most copies in flight at once (a client's connection pool is made that large)."""

DEFAULT_MAX_WORKERS = 32
"""Copies in flight at once by default (S3's round trips of 20-50 ms want many)."""

MIN_MAX_LATENESS = timedelta(seconds=60)
"""The least ``max_lateness``: runs a minute apart deliver on time events up to a minute
late (EventBridge Scheduler's ``MaximumEventAgeInSeconds`` starts at 60 too)."""

MOVE_REACH = MAX_UNTIL + CLOCK_SKEW
"""How far ahead an event may be in a running handler's hands: a run delivers the events
due up to its ``until``, at most 15 minutes after it started, and clocks may differ by
30 s. `Scheduler.reschedule` holds the lease to move an event due within this of now."""

_KEPT_ON_MOVE = ("ContentType", "ContentEncoding", "ContentDisposition", "ContentLanguage", "CacheControl", "Metadata")
"""What `Scheduler.reschedule` keeps of an event besides its body."""

DEFAULT_DEAD_LETTER_ATTEMPTS = 3
"""Runs that must have failed to deliver an event before it may be dead-lettered."""

_MAX_TIMEOUT = timedelta(days=365 * 100)


def _now() -> datetime:
    # Looked up at call time, so code that patches ``s3_scheduler.scheduler.nowut``
    # (as tests written for 0.0.3 may) still moves this package's clock.
    return nowut()


class Scheduler:
    """One-time events stored under ``path`` in ``bucket``.

    ``s3_resource`` and ``s3_client`` are boto3's S3 resource and client, as in 0.0.3.
    Either may be left out: the client then defaults to the resource's own client, and
    with neither the scheduler builds its own client (a pool of ``max_workers``
    connections, response timestamps left unparsed). A resource of boto3's is listed
    through its client; the deliveries share the client, which is thread-safe.

    Keyword-only options, beyond 0.0.3:

    - ``exclusive`` (default ``True``): a `handle` run with due work holds a lease object
      (``{path}/.lease``), so overlapping runs never copy the same event twice;
      ``lease_ttl`` (10 s to 2 min, default 60 s) is how long a lease outlives its last
      renewal, hence how long a run that died holds the others up.
    - ``allowed_targets``: ``"bucket"`` or ``"bucket/key-prefix"`` entries; nothing else
      is scheduled (`TargetNotAllowedError`) or delivered (reported as rejected).
    - ``dead_letter_after`` and ``dead_letter_attempts`` (default 3): an event still
      failing after it failed in that many separate runs, and that long after its time,
      or still rejected that long after its time, is moved to ``{path}/.dead-letters/``
      (off by default, as in 0.0.3). The count of failed runs is kept in the event's tags.
    - ``max_workers`` (default 32): copies in flight at once; with a client passed in, at
      most its connection pool (``Config(max_pool_connections=...)``) less 3 (the
      listing, the batch delete and the lease's renewal use a connection each).
    - ``max_lateness``: an event found later than this after its time is not delivered
      but moved to the dead letters (removed, with a WARNING, when dead letters are off)
      and reported as ``expired`` (EventBridge's ``MaximumEventAgeInSeconds``,
      APScheduler's ``misfire_grace_time``). At least 60 s; off by default, as in 0.0.3.
      An event whose name no run could read in time (an offset name under
      ``legacy_offsets=False``) is delivered, never expired.
    - ``legacy_offsets`` (default ``True``): read names with a UTC offset up to +14:00,
      as 0.0.3 wrote them, in time, by listing 14 hours past the window. ``False`` lists
      only up to the window's end; `check` says whether any such name exists. Names with
      ``T`` between date and time, or a date alone, are read in time either way.
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
        dead_letter_attempts: int = DEFAULT_DEAD_LETTER_ATTEMPTS,
        lease_ttl: timedelta = DEFAULT_LEASE_TTL,
        max_workers: int = DEFAULT_MAX_WORKERS,
        legacy_offsets: bool = True,
        max_lateness: timedelta | None = None,
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
        if max_lateness is not None and (not isinstance(max_lateness, timedelta) or max_lateness < MIN_MAX_LATENESS):
            msg = (
                f"max_lateness must be a timedelta of at least {MIN_MAX_LATENESS.total_seconds():.0f} s"
                f" (timedelta(hours=1)), or None, not {max_lateness!r}: a run every minute delivers events"
                " up to a minute late"
            )
            raise ValueError(msg)
        _check_count("dead_letter_attempts", dead_letter_attempts)
        _check_count("max_workers", max_workers)
        if max_workers > MAX_WORKERS:
            msg = f"max_workers must be at most {MAX_WORKERS}, not {max_workers}"
            raise ValueError(msg)
        if not isinstance(lease_ttl, timedelta) or not MIN_LEASE_TTL <= lease_ttl <= MAX_LEASE_TTL:
            msg = f"lease_ttl must be a timedelta from {MIN_LEASE_TTL} to {MAX_LEASE_TTL}, not {lease_ttl!r}"
            raise ValueError(msg)
        if s3_resource is not None and s3_client is None:
            s3_client = s3_resource.meta.client
        if s3_client is None:
            s3_client = _s3.fast_client(max_workers)
        self._bucket = bucket
        self._prefix = listing_prefix(path)
        self._s3_resource = s3_resource
        self._s3_client = s3_client
        self._clock = clock if clock is not None else _now
        self._sleep = sleep if sleep is not None else time.sleep
        self._exclusive = exclusive
        self._allowed = None if allowed_targets is None else parse_allowed_targets(allowed_targets)
        self._dead_letter_after = dead_letter_after
        self._dead_letter_attempts = dead_letter_attempts
        self._lease_ttl = lease_ttl
        pool = _pool_size(s3_client)
        self._max_workers = min(max_workers, max(1, pool - _s3.POOL_EXTRA)) if pool else max_workers
        self._legacy_offsets = legacy_offsets
        self._max_lateness = max_lateness
        self._lease = Lease(s3_client, bucket, lease_key(self._prefix), ttl=lease_ttl, clock=self.now)
        self._notices: set[str] = set()

    @property
    def bucket(self) -> str:
        """The bucket that holds the events."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The prefix every event's key starts with: ``{path}/|``."""
        return self._prefix

    @property
    def max_workers(self) -> int:
        """Copies in flight at once, at most."""
        return self._max_workers

    def now(self) -> datetime:
        """Return the scheduler's clock reading, as an aware UTC datetime."""
        return to_utc(self._clock())

    # scheduling ----------------------------------------------------------------------

    def schedule(
        self,
        when: When,
        bucket: str,
        path: str,
        what: Content,
        *,
        replace: bool = True,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Schedule ``what`` to be copied to ``bucket``/``path`` at ``when``; return the
        event's key.

        ``when`` is a datetime (naive means UTC, an aware one is stored in UTC) or a
        ``timedelta`` from now. A time already past is delivered by the next `handle`.
        ``path`` is the target key; one leading ``/`` is dropped. ``what`` is ``str``
        (sent as UTF-8), bytes-like, or a binary file object (streamed, in parts when
        large).

        ``content_type`` and ``metadata`` (``{"name": "value"}``, ASCII names) are
        stored on the event and carried by the copy to the target, where the work it
        starts can read them (S3 user metadata: ``x-amz-meta-name``).

        An event with the same time and target is replaced, as in 0.0.3; with
        ``replace=False`` the write is conditional (``If-None-Match: *``) and an existing
        event raises `EventExistsError`, leaving it as it was.

        Bad input raises before any request to S3: `TypeError` for a ``when`` that is
        not a datetime or timedelta, or a ``what`` of another type; `ValueError` for a
        target bucket S3 cannot accept, an empty key, a time with no UTC equivalent, or
        a name over S3's 1,024 bytes; `TargetNotAllowedError` (a `ValueError`) for a
        target outside ``allowed_targets``. The content is never logged.
        """
        key, body = self._prepare(when, bucket, path, what)
        extra = _extra_args(content_type, metadata)
        self._write(key, body, replace, extra)
        info("Scheduled %r to %r", key, f"s3://{bucket}/{normalize_target(path)}")
        return key

    def schedule_many(
        self,
        events: Iterable[tuple[When, str, str, Content]],
        *,
        replace: bool = True,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Schedule each ``(when, bucket, path, what)`` of ``events``; return their keys in order.

        Every event is checked as `schedule` checks it before any request is sent, and
        two events of the batch with one name raise `ValueError`; the error's ``batch_index``
        is the (second) event's index in ``events``. The writes then go
        ``max_workers`` at a time. When some fail, `ScheduleManyError` lists them (index
        and error); every event written stays written, and its key is in the error's
        ``keys`` (None for the failed ones). ``content_type`` and ``metadata`` apply to
        every event of the batch.
        """
        extra = _extra_args(content_type, metadata)
        prepared = []
        for index, event in enumerate(events):
            try:
                when, bucket, path, what = event
                prepared.append(self._prepare(when, bucket, path, what))
            except (TypeError, ValueError) as exc:
                msg = f"event {index} of the batch: {exc}"
                try:
                    error = type(exc)(msg)
                except TypeError:  # a type not made from a message alone, such as UnicodeEncodeError
                    error = TypeError(msg) if isinstance(exc, TypeError) else ValueError(msg)
                setattr(error, "batch_index", index)  # noqa: B010 - any exception type
                raise error from exc
        seen: dict[str, int] = {}
        for index, (key, _) in enumerate(prepared):
            if key in seen:
                msg = f"events {seen[key]} and {index} of the batch have the same time and target: {key!r}"
                error = ValueError(msg)
                setattr(error, "batch_index", index)  # noqa: B010 - as above
                raise error
            seen[key] = index

        def write(item: tuple[str, bytes | BinaryIO]) -> BaseException | None:
            try:
                self._write(item[0], item[1], replace, extra)
            except Exception as exc:  # noqa: BLE001 - gathered into ScheduleManyError
                return exc
            return None

        workers = max(1, min(self._max_workers, len(prepared)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-scheduler-put") as pool:
            errors = list(pool.map(write, prepared))
        failures = [(index, error) for index, error in enumerate(errors) if error is not None]
        keys = [key for key, _ in prepared]
        if failures:
            raise ScheduleManyError(failures, [None if e is not None else k for k, e in zip(keys, errors)])
        info("Scheduled %d events under %r", len(keys), self._prefix)
        return keys

    def _prepare(self, when: Any, bucket: Any, path: Any, what: Content) -> tuple[str, bytes | BinaryIO]:
        if isinstance(when, timedelta):
            when = _from_now(self.now(), when)
        if not isinstance(when, datetime):
            msg = f"when must be a datetime (naive means UTC) or a timedelta from now, not {type(when).__name__}"
            raise TypeError(msg)
        if not isinstance(bucket, str) or not isinstance(path, str):
            msg = "bucket and path must be str: the target bucket name and object key"
            raise TypeError(msg)
        for name, text in (("bucket", bucket), ("path", path)):
            if any("\ud800" <= char <= "\udfff" for char in text):
                msg = f"{name} {text!r} holds a lone surrogate, which UTF-8 cannot encode: S3 names are UTF-8"
                raise ValueError(msg)
        try:
            body = _body(what)
        except UnicodeEncodeError:  # the content is not shown: it can be secret
            msg = "what holds a lone surrogate, which UTF-8 cannot encode: pass str that is text, or bytes"
            raise ValueError(msg) from None
        key = encode_key(self._prefix, when, bucket, path)
        if is_reserved(self._prefix, self._bucket, bucket, path):
            msg = f"the target s3://{bucket}/{normalize_target(path)} is this scheduler's lease or a dead letter"
            raise ValueError(msg)
        check_allowed(self._allowed, bucket, normalize_target(path))
        return key, body

    def _write(self, key: str, body: bytes | BinaryIO, replace: bool, extra: dict[str, Any]) -> str | None:
        """Write the event ``key``; return its ETag where the store gave one."""
        if not isinstance(body, bytes):
            if replace:
                self._s3_client.upload_fileobj(body, self._bucket, key, ExtraArgs=extra or None)
                return None
            body = body.read()
        condition = {} if replace else {"IfNoneMatch": "*"}
        try:
            reply = self._s3_client.put_object(Bucket=self._bucket, Key=key, Body=body, **condition, **extra)
        except ClientError as exc:
            if replace or not _s3.is_lost(exc):
                raise
            found = _s3.head_etag(self._s3_client, self._bucket, key)
            if _s3.was_retried(exc) and _s3.same_etag(found, _s3.content_etag(body)):
                return found  # an earlier attempt wrote it; its reply was lost
            raise EventExistsError(_exists(key)) from None
        etag = reply.get("ETag") if isinstance(reply, Mapping) else None
        return etag if isinstance(etag, str) else None

    # inspecting and changing ---------------------------------------------------------

    def stop(self, key: Any) -> bool:
        """Delete the event ``key``; return whether S3 accepted the delete.

        As in 0.0.3: ``True`` also when there was no such event (S3 deletes are
        idempotent), ``False`` on any error, which is warned. Never raises.
        """
        try:
            result = self._s3_client.delete_object(Bucket=self._bucket, Key=key)
            info("Deleted the scheduled event %r", key)
            return result["ResponseMetadata"]["HTTPStatusCode"] in (200, 204)
        except Exception as exc:  # noqa: BLE001 - 0.0.3's contract: never raises
            warn("Unable to delete the scheduled event %r: %s", key, exc)
            return False

    def pending(self, *, until: datetime | None = None) -> Iterator[ScheduledEvent]:
        """Yield the pending events in key order, read from their names alone.

        Key order is time order for every key this package writes (0.0.3 kept the
        caller's UTC offset in the name, and such keys sort by their local time). No
        object is read: one LIST request per 1,000 names, fetched lazily page by page.
        With ``until`` (naive means UTC), only events due at or before it are yielded
        and the listing stops where `handle` would stop at ``until`` (14 hours later
        with ``legacy_offsets``). Names under the prefix that are not events are not
        yielded; `check` reports them.
        """
        limit = None if until is None else _utc("until", until)
        window = None if limit is None else listing_window(self._prefix, limit, legacy_offsets=self._legacy_offsets)
        return (event for event in self._events(self._prefix, window) if limit is None or event.when <= limit)

    def cancel(self, key: str) -> bool:
        """Remove the pending event ``key``; return ``True`` only if this call removed it.

        ``False`` when it was already delivered, cancelled, or never existed. The delete
        is conditional on the object this call found (S3's ``If-Match`` with its ETag),
        so a `handle` run that delivers the event meanwhile makes the answer ``False``,
        never a silent loss: either the event was delivered or ``cancel`` answered
        ``True`` (if a run was between its copy and its delete, both can hold).
        On a store that ignores ``If-Match`` on deletes (Ceph radosgw 16 does),
        ``True`` means the event was pending a moment before the delete: a delivery
        running at that very moment may still have taken it. When botocore retried the
        delete after a lost reply and the retry finds the event gone, the answer is
        ``True``: this call may have removed it, and a removal is never reported as not.

        Raises `InvalidKeyError` for a key that is not an event of this scheduler, and
        lets every other S3 error (access denied, no such bucket) propagate.
        `stop` keeps its 0.0.3 meaning.
        """
        decode_key(key, self._prefix)
        etag = _s3.head_etag(self._s3_client, self._bucket, key)
        if etag is None:
            return False
        try:
            self._s3_client.delete_object(Bucket=self._bucket, Key=key, IfMatch=etag)
        except ClientError as exc:
            if not (_s3.is_missing(exc) or _s3.is_lost(exc)):
                raise
            if not _s3.was_retried(exc):
                return False
            # An earlier attempt may have removed it, its reply lost: never report a
            # removal this call may have made as "not removed".
            info("Cancelled the scheduled event %r (a retried delete found it gone)", key)
            return True
        info("Cancelled the scheduled event %r", key)
        return True

    def reschedule(self, key: str, when: When) -> str:
        """Move the pending event ``key`` to ``when``; return its new key.

        ``when`` is a datetime (naive means UTC) or a timedelta from now. The event is
        read and written to its new name (body, content type and metadata; not its tags)
        before the old one is removed, so at no moment is it in neither place. The write
        is conditional (``If-None-Match: *``), so an event written at the new name
        meanwhile is never replaced, and the delete names the ETag read, so an event
        rewritten meanwhile stays. It raises `EventNotPendingError` (a `LookupError`) when the event
        is no longer pending, creating nothing, also when a delivery takes it during the
        move; `EventExistsError` (a `ValueError`) when another event is pending at the
        new name, leaving both as they were; `InvalidKeyError` for a key that is not an
        event of this scheduler; `TypeError` for a ``when`` of another type.

        With ``exclusive`` (the default), when the event may be in a running handler's
        hands (due within `MOVE_REACH`, 15.5 minutes, or past), the move holds the run lease, so a run
        delivers the event once, under one name or the other; if a run holds the lease
        the move waits for it up to one ``lease_ttl``, then raises `RunInProgressError`
        (the run may be delivering the event), changing nothing. Without the lease a run
        that lists both names between the copy and the delete can deliver both: the
        Guarantees section of the README says so.
        """
        event = decode_event(key, self._prefix)
        if isinstance(when, timedelta):
            when = _from_now(self.now(), when)
        new_key = encode_key(self._prefix, _utc("when", when), event.bucket, event.path)
        if new_key == key:
            if _s3.head_etag(self._s3_client, self._bucket, key) is None:
                raise EventNotPendingError(_not_pending(key))
            return key
        reach = self.now() + MOVE_REACH
        run = self._lease_for_move() if self._exclusive and event.when <= reach else None
        try:
            self._move(key, new_key)
        finally:
            if run is not None:
                run.release()
        info("Rescheduled %r as %r", key, new_key)
        return new_key

    def _move(self, key: str, new_key: str) -> None:
        # A conditional PUT of the new name (If-None-Match), which every store we test
        # honours, never replaces an event written there meanwhile; the delete of the old
        # name names the ETag read, so an event rewritten meanwhile stays.
        try:
            got = self._s3_client.get_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if _s3.is_missing(exc):
                raise EventNotPendingError(_not_pending(key)) from None
            raise
        with got["Body"] as stream:
            body = stream.read()
        extra = {name: got[name] for name in _KEPT_ON_MOVE if got.get(name)}
        try:
            written = self._write(new_key, body, False, extra)
        except EventExistsError:
            msg = f"{new_key} is already pending: reschedule would replace it"
            raise EventExistsError(msg) from None
        try:
            self._s3_client.delete_object(Bucket=self._bucket, Key=key, IfMatch=got["ETag"])
        except ClientError as exc:
            if not (_s3.is_missing(exc) or _s3.is_lost(exc)):
                raise
            if not (_s3.is_missing(exc) and _s3.was_retried(exc)):
                # Delivered, cancelled or rewritten since it was read: take the copy back.
                # (Gone after a retry is an earlier attempt of this delete, its reply lost.)
                _s3.delete_if_match(self._s3_client, self._bucket, new_key, written or _s3.content_etag(body))
                raise EventNotPendingError(_not_pending(key)) from None

    def _lease_for_move(self) -> Any:
        """Hold the run lease for a move, waiting up to one lease_ttl.

        None where there is no lease to be had (a store without conditional writes,
        credentials that may not write it). Raises `RunInProgressError` when a run still
        holds it after that wait: the run may be delivering the event.
        """
        waited = 0.0
        while True:
            acquired = self._lease.acquire(self.now())
            if acquired.outcome is Outcome.TAKEN:
                assert acquired.run is not None
                acquired.run.start_heartbeat()
                return acquired.run
            if acquired.outcome is Outcome.DENIED and "lease-denied" not in self._notices:
                self._notices.add("lease-denied")
                warn(
                    "Access denied (%s) to the lease %r: moving the event without it; grant s3:PutObject,"
                    " s3:GetObject and s3:DeleteObject on it",
                    acquired.action or "s3:PutObject",
                    self._lease.key,
                )
            if acquired.outcome is not Outcome.HELD:
                return None
            if waited >= self._lease_ttl.total_seconds():
                msg = f"a run holds the lease {self._lease.key!r} and may be delivering the event: try again"
                raise RunInProgressError(msg)
            self._sleep(1.0)
            waited += 1.0

    def dead_letters(self) -> Iterator[ScheduledEvent]:
        """Yield the dead letters in key order, as `ScheduledEvent`s whose ``key`` is the
        dead letter's own key.

        A dead letter is an event that failed in ``dead_letter_attempts`` runs, or was
        still rejected, when ``dead_letter_after`` had passed since its time: `handle`
        moved it (body kept) to ``{path}/.dead-letters/{when}|{bucket}|{target}|{token}``,
        a name of its own (``token``: 8 random hexadecimal digits), so a later dead letter
        of the same time and target never replaces it. Nothing delivers or deletes it there.
        """
        for page in _s3.list_pages(self._s3_resource, self._s3_client, self._bucket, dead_letter_prefix(self._prefix)):
            for listed in page:
                try:
                    yield decode_dead_letter(listed.key, self._prefix)
                except InvalidKeyError:
                    continue

    def check(self) -> CheckReport:
        """Scan every name under the prefix once and report what a run will not read in time.

        - ``not_events``: names that are not events (with the reason): `handle` skips them.
        - ``late``: events whose name sorts past the listing bound at their own time (a
          ``T``-separated or otherwise non-canonical time): `handle` reads them only once
          the bound passes them. The reason gives the name to rename them to.
        - ``offset_keys``: events that need ``legacy_offsets=True`` to be read in time:
          named with an offset other than UTC, as 0.0.3 wrote them, or otherwise sorting
          after their time; ``legacy_offsets=False`` is safe only when there is none.

        Costs one LIST per 1,000 names of the whole prefix.
        """
        report = CheckReport()
        for page in _s3.list_pages(self._s3_resource, self._s3_client, self._bucket, self._prefix):
            for listed in page:
                key = listed.key
                try:
                    event = decode_event(key, self._prefix)
                except InvalidKeyError as exc:
                    report.not_events.append((key, str(exc)))
                    continue
                report.events += 1
                if is_canonical(key, self._prefix, event.when):
                    continue
                time_part, rest = key[len(self._prefix) :].split("|", 1)
                if has_offset(time_part) or sorts_late(key, self._prefix, event.when, legacy_offsets=False):
                    report.offset_keys.append(key)
                if sorts_late(key, self._prefix, event.when, legacy_offsets=self._legacy_offsets):
                    canonical = f"{self._prefix}{encode_time(event.when)}|{rest}"
                    reason = f"its time sorts after the names due then; handle() reads it late: rename it {canonical!r}"
                    report.late.append((key, reason))
        return report

    # delivering ----------------------------------------------------------------------

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
        in key order and stops at the first name past the window (14 hours past it with
        ``legacy_offsets``, see `s3_scheduler.keys.LOOKAHEAD`), so a run costs one LIST
        request per 1,000 names in that window, however many events lie beyond it.
        Delivery starts after the first page: each due event is copied to its target
        (``max_workers`` at a time, conditional on the ETag listed), and the copied
        events are removed with one ``DeleteObjects`` per 100 (see
        `s3_scheduler.delivery`).

        - ``until`` (at most 15 minutes ahead, naive means UTC): also deliver the
          events that fall due up to ``until``, each at its own time, waiting in
          between: second-level precision from a one-minute tick.
        - ``timeout`` (seconds): no delivery starts after it; the events of the window
          not started stay pending and are counted as ``deferred``.
        - ``on_delivery``: called in the calling thread after each copy, with the
          event and its lateness in seconds (the command line prints deliveries with it).
        - ``stop``: a `threading.Event`; once it is set no delivery starts, a wait for
          the next event ends at once, and the run returns its report, the events of the
          window not started counted as ``deferred``. Copies in flight finish first.

        An event whose copy fails is warned once and stays for the next run; the others
        still go. An event gone before its copy (cancelled, or delivered by another run)
        is reported as ``vanished``; one rewritten since it was listed stays pending for
        the next run (``deferred``). A copied event that the batch delete could not
        remove is reported as ``failed`` too: a later run delivers it again. A name under
        the prefix that is not an event is warned and left alone, never deleted.
        Delivery is at-least-once: a run that dies between copy and delete delivers
        again next time. With ``exclusive`` (the default) the run takes the lease before
        its first copy; if another run holds it, the run copies nothing and reads the rest
        of its window's listing (up to its timeout), so that ``deferred`` counts every due
        event it leaves. A run whose own time runs out (timeout, stop) sends its deletes,
        releases the lease and reads no further: ``deferred`` counts the due events it
        had read. A listing error is raised once the copies already started have finished.
        An ``on_delivery`` that raises stops the run the same way; then ``handle`` raises it.
        """
        start = self.now()
        horizon = start
        if until is not None:
            horizon = max(start, _utc("until", until))
            if horizon - start > MAX_UNTIL:
                msg = f"until must be at most {MAX_UNTIL} ahead of now, not {horizon - start}"
                raise ValueError(msg)
        deadline = None
        if timeout is not None:
            seconds = _check_timeout(timeout)
            deadline = None if seconds >= _MAX_TIMEOUT.total_seconds() else start + timedelta(seconds=seconds)
        settings = delivery.Settings(
            bucket=self._bucket,
            prefix=self._prefix,
            client=self._s3_client,
            resource=self._s3_resource,
            allowed=self._allowed,
            dead_letter_after=self._dead_letter_after,
            dead_letter_attempts=self._dead_letter_attempts,
            max_workers=self._max_workers,
            clock=self.now,
            wait=self._wait,
            lease=self._lease if self._exclusive else None,
            max_lateness=self._max_lateness,
            legacy_offsets=self._legacy_offsets,
            notices=self._notices,
        )
        report = delivery.run(
            settings,
            window=listing_window(self._prefix, horizon, legacy_offsets=self._legacy_offsets),
            horizon=horizon,
            deadline=deadline,
            on_delivery=on_delivery,
            stop=stop,
        )
        info("Handled %r: %s", f"s3://{self._bucket}/{self._prefix}", report.summary())
        return report

    def _wait(self, seconds: float, stop: threading.Event | None) -> None:
        """Wait ``seconds``, or until ``stop`` is set when the scheduler sleeps for real."""
        if stop is not None and self._sleep is time.sleep:
            stop.wait(seconds)
        else:
            self._sleep(seconds)

    def _events(self, prefix: str, window: Window | None) -> Iterator[ScheduledEvent]:
        """Yield the events named under ``prefix`` in ``window`` (all, if None) in key order,
        lazily page by page; other names are passed over."""
        client, resource = self._s3_client, self._s3_resource
        listing: Iterator[_s3.Listed]
        if window is None:
            listing = (listed for page in _s3.list_pages(resource, client, self._bucket, prefix) for listed in page)
        else:
            listing = _s3.list_window(resource, client, self._bucket, prefix, window)
        for listed in listing:
            try:
                yield decode_event(listed.key, prefix)
            except InvalidKeyError:
                continue


def _extra_args(content_type: Any, metadata: Any) -> dict[str, Any]:
    """Return the PutObject arguments for ``content_type`` and ``metadata``, checked."""
    extra: dict[str, Any] = {}
    if content_type is not None:
        if not isinstance(content_type, str) or not content_type.isascii() or not content_type.strip():
            msg = f"content_type must be a MIME type such as 'application/json', not {content_type!r}"
            raise ValueError(msg)
        extra["ContentType"] = content_type
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and k.isascii() and k.strip() and v.isascii()
            for k, v in metadata.items()
        ):
            msg = f"metadata must map ASCII names to ASCII text, such as {{'order-id': '42'}}, not {metadata!r}"
            raise ValueError(msg)
        extra["Metadata"] = dict(metadata)
    return extra


def _pool_size(client: Any) -> int | None:
    size = getattr(getattr(getattr(client, "meta", None), "config", None), "max_pool_connections", None)
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{name} must be a whole number of 1 or more, not {value!r}"
        raise ValueError(msg)


def _utc(name: str, value: Any) -> datetime:
    if not isinstance(value, datetime):
        msg = f"{name} must be a datetime (naive means UTC), not {type(value).__name__}"
        raise TypeError(msg)
    return to_utc(value)


def _from_now(now: datetime, when: timedelta) -> datetime:
    """Return ``now`` + ``when``; `ValueError` past the times a datetime can hold."""
    try:
        return now + when
    except OverflowError:
        msg = f"when {when!r} from now is past the times a datetime can hold (years 1 to 9999)"
        raise ValueError(msg) from None


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
