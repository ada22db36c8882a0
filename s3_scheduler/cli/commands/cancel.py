"""``s3-scheduler cancel``: cancel pending events, named by ``KEY`` or selected with ``--to`` (and ``--at``);
with ``--shards N``, a key of any shard, and ``--to`` looks in every shard."""

from __future__ import annotations

import argparse
import shlex
from typing import TextIO

from ..errors import Failure, UsageError
from ..options import KEY_EXAMPLE, add_at, add_to, scheduler_for
from ..output import emit
from ..selection import check_key, one, selection
from . import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``KEY`` arguments, ``--to`` and ``--at``."""
    parser.add_argument("keys", nargs="*", metavar="KEY", help=f"an event's key as list prints it, {KEY_EXAMPLE}")
    add_to(parser)
    add_at(parser, "with --to: only the event due at that second, e.g. +1h")


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Cancel each event, printing whether it was; fail when one was not pending, or ``--to`` is ambiguous."""
    select = selection(args, args.at)
    if select is not None and args.keys:
        msg = "cancel takes KEYs or --to, not both"
        raise UsageError(msg)
    if select is None and not args.keys:
        msg = "cancel needs the KEY of each event, or --to s3://BUCKET/KEY to select one"
        raise UsageError(msg)
    scheduler = scheduler_for(args)
    keys = list(args.keys)
    for key in keys:
        check_key(scheduler, key, args.prefix)
    if select is not None:
        keys = [one(scheduler, args, select, "cancelled", out)]
    missed = 0
    for key in keys:
        cancelled = scheduler.cancel(key)
        missed += not cancelled
        word = "cancelled" if cancelled else "not pending (delivered, cancelled or never scheduled)"
        emit(out, args, f"{word}: {shlex.quote(key)}", {"key": key, "cancelled": cancelled})
    if missed:
        msg = f"{missed} of {len(keys)} events were not pending: delivered, cancelled or never scheduled"
        raise Failure(msg)
    return 0


COMMAND = Command(
    summary="cancel pending events",
    description="Cancel pending events, named by KEY or selected with --to (and --at). Exit 1 if one was not pending,"
    " or if --to selects more than one event (they are listed and nothing is cancelled).",
    add_arguments=add_arguments,
    run=run,
)
