"""``s3-scheduler schedule``: write one event (``--at``, ``--to``, ``--content`` or ``--file``),
or one per line of a JSON Lines file (``--from``), every line checked before any request."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, BinaryIO, TextIO

from dateutil.parser import isoparse

from ...exceptions import EventExistsError, ScheduleManyError
from ...keys import encode_key
from ...scheduler import Scheduler
from ...series import resolve_zone
from ...settings import text_problem
from ..argtypes import parse_content_type, parse_metadata, parse_target, parse_when
from ..errors import Failure, UsageError
from ..options import add_at, add_to, scheduler_for
from ..output import describe_error, emit, warn
from ..selection import prefix_for
from . import Command

LINE_FORM = '{"at": "2030-01-07T14:05", "to": "s3://work/in/report.json", "content": "hi"}'
"""A line of a ``--from`` file, as the errors show one."""

Event = tuple[datetime, str, str, str]
"""An event of a ``--from`` file: its time, target bucket and key, and content."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--at``, ``--to``, ``--content`` or ``--file``, ``--replace``, ``--from``, ``--content-type``
    and ``--metadata``."""
    add_at(parser, "when to deliver, e.g. +10m")
    add_to(parser, "where to copy the content, e.g. s3://work/in/report.json (no env)")
    content = parser.add_mutually_exclusive_group()
    content.add_argument("--content", metavar="TEXT", help="the content as UTF-8 text, e.g. '{\"id\": 7}' (no env)")
    content.add_argument(
        "--file", metavar="PATH", help="a file to send as it is, e.g. photo.jpg, or - for standard input (no env)"
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="replace the content of an event with the same name, e.g. --replace (no env)",
    )
    parser.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE.jsonl",
        help='schedule many: one JSON object a line, e.g. {"at": "+10m", "to": "s3://work/a.json",'
        ' "content": "hi"}; - for standard input (no env)',
    )
    parser.add_argument(
        "--content-type",
        metavar="TYPE",
        help="the content's MIME type, carried to the target; with --from, of every event, e.g. application/json"
        " (no env)",
    )
    parser.add_argument(
        "--repeat",
        metavar="RULE",
        help="make it recurring: an RFC 5545 RRULE evaluated in --tz (default UTC) from --at on, e.g."
        " 'FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0'; with --from, each event starts a series"
        " (no env)",
    )
    parser.add_argument(
        "--tz",
        metavar="ZONE",
        help="the IANA zone of --at (a time without offset is a wall time there) and of --repeat's rule,"
        " e.g. Europe/Berlin (no env)",
    )
    parser.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="S3 user metadata carried to the target (x-amz-meta-NAME), repeatable; with --from, of every event,"
        " e.g. --metadata order-id=42 (no env)",
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Write the event and print its key (with ``--from``, each event and each key); warn of a time in the past."""
    if args.from_file is not None:
        return _schedule_many(args, out)
    if args.at is None or args.to is None or (args.content is None and args.file is None):
        msg = "schedule needs --at WHEN, --to s3://BUCKET/KEY, and --content TEXT or --file PATH"
        raise UsageError(msg)
    bucket, key = parse_target(args.to)
    extra = _extra(args)
    scheduler = scheduler_for(args)
    now = scheduler.now()
    when = _in_zone(args.at, parse_when(args.at, now, "--at"), args.tz)
    with _content(args) as what:
        try:
            event_key = scheduler.schedule(when, bucket, key, what, replace=args.replace, **extra)
        except EventExistsError:
            existing = encode_key(prefix_for(scheduler, args.prefix, bucket, key), when, bucket, key)
            msg = (
                f"an event to s3://{bucket}/{key} at {when.isoformat()} is already pending"
                f" as {existing!r}: pass --replace to replace its content"
            )
            raise Failure(msg) from None
        except ValueError as exc:  # TargetNotAllowedError, a name over 1,024 bytes
            raise UsageError(str(exc)) from None
    emit(out, args, event_key, {"key": event_key, "when": when.isoformat(), "bucket": bucket, "path": key})
    if when < now:
        warn(f"--at {args.at!r} is {when.isoformat()}, in the past: the next run delivers it")
    return 0


def _extra(args: argparse.Namespace) -> dict[str, Any]:
    """Return the ``content_type`` and ``metadata`` keywords of `Scheduler.schedule` the options give."""
    extra: dict[str, Any] = {}
    if args.content_type is not None:
        extra["content_type"] = parse_content_type(args.content_type)
    if args.metadata:
        extra["metadata"] = parse_metadata(args.metadata)
    if args.repeat is not None:
        extra["repeat"] = args.repeat
    return extra


def _in_zone(text: str, when: datetime, zone_name: str | None) -> datetime:
    """``when`` (what ``--at`` ``text`` gave) in the zone ``--tz`` names: a ``text`` that is
    a time without offset is read as a wall time there; any other is converted."""
    if zone_name is None:
        return when
    try:
        zone = resolve_zone(zone_name)
    except ValueError as exc:
        msg = f"--tz: {exc}"
        raise UsageError(msg) from None
    try:
        naive = isoparse(text.strip()).tzinfo is None
    except (ValueError, OverflowError):
        naive = False
    if naive:
        return when.replace(tzinfo=None).replace(tzinfo=zone)
    return when.astimezone(zone)


@contextmanager
def _content(args: argparse.Namespace) -> Iterator[str | BinaryIO]:
    """Yield what ``--content`` or ``--file`` sends: the text, or the file (or standard input) open for reading."""
    if args.content is not None:
        yield args.content
        return
    if args.file == "-":
        yield sys.stdin.buffer
        return
    with _open(args.file, f"--file {args.file!r}", "a file", "rb") as stream:
        yield stream


def _open(path: str, source: str, what: str, mode: str) -> Any:
    """Open ``path`` for reading; its errors become one line naming ``source`` (the option)."""
    try:
        return open(path, mode, encoding=None if "b" in mode else "utf-8")
    except ValueError:  # a NUL in the name
        msg = f"{source} is not a file name: name {what}, or - for standard input"
        raise UsageError(msg) from None
    except FileNotFoundError:
        msg = f"{source}: no such file"
        raise UsageError(msg) from None
    except IsADirectoryError:
        msg = f"{source} is a directory: name {what}, or - for standard input"
        raise UsageError(msg) from None
    except OSError as exc:
        msg = f"{source}: {exc.strerror or exc}"
        raise Failure(msg) from None


# --from FILE.jsonl ------------------------------------------------------------------------


def _schedule_many(args: argparse.Namespace, out: TextIO) -> int:
    """Write every event of the ``--from`` file, each line checked first; print each key written,
    and one line on stderr per event that was not."""
    if any(value is not None for value in (args.at, args.to, args.content, args.file)):
        msg = (
            "--from FILE.jsonl takes the times, targets and contents from the file: drop --at, --to, --content, --file"
        )
        raise UsageError(msg)
    source = f"--from {args.from_file!r}"
    extra = _extra(args)
    lines = _read_lines(args.from_file, source)
    scheduler = scheduler_for(args)
    now = scheduler.now()
    numbers = [number for number, _ in lines]
    events = [_event_line(line, f"{source} line {number}", now) for number, line in lines]
    _refuse_duplicates(events, numbers, source)
    try:
        written: list[str | None] = list(scheduler.schedule_many(events, replace=args.replace, **extra))
        failures: list[tuple[int, BaseException]] = []
    except ScheduleManyError as exc:
        written, failures = exc.keys, exc.failures
    except ValueError as exc:  # a target outside allowed_targets, a name too long
        msg = f"{source}: {_naming_the_line(exc, numbers)}"
        raise UsageError(msg) from None
    for (when, bucket, path, _), key in zip(events, written):
        if key is not None:
            emit(out, args, key, {"key": key, "when": when.isoformat(), "bucket": bucket, "path": path})
    _report_failures(scheduler, args, events, numbers, failures, source)
    past = [number for number, (when, _, _, _) in zip(numbers, events) if when < now]
    if past:
        shown = ("line " if len(past) == 1 else "lines ") + ", ".join(map(str, past[:5])) + (", ..." * (len(past) > 5))
        warn(f"{source}: {len(past)} of {len(events)} events are in the past ({shown}): the next run delivers them")
    return 0


def _read_lines(path: str, source: str) -> list[tuple[int, str]]:
    """Return the numbered lines of ``path`` (``-``: standard input) that are not blank."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with _open(path, source, "a file of JSON lines", "r") as stream:
                text = stream.read()
    except UnicodeDecodeError as exc:
        msg = f"{source} is not UTF-8 text: {exc.reason} at byte {exc.start}"
        raise UsageError(msg) from None
    # Lines end at "\n" (and "\r\n") only: str.splitlines() would also split at U+2028, U+0085
    # and the like, which JSON holds unescaped inside a string.
    lines = (line[:-1] if line.endswith("\r") else line for line in text.split("\n"))
    return [(number, line) for number, line in enumerate(lines, 1) if line.strip()]


def _event_line(line: str, where: str, now: datetime) -> Event:
    """Return the event one line of a --from file describes; a `UsageError` names the line."""
    try:
        item = json.loads(line)
    except ValueError as exc:
        msg = f"{where} is not JSON ({exc}): write {LINE_FORM}"
        raise UsageError(msg) from None
    except RecursionError:
        msg = f"{where} nests too deeply to read: write {LINE_FORM}"
        raise UsageError(msg) from None
    if isinstance(item, dict) and {"content_type", "metadata"} & set(item):
        msg = (
            f'{where}: "content_type" and "metadata" are not read per line: pass --content-type and --metadata,'
            " which apply to every event of the file (or split the file by value)"
        )
        raise UsageError(msg)
    if not isinstance(item, dict) or set(item) != {"at", "to", "content"}:
        msg = f'{where} must hold exactly "at", "to" and "content": {LINE_FORM}'
        raise UsageError(msg)
    at, to, content = item["at"], item["to"], item["content"]
    if not all(isinstance(value, str) for value in (at, to, content)):
        msg = f'{where}: "at", "to" and "content" must be strings: {LINE_FORM}'
        raise UsageError(msg)
    for name, value in (("at", at), ("to", to), ("content", content)):
        problem = text_problem(value)
        if problem:
            msg = f'{where}: "{name}" {problem} (a \\ud800 to \\udfff escape standing alone)'
            raise UsageError(msg)
    try:
        when = parse_when(at, now, '"at"')
        bucket, path = parse_target(to, '"to"')
    except UsageError as exc:
        msg = f"{where}: {exc}"
        raise UsageError(msg) from None
    return when, bucket, path, content


def _refuse_duplicates(events: list[Event], numbers: list[int], source: str) -> None:
    """Refuse an empty file, and two lines with one time and target: the second would replace the first."""
    if not events:
        msg = f"{source}: no events in the file: write one JSON object a line, {LINE_FORM}"
        raise UsageError(msg)
    seen: dict[tuple[datetime, str, str], int] = {}
    for number, (when, bucket, path, _) in zip(numbers, events):
        name = (when, bucket, path[1:] if path.startswith("/") else path)
        if name in seen:
            msg = (
                f"{source} lines {seen[name]} and {number} have the same time and target"
                f" (s3://{bucket}/{path} at {when.isoformat()}): one would replace the other"
            )
            raise UsageError(msg)
        seen[name] = number


def _naming_the_line(error: ValueError, numbers: list[int]) -> str:
    """Return the refusal of `Scheduler.schedule_many` naming the file's line instead of the batch's index.

    The scheduler refuses a batch's event with "event N of the batch: why", the index in
    the error's ``batch_index`` and the refusal in its cause; a user wrote lines, so this
    says "line L: why". An error without an index (or a cause) is returned as it is.
    """
    index = getattr(error, "batch_index", None)
    if index is None or error.__cause__ is None:
        return str(error)
    return f"line {numbers[index]}: {error.__cause__}"


def _report_failures(
    scheduler: Scheduler,
    args: argparse.Namespace,
    events: list[Event],
    numbers: list[int],
    failures: list[tuple[int, BaseException]],
    source: str,
) -> None:
    """Print one line on stderr per event not written, naming its line and target; then fail, counting them."""
    for index, error in failures:
        when, bucket, path, _ = events[index]
        if isinstance(error, EventExistsError):
            existing = encode_key(prefix_for(scheduler, args.prefix, bucket, path), when, bucket, path)
            reason = (
                f"an event with that time and target is already pending as {existing!r}: pass --replace to replace it"
            )
        else:
            reason = describe_error(error, args.bucket)
        print(f"s3-scheduler: {source} line {numbers[index]} (s3://{bucket}/{path}): {reason}", file=sys.stderr)
    if failures:
        msg = f"{len(failures)} of {len(events)} events were not written ({len(events) - len(failures)} were)"
        raise Failure(msg)


COMMAND = Command(
    summary="schedule content to be copied to a target at a time",
    description="Write one event: at WHEN, its content is copied to s3://BUCKET/KEY. Prints the event's key."
    " An event with the same name (same time and target) is not replaced unless --replace is given."
    " With --from FILE.jsonl, write one event per line of the file, every line checked before any"
    " request; prints each key, and one line on stderr per event that failed.",
    add_arguments=add_arguments,
    run=run,
)
