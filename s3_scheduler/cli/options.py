"""The options several commands share, each defined once: the global options (``--bucket``,
``--prefix``, ``--endpoint-url``, ``--region``, ``--max-workers``, ``--max-lateness``,
``--no-legacy-offsets``, ``--shards``, ``--json``, ``-v``), and ``--to``, ``--at`` and ``--metrics``.

The global options may come before or after the command: every subparser has them, each
left out of the namespace when not given (``argparse.SUPPRESS``), so one given before the
command is kept. `resolve` then fills in those not given from the environment, through
`s3_scheduler.settings.Environment`, and checks them all; `scheduler_for` makes the
`Scheduler` they name.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Callable

from .._s3 import POOL_EXTRA
from ..exceptions import ConfigurationError
from ..keys import MAX_SHARDS
from ..scheduler import Scheduler
from ..settings import DEFAULT_MAX_WORKERS, DEFAULT_PREFIX, MAX_WORKERS_LIMIT, Environment
from ..shards import SHARDS_AT_ONCE
from .argtypes import (
    WHEN_FORMS,
    check_bucket,
    check_endpoint,
    check_region,
    check_text,
    parse_max_lateness,
    parse_max_workers,
    parse_shards,
)
from .errors import UsageError

WHEN_HELP = f"{WHEN_FORMS} (no env)"
"""The end of the help of every option taking a time."""

KEY_EXAMPLE = "e.g. 'jobs/|2030-01-07%%2014%%3A05%%3A00%%2B00%%3A00|work|in~~report.json' (no env)"
"""An event's key as ``list`` prints it, for the help of the arguments naming events (``%`` doubled for argparse)."""

SELECT_HELP = "select the events going to this target instead of typing KEY, e.g. s3://work/in/report.json (no env)"
"""The help of ``--to`` where it selects events."""


def add_global_options(common: argparse.ArgumentParser) -> None:
    """Add the global options to ``common``, the parent of the command's parser and of each subcommand's.

    Each is left out of the namespace when not given, so that one given before the command is kept.
    """
    options = common.add_argument_group("global options (before or after the command)")
    options.add_argument(
        "--bucket",
        default=argparse.SUPPRESS,
        help="the schedule bucket, e.g. my-schedule-bucket (env S3_SCHEDULER_BUCKET)",
    )
    options.add_argument(
        "--prefix",
        default=argparse.SUPPRESS,
        help=f"the scheduler path, e.g. jobs (env S3_SCHEDULER_PREFIX; default {DEFAULT_PREFIX})",
    )
    options.add_argument(
        "--endpoint-url",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="an S3 other than AWS's, e.g. http://127.0.0.1:5000 (env AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL)",
    )
    options.add_argument("--region", default=argparse.SUPPRESS, help="the AWS region, e.g. eu-west-3 (env AWS_REGION)")
    options.add_argument(
        "--max-workers",
        default=argparse.SUPPRESS,
        metavar="N",
        help=f"concurrent deliveries and S3 connections, 1 to {MAX_WORKERS_LIMIT}, e.g. 64"
        f" (env S3_SCHEDULER_MAX_WORKERS; default {DEFAULT_MAX_WORKERS})",
    )
    options.add_argument(
        "--max-lateness",
        default=argparse.SUPPRESS,
        metavar="DURATION",
        help="do not deliver an event found later than this after its time: remove it, with a WARNING,"
        " e.g. 1h (env S3_SCHEDULER_MAX_LATENESS; default off)",
    )
    options.add_argument(
        "--no-legacy-offsets",
        dest="legacy_offsets",
        action="store_false",
        default=argparse.SUPPRESS,
        help="list only up to each window's end, not 14 h past it; safe once check finds no offset keys,"
        " e.g. --no-legacy-offsets (env S3_SCHEDULER_LEGACY_OFFSETS=0)",
    )
    options.add_argument(
        "--shards",
        default=argparse.SUPPRESS,
        metavar="N",
        help=f"spread the events over N prefixes, {{prefix}}/0/ to {{prefix}}/N-1/, 1 to {MAX_SHARDS}, e.g. 4;"
        " with N > 1, list, check, cancel, reschedule and handle cover every shard found, whatever its number,"
        " and run starts one worker process per shard (env S3_SCHEDULER_SHARDS; default 1: no shards)",
    )
    options.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print JSON Lines, one JSON object a line, e.g. s3-scheduler list --json | jq .key (no env)",
    )
    options.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="log to stderr: -v INFO, e.g. each delivery; -vv DEBUG (no env; warnings are always shown)",
    )


def add_to(parser: argparse.ArgumentParser, help: str = SELECT_HELP) -> None:
    """Add ``--to s3://BUCKET/KEY``: a target, by default selecting the events going there."""
    parser.add_argument("--to", metavar="s3://BUCKET/KEY", help=help)


def add_at(parser: argparse.ArgumentParser, help: str, *, required: bool = False) -> None:
    """Add ``--at WHEN``, a time (`s3_scheduler.cli.argtypes.parse_when`); ``help`` gets the forms of a time."""
    parser.add_argument("--at", metavar="WHEN", required=required, help=f"{help}: {WHEN_HELP}")


def add_metrics(parser: argparse.ArgumentParser, whose: str = "the run's") -> None:
    """Add ``--metrics``: print ``whose`` metrics as one CloudWatch Embedded Metric Format line."""
    parser.add_argument(
        "--metrics",
        action="store_true",
        help=f"after the summary, print {whose} metrics as one CloudWatch Embedded Metric Format line"
        " (dimensions Bucket and Prefix), e.g. --metrics (no env)",
    )


def resolve(args: argparse.Namespace, clock: Callable[[], datetime] | None) -> None:
    """Fill in the global options not given, from the environment, and check every argument.

    A malformed option, or variable (`s3_scheduler.settings.Environment`'s
    `ConfigurationError`), is a `UsageError` naming it. ``clock`` becomes ``args.clock``, the
    scheduler's. The bucket is left to `scheduler_for`: a command that sends no request
    (``demo``) needs none.
    """
    check_text(args)
    with _variables_as_usage_errors():
        _fill_in(args, Environment(os.environ))
    args.bucket = getattr(args, "bucket", None)
    args.json = getattr(args, "json", False) or getattr(args, "array", False)
    args.verbose = getattr(args, "verbose", 0)
    args.clock = clock


def _fill_in(args: argparse.Namespace, environment: Environment) -> None:
    """Set each global option but ``--bucket`` from its variable when not given; check those given."""
    prefix = getattr(args, "prefix", None)
    args.prefix = environment.prefix() if prefix is None else prefix
    region = getattr(args, "region", None)
    args.region = environment.region() if region is None else check_region(region)
    endpoint = getattr(args, "endpoint_url", None)
    if endpoint is None:
        environment.endpoint_url()  # only checked: boto3 reads it itself
    args.endpoint_url = None if endpoint is None else check_endpoint(endpoint)
    legacy_offsets = getattr(args, "legacy_offsets", None)
    args.legacy_offsets = environment.legacy_offsets() if legacy_offsets is None else legacy_offsets
    workers = getattr(args, "max_workers", None)
    args.max_workers = environment.max_workers() if workers is None else parse_max_workers(workers)
    lateness = getattr(args, "max_lateness", None)
    args.max_lateness = environment.max_lateness() if lateness is None else parse_max_lateness(lateness)
    shards = getattr(args, "shards", None)
    args.shards = environment.shards() if shards is None else parse_shards(shards)


@contextmanager
def _variables_as_usage_errors() -> Iterator[None]:
    """Turn a malformed variable's `ConfigurationError` into a `UsageError` (exit status 2), its message kept."""
    try:
        yield
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None


def scheduler_for(args: argparse.Namespace, *, path: str | None = None, shards: int | None = None) -> Scheduler:
    """Return the scheduler the (resolved) global options name; nothing is sent to S3 yet.

    Its bucket is ``--bucket``, else ``S3_SCHEDULER_BUCKET`` (``args.bucket`` is set to it), either
    checked; its path is ``path``, else ``--prefix``; its shards ``shards``, else ``--shards``. Its
    client holds ``--max-workers`` connections and `s3_scheduler._s3.POOL_EXTRA` more, or with
    shards `POOL_EXTRA` more for each shard it may deliver at once (`s3_scheduler.shards.SHARDS_AT_ONCE`),
    as a `Scheduler` making its own client does.
    """
    count = args.shards if shards is None else shards
    if args.bucket:
        check_bucket(args.bucket)
    else:
        with _variables_as_usage_errors():
            args.bucket = Environment(os.environ).bucket()
    if not args.bucket:
        msg = "no schedule bucket: pass --bucket or set S3_SCHEDULER_BUCKET"
        raise UsageError(msg)
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=args.region)
    # the copies, and beside them the listing, the batch delete and the lease of each shard delivered at once
    pool = args.max_workers + POOL_EXTRA * (SHARDS_AT_ONCE if count > 1 else 1)
    client = session.client("s3", endpoint_url=args.endpoint_url, config=Config(max_pool_connections=pool))
    try:
        return Scheduler(
            args.bucket,
            args.prefix if path is None else path,
            s3_client=client,
            max_workers=args.max_workers,
            legacy_offsets=args.legacy_offsets,
            max_lateness=args.max_lateness,
            clock=args.clock,
            shards=count,
        )
    except ValueError as exc:  # each option is checked above: this is the last line of defence
        raise UsageError(str(exc)) from None
