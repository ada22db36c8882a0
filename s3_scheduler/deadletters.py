"""Dead letters: where a scheduler puts aside the events it gives up on, and lists them.

With ``dead_letter_after`` set, an event that failed in ``dead_letter_attempts`` separate
runs, or stays rejected, once that long has passed since its time, is moved aside: copied,
body and name kept, to ``{path}/.dead-letters/{when}|{bucket}|{target}|{token}`` (a name of
its own: ``token`` is 8 random hexadecimal digits), then removed from the events. So is an
event later than ``max_lateness``. Nothing delivers or deletes a dead letter.

- **Counting failed runs**: each run whose copy of an event failed adds one to the
  event's tag `keys.ATTEMPTS_TAG` (a read and a write of its tags). Credentials that may
  not read or write tags are warned once: until they may, no event is dead-lettered.
- **Moving aside**: the copy is conditional on the ETag listed and on the dead letter's
  name being free (`_s3.copy_to_new_name`); the delete names the ETag listed, so an event
  rewritten meanwhile stays pending (its old content is then among the dead letters too).
  A delete that finds the event gone (an earlier attempt whose reply was lost, or another
  run) leaves it moved. An event whose dead letter's name would be over S3's 1,024 bytes
  stays pending and failing (warned once).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Callable

from . import _s3
from .exceptions import InvalidKeyError
from .keys import ATTEMPTS_TAG, MAX_KEY_BYTES, dead_letter_key, dead_letter_prefix
from .outcomes import Due
from .report import ScheduledEvent

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
