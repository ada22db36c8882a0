"""``s3-scheduler run``: deliver each event on its second, window after window, until SIGINT or SIGTERM
(the loop is `s3_scheduler.runner.run_until_stopped`)."""

from __future__ import annotations

import argparse
import threading
from typing import TextIO

from ...report import HandleReport
from ...runner import run_until_stopped, stop_on_signals
from ...scheduler import MAX_UNTIL
from ...settings import format_duration
from ..argtypes import parse_duration
from ..errors import UsageError
from ..options import add_metrics, scheduler_for
from ..output import describe_error, print_delivery, print_metrics, print_report
from . import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--interval`` and ``--metrics``."""
    parser.add_argument(
        "--interval",
        default="10s",
        metavar="DURATION",
        help=f"how often to look for new events, e.g. 30s, at most {format_duration(MAX_UNTIL.total_seconds())}"
        " (no env; default 10s)",
    )
    add_metrics(parser, "each window's")


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Deliver until stopped, printing each delivery, a window's report when an event failed or
    expired, and each window's metrics line with ``--metrics``; exit 0 once stopped."""
    interval = parse_duration(args.interval, "--interval")
    if not 0 < interval <= MAX_UNTIL.total_seconds():
        msg = (
            f"--interval {args.interval!r} must be more than 0 and at most {format_duration(MAX_UNTIL.total_seconds())}"
        )
        raise UsageError(msg)
    scheduler = scheduler_for(args)

    def on_report(report: HandleReport) -> None:
        if report.failed or report.expired:
            print_report(out, args, report)
        if args.metrics:
            print_metrics(out, args, report, scheduler.now())
        out.flush()

    with stop_on_signals(threading.Event()) as stop:
        run_until_stopped(
            scheduler,
            interval,
            stop,
            on_delivery=lambda event, late: print_delivery(out, args, event, late),
            on_report=on_report,
            describe=lambda error: describe_error(error, args.bucket),
        )
    return 0


COMMAND = Command(
    summary="deliver each event on its second until SIGINT or SIGTERM",
    description="Deliver, window after window of --interval, each event at its own time; print each delivery."
    " A window's summary is printed when an event failed or expired."
    " A schedule bucket that does not exist, or is denied, at the first window ends the command (exit 1);"
    " later S3 errors are logged and retried with a growing wait (up to 5 minutes). SIGINT or SIGTERM"
    " finishes the delivery in flight and exits 0.",
    add_arguments=add_arguments,
    run=run,
)
