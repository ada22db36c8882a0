"""Dead letters: where a scheduler puts aside the events it gives up on, and lists them.

With ``dead_letter_after`` set, an event that failed in ``dead_letter_attempts`` separate
runs, or stays rejected, once that long has passed since its time, is moved aside: copied,
body and name kept, to ``{path}/.dead-letters/{when}|{bucket}|{target}|{token}`` (a name of
its own: ``token`` is 8 random hexadecimal digits), then removed from the events. So is an
event later than ``max_lateness``. No run delivers or deletes a dead letter: an
operator sends it again (`requeue`) or deletes it (`purge`).

- **Counting failed runs**: each run whose copy of an event failed adds one to the
  event's tag `keys.ATTEMPTS_TAG` (a read and a write of its tags). Credentials that may
  not read or write tags are warned once: until they may, no event is dead-lettered.
- **Moving aside**: the copy is conditional on the ETag listed and on the dead letter's
  name being free (`_s3.copy_to_new_name`); the delete names the ETag listed, so an event
  rewritten meanwhile stays pending (its old content is then among the dead letters too).
  A delete that finds the event gone (an earlier attempt whose reply was lost, or another
  run) leaves it moved. An event whose dead letter's name would be over S3's 1,024 bytes
  stays pending and failing (warned once).
- **Handing back** (`requeue`, `purge`): a dead letter is written back as a new pending
  event (conditional PUT, no tags), then deleted on its ETag; or deleted alone.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Callable, Union

from . import _s3, occurrences
from .exceptions import EventExistsError, EventNotPendingError, InvalidKeyError
from .keys import (
    ATTEMPTS_TAG,
    MAX_KEY_BYTES,
    check_not_reserved,
    dead_letter_key,
    dead_letter_prefix,
    encode_key,
    listing_prefix,
    shard_number,
    shard_of,
    shard_path,
    shard_root,
    to_utc,
)
from .outcomes import Due
from .report import ScheduledEvent
from .targets import check_allowed
from .utils import info

logger = logging.getLogger("s3_scheduler.delivery")
"""A run's own logger: these lines are part of a run's log, under the name they always had."""


class DeadLetters:
    """The dead letters of the scheduler whose prefix is ``prefix`` in ``bucket``.

    ``after`` and ``attempts`` are the scheduler's ``dead_letter_after`` and
    ``dead_letter_attempts``; ``notices`` holds the warnings given once per scheduler.
    """

    def __init__(
        self, client: Any, bucket: str, prefix: str, *, after: timedelta, attempts: int, notices: set[str]
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix
        self.after = after
        self.attempts = attempts
        self._notices = notices

    def settle(
        self,
        failed: list[Due],
        rejected: list[Due],
        *,
        now: datetime,
        out_of_time: Callable[[], bool],
        hold: Callable[[], bool],
    ) -> list[str]:
        """Move aside the events of a run that are through: return the keys moved.

        ``failed`` are the events whose copy failed in the run: each gets its failed run
        counted, and goes once ``attempts`` runs have failed it and ``after`` has passed
        since its time. ``rejected`` go once ``after`` has passed. Nothing more is sent
        once ``out_of_time()`` says so (a later run counts and moves the rest), and
        nothing is moved unless ``hold()`` holds the run's lease.
        """
        candidates = [d for d in rejected if now - d.event.when >= self.after]
        for due in failed:
            if out_of_time():  # counted by a later run: the deadline comes first
                break
            runs = self._count_failed_run(due.event.key)
            if runs >= self.attempts and now - due.event.when >= self.after:
                candidates.append(due)
        if not candidates or out_of_time() or not hold():
            return []
        moved = []
        for due in candidates:
            if out_of_time():
                break
            if self._move_aside(due):
                moved.append(due.event.key)
        return moved

    def put_aside(self, due: Due) -> str:
        """Copy the event, name and body kept, to a dead letter of its own, then remove it; return its new key.

        Raises what the store raised (the event then stays where it was), a refused
        condition included: an event rewritten since it was listed stays pending.
        """
        event = due.event
        target = _s3.copy_to_new_name(
            self._client,
            self._bucket,
            event.key,
            due.etag,
            lambda: dead_letter_key(self._prefix, event.key, secrets.token_hex(4)),
        )
        # Gone already (an earlier attempt whose reply was lost, or another run): the event
        # is no longer pending and its copy is among the dead letters.
        if _s3.delete_if_match(self._client, self._bucket, event.key, due.etag) is _s3.Deleted.CHANGED:
            raise _s3.precondition_failed("DeleteObject")
        return target

    def _count_failed_run(self, key: str) -> int:
        """Add this run to the failed runs the event's tag counts; return the new count (0: unknown)."""
        client, bucket = self._client, self._bucket
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
            if "tagging" not in self._notices:
                self._notices.add("tagging")
                logger.warning(
                    "Unable to count the failed runs of %r in its tags (%s): grant s3:GetObjectTagging and"
                    " s3:PutObjectTagging on the events; until then no event is dead-lettered",
                    key,
                    _s3.describe(exc),
                )
            return 0
        return runs

    def _move_aside(self, due: Due) -> bool:
        """Put ``due`` aside, logging what came of it; return whether it moved."""
        key = due.event.key
        size = len(dead_letter_key(self._prefix, key, "0" * 8).encode("utf-8"))
        if size > MAX_KEY_BYTES:
            notice = f"too long: {key}"
            if notice not in self._notices:
                self._notices.add(notice)
                logger.warning(
                    "%r is too long to be moved to the dead letters (its name there would be %d bytes, over S3's"
                    " 1,024): it stays pending and failing; cancel it or shorten the scheduler path",
                    key,
                    size,
                )
            return False
        try:
            target = self.put_aside(due)
        except Exception as exc:  # noqa: BLE001 - the event stays where it was
            logger.warning("Unable to move %r to the dead letters: %s", key, _s3.describe(exc))
            return False
        logger.warning("Moved %r to the dead letters as %r", key, target)
        return True


def listing(resource: Any, client: Any, bucket: str, prefix: str) -> Iterator[ScheduledEvent]:
    """Yield the dead letters of the scheduler at ``prefix`` in key order, lazily page by
    page, as events whose ``key`` is the dead letter's own; other names are passed over."""
    for page in _s3.list_pages(resource, client, bucket, dead_letter_prefix(prefix)):
        for listed in page:
            try:
                yield ScheduledEvent.from_dead_letter(listed.key, prefix)
            except InvalidKeyError:
                continue


KEPT_ON_REQUEUE = occurrences.KEPT_ON_MOVE
"""What `requeue` keeps of a dead letter besides its body (as `Scheduler.reschedule` keeps of an event)."""

When = Union[datetime, timedelta, None]
"""When a requeued event is due: a datetime (naive means UTC), a timedelta from now, or None: now."""


def letter(key: Any, path: str, *, shards: int) -> ScheduledEvent:
    """Return the dead letter ``key`` of the scheduler at ``path`` (with ``shards`` > 1: of any
    shard, or of the unsharded scheduler) as an event whose ``key`` is the dead letter's own.

    Raises `InvalidKeyError` for any other name.

    >>> letter("jobs/2/.dead-letters/2030-01-07%2014%3A05%3A00%2B00%3A00|b|k|0badcafe", "jobs", shards=4).path
    'k'
    """
    unsharded = listing_prefix(path)
    root = shard_root(path)
    prefix = None
    if isinstance(key, str) and key.startswith(dead_letter_prefix(unsharded)):
        prefix = unsharded
    elif shards > 1 and isinstance(key, str) and key.startswith(root):
        label = key[len(root) :].partition("/")[0]
        if shard_number(label) is not None and key.startswith(dead_letter_prefix(listing_prefix(root + label))):
            prefix = listing_prefix(root + label)
    problem = ""
    if prefix is not None:
        try:
            return ScheduledEvent.from_dead_letter(key, prefix)
        except InvalidKeyError as exc:
            problem = f" ({exc})"
    where = dead_letter_prefix(unsharded) + ("" if shards == 1 else f" or {root}{{shard}}/.dead-letters/")
    msg = f"{key!r} is not a dead letter of the scheduler at {path!r}: {where}{{when}}|{{bucket}}|{{target}}|{{token}}"
    raise InvalidKeyError(msg + problem)


def requeue(
    client: Any,
    bucket: str,
    key: str,
    when: When,
    path: str,
    shards: int,
    now: datetime,
    allowed: Any = None,
) -> str:
    """Write the dead letter ``key`` back as a pending event due at ``when``, then remove it; return the event's key.

    The new event is the dead letter's body, content type and metadata (`KEPT_ON_REQUEUE`),
    without tags, so its count of failed runs starts again; with ``shards`` > 1 it lies in
    the shard its target hashes to. A dead letter that was an occurrence of a series is
    marked as one (`occurrences.mark`) before it is written: after its delivery its series
    goes on. The write is a conditional PUT (``If-None-Match: *``,
    honoured by every store we test, CopyObject's is not), so a pending event of that name
    is never replaced: `EventExistsError`, nothing changed. The dead letter is then deleted
    on the ETag read (``If-Match``). Lost replies: a PUT retried after its reply was lost
    finds its own write (`_s3.put_new`), a retried delete that finds the dead letter gone
    is this call's own. If the dead letter went meanwhile (requeued or purged by another
    call) or changed, the new event is taken back and `EventNotPendingError` raised. Any
    other error of the delete is raised with the event written and the dead letter kept
    (nothing lost; purge it rather than requeue it again).

    Raises before any request: `InvalidKeyError` for a key that is not a dead letter of the
    scheduler, `TypeError` for a ``when`` of another type, `ValueError` for a name over
    S3's 1,024 bytes or a target that is the scheduler's (or a shard's) lease, a dead letter
    or a series marker, `TargetNotAllowedError` for a target outside ``allowed`` (parsed
    allowed targets, None: any). `EventNotPendingError` when the dead letter is not there.
    """
    event = letter(key, path, shards=shards)
    due = _due(when, now)
    check_allowed(allowed, event.bucket, event.path)
    check_not_reserved(path, shards, bucket, event.bucket, event.path)
    prefix = listing_prefix(path if shards == 1 else shard_path(path, shard_of(event.bucket, event.path, shards)))
    new_key = encode_key(prefix, due, event.bucket, event.path)
    moved = occurrences.move(client, bucket, key, new_key, old_prefix=None, new_prefix=prefix)
    if moved is occurrences.Moved.TAKEN:
        msg = f"{new_key} is already pending: requeue would replace it; requeue at another time, or cancel it first"
        raise EventExistsError(msg)
    if moved is not occurrences.Moved.MOVED:  # gone; or requeued, purged or rewritten since it was read
        raise EventNotPendingError(_not_there(key))
    info("Requeued the dead letter %r as %r", key, new_key)
    return new_key


def purge(client: Any, bucket: str, key: str, *, path: str, shards: int) -> bool:
    """Delete the dead letter ``key``; return True only if this call removed it.

    One HEAD, then a DELETE on the ETag found (``If-Match``). False when it was not there
    (purged, requeued, or never there), or was replaced between the two. A retried delete
    that finds it gone answers True: this call may have removed it (as `Scheduler.cancel`).
    Raises `InvalidKeyError`, before any request, for a key that is not a dead letter of
    the scheduler at ``path`` (with ``shards``).
    """
    letter(key, path, shards=shards)
    etag = _s3.head_etag(client, bucket, key)
    if etag is None:
        return False
    gone = _s3.delete_if_match(client, bucket, key, etag)
    if gone in (_s3.Deleted.DELETED, _s3.Deleted.GONE_ON_RETRY, _s3.Deleted.CHANGED_ON_RETRY):
        info("Purged the dead letter %r", key)
        return True
    return False


def _due(when: When, now: datetime) -> datetime:
    """Return ``when`` as an aware UTC time: None is ``now``, a timedelta is from ``now``."""
    if when is None:
        return now
    if isinstance(when, timedelta):
        try:
            return now + when
        except OverflowError:
            msg = f"when {when!r} from now is past the times a datetime can hold (years 1 to 9999)"
            raise ValueError(msg) from None
    if not isinstance(when, datetime):
        msg = f"when must be a datetime (naive means UTC), a timedelta from now, or None, not {type(when).__name__}"
        raise TypeError(msg)
    return to_utc(when)


def _not_there(key: str) -> str:
    return f"{key} is not among the dead letters: requeued, purged or never there"
