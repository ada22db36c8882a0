"""``s3-scheduler dead-letters``: the events the handler put aside. ``list`` them in time order, ``requeue KEY
[--at WHEN]`` one (sent again, due now or then), ``purge KEY`` one, or ``purge --all --yes`` every one; with
``--shards N``, those of every shard."""

from __future__ import annotations

import argparse
import json
import shlex
from typing import TextIO

from ...exceptions import EventExistsError, EventNotPendingError, InvalidKeyError
from ...report import ScheduledEvent
from ..argtypes import parse_when
from ..errors import Failure, UsageError
from ..options import WHEN_HELP, scheduler_for
from ..output import emit
from . import Command

ACTIONS = ("list", "requeue", "purge")
"""What ``dead-letters`` does: its first argument."""

LETTER_EXAMPLE = (
    "e.g. 'jobs/.dead-letters/2030-01-07%%2014%%3A05%%3A00%%2B00%%3A00|work|in~~report.json|0badcafe' (no env)"
)
"""A dead letter's key as ``dead-letters list`` prints it (``%`` doubled for argparse)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``ACTION``, ``KEY``, ``--at``, ``--all`` and ``--yes``."""
    parser.add_argument(
        "action", choices=ACTIONS, metavar="ACTION", help="list, requeue or purge, e.g. dead-letters list (no env)"
    )
    parser.add_argument(
        "key", nargs="?", metavar="KEY", help=f"with requeue and purge: the dead letter's key, {LETTER_EXAMPLE}"
    )
    parser.add_argument(
        "--at", metavar="WHEN", help=f"with requeue: when it is due, e.g. +1h (default now): {WHEN_HELP}"
    )
    parser.add_argument(
        "--all", action="store_true", help="with purge: every dead letter, e.g. purge --all --yes (no env)"
    )
    parser.add_argument(
        "--yes", action="store_true", help="with purge --all: yes, delete them all, e.g. purge --all --yes (no env)"
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the action; fail in one line when a dead letter is not there or cannot be sent again."""
    _check(args)
    scheduler = scheduler_for(args)
    if args.action == "list":
        _print(out, args, list(scheduler.dead_letters()))
        return 0
    try:
        if args.action == "requeue":
            when = None if args.at is None else parse_when(args.at, scheduler.now(), "--at")
            new_key = scheduler.requeue(args.key, when)
            emit(out, args, new_key, {"key": new_key, "dead_letter": args.key})
            return 0
        keys = [letter.key for letter in scheduler.dead_letters()] if args.all else [args.key]
        purged = 0
        for key in keys:
            done = scheduler.purge(key)
            purged += done
            emit(out, args, f"{'purged' if done else 'not there'}: {shlex.quote(key)}", {"key": key, "purged": done})
    except InvalidKeyError as exc:
        raise UsageError(str(exc)) from None
    except EventNotPendingError:
        msg = f"{args.key!r} is not among the dead letters: requeued, purged or never there"
        raise Failure(msg) from None
    except EventExistsError as exc:
        msg = f"{exc}: pass another --at"
        raise Failure(msg) from None
    except ValueError as exc:  # a new name over S3's 1,024 bytes
        raise UsageError(str(exc)) from None
    if not args.all and not purged:
        msg = f"{args.key!r} is not among the dead letters: requeued, purged or never there"
        raise Failure(msg)
    return 0


def _check(args: argparse.Namespace) -> None:
    """Refuse, before any request, what ``args.action`` does not take, and ``purge --all`` without ``--yes``."""
    takes_key = args.action == "requeue" or (args.action == "purge" and not args.all)
    if takes_key and args.key is None:
        msg = f"dead-letters {args.action} needs the KEY of a dead letter, as dead-letters list prints it"
        if args.action == "purge":
            msg += ", or --all --yes"
        raise UsageError(msg)
    if not takes_key and args.key is not None:
        msg = f"dead-letters {args.action}{' --all' if args.all else ''} takes no KEY"
        raise UsageError(msg)
    if args.at is not None and args.action != "requeue":
        msg = "--at is for dead-letters requeue"
        raise UsageError(msg)
    if (args.all or args.yes) and args.action != "purge":
        msg = "--all and --yes are for dead-letters purge"
        raise UsageError(msg)
    if args.all and not args.yes:
        msg = "dead-letters purge --all deletes every dead letter for good: pass --yes to confirm"
        raise UsageError(msg)
    if args.yes and not args.all:
        msg = "--yes confirms purge --all: pass --all, or name one KEY without --yes"
        raise UsageError(msg)


def _print(out: TextIO, args: argparse.Namespace, letters: list[ScheduledEvent]) -> None:
    """Write the dead letters: a table of TIME (UTC), TARGET and the shell-quoted KEY, or one JSON object each."""
    if args.json:
        out.writelines(json.dumps(letter.to_dict()) + "\n" for letter in letters)
        return
    rows = [("TIME (UTC)", "TARGET", "KEY")]
    rows += [
        (letter.when.strftime("%Y-%m-%d %H:%M:%S"), f"s3://{letter.bucket}/{letter.path}", shlex.quote(letter.key))
        for letter in letters
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[2] + "\n")


COMMAND = Command(
    summary="list, requeue or purge the dead letters",
    description="The events the handler put aside (dead_letter_after). list: in time order, TIME (UTC), TARGET and"
    " KEY (--json: one JSON object a line). requeue KEY [--at WHEN]: send one again, due now or at WHEN, its failed"
    " runs reset; exit 1 if an event is already pending there. purge KEY: delete one, exit 1 if it was not there;"
    " purge --all --yes: delete every one.",
    add_arguments=add_arguments,
    run=run,
)
