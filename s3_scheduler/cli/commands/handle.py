"""``s3-scheduler handle``: deliver every due event once and print the run's report."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..argtypes import parse_duration
from ..options import add_metrics, scheduler_for
from ..output import print_metrics, print_report
from . import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--timeout`` and ``--metrics``."""
    parser.add_argument(
        "--timeout", metavar="DURATION", help="start no delivery after this long, e.g. 50s or 1d (no env)"
    )
    add_metrics(parser)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run `Scheduler.handle` once, print its report (and metrics line); exit 1 if a delivery failed."""
    timeout = None if args.timeout is None else parse_duration(args.timeout, "--timeout")
    scheduler = scheduler_for(args)
    report = scheduler.handle(timeout=timeout)
    print_report(out, args, report)
    if args.metrics:
        print_metrics(out, args, report, scheduler.now())
    return 0 if report.ok else 1


COMMAND = Command(
    summary="deliver the due events once",
    description="Deliver every due event once and print the summary. Exit 1 if a delivery failed.",
    add_arguments=add_arguments,
    run=run,
)
