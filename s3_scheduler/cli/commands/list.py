"""``s3-scheduler list``: the pending events in time order, as a table, JSON lines or one JSON array."""

from __future__ import annotations

import argparse
import itertools
import sys
from typing import TextIO

from ..argtypes import parse_limit, parse_when
from ..options import SELECT_HELP, WHEN_HELP, add_at, add_to, scheduler_for
from ..output import print_events
from ..selection import pending, selection
from . import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--until``, ``--limit``, ``--to``, ``--at`` and ``--array``."""
    parser.add_argument("--until", metavar="WHEN", help=f"only events due by then, e.g. +1h: {WHEN_HELP}")
    parser.add_argument("--limit", metavar="N", help="at most N events, e.g. 20 (no env)")
    add_to(parser, f"only the events going there: {SELECT_HELP}")
    add_at(parser, "with --to: only those due at that second, e.g. 2030-01-07T14:05")
    parser.add_argument(
        "--array",
        action="store_true",
        help="print one JSON array, [] when empty, e.g. list --array (implies --json; no env)",
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Print the pending events due by ``--until``, going to ``--to``, at most ``--limit``."""
    limit = None if args.limit is None else parse_limit(args.limit)
    select = selection(args, args.at)
    scheduler = scheduler_for(args)
    now = scheduler.now()
    until = None if args.until is None else parse_when(args.until, now, "--until")
    events = pending(scheduler, until, select, now)
    print_events(out, args, list(itertools.islice(events, None if limit is None else min(limit, sys.maxsize))), now)
    return 0


COMMAND = Command(
    summary="list the pending events in time order",
    description="List the pending events in time order: TIME (UTC), DUE IN, TARGET and KEY, the key shell-quoted"
    " so it can be pasted into cancel or reschedule. With --json, one JSON object a line.",
    add_arguments=add_arguments,
    run=run,
)
