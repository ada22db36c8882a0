"""The requests of recurring events: marking, delivering and continuing a series, ending it.

What a series is and what its rule means is `s3_scheduler.series`; this module sends the
requests, in an order that never breaks a series and never forks it:

- **Scheduling**: the marker ``{path}/.series/{name}`` is written before the occurrence, so
  a run that lists the occurrence finds its marker (it lists the markers of each page of
  events after that page).
- **Delivering** a marked event (`deliver`): one HEAD (conditional on the ETag listed)
  reads its metadata; the next occurrence is planned and its marker written (before the
  delivery, so a handler that may not write markers fails before it delivers anything);
  the copy to the target carries the metadata, with `keys.OCCURRENCE_META` naming the
  occurrence's time; then the next occurrence is written (`follow`): a copy of the
  occurrence (content, content type, metadata; no tags) to its name, conditional on the
  occurrence's ETag; then the run's batch delete removes the delivered occurrence, and
  its marker goes with it. A run killed before the delete delivers the occurrence again;
  the next occurrence it writes then is the same name (its time is the rule's next
  instance after the occurrence, or, for an occurrence missed by more than one instance,
  after the run's time: an earlier attempt's next occurrence is then found among the
  markers and kept), so a series never forks.
- **Cancelling** an occurrence (`cancel`) deletes it, then every occurrence of its series
  that a run delivering it at that moment may have written: the series ends.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from . import _s3
from .keys import (
    OCCURRENCE_META,
    SERIES_META,
    encode_key,
    marked_event,
    series_marker,
    series_marker_prefix,
)
from .report import ScheduledEvent
from .series import Series, from_metadata

logger = logging.getLogger("s3_scheduler.delivery")
"""A run's own logger: these lines are part of a run's log."""

ORPHAN_AGE = timedelta(hours=1)
"""A marker older than this whose event is gone is deleted by a run (younger ones may
belong to an event being written)."""

ORPHANS_CHECKED = 100
"""At most this many markers a run checks (a HEAD each) and deletes as orphans."""

_KEPT = ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage", "Expires", "ContentType")
"""The headers of an occurrence that its delivery and its next occurrence keep."""

_NAME_TRIES = 3
"""How many instances a series tries when the next one's name holds another event."""


class Head(NamedTuple):
    """An event's HEAD: its user metadata, its headers, its ETag."""

    metadata: dict[str, str]
    headers: dict[str, Any]
    etag: str | None

    @property
    def series(self) -> Series | None:
        """The series the event is an occurrence of, or None."""
        return from_metadata(self.metadata)


def head(client: Any, bucket: str, key: str, etag: str | None = None, *, bucket_too: bool = False) -> Head | None:
    """HEAD ``key`` (if it still holds ``etag``, where given); None when it is gone.

    A changed ETag raises the store's `ClientError` (412). With ``bucket_too``, a 404 is
    told apart from a missing bucket as `_s3.head_etag` does (which raises ``NoSuchBucket``).
    """
    condition = {"IfMatch": etag} if etag else {}
    try:
        reply = client.head_object(Bucket=bucket, Key=key, **condition)
    except ClientError as exc:
        if not _s3.is_missing(exc):
            raise
        if bucket_too:
            _s3.head_etag(client, bucket, key)  # raises NoSuchBucket for a missing bucket
        return None
    headers = {name: reply[name] for name in _KEPT if reply.get(name)}
    return Head(dict(reply.get("Metadata") or {}), headers, reply.get("ETag"))


def mark(client: Any, bucket: str, prefix: str, key: str) -> None:
    """Write the marker of the event ``key`` of the scheduler at ``prefix`` (empty; idempotent)."""
    client.put_object(Bucket=bucket, Key=series_marker(prefix, key), Body=b"")


def unmark(client: Any, bucket: str, prefix: str, key: str) -> None:
    """Delete the marker of the event ``key``, if any (a failure only leaves an orphan, which runs delete)."""
    try:
        client.delete_object(Bucket=bucket, Key=series_marker(prefix, key))
    except ClientError as exc:
        logger.info("The marker of %r stays (%s): a later run deletes it", key, _s3.describe(exc))


class Delivered(NamedTuple):
    """What `deliver` did besides the copy: the next occurrence's key (None: the series
    ended, or the event was not an occurrence), and how many occurrences it skipped."""

    next_key: str | None
    missed: int


def deliver(
    client: Any,
    bucket: str,
    prefix: str,
    event: ScheduledEvent,
    etag: str | None,
    *,
    now: datetime,
    copy_extra: dict[str, Any],
) -> Delivered:
    """Deliver the marked event ``event`` (listed with ``etag``) and continue its series.

    The next occurrence is planned and marked before the delivery (so a handler that may
    not mark fails before it delivers, and delivers nothing twice), and written after it.
    Raises the store's errors as a copy does: a missing event (`_s3.is_missing`), a
    changed one (`_s3.is_lost`), any other. ``copy_extra`` are the copy's own arguments
    (``TaggingDirective``). An event without a series' metadata is copied as any other.
    """
    found = head(client, bucket, event.key, etag)
    if found is None:
        raise _missing(event.key)
    series = found.series
    extra = dict(copy_extra)
    if etag:
        extra["CopySourceIfMatch"] = etag
    planned = None
    if series is not None:
        planned = _plan(client, bucket, prefix, event, series, now)
        extra["MetadataDirective"] = "REPLACE"
        extra["Metadata"] = {**found.metadata, OCCURRENCE_META: event.when.isoformat()}
        extra.update(found.headers)
    client.copy_object(Bucket=event.bucket, Key=event.path, CopySource={"Bucket": bucket, "Key": event.key}, **extra)
    if series is None or planned is None:
        return Delivered(None, 0)
    return follow(client, bucket, prefix, event, found.etag or etag, series, planned=planned)


def skip(client: Any, bucket: str, prefix: str, event: ScheduledEvent, etag: str | None, *, now: datetime) -> Delivered:
    """Continue the series of the marked event ``event`` without delivering it (a run
    found it later than ``max_lateness``: it is put aside, its series goes on)."""
    found = head(client, bucket, event.key, etag)
    series = None if found is None else found.series
    if found is None or series is None:
        return Delivered(None, 0)
    planned = _plan(client, bucket, prefix, event, series, now)
    return follow(client, bucket, prefix, event, found.etag or etag, series, planned=planned)


class Planned(NamedTuple):
    """The occurrence that follows a delivered one: its key (None: the series ends, or an
    earlier attempt wrote it: ``written``), and how many occurrences it skips."""

    key: str | None
    missed: int
    written: bool = False


def _plan(client: Any, bucket: str, prefix: str, event: ScheduledEvent, series: Series, now: datetime) -> Planned:
    """Plan, and mark, the occurrence of ``series`` that follows ``event`` (delivered at ``now``),
    all before the delivery.

    Its time is the rule's next instance after the event's; when that is past too (the
    series was missed), the first instance after ``now``, unless an earlier attempt wrote
    the next occurrence already (found among the markers). A name that holds another
    event is passed over for the following instance; when `_NAME_TRIES` in a row do, the
    series ends there (warned): the delivery goes on, never repeated for that.
    """
    at = series.next_after(event.when)
    missed = 0
    if at is not None and at <= now:
        if _written_before(client, bucket, prefix, event, series, now):
            return Planned(None, 0, written=True)
        missed = series.missed_between(event.when, now)
        at = series.next_after(now)
    for _ in range(_NAME_TRIES):
        if at is None:
            logger.info("%r is the last occurrence of its series (%s)", event.key, series.rule)
            return Planned(None, missed)
        key = encode_key(prefix, at, event.bucket, event.path)
        there = head(client, bucket, key)
        if there is not None and there.metadata.get(SERIES_META) == series.id:
            return Planned(None, missed, written=True)  # an earlier attempt's
        if there is None:
            mark(client, bucket, prefix, key)
            return Planned(key, missed)
        logger.warning("%r holds another event: the series of %r goes on at its next instance", key, event.key)
        at = series.next_after(at)
    logger.warning("The next %d names of the series of %r hold other events: the series ends", _NAME_TRIES, event.key)
    return Planned(None, missed)


def follow(
    client: Any,
    bucket: str,
    prefix: str,
    event: ScheduledEvent,
    etag: str | None,
    series: Series,
    *,
    planned: Planned,
) -> Delivered:
    """Write the occurrence of ``series`` that follows ``event`` as ``planned`` (and marked).

    A copy refused because the event is gone or changed (cancelled meanwhile) writes
    nothing: the series ends there.
    """
    if planned.key is None:
        return Delivered(None, planned.missed)
    if _copy_next(client, bucket, event.key, etag, planned.key):
        return Delivered(planned.key, planned.missed)
    unmark(client, bucket, prefix, planned.key)
    logger.info("%r was cancelled or changed while it was delivered: its series ends", event.key)
    return Delivered(None, planned.missed)


def _copy_next(client: Any, bucket: str, key: str, etag: str | None, new: str) -> bool:
    """Copy the occurrence ``key`` (at ``etag``) to ``new``, without its tags; False when
    ``key`` is gone or changed."""
    condition = {"CopySourceIfMatch": etag} if etag else {}
    try:
        client.copy_object(
            Bucket=bucket,
            Key=new,
            CopySource={"Bucket": bucket, "Key": key},
            TaggingDirective="REPLACE",
            **condition,
            **_s3.copy_if_new(client),
        )
    except ClientError as exc:
        if _s3.is_missing(exc) or (_s3.is_lost(exc) and head(client, bucket, new) is None):
            return False
        if _s3.is_lost(exc):  # the name was taken meanwhile (If-None-Match): by an earlier attempt, or raced
            return True
        raise
    return True


def _written_before(
    client: Any, bucket: str, prefix: str, event: ScheduledEvent, series: Series, now: datetime
) -> bool:
    """Whether an occurrence of ``series`` after ``event`` and up to the series' first
    instance after ``now`` is pending: an earlier attempt to deliver ``event`` wrote it."""
    last = series.next_after(now)
    for candidate in _marked_after(client, bucket, prefix, event, last):
        there = head(client, bucket, candidate.key)
        if there is not None and there.metadata.get(SERIES_META) == series.id:
            return True
    return False


def _marked_after(
    client: Any, bucket: str, prefix: str, event: ScheduledEvent, last: datetime | None, *, before: bool = False
) -> list[ScheduledEvent]:
    """The marked events of ``event``'s target after it, up to ``last`` (None: to the end);
    with ``before``, those before it instead (listed from the first marker)."""
    markers = series_marker_prefix(prefix)
    own = series_marker(prefix, event.key)
    found: list[ScheduledEvent] = []
    start = {} if before else {"StartAfter": own}
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=markers, **start):
        for item in page.get("Contents", ()):
            if before and item["Key"] >= own:
                return found
            try:
                marked = ScheduledEvent.from_key(marked_event(prefix, item["Key"]), prefix)
            except ValueError:
                continue
            if last is not None and marked.when > last:
                return found
            if (marked.bucket, marked.path) == (event.bucket, event.path) and (before or marked.when > event.when):
                found.append(marked)
    return found


def cancel(client: Any, bucket: str, prefix: str, key: str, *, now: datetime, reach: timedelta) -> bool | None:
    """Cancel the event ``key``: return True when this call removed it (or may have: a
    retried delete found it gone), False when it was not pending; None when the store
    refused the delete's condition (it changed meanwhile).

    For an occurrence of a series, once it is removed, every other pending occurrence of
    the series is removed too, with the markers: the later ones up to its first instance
    after ``now`` + ``reach`` (a run delivering the occurrence at that moment may have
    written the next one) and the earlier ones (an occurrence delivered whose delete
    failed, which a run would deliver again and follow): the series ends.
    """
    found = head(client, bucket, key, bucket_too=True)
    if found is None:
        return False
    gone = _s3.delete_if_match(client, bucket, key, found.etag)
    if gone is _s3.Deleted.CHANGED:
        return None
    if gone is _s3.Deleted.GONE:
        return False
    if gone is not _s3.Deleted.DELETED:
        # An earlier attempt may have removed it, its reply lost: never report a
        # removal this call may have made as "not removed".
        logger.info("%r: a retried delete found it gone", key)
    series = found.series
    if series is not None:
        event = ScheduledEvent.from_key(key, prefix)
        last = series.next_after(now + reach)
        others = [
            *_marked_after(client, bucket, prefix, event, None, before=True),
            *_marked_after(client, bucket, prefix, event, last),
        ]
        for other in others:
            there = head(client, bucket, other.key)
            if there is not None and there.metadata.get(SERIES_META) == series.id:
                _s3.delete_if_match(client, bucket, other.key, there.etag)
                unmark(client, bucket, prefix, other.key)
                logger.info("Cancelled %r, another occurrence of the series of %r", other.key, key)
        unmark(client, bucket, prefix, key)
    return True


def _missing(key: str) -> ClientError:
    return ClientError({"Error": {"Code": "NoSuchKey", "Message": f"{key} is gone"}}, "HeadObject")


def marked_in(
    client: Any, bucket: str, prefix: str, after: str | None, first: str, last: str, *, now: datetime
) -> set[str]:
    """Return the event keys after ``after`` (None: from the start) and up to ``last`` that
    a marker marks: a run asks this for each page of events it lists (after listing it).

    From the start, the markers before ``first`` (the first due event listed) may mark no
    event (left by `Scheduler.stop`, by a 0.0.3 handler, or by a write that failed): those
    older than `ORPHAN_AGE` whose event a HEAD finds gone are deleted (up to
    `ORPHANS_CHECKED` a run), in one ``DeleteObjects``; a failure leaves them. (An event
    may sort before ``first`` and still be pending: not yet due under an older name form,
    or rejected; its marker stays.)
    """
    markers = series_marker_prefix(prefix)
    start = None if after is None else series_marker(prefix, after)
    end = series_marker(prefix, last)
    marked: set[str] = set()
    orphans: list[str] = []
    checked = 0
    for page in _s3.list_modified(client, bucket, markers, start):
        for item in page:
            if item.key > end:
                break
            key = marked_event(prefix, item.key)
            if after is None and key < first:
                old = item.modified is not None and item.modified < now - ORPHAN_AGE
                if old and checked < ORPHANS_CHECKED:
                    checked += 1
                    if head(client, bucket, key) is None:
                        orphans.append(item.key)
            else:
                marked.add(key)
        else:
            continue
        break
    if orphans:
        _delete_orphans(client, bucket, orphans)
    return marked


def _delete_orphans(client: Any, bucket: str, markers: list[str]) -> None:
    for start in range(0, len(markers), 1000):
        batch = markers[start : start + 1000]
        try:
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True})
        except ClientError as exc:
            logger.info("%d markers of gone events stay (%s)", len(batch), _s3.describe(exc))
            return
        logger.info("Deleted %d markers of gone events", len(batch))


KEPT_ON_MOVE = ("ContentType", "ContentEncoding", "ContentDisposition", "ContentLanguage", "CacheControl", "Metadata")
"""What a move (`Scheduler.reschedule`, `Scheduler.requeue`) keeps of an object besides its body."""


class Moved(enum.Enum):
    """What `move` came to."""

    MOVED = "moved"
    GONE = "gone"
    """There was nothing to move: nothing written."""
    TAKEN = "taken"
    """An object holds the new name: nothing changed."""
    CHANGED = "changed"
    """The object was removed or rewritten while it was moved: the copy was taken back."""


def move(client: Any, bucket: str, key: str, new_key: str, *, old_prefix: str | None, new_prefix: str) -> Moved:
    """Move ``key`` to ``new_key``: read it, write it (body and `KEPT_ON_MOVE`, no tags) with
    a conditional PUT (If-None-Match, which every store we test honours) so that nothing
    written there meanwhile is replaced, then delete the old name naming the ETag read, so
    that an object rewritten meanwhile stays (the copy is then taken back).

    An occurrence of a series is marked at its new name (under ``new_prefix``) before it
    is written there, and its old marker (under ``old_prefix``; None: it has none) deleted
    after. A retried delete that finds the old name gone was an earlier attempt of it.
    """
    try:
        got = client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _s3.is_missing(exc):
            return Moved.GONE
        raise
    with got["Body"] as stream:
        body = stream.read()
    extra = {name: got[name] for name in KEPT_ON_MOVE if got.get(name)}
    series = from_metadata(got.get("Metadata") or {}) is not None
    if series:
        mark(client, bucket, new_prefix, new_key)
    put = _s3.put_new(client, bucket, new_key, body, **extra)
    if put.state is _s3.Written.EXISTS:
        return Moved.TAKEN
    gone = _s3.delete_if_match(client, bucket, key, got["ETag"])
    if gone not in (_s3.Deleted.DELETED, _s3.Deleted.GONE_ON_RETRY):
        _s3.delete_if_match(client, bucket, new_key, put.etag or _s3.content_etag(body), unquoted_too=True)
        return Moved.CHANGED
    if series and old_prefix is not None:
        unmark(client, bucket, old_prefix, key)
    return Moved.MOVED
