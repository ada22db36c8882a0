"""``s3-scheduler run``: deliver each event on its second, window after window, until SIGINT or SIGTERM
(the loop is `s3_scheduler.runner.run_until_stopped`).

With ``--shards N`` (N > 1) the command is a supervisor (`s3_scheduler.cli.workers`): it
starts one worker process per shard, each this same command line with ``--shard K``
added, restarts a worker that ends, and stops them all on SIGINT or SIGTERM. ``--shard K``
runs the loop of shard K alone (`s3_scheduler.runner.ShardRun`); shard 0's also delivers
the unsharded prefix and every shard found numbered N or more. Without shards (or
``--shards 1``) it is the one loop over the scheduler's prefix.
"""

from __future__ import annotations

import argparse
import threading
from typing import TextIO

from ..._s3 import error_code
from ...report import HandleReport
from ...runner import FATAL_AT_START, RETRIED, Handler, ShardRun, run_until_stopped, stop_on_signals
from ...scheduler import MAX_UNTIL, Scheduler
from ...settings import format_duration
from ..argtypes import parse_duration, parse_shard
from ..errors import Failure, UsageError
from ..options import add_metrics, scheduler_for
from ..output import describe_error, print_delivery, print_metrics, print_report
from ..workers import Supervisor, start_worker, watch_parent
from . import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--interval``, ``--shard`` and ``--metrics``."""
    parser.add_argument(
        "--interval",
        default="10s",
        metavar="DURATION",
        help=f"how often to look for new events, e.g. 30s, at most {format_duration(MAX_UNTIL.total_seconds())}"
        " (no env; default 10s)",
    )
    parser.add_argument(
        "--shard",
        metavar="K",
        help="deliver shard K alone, 0 to N-1 of --shards N, in this process; shard 0 also delivers the events"
        " written unsharded or in shards N and above, e.g. --shard 0 (no env; default: with --shards N, one"
        " worker process per shard)",
    )
    add_metrics(parser, "each window's")


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Deliver until stopped, printing each delivery, a window's report when an event failed or
    expired, and each window's metrics line with ``--metrics``; exit 0 once stopped. With
    ``--shards N`` and no ``--shard``, supervise one worker process per shard instead."""
    interval = parse_duration(args.interval, "--interval")
    if not 0 < interval <= MAX_UNTIL.total_seconds():
        msg = (
            f"--interval {args.interval!r} must be more than 0 and at most {format_duration(MAX_UNTIL.total_seconds())}"
        )
        raise UsageError(msg)
    shard = None if args.shard is None else parse_shard(args.shard, args.shards)
    scheduler = scheduler_for(args)
    if shard is None and args.shards > 1:
        return _supervise(args, scheduler)
    handler: Handler = scheduler
    if shard is not None and args.shards > 1:
        strays = (lambda path: scheduler_for(args, path=path, shards=1)) if shard == 0 else None
        handler = ShardRun(scheduler, args.prefix, shard, strays=strays)

    def on_report(report: HandleReport) -> None:
        if report.failed or report.expired:
            print_report(out, args, report)
        if args.metrics:
            print_metrics(out, args, report, scheduler.now())
        out.flush()

    with stop_on_signals(threading.Event()) as stop:
        watch_parent(stop)
        run_until_stopped(
            handler,
            interval,
            stop,
            on_delivery=lambda event, late: print_delivery(out, args, event, late),
            on_report=on_report,
            describe=lambda error: describe_error(error, args.bucket),
        )
    return 0


def _supervise(args: argparse.Namespace, scheduler: Scheduler) -> int:
    """Run one worker process per shard until SIGINT or SIGTERM (exit 0), or until one keeps dying (exit 1).

    One listing first (`Scheduler.shards_found`): a bucket that does not exist, or is denied,
    ends the command there in one line, as ``run``'s first window does, before any worker
    starts; any other error is left to the workers, which retry it.
    """
    try:
        scheduler.shards_found()
    except RETRIED as exc:
        if error_code(exc) in FATAL_AT_START:
            raise
    with stop_on_signals(threading.Event()) as stop:
        failure = Supervisor(args.shards, lambda shard: start_worker(args.argv, shard), stop).run()
    if failure is not None:
        raise Failure(failure)
    return 0


COMMAND = Command(
    summary="deliver each event on its second until SIGINT or SIGTERM",
    description="Deliver, window after window of --interval, each event at its own time; print each delivery."
    " A window's summary is printed when an event failed or expired."
    " A schedule bucket that does not exist, or is denied, at the first window ends the command (exit 1);"
    " later S3 errors are logged and retried with a growing wait (up to 5 minutes). SIGINT or SIGTERM"
    " finishes the delivery in flight and exits 0."
    " With --shards N, one worker process per shard (run --shard K), each restarted when it ends; SIGINT or"
    " SIGTERM stops them all (exit 0); a worker ending 3 times within 60 s stops them all (exit 1).",
    add_arguments=add_arguments,
    run=run,
)
