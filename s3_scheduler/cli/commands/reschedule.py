"""``s3-scheduler reschedule``: move one pending event, named by ``KEY`` or selected with ``--to``, to ``--at``;
with ``--shards N``, a key of any shard, moved into the shard its target hashes to."""

from __future__ import annotations

import argparse
from typing import TextIO

from ...exceptions import EventExistsError, EventNotPendingError, RunInProgressError
from ...keys import encode_key, lease_key
from ...report import ScheduledEvent
from ..argtypes import parse_when
from ..errors import Failure, UsageError
from ..options import KEY_EXAMPLE, add_at, add_to, scheduler_for
from ..output import emit
from ..selection import check_key, one, prefix_for, prefix_of, selection
from . import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``KEY`` argument, ``--at`` (required) and ``--to``."""
    parser.add_argument("key", nargs="?", metavar="KEY", help=f"the event's key as list prints it, {KEY_EXAMPLE}")
    add_at(parser, "the new time, e.g. +1d", required=True)
    add_to(parser)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Move the event and print its new key; fail, in one line saying why, when it cannot be moved."""
    select = selection(args)
    if (select is None) == (args.key is None):
        msg = "reschedule needs either the KEY of the event or --to s3://BUCKET/KEY to select it"
        raise UsageError(msg)
    scheduler = scheduler_for(args)
    when = parse_when(args.at, scheduler.now(), "--at")
    if args.key is not None:
        check_key(scheduler, args.key, args.prefix)
    key = args.key if select is None else one(scheduler, args, select, "moved", out)
    try:
        new_key = scheduler.reschedule(key, when)
    except EventNotPendingError:
        msg = f"{key!r} is no longer pending: it was delivered, cancelled or never scheduled"
        raise Failure(msg) from None
    except EventExistsError:
        event = ScheduledEvent.from_key(key, prefix_of(scheduler, args.prefix, key))
        other = encode_key(prefix_for(scheduler, args.prefix, event.bucket, event.path), when, event.bucket, event.path)
        msg = f"another event to the same target is already pending at {when.isoformat()}, {other!r}: cancel it first"
        raise Failure(msg) from None
    except RunInProgressError:
        msg = (
            f"a handler run holds the lease {lease_key(prefix_of(scheduler, args.prefix, key))} and may be delivering"
            f" {key!r}"
            " (it is due within 15.5 minutes): try again once the run is over, or cancel it and schedule it anew"
        )
        raise Failure(msg) from None
    except ValueError as exc:  # a new name over S3's 1,024 bytes
        raise UsageError(str(exc)) from None
    event = ScheduledEvent.from_key(new_key, prefix_of(scheduler, args.prefix, new_key))
    emit(out, args, new_key, {**event.to_dict(), "old_key": key})
    return 0


COMMAND = Command(
    summary="move a pending event to another time",
    description="Move one pending event, named by KEY or selected with --to, to WHEN. Prints the new key. Exit 1 if it"
    " is not pending, or if --to selects more than one event (they are listed and nothing is moved).",
    add_arguments=add_arguments,
    run=run,
)
