"""The ``s3-scheduler`` command: schedule, list, cancel, reschedule, handle, run, check, demo.

A thin layer on `Scheduler`. `main` parses the command line (`parser.build_parser`: one
subcommand per row of `commands.COMMANDS`, each a module of `commands`), fills in the
global options from the environment (`options.resolve`, through `s3_scheduler.settings`)
and runs the command. The global options (``--bucket``, ``--prefix``, ``--endpoint-url``,
``--region``, ``--max-workers``, ``--max-lateness``, ``--no-legacy-offsets``, ``--shards``,
``--json``, ``-v``) may come before or after the subcommand, and fall back on the environment:
``--bucket`` on ``S3_SCHEDULER_BUCKET``, ``--prefix`` on ``S3_SCHEDULER_PREFIX`` (then
``jobs``), ``--max-workers`` on ``S3_SCHEDULER_MAX_WORKERS``, ``--shards`` on
``S3_SCHEDULER_SHARDS`` (then 1: no shards), ``--max-lateness`` on
``S3_SCHEDULER_MAX_LATENESS`` (then off), ``--no-legacy-offsets`` on
``S3_SCHEDULER_LEGACY_OFFSETS=0``, ``--region`` on ``AWS_REGION``; boto3 itself reads
``AWS_ENDPOINT_URL_S3`` (else ``AWS_ENDPOINT_URL``) and ``AWS_DEFAULT_REGION``, checked
here first. A variable is read only when its option is not given, and the bucket only by
a command that sends requests.

Every mistake prints one line on stderr naming the fix, never a traceback: exit status 2
for usage errors (`UsageError`: checked before any request to S3, argparse's own and a
malformed variable's included), 1 for failures (`Failure`, and every botocore or boto3
error, described by `output.describe_error`). A warning (a time in the past) is one line
on stderr too, and changes nothing. The package's log lines go to stderr while the
command runs: warnings always, INFO with ``-v``, DEBUG with ``-vv``.

The modules: `errors` (`UsageError`, `Failure`), `argtypes` (the options' types),
`options` (the shared options, resolved into a `Scheduler`), `output` (what is printed),
`selection` (events picked by target), `workers` (``run --shards N``'s worker processes),
`parser`, and `commands`, one module per command.
The value parsers the former ``cli`` module held are re-exported here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Callable

from ..settings import (
    BUCKET_RULE,
    MAX_WORKERS_LIMIT,
    bucket_problem,
    duration_seconds,
    duration_timedelta,
    endpoint_problem,
    flag_value,
    format_duration,
    lateness_problem,
    metrics_dimensions,
    text_problem,
    whole_number,
)
from .argtypes import (
    join_negative_times,
    parse_content_type,
    parse_duration,
    parse_metadata,
    parse_target,
    parse_when,
)
from .errors import Failure, UsageError, flat
from .options import resolve
from .output import describe_error
from .parser import build_parser

__all__ = [
    "BUCKET_RULE",
    "MAX_WORKERS_LIMIT",
    "Failure",
    "UsageError",
    "bucket_problem",
    "build_parser",
    "describe_error",
    "duration_seconds",
    "duration_timedelta",
    "endpoint_problem",
    "entry_point",
    "flag_value",
    "format_duration",
    "join_negative_times",
    "lateness_problem",
    "main",
    "metrics_dimensions",
    "parse_content_type",
    "parse_duration",
    "parse_metadata",
    "parse_target",
    "parse_when",
    "text_problem",
    "whole_number",
]


def main(argv: Sequence[str] | None = None, *, clock: Callable[[], datetime] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    ``clock`` is handed to the `Scheduler` (tests set the time with it).
    """
    parser = build_parser()
    tokens = join_negative_times(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(tokens)
    except SystemExit as exc:  # argparse printed its own message
        return exc.code if isinstance(exc.code, int) else 2
    with _logging(getattr(args, "verbose", 0)):
        try:
            resolve(args, clock)
            args.argv = tokens  # run --shards N starts its workers with them
            with _aws_errors(args):
                status: int = args.func(args, sys.stdout)
                return status
        except UsageError as exc:
            print(f"s3-scheduler: {flat(exc)}", file=sys.stderr)
            return 2
        except Failure as exc:
            print(f"s3-scheduler: {flat(exc)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:  # the reader went away (| head): stop quietly
            _silence_stdout()
            return 1


def entry_point() -> None:  # pragma: no cover - the console script
    """The ``s3-scheduler`` console script (and ``python -m s3_scheduler``)."""
    sys.exit(main())


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # not a real file (a test's), or closed
        pass


@contextmanager
def _logging(verbose: int) -> Iterator[None]:
    """Show the package's warnings on stderr (with ``-v`` INFO, ``-vv`` DEBUG) while the command runs."""
    logger = logging.getLogger("s3_scheduler")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = logger.level
    logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextmanager
def _aws_errors(args: argparse.Namespace) -> Iterator[None]:
    """Turn every botocore and boto3 error into a `Failure` of one line that names the fix."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError, Boto3Error) as exc:
        raise Failure(describe_error(exc, args.bucket)) from None
