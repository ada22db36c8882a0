"""``s3-scheduler handle``: deliver every due event once and print the run's report; with
``--shard K``, those of shard K alone."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..argtypes import parse_duration, parse_shard
from ..options import add_metrics, scheduler_for
from ..output import print_metrics, print_report
from . import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--timeout``, ``--shard`` and ``--metrics``."""
    parser.add_argument(
        "--timeout", metavar="DURATION", help="start no delivery after this long, e.g. 50s or 1d (no env)"
    )
    parser.add_argument(
        "--shard",
        metavar="K",
        help="deliver shard K alone, 0 to N-1 of --shards N, e.g. --shard 3 (no env; default: every shard"
        " found, and the events written unsharded)",
    )
    add_metrics(parser)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run `Scheduler.handle` once (of shard ``--shard``), print its report (and metrics line);
    exit 1 if a delivery failed. A ``--shard`` outside 0 to ``--shards`` - 1 is refused before any request."""
    timeout = None if args.timeout is None else parse_duration(args.timeout, "--timeout")
    shard = None if args.shard is None else parse_shard(args.shard, args.shards)
    scheduler = scheduler_for(args)
    report = scheduler.handle(timeout=timeout, shard=shard)
    print_report(out, args, report)
    if args.metrics:
        print_metrics(out, args, report, scheduler.now())
    return 0 if report.ok else 1


COMMAND = Command(
    summary="deliver the due events once",
    description="Deliver every due event once and print the summary. Exit 1 if a delivery failed."
    " With --shards N, every shard found and the events written unsharded, side by side; with --shard K,"
    " shard K alone.",
    add_arguments=add_arguments,
    run=run,
)
