"""The ``s3-scheduler`` command: schedule, list, cancel, reschedule, handle, run, demo.

A thin layer on `Scheduler`, standard library only. Global options fall back on the
environment: ``--bucket`` on ``S3_SCHEDULER_BUCKET``, ``--prefix`` on
``S3_SCHEDULER_PREFIX`` (then ``jobs``); boto3 itself honours ``AWS_ENDPOINT_URL`` and
``AWS_REGION``. Errors a user can cause print one line on stderr naming the fix, with
exit status 2 for usage errors and 1 for failures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Callable, TextIO

from dateutil.parser import isoparse

from . import __version__
from .exceptions import EventNotPendingError, InvalidKeyError
from .keys import to_utc
from .report import HandleReport, ScheduledEvent
from .scheduler import MAX_UNTIL, Scheduler
from .utils import nowut

DEFAULT_PREFIX = "jobs"
"""The scheduler path when neither ``--prefix`` nor ``S3_SCHEDULER_PREFIX`` is given."""

_RELATIVE = re.compile(r"\+(\d+(?:\.\d+)?)([smhd])")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smh]?)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 1}


class UsageError(Exception):
    """A mistake in the command line: exit status 2."""


class Failure(Exception):
    """A failure to report in one line: exit status 1."""


def parse_when(text: str, now: datetime) -> datetime:
    """Return the time ``text`` names: ISO 8601 (no offset = UTC) or ``+90s``, ``+10m``, ``+2h``, ``+1d``."""
    match = _RELATIVE.fullmatch(text.strip())
    if match:
        return now + timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        return to_utc(isoparse(text.strip()))
    except (ValueError, OverflowError):
        msg = (
            f"--at {text!r} is not a time: use ISO 8601 (2030-01-07T14:05:00, no offset = UTC) or +90s, +10m, +2h, +1d"
        )
        raise UsageError(msg) from None


def parse_duration(text: str, option: str) -> float:
    """Return the seconds ``text`` names: ``10``, ``10s``, ``2m``, ``1h``."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        msg = f"{option} {text!r} is not a duration: use seconds or 10s, 2m, 1h"
        raise UsageError(msg)
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_target(text: str) -> tuple[str, str]:
    """Return the bucket and key of ``s3://bucket/key``."""
    bucket, _, key = text[len("s3://") :].partition("/") if text.startswith("s3://") else ("", "", "")
    if not bucket or not key:
        msg = f"--to {text!r} is not a target: use s3://bucket/key"
        raise UsageError(msg)
    return bucket, key


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``s3-scheduler`` command."""
    parser = argparse.ArgumentParser(
        prog="s3-scheduler", description="One-time events on plain S3: schedule, inspect and deliver them."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--bucket", default=os.environ.get("S3_SCHEDULER_BUCKET"), help="the schedule bucket")
    parser.add_argument(
        "--prefix",
        default=os.environ.get("S3_SCHEDULER_PREFIX", DEFAULT_PREFIX),
        help=f"the scheduler path (default: $S3_SCHEDULER_PREFIX or {DEFAULT_PREFIX})",
    )
    parser.add_argument("--endpoint-url", help="an S3 endpoint other than AWS's (boto3 also reads AWS_ENDPOINT_URL)")
    parser.add_argument("--region", help="the AWS region")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr (-vv for debug)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    schedule = commands.add_parser("schedule", help="schedule content to be copied to a target at a time")
    schedule.add_argument(
        "--at", required=True, metavar="WHEN", help="ISO 8601 (no offset = UTC) or +90s, +10m, +2h, +1d"
    )
    schedule.add_argument("--to", required=True, metavar="s3://BUCKET/KEY", help="where to copy the content")
    content = schedule.add_mutually_exclusive_group(required=True)
    content.add_argument("--content", metavar="TEXT", help="the content, as UTF-8 text")
    content.add_argument("--file", metavar="PATH", help="a file to send, or - for standard input")

    listing = commands.add_parser("list", help="list the pending events in time order")
    listing.add_argument("--until", metavar="WHEN", help="only events due by then")
    listing.add_argument("--limit", type=int, metavar="N", help="at most N events")

    cancel = commands.add_parser("cancel", help="cancel pending events")
    cancel.add_argument("keys", nargs="+", metavar="KEY")

    reschedule = commands.add_parser("reschedule", help="move a pending event to another time")
    reschedule.add_argument("key", metavar="KEY")
    reschedule.add_argument("--at", required=True, metavar="WHEN")

    handle = commands.add_parser("handle", help="deliver the due events once")
    handle.add_argument("--timeout", metavar="SECONDS", help="start no delivery after this long")

    run = commands.add_parser("run", help="deliver each event at its time until SIGINT or SIGTERM")
    run.add_argument("--interval", default="10s", help="how often to look for new events (default 10s)")

    demo = commands.add_parser("demo", help="a local S3 and a handful of events delivered on their second")
    demo.add_argument("--keep", action="store_true", help="leave the local S3 running and show commands to try")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed its own message
        return int(exc.code or 0)
    _configure_logging(args.verbose)
    try:
        return _dispatch(args, sys.stdout)
    except UsageError as exc:
        print(f"s3-scheduler: {exc}", file=sys.stderr)
        return 2
    except Failure as exc:
        print(f"s3-scheduler: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _configure_logging(verbose: int) -> None:
    if verbose:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        logging.getLogger("s3_scheduler").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def _dispatch(args: argparse.Namespace, out: TextIO) -> int:
    if args.command == "demo":
        from .demo import run_demo

        status: int = run_demo(out, keep=args.keep)
        return status
    with _aws_errors(args):
        if args.command == "run":
            return _run(args, out)
        command: Callable[[Scheduler, argparse.Namespace, TextIO], int] = _COMMANDS[args.command]
        return command(_scheduler(args), args, out)


def _scheduler(args: argparse.Namespace, sleep: Callable[[float], None] | None = None) -> Scheduler:
    if not args.bucket:
        msg = "no schedule bucket: pass --bucket or set S3_SCHEDULER_BUCKET"
        raise UsageError(msg)
    import boto3

    session = boto3.session.Session(region_name=args.region)
    client = session.client("s3", endpoint_url=args.endpoint_url)
    return Scheduler(args.bucket, args.prefix, s3_client=client, sleep=sleep)


def _schedule(scheduler: Scheduler, args: argparse.Namespace, out: TextIO) -> int:
    when = parse_when(args.at, nowut())
    bucket, key = parse_target(args.to)
    with _content(args) as what:
        try:
            event_key = scheduler.schedule(when, bucket, key, what)
        except ValueError as exc:  # TargetNotAllowedError included
            raise UsageError(str(exc)) from None
    _print(out, args, event_key, {"key": event_key, "when": when.isoformat(), "bucket": bucket, "path": key})
    return 0


@contextmanager
def _content(args: argparse.Namespace) -> Iterator[str | BinaryIO]:
    if args.content is not None:
        yield args.content
    elif args.file == "-":
        yield sys.stdin.buffer
    else:
        try:
            with open(args.file, "rb") as stream:
                yield stream
        except FileNotFoundError:
            msg = f"--file {args.file!r}: no such file"
            raise UsageError(msg) from None


def _list(scheduler: Scheduler, args: argparse.Namespace, out: TextIO) -> int:
    now = nowut()
    until = None if args.until is None else parse_when(args.until, now)
    if args.limit is not None and args.limit < 0:
        msg = f"--limit {args.limit} must be zero or more"
        raise UsageError(msg)
    events = scheduler.pending(until=until)
    shown = list(itertools.islice(events, args.limit))
    if args.json:
        for event in shown:
            out.write(json.dumps({**event.to_dict(), "due_in": (event.when - now).total_seconds()}) + "\n")
        return 0
    rows = [("TIME (UTC)", "DUE IN", "TARGET", "KEY")]
    rows += [
        (
            event.when.strftime("%Y-%m-%d %H:%M:%S"),
            _due_in((event.when - now).total_seconds()),
            f"s3://{event.bucket}/{event.path}",
            event.key,
        )
        for event in shown
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3] + "\n")
    return 0


def _due_in(seconds: float) -> str:
    if seconds <= 0:
        return "due"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _cancel(scheduler: Scheduler, args: argparse.Namespace, out: TextIO) -> int:
    status = 0
    for key in args.keys:
        try:
            cancelled = scheduler.cancel(key)
        except InvalidKeyError as exc:
            raise _not_an_event(scheduler, key, exc) from None
        status = status or (0 if cancelled else 1)
        word = "cancelled" if cancelled else "not pending (delivered, cancelled or never scheduled)"
        _print(out, args, f"{word}: {key}", {"key": key, "cancelled": cancelled})
    return status


def _reschedule(scheduler: Scheduler, args: argparse.Namespace, out: TextIO) -> int:
    when = parse_when(args.at, nowut())
    try:
        new_key = scheduler.reschedule(args.key, when)
    except InvalidKeyError as exc:
        raise _not_an_event(scheduler, args.key, exc) from None
    except EventNotPendingError as exc:
        raise Failure(str(exc)) from None
    _print(out, args, new_key, {"key": new_key, "old_key": args.key, "when": when.isoformat()})
    return 0


def _not_an_event(scheduler: Scheduler, key: str, error: InvalidKeyError) -> UsageError:
    return UsageError(f"{key!r} is not an event of {scheduler.prefix!r}: {error}")


def _handle(scheduler: Scheduler, args: argparse.Namespace, out: TextIO) -> int:
    timeout = None if args.timeout is None else parse_duration(args.timeout, "--timeout")
    report = scheduler.handle(timeout=timeout)
    _print_report(out, args, report)
    return 0 if report.ok else 1


def _run(args: argparse.Namespace, out: TextIO) -> int:
    interval = parse_duration(args.interval, "--interval")
    if not 0 < interval <= MAX_UNTIL.total_seconds():
        msg = f"--interval {args.interval!r} must be more than 0 and at most {MAX_UNTIL}"
        raise UsageError(msg)
    stop = threading.Event()
    scheduler = _scheduler(args, sleep=stopping_sleep(stop.wait))
    with _stop_on_signals(stop):
        run_until_stopped(scheduler, interval, stop.wait, nowut, args, out)
    return 0


class _Stopped(Exception):
    """Raised from the waits of a run once it is asked to stop."""


def stopping_sleep(wait: Callable[[float], bool]) -> Callable[[float], None]:
    """Return a sleep for the `Scheduler` of a run: it ends the run once ``wait`` says stop."""

    def sleep(seconds: float) -> None:
        if wait(seconds):
            raise _Stopped

    return sleep


def run_until_stopped(
    scheduler: Scheduler,
    interval: float,
    wait: Callable[[float], bool],
    clock: Callable[[], datetime],
    args: argparse.Namespace,
    out: TextIO,
) -> None:
    """Deliver each event at its time, one ``interval`` window after the other, until
    ``wait`` answers that a stop was asked.

    ``wait(seconds)`` waits and returns ``True`` once a stop was asked; ``scheduler``
    must have been built with ``sleep=stopping_sleep(wait)``. A stop never cuts a
    delivery short: the waits between deliveries see it and end the run.
    """
    window_end = clock()
    while True:
        window_end = max(window_end + timedelta(seconds=interval), clock())
        try:
            report = scheduler.handle(
                until=window_end, on_delivery=lambda event, late: _print_delivery(out, args, event, late)
            )
        except _Stopped:
            return
        if report.failed:
            _print_report(out, args, report)
        remaining = (window_end - clock()).total_seconds()
        if wait(max(0.0, remaining)):
            return


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()

    for sig in previous:
        signal.signal(sig, request_stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_delivery(out: TextIO, args: argparse.Namespace, event: ScheduledEvent, late: float) -> None:
    text = f"delivered s3://{event.bucket}/{event.path} ({late:.3f} s late) {event.key}"
    _print(out, args, text, {"delivered": event.to_dict(), "late": late})
    out.flush()


def _print_report(out: TextIO, args: argparse.Namespace, report: HandleReport) -> None:
    lines = [report.summary()] + [f"failed: {f.event.key}: {f.error}" for f in report.failed]
    _print(out, args, "\n".join(lines), report.to_dict())


def _print(out: TextIO, args: argparse.Namespace, text: str, data: Any) -> None:
    out.write((json.dumps(data) if args.json else text) + "\n")


@contextmanager
def _aws_errors(args: argparse.Namespace) -> Iterator[None]:
    """Turn the AWS errors a user can cause into one line that names the fix."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

    try:
        yield
    except NoCredentialsError:
        msg = "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        raise Failure(msg) from None
    except NoRegionError:
        msg = "no AWS region: pass --region or set AWS_REGION"
        raise Failure(msg) from None
    except EndpointConnectionError as exc:
        msg = f"cannot reach S3 at {exc.kwargs.get('endpoint_url')}: check --endpoint-url and the network"
        raise Failure(msg) from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            msg = f"no such bucket {args.bucket!r}: check --bucket (or S3_SCHEDULER_BUCKET) and --region"
        elif code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            msg = f"access denied to bucket {args.bucket!r} ({code}): check the credentials and the IAM policy"
        else:
            msg = f"S3 refused the request: {exc}"
        raise Failure(msg) from None


_COMMANDS: dict[str, Callable[[Scheduler, argparse.Namespace, TextIO], int]] = {
    "schedule": _schedule,
    "list": _list,
    "cancel": _cancel,
    "reschedule": _reschedule,
    "handle": _handle,
}


def entry_point() -> None:  # pragma: no cover - the console script
    """The ``s3-scheduler`` console script."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry_point()
