"""Picking pending events by target (``--to``) and second (``--at``), for ``list``, ``cancel``
and ``reschedule``, and checking a ``KEY`` typed in their place (with shards, a key of any
shard, or of the unsharded prefix)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from datetime import datetime
from typing import TextIO

from ..exceptions import InvalidKeyError
from ..keys import decode_key, event_prefix, listing_prefix, shard_of, shard_path, shard_root
from ..report import ScheduledEvent
from ..scheduler import Scheduler
from .argtypes import parse_target, parse_when
from .errors import Failure, UsageError
from .output import print_events


class Selection:
    """Events picked by target (``--to``) and, optionally, by the second they are due (``--at``)."""

    def __init__(self, bucket: str, path: str, at: str | None) -> None:
        self.bucket, self.path, self.at = bucket, path, at

    def matches(self, event: ScheduledEvent, at: datetime | None) -> bool:
        """Whether ``event`` goes to the target, and is due in the second of ``at`` when given."""
        return (event.bucket, event.path) == (self.bucket, self.path) and (
            at is None or event.when.replace(microsecond=0) == at.replace(microsecond=0)
        )

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.path}" + ("" if self.at is None else f" at {self.at}")


def selection(args: argparse.Namespace, at: str | None = None) -> Selection | None:
    """Return the selection ``--to`` (and ``at``, the text of ``--at``) make, or None without ``--to``.

    ``--at`` without ``--to`` is a `UsageError`; ``at`` is read later, against the scheduler's clock.
    """
    if args.to is None:
        if at is not None:
            msg = "--at selects among the events of a target: pass --to s3://BUCKET/KEY too"
            raise UsageError(msg)
        return None
    bucket, path = parse_target(args.to)
    return Selection(bucket, path, at)


def pending(
    scheduler: Scheduler, until: datetime | None, select: Selection | None, now: datetime
) -> Iterable[ScheduledEvent]:
    """Return the pending events due by ``until`` (all when None), in time order, that ``select`` picks."""
    events: Iterable[ScheduledEvent] = scheduler.pending(until=until)
    if select is not None:
        at = None if select.at is None else parse_when(select.at, now, "--at")
        events = (event for event in events if select.matches(event, at))
    return events


def one(scheduler: Scheduler, args: argparse.Namespace, select: Selection, verb: str, out: TextIO) -> str:
    """Return the key of the one event ``select`` picks; otherwise print the matches and fail,
    saying that nothing was ``verb``."""
    now = scheduler.now()
    matches = list(pending(scheduler, None, select, now))
    if len(matches) == 1:
        return matches[0].key
    if not matches:
        msg = f"no pending event goes to {select}"
        raise Failure(msg)
    print_events(out, args, matches, now)
    msg = f"{len(matches)} pending events go to {select}: nothing {verb}; name one by its KEY (listed above)"
    raise Failure(msg)


def check_key(scheduler: Scheduler, key: str, path: str) -> None:
    """Refuse, as a `UsageError`, a ``KEY`` that is not the name of an event of ``scheduler``
    (at ``path``: with shards, of one of its shards or of its unsharded prefix)."""
    try:
        decode_key(key, prefix_of(scheduler, path, key))
    except InvalidKeyError as exc:
        where = repr(scheduler.prefix)
        if scheduler.shards > 1:
            where += f" or {shard_root(path)}{{shard}}/|"
        msg = f"{key!r} is not an event of {where}: {exc}"
        raise UsageError(msg) from None


def prefix_of(scheduler: Scheduler, path: str, key: str) -> str:
    """Return the prefix the event ``key`` of ``scheduler`` (at ``path``) lies under: the
    scheduler's, or with shards its shard's or the unsharded one (`InvalidKeyError` when none)."""
    return scheduler.prefix if scheduler.shards == 1 else event_prefix(key, path)


def prefix_for(scheduler: Scheduler, path: str, bucket: str, target: str) -> str:
    """Return the prefix ``scheduler`` (at ``path``) writes the events of the target (``bucket``,
    ``target``) under: its own, or with shards that of the shard the target hashes to."""
    if scheduler.shards == 1:
        return scheduler.prefix
    return listing_prefix(shard_path(path, shard_of(bucket, target, scheduler.shards)))
