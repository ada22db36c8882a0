"""The `Scheduler`: write one-time events to S3 and deliver them when they fall due.

An event is one object under ``{path}/|`` in the scheduler's bucket. Its name says when
it is due and where it goes (see `s3_scheduler.keys`); its body is what gets delivered.
`Scheduler.handle`, run every minute, copies each due event to its target and then
deletes it (see `s3_scheduler.delivery`).

The public API lives here and delegates: names to `keys`, a run to `delivery`, the run
lease to `lease`, dead letters to `deadletters`, the store protocol (conditional writes
and lost replies) to `_s3`, and what covers every shard of a sharded scheduler to
`shards` (each shard being a `Scheduler` of its own). ``move_file`` and ``warn`` are looked up in this module when a
call needs them, and handed to the run, so tests written for 0.0.3 that patch them still
work.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Callable, Union

from dateutil.rrule import rrule

from . import _s3, deadletters, delivery, occurrences, utils
from .deadletters import DeadLetters
from .details import EventDetails, show_details
from .exceptions import (
    EventExistsError,
    EventNotPendingError,
    InvalidKeyError,
    RunInProgressError,
    ScheduleManyError,
)
from .keys import (
    Window,
    check_name,
    check_not_reserved,
    check_shards,
    decode_key,
    encode_key,
    event_prefix,
    lease_key,
    listing_prefix,
    listing_window,
    normalize_target,
    shard_of,
    shard_path,
    shard_root,
    to_utc,
)
from .lease import CLOCK_SKEW, DEFAULT_LEASE_TTL, MAX_LEASE_TTL, MAX_UNTIL, MIN_LEASE_TTL, Lease, Outcome, RunLease
from .report import CheckReport, HandleReport, ScheduledEvent
from .series import check_metadata_size, new_series
from .settings import DEFAULT_DEAD_LETTER_ATTEMPTS, DEFAULT_MAX_WORKERS, MAX_WORKERS, MIN_MAX_LATENESS
from .shards import SHARDS_AT_ONCE, Found, ShardSet
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

_Prepared = tuple[str, Union[bytes, BinaryIO], Union[dict[str, str], None]]
"""An event checked and ready to write: its key, its body, and its series' metadata (None: one-time)."""
"""When an event is due: a datetime (naive means UTC), or a timedelta from now."""

MOVE_REACH = MAX_UNTIL + CLOCK_SKEW
"""How far ahead an event may be in a running handler's hands: a run delivers the events
due up to its ``until``, at most 15 minutes after it started, and clocks may differ by
30 s. `Scheduler.reschedule` holds the lease to move an event due within this of now."""

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
      By default a run waits for its next event on its ``stop`` event, so setting it ends
      the wait at once; a run of a scheduler given ``sleep`` waits by calling it, and
      sees ``stop`` when it returns.
    - ``shards`` (an int from 1 to 1,000, default 1): with ``N > 1`` the event of the
      target (bucket, key) is written under ``{path}/{s}/|``, ``s`` =
      `keys.shard_of` (bucket, key, N); shard ``s`` is exactly a scheduler at
      ``{path}/{s}`` (its own lease and dead letters), so handlers can deliver the shards
      side by side (``handle(shard=s)``). `handle`, `pending`, `check` and `dead_letters`
      cover every shard found by listing, whatever its number, and the unsharded prefix
      ``{path}/|``, so nothing written with another N is stranded; `stop`, `cancel` and
      `reschedule` take a key of any of them. ``shards=1`` is the unsharded layout of
      0.0.3 and never looks for shards.
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
        shards: int = 1,
    ) -> None:
        _check_options(
            bucket,
            path,
            dead_letter_after=dead_letter_after,
            dead_letter_attempts=dead_letter_attempts,
            lease_ttl=lease_ttl,
            max_workers=max_workers,
            max_lateness=max_lateness,
        )
        check_shards(shards)
        if s3_resource is not None and s3_client is None:
            s3_client = s3_resource.meta.client
        if s3_client is None:  # shards run side by side, each with a listing, deletes and a lease
            s3_client = _s3.fast_client(max_workers + (_s3.POOL_EXTRA * (SHARDS_AT_ONCE - 1) if shards > 1 else 0))
        self._bucket = bucket
        self._path = path
        self._prefix = listing_prefix(path)
        self._s3_resource = s3_resource
        self._s3_client = s3_client
        self._clock = clock if clock is not None else _now
        self._sleep = sleep if sleep is not None else time.sleep
        self._wait = _waiting_with(sleep) if sleep is not None else _stoppable_wait(self._sleep)
        self._exclusive = exclusive
        self._allowed = None if allowed_targets is None else parse_allowed_targets(allowed_targets)
        self._lease_ttl = lease_ttl
        pool = _pool_size(s3_client)
        self._max_workers = min(max_workers, max(1, pool - _s3.POOL_EXTRA)) if pool else max_workers
        self._legacy_offsets = legacy_offsets
        self._max_lateness = max_lateness
        self._lease = Lease(s3_client, bucket, lease_key(self._prefix), ttl=lease_ttl, clock=self.now)
        self._notices: set[str] = set()
        self._dead_letters = (
            None
            if dead_letter_after is None
            else DeadLetters(
                s3_client,
                bucket,
                self._prefix,
                after=dead_letter_after,
                attempts=dead_letter_attempts,
                notices=self._notices,
            )
        )
        self._shards: ShardSet | None = None
        self._within: str | None = None
        """The path of the sharded scheduler whose shard (or unsharded prefix) this one
        delivers: its deliveries keep out of every shard's lease, dead letters and markers."""
        if shards > 1:  # each shard a scheduler with these options (allowed_targets as parsed: it may be an iterator)
            options = {name: value for name, value in locals().items() if name in _SHARD_OPTIONS}
            options["allowed_targets"] = None if self._allowed is None else [str(a) for a in self._allowed]
            self._shards = _shard_set(self, path, shards, options)

    @property
    def bucket(self) -> str:
        """The bucket that holds the events."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The prefix every event's key starts with: ``{path}/|`` (with shards, that of
        the events written before sharding; a shard's is ``{path}/{s}/|``)."""
        return self._prefix

    @property
    def shards(self) -> int:
        """How many shards the scheduler writes to (1: none, the layout of 0.0.3)."""
        return 1 if self._shards is None else self._shards.count

    def shards_found(self) -> Found:
        """Return the shards found by one listing of ``{path}/`` (``Delimiter="/"``), whatever
        their number, and whether the unsharded prefix ``{path}/|`` holds anything
        (`shards.Found`): the places `handle` without ``shard`` delivers. Only for a
        scheduler with shards: one without (``shards=1``) never looks for them, and raises
        `ValueError`."""
        if self._shards is None:
            msg = "shards_found needs a scheduler with shards (shards=2 or more): with shards=1 there are none"
            raise ValueError(msg)
        return self._shards.find()

    def _lease_of(self, prefix: str) -> Lease:
        """The run lease of the scheduler (a shard, or the unsharded one) at ``prefix``."""
        return Lease(self._s3_client, self._bucket, lease_key(prefix), ttl=self._lease_ttl, clock=self.now)

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
        repeat: str | rrule | None = None,
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

        ``repeat`` makes the event recurring: an RFC 5545 RRULE (a string such as
        ``"FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0"``, or a
        `dateutil.rrule.rrule`) evaluated in ``when``'s zone (a `zoneinfo` or `dateutil.tz`
        zone; naive means UTC) from ``when`` on. The key returned is that of its first
        occurrence: the rule's first instance at or after ``when``. Each occurrence is an
        ordinary event; after delivering one, a run writes the next (see
        `s3_scheduler.series`). A string that is not a rule, a zone with no name or a rule
        with no instance at or after ``when`` raises `ValueError` before any request.

        An event with the same time and target is replaced, as in 0.0.3; with
        ``replace=False`` the write is conditional (``If-None-Match: *``) and an existing
        event raises `EventExistsError`, leaving it as it was.

        Bad input raises before any request to S3: `TypeError` for a ``when`` that is
        not a datetime or timedelta, or a ``what`` of another type; `ValueError` for a
        target bucket S3 cannot accept, an empty key, a time with no UTC equivalent, or
        a name over S3's 1,024 bytes; `TargetNotAllowedError` (a `ValueError`) for a
        target outside ``allowed_targets``. The content is never logged.
        """
        key, body, series = self._prepare(when, bucket, path, what, repeat, metadata)
        self._write(key, body, replace, _extra_args(content_type, metadata), series)
        info("Scheduled %r to %r", key, f"s3://{bucket}/{normalize_target(path)}")
        return key

    def schedule_many(
        self,
        events: Iterable[tuple[When, str, str, Content]],
        *,
        replace: bool = True,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        repeat: str | rrule | None = None,
    ) -> list[str]:
        """Schedule each ``(when, bucket, path, what)`` of ``events``; return their keys in order.

        Every event is checked as `schedule` checks it before any request is sent, and
        two events of the batch with one name raise `ValueError`; the error's ``batch_index``
        is the (second) event's index in ``events``. The writes then go
        ``max_workers`` at a time. When some fail, `ScheduleManyError` lists them (index
        and error); every event written stays written, and its key is in the error's
        ``keys`` (None for the failed ones). ``content_type``, ``metadata`` and ``repeat``
        (each event then starts a series of its own) apply to every event of the batch.
        """
        extra = _extra_args(content_type, metadata)
        prepared = []
        for index, event in enumerate(events):
            try:
                when, bucket, path, what = event
                prepared.append(self._prepare(when, bucket, path, what, repeat, metadata))
            except (TypeError, ValueError) as exc:
                raise _in_batch(exc, index) from exc
        _refuse_duplicates([key for key, _, _ in prepared])

        def write(item: _Prepared) -> BaseException | None:
            try:
                self._write(*item[:2], replace, extra, item[2])
            except Exception as exc:  # noqa: BLE001 - gathered into ScheduleManyError
                return exc
            return None

        # with shards, one shard's writes together, through one pool (keys sort by shard)
        errors = _each(write, prepared, self._max_workers, by_key=self._shards is not None)
        failures = [(index, error) for index, error in enumerate(errors) if error is not None]
        keys = [key for key, _, _ in prepared]
        if failures:
            raise ScheduleManyError(failures, [None if e is not None else k for k, e in zip(keys, errors)])
        if self._shards is None:
            info("Scheduled %d events under %r", len(keys), self._prefix)
        else:
            shards = len({self._prefix_of(key) for key in keys})
            info("Scheduled %d events under %r in %d shards", len(keys), shard_root(self._path), shards)
        return keys

    def _prepare(self, when: Any, bucket: Any, path: Any, what: Content, repeat: Any, metadata: Any) -> _Prepared:
        if isinstance(when, timedelta):
            when = _from_now(self.now(), when)
        if not isinstance(when, datetime):
            msg = f"when must be a datetime (naive means UTC) or a timedelta from now, not {type(when).__name__}"
            raise TypeError(msg)
        _check_target(bucket, path)
        body = _body(what)
        series = None
        if repeat is not None:
            started, when = new_series(repeat, when)
            series = started.metadata()
            check_metadata_size(metadata, series)
        key = encode_key(self._prefix_for(bucket, path), when, bucket, path)
        check_not_reserved(self._path, self.shards, self._bucket, bucket, path)
        check_allowed(self._allowed, bucket, normalize_target(path))
        return key, body, series

    def _prefix_for(self, bucket: str, path: str) -> str:
        """The prefix of the events of the target ``bucket``/``path``: its shard's, or the only one."""
        if self._shards is None:
            return self._prefix
        return listing_prefix(shard_path(self._path, shard_of(bucket, path, self._shards.count)))

    def _prefix_of(self, key: Any) -> str:
        """The prefix the event ``key`` lies under: its shard's, or the only one (any other
        key of a sharded scheduler raises `InvalidKeyError`)."""
        return self._prefix if self._shards is None else event_prefix(key, self._path)

    def _write(
        self, key: str, body: bytes | BinaryIO, replace: bool, extra: dict[str, Any], series: dict[str, str] | None
    ) -> str | None:
        """Write the event ``key``; return its ETag where the store gave one.

        Without ``replace`` the write is `_s3.put_new`, and an event there raises `EventExistsError`.
        An occurrence of a series (``series``: its metadata) is marked first.
        """
        if series is not None:
            extra = {**extra, "Metadata": {**extra.get("Metadata", {}), **series}}
            occurrences.mark(self._s3_client, self._bucket, self._prefix_of(key), key)
        if not isinstance(body, bytes):
            if replace:
                self._s3_client.upload_fileobj(body, self._bucket, key, ExtraArgs=extra or None)
                return None
            body = body.read()
        if replace:
            return _s3.reply_etag(self._s3_client.put_object(Bucket=self._bucket, Key=key, Body=body, **extra))
        put = _s3.put_new(self._s3_client, self._bucket, key, body, **extra)
        if put.state is _s3.Written.EXISTS:
            raise EventExistsError(_exists(key))
        return put.etag

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

        With shards, the events of every shard found and of the unsharded prefix, merged
        in time order, lazily: one LIST (one page) per shard at first, and one listing
        ``{path}/`` to find them.
        """
        limit = None if until is None else _utc("until", until)
        if self._shards is not None:
            return self._shards.pending(until=limit)
        window = None if limit is None else listing_window(self._prefix, limit, legacy_offsets=self._legacy_offsets)
        events = _events(self._s3_resource, self._s3_client, self._bucket, self._prefix, window)
        return (event for event in events if limit is None or event.when <= limit)

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

        Cancelling an occurrence of a series ends the series: once the occurrence is
        removed, any later occurrence of it that a run delivering it at that moment wrote
        is removed too. ``False`` for an occurrence already delivered: the series goes
        on at its next occurrence (`pending` lists it; cancel that one).

        Raises `InvalidKeyError` for a key that is not an event of this scheduler (with
        shards: of any shard, or of the unsharded prefix), and lets every other S3 error
        (access denied, no such bucket) propagate. `stop` keeps its 0.0.3 meaning.
        """
        prefix = self._prefix_of(key)
        decode_key(key, prefix)
        reach = MOVE_REACH + self._lease_ttl  # how far ahead a run delivering it may have written the next
        if occurrences.cancel(self._s3_client, self._bucket, prefix, key, now=self.now(), reach=reach):
            info("Cancelled the scheduled event %r", key)
            return True
        return False

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
        Guarantees page of the manual (docs/reference/guarantees.md) says so.

        With shards, ``key`` may lie in any shard or in the unsharded prefix; the new
        event is written in the shard its target hashes to, and the lease held is that
        of the place the event is moved from (whose runs may be delivering it).
        """
        prefix = self._prefix_of(key)
        event = ScheduledEvent.from_key(key, prefix)
        if isinstance(when, timedelta):
            when = _from_now(self.now(), when)
        new_key = encode_key(self._prefix_for(event.bucket, event.path), _utc("when", when), event.bucket, event.path)
        if new_key == key:
            if _s3.head_etag(self._s3_client, self._bucket, key) is None:
                raise EventNotPendingError(_not_pending(key))
            return key
        lease = None
        if self._exclusive and event.when <= self.now() + MOVE_REACH:
            lease = self._lease if prefix == self._prefix else self._lease_of(prefix)
        move = (self._s3_client, self._bucket, key, new_key, (prefix, self._prefix_for(event.bucket, event.path)))
        _move_holding(lease, self._lease_ttl, self._sleep, self._notices, move)
        info("Rescheduled %r as %r", key, new_key)
        return new_key

    def dead_letters(self) -> Iterator[ScheduledEvent]:
        """Yield the dead letters in key order, as `ScheduledEvent`s whose ``key`` is the
        dead letter's own key.

        A dead letter is an event that failed in ``dead_letter_attempts`` runs, or was
        still rejected, when ``dead_letter_after`` had passed since its time: `handle`
        moved it (body kept) to ``{path}/.dead-letters/{when}|{bucket}|{target}|{token}``,
        a name of its own (``token``: 8 random hexadecimal digits), so a later dead letter
        of the same time and target never replaces it. No run delivers or deletes it
        there: `requeue` sends it again, `purge` deletes it.

        With shards, the dead letters of every shard found and of the unsharded
        scheduler, merged in time order.
        """
        if self._shards is not None:
            yield from self._shards.dead_letters()
            return
        yield from deadletters.listing(self._s3_resource, self._s3_client, self._bucket, self._prefix)

    def show(self, key: str, *, into: BinaryIO | None = None) -> EventDetails:
        """Return what the object ``key`` holds, a pending event or a dead letter, as an `EventDetails`.

        The details are its time and target (read from the name), size, content type, user
        metadata, ETag, when it was written (``last_modified``), how many runs failed to
        deliver it (``failed_runs``, from its tag `keys.ATTEMPTS_TAG`), the rule, zone, series
        and start of the series it belongs to (None for a one-time event), and whether it
        is a dead letter (``dead_letter``). It costs one HEAD, and a GetObjectTagging only
        when the HEAD says the object has tags (``x-amz-tagging-count``; AWS leaves that
        out for credentials that may not read tags, and ``failed_runs`` then reads 0). With
        ``into`` (a binary file) one GET replaces the HEAD and the body is written there.
        The content is never logged.

        Raises `InvalidKeyError`, before any request, for a key that is neither an event nor a
        dead letter of this scheduler (with shards: of any shard, or of the unsharded prefix),
        and `EventNotPendingError` (a `LookupError`) when there is no such object (delivered,
        cancelled, requeued, purged or never scheduled). Other S3 errors propagate.
        """
        return show_details(self._s3_client, self._bucket, key, path=self._path, shards=self.shards, into=into)

    def requeue(self, key: str, when: When | None = None) -> str:
        """Send the dead letter ``key`` again: write it back as a pending event due at ``when``,
        then delete the dead letter; return the new event's key.

        ``when`` is a datetime (naive means UTC), a timedelta from now, or None (the default):
        now, so the next `handle` delivers it. The event keeps the dead letter's body, content
        type and metadata (a series' rule and zone too), and starts with no tags, so its count
        of failed runs starts again from 0. With shards it is written in the shard its target
        hashes to.

        The body is read (GET, in memory, as `reschedule` does) and written with a conditional
        PUT (``If-None-Match: *``), so a pending event at the new name is never replaced:
        `EventExistsError` (a `ValueError`), both left as they were. The dead letter is then
        deleted on the ETag read. Nothing is lost to a lost reply: a retried PUT finds its own
        write, and a retried delete that finds the dead letter gone takes it as its own. If
        the dead letter goes meanwhile (another `requeue` or a `purge`), the event written is
        taken back and `EventNotPendingError` raised: it is sent once, by the call that
        removed the dead letter. Any other error of the delete is raised with the event
        written and the dead letter kept: nothing is lost, but requeueing it again would
        send it twice (`purge` it instead).

        Raises, before any request, `InvalidKeyError` for a key that is not a dead letter of
        this scheduler (with shards: of any shard, or of the unsharded scheduler), `TypeError`
        for a ``when`` of another type, `TargetNotAllowedError` for a target outside
        ``allowed_targets``, and `ValueError` for a new name over S3's 1,024 bytes or a
        target `schedule` refuses (this scheduler's, or any shard's, lease, dead letters or
        series markers); `EventNotPendingError` (a `LookupError`) when the dead letter is
        not there.
        """
        now, allowed = self.now(), self._allowed
        return deadletters.requeue(self._s3_client, self._bucket, key, when, self._path, self.shards, now, allowed)

    def purge(self, key: str) -> bool:
        """Delete the dead letter ``key``; return ``True`` only if this call removed it.

        ``False`` when it was not there (purged or requeued already, or never there). A HEAD,
        then a delete conditional on the ETag found; a delete that botocore retried after a
        lost reply and that finds it gone answers ``True``, as `cancel` does. Raises
        `InvalidKeyError`, before any request, for a key that is not a dead letter of this
        scheduler (with shards: of any shard, or of the unsharded scheduler); other S3 errors
        propagate.
        """
        return deadletters.purge(self._s3_client, self._bucket, key, path=self._path, shards=self.shards)

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

        With shards, every shard found and the unsharded prefix are scanned, and the
        report also lists, by key, the events a fleet agreeing on ``shards`` would not
        hold: ``unsharded`` (under ``{path}/|``) and ``outside_shards`` (in shards
        numbered ``shards`` or more); `handle` delivers them all the same.
        """
        if self._shards is not None:
            return self._shards.check()
        report = CheckReport()
        for page in _s3.list_pages(self._s3_resource, self._s3_client, self._bucket, self._prefix):
            for listed in page:
                report.add(listed.key, check_name(listed.key, self._prefix, legacy_offsets=self._legacy_offsets))
        return report

    # delivering ----------------------------------------------------------------------

    def handle(
        self,
        *,
        until: datetime | None = None,
        timeout: float | None = None,
        on_delivery: Callable[[ScheduledEvent, float], None] | None = None,
        stop: threading.Event | None = None,
        shard: int | None = None,
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

        With shards, ``shard=s`` (0 to ``shards`` - 1) delivers shard ``s`` alone, as a
        scheduler at ``{path}/{s}`` does. Without it, every shard found by listing
        ``{path}/`` (whatever its number) and the unsharded prefix ``{path}/|`` are
        delivered, each under its own lease, side by side in threads (up to
        `shards.SHARDS_AT_ONCE`, sharing ``max_workers`` out between them): ``until`` and
        ``timeout`` bound the whole call, ``stop`` stops every shard, and ``on_delivery``
        is still called in the calling thread, one call at a time. The report's fields
        are the totals and its ``shards`` each shard's report. A scheduler with
        ``shards=1`` takes ``shard=0`` (its only prefix) or None.
        """
        start = self.now()
        horizon, deadline = _bounds(start, until, timeout)
        number = _check_shard(shard, self.shards)
        if self._shards is not None:
            if number is not None:
                run = self._shards.shard(shard_path(self._path, number))
                return run.handle(until=until, timeout=timeout, on_delivery=on_delivery, stop=stop)
            return self._shards.handle(until=until, deadline=deadline, on_delivery=on_delivery, stop=stop)
        settings = delivery.Settings(
            bucket=self._bucket,
            prefix=self._prefix,
            client=self._s3_client,
            resource=self._s3_resource,
            allowed=self._allowed,
            max_workers=self._max_workers,
            clock=self.now,
            wait=self._wait,
            warn=warn,
            lease=self._lease if self._exclusive else None,
            dead_letters=self._dead_letters,
            move_file=_replaced_move_file(),
            max_lateness=self._max_lateness,
            legacy_offsets=self._legacy_offsets,
            within=self._within,
            notices=self._notices,
            series=self._s3_resource is None or _s3.is_boto3_resource(self._s3_resource),
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


def _check_options(
    bucket: Any,
    path: Any,
    *,
    dead_letter_after: Any,
    dead_letter_attempts: Any,
    lease_ttl: Any,
    max_workers: Any,
    max_lateness: Any,
) -> None:
    """Raise `ValueError` (`TypeError` for a path that is not a str) for a `Scheduler` option
    out of its range, naming the range."""
    if not isinstance(bucket, str) or not bucket:
        msg = f"bucket must be the name of the scheduler's bucket, not {bucket!r}"
        raise ValueError(msg)
    if not isinstance(path, str):
        msg = f"path must be a str such as 'jobs', not {type(path).__name__}"
        raise TypeError(msg)
    if dead_letter_after is not None and (
        not isinstance(dead_letter_after, timedelta) or dead_letter_after < timedelta(0)
    ):
        msg = f"dead_letter_after must be a timedelta of zero or more (timedelta(days=1)), not {dead_letter_after!r}"
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


def _bounds(start: datetime, until: Any, timeout: Any) -> tuple[datetime, datetime | None]:
    """Return the horizon and the deadline of a `Scheduler.handle` started at ``start``
    (None: no deadline), or raise for an ``until`` or a ``timeout`` out of range."""
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
    return horizon, deadline


def _check_shard(shard: Any, shards: int) -> int | None:
    """Return ``shard`` (a shard's number for `Scheduler.handle`), or raise naming the numbers
    a scheduler of ``shards`` shards takes (0 alone, or None, without shards)."""
    if shard is None:
        return None
    if isinstance(shard, bool) or not isinstance(shard, int):
        msg = f"shard must be an int from 0 to {shards - 1} (or None: every shard), not {type(shard).__name__}"
        raise TypeError(msg)
    if not 0 <= shard < shards:
        msg = f"shard must be an int from 0 to {shards - 1} (or None: every shard) with shards={shards}, not {shard}"
        raise ValueError(msg)
    return shard


def _each(
    write: Callable[[_Prepared], BaseException | None],
    prepared: list[_Prepared],
    max_workers: int,
    *,
    by_key: bool,
) -> list[BaseException | None]:
    """Call ``write`` on each of ``prepared``, ``max_workers`` at a time (in key order with
    ``by_key``); return the error of each, in the order of ``prepared``."""
    order = list(range(len(prepared)))
    if by_key:
        order.sort(key=lambda index: prepared[index][0])
    workers = max(1, min(max_workers, len(prepared)))
    errors: list[BaseException | None] = [None] * len(prepared)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-scheduler-put") as pool:
        for index, error in zip(order, pool.map(write, (prepared[index] for index in order))):
            errors[index] = error
    return errors


def _in_batch(exc: TypeError | ValueError, index: int) -> Exception:
    """Return ``exc`` as raised for event ``index`` of a batch: its message says which, its
    ``batch_index`` is ``index``, and its type is the same (or `TypeError`/`ValueError`)."""
    msg = f"event {index} of the batch: {exc}"
    try:
        error = type(exc)(msg)
    except TypeError:  # a type not made from a message alone, such as UnicodeEncodeError
        error = TypeError(msg) if isinstance(exc, TypeError) else ValueError(msg)
    setattr(error, "batch_index", index)  # noqa: B010 - any exception type
    return error


def _refuse_duplicates(keys: list[str]) -> None:
    """Raise `ValueError` (with its ``batch_index``) for the first key of ``keys`` seen twice."""
    seen: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key in seen:
            msg = f"events {seen[key]} and {index} of the batch have the same time and target: {key!r}"
            error = ValueError(msg)
            setattr(error, "batch_index", index)  # noqa: B010 - as above
            raise error
        seen[key] = index


def _replaced_move_file() -> Callable[[str, str, str, Any, str], None] | None:
    """Return this module's ``move_file`` where it is not 0.0.3's own (0.0.3's tests
    replace it): a run then delivers each event through it, copy and delete in one call."""
    return None if move_file is utils.move_file else move_file


def _move(client: Any, bucket: str, key: str, new_key: str, prefixes: tuple[str, str]) -> None:
    """Move the event ``key`` to ``new_key`` (`Scheduler.reschedule`, by `occurrences.move`);
    ``prefixes`` are the two names' prefixes."""
    moved = occurrences.move(client, bucket, key, new_key, old_prefix=prefixes[0], new_prefix=prefixes[1])
    if moved is occurrences.Moved.TAKEN:
        msg = f"{new_key} is already pending: reschedule would replace it"
        raise EventExistsError(msg)
    if moved is not occurrences.Moved.MOVED:  # gone; or delivered, cancelled or rewritten meanwhile
        raise EventNotPendingError(_not_pending(key))


def _move_holding(
    lease: Lease | None,
    ttl: timedelta,
    sleep: Callable[[float], None],
    notices: set[str],
    move: tuple[Any, str, str, str, tuple[str, str]],
) -> None:
    """`_move` ``move`` (client, bucket, key, new key, prefixes), holding ``lease`` (if given) meanwhile."""
    run = None if lease is None else _lease_for_move(lease, ttl, sleep, notices)
    try:
        _move(*move)
    finally:
        if run is not None:
            run.release()


def _lease_for_move(lease: Lease, ttl: timedelta, sleep: Callable[[float], None], notices: set[str]) -> RunLease | None:
    """Hold ``lease`` for a move, waiting up to one ``ttl``.

    None where there is no lease to be had (a store without conditional writes,
    credentials that may not write it). Raises `RunInProgressError` when a run still
    holds it after that wait: the run may be delivering the event.
    """
    acquired = lease.hold(lease.now(), patience=ttl.total_seconds(), sleep=sleep)
    if acquired.outcome is Outcome.TAKEN:
        return acquired.run
    if acquired.outcome is Outcome.HELD:
        msg = f"a run holds the lease {lease.key!r} and may be delivering the event: try again"
        raise RunInProgressError(msg)
    if acquired.outcome is Outcome.DENIED and "lease-denied" not in notices:
        notices.add("lease-denied")
        warn(
            "Access denied (%s) to the lease %r: moving the event without it; grant s3:PutObject,"
            " s3:GetObject and s3:DeleteObject on it",
            acquired.action or "s3:PutObject",
            lease.key,
        )
    return None


_SHARD_OPTIONS = frozenset(
    (
        "exclusive",
        "dead_letter_after",
        "dead_letter_attempts",
        "lease_ttl",
        "legacy_offsets",
        "max_lateness",
        "clock",
        "sleep",
    )
)
"""The options of a sharded `Scheduler` that each shard's scheduler takes as they are."""


def within_shards(scheduler: Scheduler, path: str) -> Scheduler:
    """Return ``scheduler`` (of one prefix: a shard's, or the unsharded prefix's, of the
    sharded scheduler at ``path``), made to reject as it delivers an event aimed at any
    shard's lease, dead letters or series markers, not only its own prefix's."""
    scheduler._within = path
    return scheduler


def _shard_set(scheduler: Scheduler, path: str, shards: int, options: dict[str, Any]) -> ShardSet:
    """Return the `ShardSet` of ``scheduler`` (at ``path``, with ``shards`` shards): the
    scheduler of each shard, or of the unsharded prefix, is a `Scheduler` at its path with
    the same client and ``options``, and the copies in flight it is given."""
    bucket, resource, client = scheduler.bucket, scheduler._s3_resource, scheduler._s3_client

    def make(shard_path: str, max_workers: int) -> Scheduler:
        return within_shards(Scheduler(bucket, shard_path, resource, client, max_workers=max_workers, **options), path)

    return ShardSet(
        path=path,
        count=shards,
        bucket=bucket,
        client=client,
        resource=resource,
        make=make,
        max_workers=scheduler.max_workers,
        clock=scheduler.now,
        legacy_offsets=options["legacy_offsets"],
    )


def _stoppable_wait(sleep: Callable[[float], None]) -> Callable[[float, threading.Event | None], None]:
    """Return how a scheduler that waits for real waits: on the run's stop event, which ends
    the wait at once when set, or with ``sleep`` where there is none."""

    def wait(seconds: float, stop: threading.Event | None) -> None:
        if stop is not None:
            stop.wait(seconds)
        else:
            sleep(seconds)

    return wait


def _waiting_with(sleep: Callable[[float], None]) -> Callable[[float, threading.Event | None], None]:
    """Return how a scheduler given its own ``sleep`` waits: with it, whatever the stop event
    says (it is seen once the wait ends)."""

    def wait(seconds: float, stop: threading.Event | None) -> None:
        sleep(seconds)

    return wait


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


def _events(resource: Any, client: Any, bucket: str, prefix: str, window: Window | None) -> Iterator[ScheduledEvent]:
    """Yield the events named under ``prefix`` in ``window`` (all, if None) in key order,
    lazily page by page; other names are passed over."""
    listing: Iterator[_s3.Listed]
    if window is None:
        listing = (listed for page in _s3.list_pages(resource, client, bucket, prefix) for listed in page)
    else:
        listing = _s3.list_window(resource, client, bucket, prefix, window)
    for listed in listing:
        try:
            yield ScheduledEvent.from_key(listed.key, prefix)
        except InvalidKeyError:
            continue


def _check_target(bucket: Any, path: Any) -> None:
    """Raise `TypeError` unless ``bucket`` and ``path`` are str, `ValueError` if UTF-8 cannot encode them."""
    if not isinstance(bucket, str) or not isinstance(path, str):
        msg = "bucket and path must be str: the target bucket name and object key"
        raise TypeError(msg)
    for name, text in (("bucket", bucket), ("path", path)):
        if any("\ud800" <= char <= "\udfff" for char in text):
            msg = f"{name} {text!r} holds a lone surrogate, which UTF-8 cannot encode: S3 names are UTF-8"
            raise ValueError(msg)


def _body(what: Content) -> bytes | BinaryIO:
    """Return ``what`` as bytes, or the binary file object itself to be streamed; `ValueError`
    for text UTF-8 cannot encode (the content is not shown: it can be secret)."""
    if isinstance(what, str):
        try:
            return what.encode("utf-8")
        except UnicodeEncodeError:
            msg = "what holds a lone surrogate, which UTF-8 cannot encode: pass str that is text, or bytes"
            raise ValueError(msg) from None
    if isinstance(what, (bytes, bytearray, memoryview)):
        return bytes(what)
    if callable(getattr(what, "read", None)) and not isinstance(what, io.TextIOBase):
        return what
    msg = (
        "what must be str (sent as UTF-8), bytes-like, or a binary file object"
        f" (opened with 'rb'), not {type(what).__name__}"
    )
    raise TypeError(msg)
