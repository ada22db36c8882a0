"""The ``s3-scheduler`` command: schedule, list, cancel, reschedule, handle, run, check, demo.

A thin layer on `Scheduler`. Each subcommand is registered once, in `build_parser`, with
the function that runs it (``set_defaults(func=...)``). The global options (``--bucket``,
``--prefix``, ``--endpoint-url``, ``--region``, ``--max-workers``, ``--max-lateness``,
``--no-legacy-offsets``, ``--json``, ``-v``) may come before or after the subcommand, and
fall back on the environment: ``--bucket`` on ``S3_SCHEDULER_BUCKET``, ``--prefix`` on
``S3_SCHEDULER_PREFIX`` (then ``jobs``), ``--max-workers`` on ``S3_SCHEDULER_MAX_WORKERS``,
``--max-lateness`` on ``S3_SCHEDULER_MAX_LATENESS`` (then off), ``--no-legacy-offsets``
on ``S3_SCHEDULER_LEGACY_OFFSETS=0``, ``--region`` on ``AWS_REGION``; boto3 itself reads
``AWS_ENDPOINT_URL`` and ``AWS_DEFAULT_REGION``.

Every mistake prints one line on stderr naming the fix, never a traceback: exit status 2
for usage errors (checked before any request to S3, argparse's own included), 1 for
failures. A warning (a time in the past) is one line on stderr too, and changes nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import shlex
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, BinaryIO, Callable, NoReturn, TextIO
from urllib.parse import urlsplit

from dateutil.parser import isoparse

from . import __version__
from ._s3 import POOL_EXTRA
from .exceptions import (
    EventExistsError,
    EventNotPendingError,
    InvalidKeyError,
    RunInProgressError,
    ScheduleManyError,
)
from .keys import decode_event, decode_key, encode_key
from .metrics import emf_line
from .report import CheckReport, HandleReport, ScheduledEvent
from .runner import one_line, run_until_stopped, stop_on_signals
from .scheduler import DEFAULT_MAX_WORKERS, MAX_UNTIL, MAX_WORKERS, MIN_MAX_LATENESS, Scheduler

DEFAULT_PREFIX = "jobs"
"""The scheduler path when neither ``--prefix`` nor ``S3_SCHEDULER_PREFIX`` is given."""

EARLIEST = datetime(1, 1, 2, tzinfo=timezone.utc)
"""The earliest time accepted: ``datetime``'s own range, less a margin for the listing."""

LATEST = datetime(9999, 12, 30, tzinfo=timezone.utc)
"""The latest time accepted: the listing reads 14 hours past it, and ``datetime`` ends at year 9999."""

FLAG_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
"""The words accepted for a yes/no setting, in any case."""

MAX_WORKERS_LIMIT = MAX_WORKERS
"""The most concurrent deliveries ``--max-workers`` and ``S3_SCHEDULER_MAX_WORKERS``
accept (`s3_scheduler.scheduler.MAX_WORKERS`): each is a thread, and the pool is made
whole at once."""

UTC = timezone.utc
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 1}
_RELATIVE = re.compile(r"([+-]) *([0-9]+(?:\.[0-9]+)?) *([smhd])")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?) *([smhd]?)")
_WHOLE = re.compile(r"[0-9]+")
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*")
_BUCKET = re.compile(r"[A-Za-z0-9._-]{3,255}")
_AWS_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_REGION = re.compile(r"(?![0-9]+$)(?!-)[a-zA-Z0-9-]{1,63}(?<!-)")  # botocore's rule, empty refused
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_MIME_NAME = r"[A-Za-z0-9!#$&^_.+-]+"
_MIME = re.compile(rf"{_MIME_NAME}/{_MIME_NAME}(?:\s*;.*)?")
_METADATA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_METADATA_BYTES = 2048
"""S3's limit on an object's user metadata: the bytes of every name and value together."""
_WHEN_OPTIONS = ("--at", "--until")
_DURATION_OPTIONS = ("--max-lateness", "--timeout", "--interval")
_PATH_OPTIONS = ("file", "from_file")
"""The options naming a local file: any bytes the file system holds are fine there."""
WHEN_FORMS = (
    "ISO 8601 (2030-01-07T14:05, no offset = UTC), a time and an IANA zone ('2030-01-07 14:05 Europe/Paris'),"
    " or relative: +90s, +10m, +2h, +1d, -5m"
)
BUCKET_RULE = "3 to 63 lowercase letters, digits, dots and hyphens, such as my-schedule-bucket"


class UsageError(Exception):
    """A mistake in the command line, found before any request: exit status 2."""


class Failure(Exception):
    """A failure to report in one line: exit status 1."""


# parsing ---------------------------------------------------------------------------------


def parse_when(text: str, now: datetime, option: str = "--at") -> datetime:
    """Return the aware UTC time ``text`` names, relative to ``now``.

    Accepted: ISO 8601 (no offset = UTC); a date and time followed by an IANA zone name
    (``2030-01-07 14:05 Europe/Paris``); ``+90s``, ``+10m``, ``+2h``, ``+1d`` from now and
    ``-5m`` before it. A local time a zone skips (the hour clocks jump over in spring) or
    lives twice (the hour they go back over in autumn) is refused, naming the change; for
    the second, give the offset instead. Times outside `EARLIEST` to `LATEST` are
    refused. Errors are `UsageError` naming ``option``.
    """
    stripped = text.strip()
    relative = _RELATIVE.fullmatch(stripped)
    try:
        if relative:
            sign = 1 if relative.group(1) == "+" else -1
            when = now + sign * timedelta(seconds=float(relative.group(2)) * _UNITS[relative.group(3)])
        else:
            when = _absolute(stripped, text, option)
    except OverflowError:
        when = None
    if when is None or not EARLIEST <= when <= LATEST:
        msg = f"{option} {text!r} is out of range: use a time from 0001-01-02 to 9999-12-30"
        raise UsageError(msg)
    return when


def _absolute(stripped: str, text: str, option: str) -> datetime:
    head, _, tail = stripped.rpartition(" ")
    zone = _zone(tail, option) if head and _ZONE.fullmatch(tail) else None
    try:
        parsed = isoparse(head.strip() if zone is not None else stripped)
    except ValueError:
        msg = f"{option} {text!r} is not a time: use {WHEN_FORMS}"
        raise UsageError(msg) from None
    if zone is None:
        return _utc(parsed)
    if parsed.tzinfo is not None:
        msg = f"{option} {text!r} gives both an offset and a zone: give one of them"
        raise UsageError(msg)
    return _in_zone(parsed, zone, text, option)


def _zone(name: str, option: str) -> tzinfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        msg = (
            f"{option}: unknown time zone {name!r}: use an IANA name such as Europe/Paris or America/New_York"
            " (without a system zone database: pip install tzdata)"
        )
        raise UsageError(msg) from None


def _in_zone(local: datetime, zone: tzinfo, text: str, option: str) -> datetime:
    """Return the wall time ``local`` of ``zone`` in UTC, refusing one that does not exist
    or exists twice."""
    first, second = local.replace(tzinfo=zone, fold=0), local.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first.astimezone(UTC)
    instants = sorted((first.astimezone(UTC), second.astimezone(UTC)))
    change = _change(instants[0], instants[1], zone)
    before = (change + (instants[0].astimezone(zone).utcoffset() or timedelta(0))).replace(tzinfo=None)
    after = (change + (instants[1].astimezone(zone).utcoffset() or timedelta(0))).replace(tzinfo=None)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local:
        msg = (
            f"{option} {text!r} does not exist: in {zone} the clocks jump from {before:%H:%M} to {after:%H:%M}"
            f" on {before:%Y-%m-%d}; pick a time outside that gap"
        )
    else:
        msg = (
            f"{option} {text!r} happens twice: in {zone} the clocks go back from {before:%H:%M} to"
            f" {after:%H:%M} on {before:%Y-%m-%d}; give the offset instead:"
            f" {first.isoformat(timespec='minutes')} (the first) or {second.isoformat(timespec='minutes')} (the second)"
        )
    raise UsageError(msg)


def _change(low: datetime, high: datetime, zone: tzinfo) -> datetime:
    """Return the first UTC second after ``low``, up to ``high``, with ``high``'s offset in ``zone``."""
    target = high.astimezone(zone).utcoffset()
    lo, hi = 0, int((high - low).total_seconds())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (low + timedelta(seconds=mid)).astimezone(zone).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return (low + timedelta(seconds=hi)).replace(tzinfo=None)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.utcoffset() is None else when.astimezone(UTC)


def duration_seconds(text: str) -> float:
    """Return the seconds ``text`` names: ``90``, ``90s``, ``10m``, ``2h``, ``1d`` (or ``1.5h``;
    a space before the unit is fine: ``5 m``).

    Raises `ValueError` for anything else, negative, ``nan`` and ``inf`` included, and for
    a number too large for a float.
    """
    match = _DURATION.fullmatch(text.strip())
    if not match:
        msg = f"{text!r} is not a duration: use seconds or 90s, 10m, 2h, 1d"
        raise ValueError(msg)
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds == float("inf"):
        msg = f"{text!r} is too long: use at most 999999999d"
        raise ValueError(msg)
    return seconds


def format_duration(seconds: float) -> str:
    """Return ``seconds`` as a user writes a duration: in the largest whole unit.

    >>> format_duration(900), format_duration(90), format_duration(86400), format_duration(0.5)
    ('15m', '90s', '1d', '0.5s')
    """
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def parse_duration(text: str, option: str) -> float:
    """Return the seconds ``text`` names (see `duration_seconds`); a `UsageError` names ``option``."""
    try:
        return duration_seconds(text)
    except ValueError as exc:
        msg = f"{option} {exc}"
        raise UsageError(msg) from None


def whole_number(text: str) -> int:
    """Return the whole number ``text`` writes in ASCII digits, e.g. ``20``.

    Raises `ValueError` for anything else (a sign, an exponent, a fraction). A number of
    more than 30 digits is returned as ``10**30``: every limit here is far below it.
    """
    digits = text.strip()
    if not _WHOLE.fullmatch(digits):
        msg = f"{text!r} is not a whole number"
        raise ValueError(msg)
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 30 else 10**30


def duration_timedelta(text: str) -> timedelta:
    """Return the duration ``text`` names (see `duration_seconds`) as a `timedelta`.

    Raises `ValueError` for anything `duration_seconds` refuses, and for a duration
    ``timedelta`` cannot hold (over 999,999,999 days).
    """
    seconds = duration_seconds(text)
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        msg = f"{text!r} is too long: use at most 999999999d"
        raise ValueError(msg) from None


def parse_content_type(text: str) -> str:
    """Return ``text`` if it is a MIME type (``type/subtype``, parameters allowed) in printable ASCII."""
    if not (text.isascii() and text.isprintable() and _MIME.fullmatch(text)):
        msg = f"--content-type {text!r} is not a MIME type: use type/subtype, e.g. application/json"
        raise UsageError(msg)
    return text


def parse_metadata(items: Sequence[str]) -> dict[str, str]:
    """Return the S3 user metadata the ``NAME=VALUE`` items of ``--metadata`` give.

    A name is ASCII letters, digits, ``.``, ``_`` and ``-`` (S3 keeps it in lower case, so
    two names differing in case only are refused); a value is printable ASCII, possibly
    empty; all together at most 2 KB (S3's limit). Errors are `UsageError`.
    """
    metadata: dict[str, str] = {}
    seen: dict[str, str] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name:
            msg = f"--metadata {item!r} is not NAME=VALUE: e.g. --metadata order-id=42"
            raise UsageError(msg)
        if not _METADATA_NAME.fullmatch(name):
            msg = (
                f"--metadata {item!r}: the name must be ASCII letters, digits, '.', '_' and '-',"
                " starting with a letter or digit, e.g. order-id=42"
            )
            raise UsageError(msg)
        if not (value.isascii() and value.isprintable()):
            msg = f"--metadata {item!r}: the value must be printable ASCII (S3 sends it as a header), e.g. order-id=42"
            raise UsageError(msg)
        if name.lower() in seen:
            msg = f"--metadata {name!r} is given twice (S3 keeps names in lower case): give each name once"
            raise UsageError(msg)
        seen[name.lower()] = name
        metadata[name] = value
    size = sum(len(name) + len(value) for name, value in metadata.items())
    if size > MAX_METADATA_BYTES:
        msg = f"--metadata: {size} bytes of names and values, over S3's {MAX_METADATA_BYTES}-byte limit"
        raise UsageError(msg)
    return metadata


def metrics_dimensions(bucket: str, prefix: str) -> dict[str, str]:
    """Return the metrics line's dimensions, ``Bucket`` and ``Prefix`` (``/`` for an empty
    prefix: a dimension's value may not be empty)."""
    return {"Bucket": bucket, "Prefix": prefix or "/"}


def flag_value(text: str) -> bool:
    """Return the yes/no ``text`` means: 1/0, true/false, yes/no, on/off, in any case.

    Raises `ValueError` for anything else.
    """
    try:
        return FLAG_WORDS[text.strip().lower()]
    except KeyError:
        msg = f"{text!r} is not yes or no: use 1/0, true/false, yes/no or on/off"
        raise ValueError(msg) from None


def bucket_problem(name: str) -> str | None:
    """Return why S3 can never accept the bucket name ``name``, or None if it may.

    AWS names buckets with 3 to 63 lowercase letters, digits, dots and hyphens, starting
    and ending with a letter or digit, with no two dots in a row, not shaped as an IP
    address, and without the prefixes (``xn--``, ``sthree-``, ``amzn-s3-demo-``) and
    suffixes (``-s3alias``, ``--ol-s3``, ``.mrap``, ``--x-s3``, ``--table-s3``) AWS keeps
    for itself. A name holding a capital or an underscore can only be an older bucket
    of us-east-1 (or of an S3-compatible store): those are let through up to 255
    characters. Access point ARNs (``arn:...``) are passed on unchecked.
    """
    if name.startswith("arn:"):
        return None
    if not _BUCKET.fullmatch(name):
        return f"{name!r} is not a bucket name: use {BUCKET_RULE}"
    if name != name.lower() or "_" in name:  # a legacy us-east-1 name: its rules were looser
        return None
    reason = None
    if not _AWS_BUCKET.fullmatch(name):
        reason = "it must be 3 to 63 characters, starting and ending with a letter or digit"
    elif ".." in name:
        reason = "two dots in a row"
    elif _IP_ADDRESS.fullmatch(name):
        reason = "it is shaped as an IP address"
    elif name.startswith(_RESERVED_BUCKET_PREFIXES) or name.endswith(_RESERVED_BUCKET_SUFFIXES):
        reason = "AWS keeps that prefix or suffix for itself"
    return None if reason is None else f"{name!r} is not a bucket name ({reason}): use {BUCKET_RULE}"


def parse_target(text: str, option: str = "--to") -> tuple[str, str]:
    """Return the bucket and key of ``s3://bucket/key``."""
    bucket, _, key = text[len("s3://") :].partition("/") if text.startswith("s3://") else ("", "", "")
    if not bucket or not key:
        msg = f"{option} {text!r} is not a target: use s3://bucket/key"
        raise UsageError(msg)
    problem = bucket_problem(bucket)
    if problem:
        msg = f"{option} {text!r}: {problem}"
        raise UsageError(msg)
    return bucket, key


def endpoint_problem(url: str) -> str | None:
    """Return why ``url`` is not an endpoint URL (``http://host:port``), or None.

    What is refused here botocore would refuse when the client is made (or the request
    sent): a scheme other than http or https, no host or a malformed one, a port that is
    not a number from 0 to 65535, characters that are not printable ASCII.
    """
    from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port >= 0  # reading the port checks it
        valid = (
            url.isascii()
            and url.isprintable()
            and " " not in url
            and port_ok
            and parts.scheme in ("http", "https")
            and bool(parts.netloc)
            and bool(is_valid_endpoint_url(url) or is_valid_ipv6_endpoint_url(url))
        )
    except ValueError:  # a malformed IPv6 address or port
        valid = False
    return None if valid else f"{url!r} is not a URL: use the form http://host:port or https://host"


def text_problem(text: str) -> str | None:
    """Return why ``text`` cannot be sent to S3 as UTF-8, or None.

    A byte that is not UTF-8 in an argument reaches Python as a lone surrogate
    (``\\udcff`` for ``\\xff``), which no UTF-8 text holds.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not UTF-8 text: {exc.object[exc.start : exc.end]!r} at character {exc.start} is a lone surrogate"
    return None


def join_negative_times(argv: Sequence[str]) -> list[str]:
    """Return ``argv`` with ``--at -5m`` written ``--at=-5m``, which argparse would
    otherwise take for an option (also for a duration option, whose error then names
    the forms in one line)."""
    joined: list[str] = []
    for token in argv:
        option = joined[-1] if joined else None
        if "--" not in joined and option in _WHEN_OPTIONS + _DURATION_OPTIONS and _RELATIVE.fullmatch(token):
            joined[-1] = f"{joined[-1]}={token}"
        else:
            joined.append(token)
    return joined


# the parser ------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with its errors in one line (its own prints the usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {_flat(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``s3-scheduler`` command, each subcommand with its function."""
    common = _Parser(add_help=False)
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
    parser = _Parser(
        prog="s3-scheduler",
        description="One-time events on plain S3: schedule, inspect and deliver them.",
        epilog=(
            f"WHEN is {WHEN_FORMS}. Durations: 90, 90s, 10m, 2h, 1d.\n"
            "Exit status: 0 done, 1 failed (one line on stderr), 2 usage error (nothing was sent to S3)."
        ),
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: Callable[[argparse.Namespace, TextIO], int], summary: str, description: str) -> Any:
        sub = commands.add_parser(name, help=summary, description=description, parents=[common])
        sub.set_defaults(func=func)
        return sub

    when_help = f"{WHEN_FORMS} (no env)"
    key_example = "e.g. 'jobs/|2030-01-07%%2014%%3A05%%3A00%%2B00%%3A00|work|in~~report.json' (no env)"
    to_select = "select the events going to this target instead of typing KEY, e.g. s3://work/in/report.json (no env)"

    schedule = command(
        "schedule",
        _schedule,
        "schedule content to be copied to a target at a time",
        "Write one event: at WHEN, its content is copied to s3://BUCKET/KEY. Prints the event's key."
        " An event with the same name (same time and target) is not replaced unless --replace is given."
        " With --from FILE.jsonl, write one event per line of the file, every line checked before any"
        " request; prints each key, and one line on stderr per event that failed.",
    )
    schedule.add_argument("--at", metavar="WHEN", help=f"when to deliver, e.g. +10m: {when_help}")
    schedule.add_argument(
        "--to", metavar="s3://BUCKET/KEY", help="where to copy the content, e.g. s3://work/in/report.json (no env)"
    )
    content = schedule.add_mutually_exclusive_group()
    content.add_argument("--content", metavar="TEXT", help="the content as UTF-8 text, e.g. '{\"id\": 7}' (no env)")
    content.add_argument(
        "--file", metavar="PATH", help="a file to send as it is, e.g. photo.jpg, or - for standard input (no env)"
    )
    schedule.add_argument(
        "--replace",
        action="store_true",
        help="replace the content of an event with the same name, e.g. --replace (no env)",
    )
    schedule.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE.jsonl",
        help='schedule many: one JSON object a line, e.g. {"at": "+10m", "to": "s3://work/a.json",'
        ' "content": "hi"}; - for standard input (no env)',
    )
    schedule.add_argument(
        "--content-type",
        metavar="TYPE",
        help="the content's MIME type, carried to the target; with --from, of every event, e.g. application/json"
        " (no env)",
    )
    schedule.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="S3 user metadata carried to the target (x-amz-meta-NAME), repeatable; with --from, of every event,"
        " e.g. --metadata order-id=42 (no env)",
    )

    listing = command(
        "list",
        _list,
        "list the pending events in time order",
        "List the pending events in time order: TIME (UTC), DUE IN, TARGET and KEY, the key shell-quoted"
        " so it can be pasted into cancel or reschedule. With --json, one JSON object a line.",
    )
    listing.add_argument("--until", metavar="WHEN", help=f"only events due by then, e.g. +1h: {when_help}")
    listing.add_argument("--limit", metavar="N", help="at most N events, e.g. 20 (no env)")
    listing.add_argument("--to", metavar="s3://BUCKET/KEY", help=f"only the events going there: {to_select}")
    listing.add_argument(
        "--at", metavar="WHEN", help=f"with --to: only those due at that second, e.g. 2030-01-07T14:05: {when_help}"
    )
    listing.add_argument(
        "--array",
        action="store_true",
        help="print one JSON array, [] when empty, e.g. list --array (implies --json; no env)",
    )

    cancel = command(
        "cancel",
        _cancel,
        "cancel pending events",
        "Cancel pending events, named by KEY or selected with --to (and --at). Exit 1 if one was not pending,"
        " or if --to selects more than one event (they are listed and nothing is cancelled).",
    )
    cancel.add_argument("keys", nargs="*", metavar="KEY", help=f"an event's key as list prints it, {key_example}")
    cancel.add_argument("--to", metavar="s3://BUCKET/KEY", help=to_select)
    cancel.add_argument(
        "--at", metavar="WHEN", help=f"with --to: only the event due at that second, e.g. +1h: {when_help}"
    )

    reschedule = command(
        "reschedule",
        _reschedule,
        "move a pending event to another time",
        "Move one pending event, named by KEY or selected with --to, to WHEN. Prints the new key. Exit 1 if it"
        " is not pending, or if --to selects more than one event (they are listed and nothing is moved).",
    )
    reschedule.add_argument("key", nargs="?", metavar="KEY", help=f"the event's key as list prints it, {key_example}")
    reschedule.add_argument("--at", metavar="WHEN", required=True, help=f"the new time, e.g. +1d: {when_help}")
    reschedule.add_argument("--to", metavar="s3://BUCKET/KEY", help=to_select)

    handle = command(
        "handle",
        _handle,
        "deliver the due events once",
        "Deliver every due event once and print the summary. Exit 1 if a delivery failed.",
    )
    handle.add_argument(
        "--timeout", metavar="DURATION", help="start no delivery after this long, e.g. 50s or 1d (no env)"
    )
    metrics_help = (
        "after the summary, print the run's metrics as one CloudWatch Embedded Metric Format line"
        " (dimensions Bucket and Prefix), e.g. --metrics (no env)"
    )
    handle.add_argument("--metrics", action="store_true", help=metrics_help)

    run = command(
        "run",
        _run,
        "deliver each event on its second until SIGINT or SIGTERM",
        "Deliver, window after window of --interval, each event at its own time; print each delivery."
        " A window's summary is printed when an event failed or expired."
        " A schedule bucket that does not exist, or is denied, at the first window ends the command (exit 1);"
        " later S3 errors are logged and retried with a growing wait (up to 5 minutes). SIGINT or SIGTERM"
        " finishes the delivery in flight and exits 0.",
    )
    run.add_argument(
        "--interval",
        default="10s",
        metavar="DURATION",
        help=f"how often to look for new events, e.g. 30s, at most {format_duration(MAX_UNTIL.total_seconds())}"
        " (no env; default 10s)",
    )
    run.add_argument("--metrics", action="store_true", help=metrics_help.replace("the run's", "each window's"))

    command(
        "check",
        _check,
        "report names a run will not read in time",
        "Read every name under the prefix once and print each one that is not an event, or that a run would"
        " read late, with the reason; then say whether any event is named with a UTC offset (as 0.0.3 wrote"
        " them), which --no-legacy-offsets would read late. Exit 1 when a problem was found.",
    )

    demo = command(
        "demo",
        _demo,
        "a local S3 and a handful of events delivered on their second",
        "Start an S3 on 127.0.0.1 (moto, from the local extra), schedule a handful of events a second or two"
        " apart, and print each delivery as it happens. Needs no AWS account.",
    )
    demo.add_argument(
        "--keep", action="store_true", help="leave the local S3 running and show commands to try, e.g. --keep (no env)"
    )
    return parser


def _check_text(args: argparse.Namespace) -> None:
    """Refuse, naming the option, an argument that is not UTF-8 text (a byte that is not
    UTF-8 on the command line); file names are left alone, as the file system takes any."""
    for dest, value in vars(args).items():
        if dest in _PATH_OPTIONS:
            continue
        for text in value if isinstance(value, list) else [value]:
            problem = text_problem(text) if isinstance(text, str) else None
            if problem:
                option = "KEY" if dest in ("key", "keys") else "--" + dest.replace("_", "-")
                shown = "" if dest == "content" else f" {text!r}"  # content is never echoed: it can be secret
                msg = f"{option}{shown} {problem}: S3 names and text contents are UTF-8 (send bytes with --file)"
                raise UsageError(msg)


def _from_env(name: str, default: str | None = None) -> str | None:
    """Return the variable ``name`` (or ``default``), refusing one that is not UTF-8 text."""
    value = os.environ.get(name, default)
    problem = None if value is None else text_problem(value)
    if problem:
        msg = f"{name}={value!r} {problem}"
        raise UsageError(msg)
    return value


def _apply_defaults(args: argparse.Namespace, clock: Callable[[], datetime] | None) -> None:
    """Fill in the global options not given, from the environment, and check them."""
    _check_text(args)
    env = os.environ
    args.bucket = getattr(args, "bucket", None) or _from_env("S3_SCHEDULER_BUCKET") or None
    args.prefix = getattr(args, "prefix", None)
    if args.prefix is None:
        args.prefix = _from_env("S3_SCHEDULER_PREFIX", DEFAULT_PREFIX)
    args.endpoint_url = getattr(args, "endpoint_url", None)
    args.region = _region(getattr(args, "region", None))
    args.json = getattr(args, "json", False) or getattr(args, "array", False)
    args.verbose = getattr(args, "verbose", 0)
    args.clock = clock
    if args.endpoint_url is not None:
        _check_endpoint(args.endpoint_url, "--endpoint-url")
    else:
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
            if env.get(name):
                _check_endpoint(env[name], name)
                break
    args.legacy_offsets = getattr(args, "legacy_offsets", None)
    if args.legacy_offsets is None:
        text = env.get("S3_SCHEDULER_LEGACY_OFFSETS", "")
        try:
            args.legacy_offsets = flag_value(text) if text.strip() else True
        except ValueError:
            msg = f"S3_SCHEDULER_LEGACY_OFFSETS={text!r} is not yes or no: use 1/0, true/false, yes/no or on/off"
            raise UsageError(msg) from None
    given = getattr(args, "max_workers", None)
    text = env.get("S3_SCHEDULER_MAX_WORKERS", "") if given is None else given
    source = f"S3_SCHEDULER_MAX_WORKERS={text!r}" if given is None else f"--max-workers {text!r}"
    try:
        args.max_workers = DEFAULT_MAX_WORKERS if given is None and not text.strip() else whole_number(text)
    except ValueError:
        args.max_workers = 0
    if not 1 <= args.max_workers <= MAX_WORKERS_LIMIT:
        msg = f"{source} must be a whole number from 1 to {MAX_WORKERS_LIMIT}, e.g. 32"
        raise UsageError(msg)
    args.max_lateness = _max_lateness(getattr(args, "max_lateness", None), env.get("S3_SCHEDULER_MAX_LATENESS"))


def _region(given: str | None) -> str | None:
    """Return the region: ``--region``, else ``AWS_REGION``, else None (boto3 then reads
    ``AWS_DEFAULT_REGION`` and the config file). A malformed one is a `UsageError`: botocore
    would make an endpoint of it that fails with a bare ``ValueError``."""
    env = os.environ
    region: str | None
    checked: str | None
    if given is not None:
        region, source, checked = given, "--region ", given
    elif env.get("AWS_REGION"):
        region, source, checked = env["AWS_REGION"], "AWS_REGION=", env["AWS_REGION"]
    else:
        region, source, checked = None, "AWS_DEFAULT_REGION=", env.get("AWS_DEFAULT_REGION")
    if checked is not None and not _REGION.fullmatch(checked):
        msg = f"{source}{checked!r} is not a region: use a name such as eu-west-3"
        raise UsageError(msg)
    return region


def _max_lateness(given: str | None, variable: str | None) -> timedelta | None:
    """Return ``--max-lateness`` (else ``S3_SCHEDULER_MAX_LATENESS``) as a timedelta; None when neither is set."""
    if given is not None:
        source, text = "--max-lateness ", given
    elif variable is not None and variable.strip():
        source, text = "S3_SCHEDULER_MAX_LATENESS=", variable
    else:
        return None
    try:
        lateness = duration_timedelta(text)
    except ValueError as exc:
        msg = f"{source}{exc}"
        raise UsageError(msg) from None
    problem = lateness_problem(lateness)
    if problem:
        msg = f"{source}{text!r} {problem}"
        raise UsageError(msg)
    return lateness


def lateness_problem(lateness: timedelta) -> str | None:
    """Return why ``lateness`` cannot be a ``max_lateness`` (under `MIN_MAX_LATENESS`), or None."""
    if lateness >= MIN_MAX_LATENESS:
        return None
    least = format_duration(MIN_MAX_LATENESS.total_seconds())
    return f"is under {least}: runs a minute apart find events up to a minute late; use {least} or more, e.g. 1h"


def _check_endpoint(url: str, option: str) -> None:
    problem = endpoint_problem(url)
    if problem:
        msg = f"{option} {problem}"
        raise UsageError(msg)


# main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, *, clock: Callable[[], datetime] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    ``clock`` is handed to the `Scheduler` (tests set the time with it).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(join_negative_times(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse printed its own message
        return exc.code if isinstance(exc.code, int) else 2
    with _logging(getattr(args, "verbose", 0)):
        try:
            _apply_defaults(args, clock)
            with _aws_errors(args):
                status: int = args.func(args, sys.stdout)
                return status
        except UsageError as exc:
            print(f"s3-scheduler: {_flat(exc)}", file=sys.stderr)
            return 2
        except Failure as exc:
            print(f"s3-scheduler: {_flat(exc)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:  # the reader went away (| head): stop quietly
            _silence_stdout()
            return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # not a real file (a test's), or closed
        pass


def _flat(error: BaseException | str) -> str:
    return " ".join(str(error).split())


def entry_point() -> None:  # pragma: no cover - the console script
    """The ``s3-scheduler`` console script (and ``python -m s3_scheduler``)."""
    sys.exit(main())


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


def _scheduler(args: argparse.Namespace) -> Scheduler:
    """Return the scheduler the global options name; nothing is sent to S3 yet."""
    if not args.bucket:
        msg = "no schedule bucket: pass --bucket or set S3_SCHEDULER_BUCKET"
        raise UsageError(msg)
    problem = bucket_problem(args.bucket)
    if problem:
        msg = f"--bucket {problem}"
        raise UsageError(msg)
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=args.region)
    pool = args.max_workers + POOL_EXTRA  # the copies, and the listing, the batch delete and the lease beside them
    client = session.client("s3", endpoint_url=args.endpoint_url, config=Config(max_pool_connections=pool))
    try:
        return Scheduler(
            args.bucket,
            args.prefix,
            s3_client=client,
            max_workers=args.max_workers,
            legacy_offsets=args.legacy_offsets,
            max_lateness=args.max_lateness,
            clock=args.clock,
        )
    except ValueError as exc:  # each option is checked above: this is the last line of defence
        raise UsageError(str(exc)) from None


# the commands ----------------------------------------------------------------------------


def _schedule(args: argparse.Namespace, out: TextIO) -> int:
    if args.from_file is not None:
        return _schedule_many(args, out)
    if args.at is None or args.to is None or (args.content is None and args.file is None):
        msg = "schedule needs --at WHEN, --to s3://BUCKET/KEY, and --content TEXT or --file PATH"
        raise UsageError(msg)
    bucket, key = parse_target(args.to)
    extra = _extra(args)
    scheduler = _scheduler(args)
    now = scheduler.now()
    when = parse_when(args.at, now, "--at")
    with _content(args) as what:
        try:
            event_key = scheduler.schedule(when, bucket, key, what, replace=args.replace, **extra)
        except EventExistsError:
            msg = (
                f"an event to s3://{bucket}/{key} at {when.isoformat()} is already pending"
                f" as {encode_key(scheduler.prefix, when, bucket, key)!r}: pass --replace to replace its content"
            )
            raise Failure(msg) from None
        except ValueError as exc:  # TargetNotAllowedError, a name over 1,024 bytes
            raise UsageError(str(exc)) from None
    _print(out, args, event_key, {"key": event_key, "when": when.isoformat(), "bucket": bucket, "path": key})
    if when < now:
        _warn(f"--at {args.at!r} is {when.isoformat()}, in the past: the next run delivers it")
    return 0


def _warn(text: str) -> None:
    """Print one line of warning on stderr; the command goes on."""
    print(f"s3-scheduler: warning: {_flat(text)}", file=sys.stderr)


def _extra(args: argparse.Namespace) -> dict[str, Any]:
    """Return the ``content_type`` and ``metadata`` keywords of `Scheduler.schedule` the options give."""
    extra: dict[str, Any] = {}
    if args.content_type is not None:
        extra["content_type"] = parse_content_type(args.content_type)
    if args.metadata:
        extra["metadata"] = parse_metadata(args.metadata)
    return extra


def _schedule_many(args: argparse.Namespace, out: TextIO) -> int:
    if any(value is not None for value in (args.at, args.to, args.content, args.file)):
        msg = (
            "--from FILE.jsonl takes the times, targets and contents from the file: drop --at, --to, --content, --file"
        )
        raise UsageError(msg)
    source = f"--from {args.from_file!r}"
    extra = _extra(args)
    lines = _read_lines(args.from_file, source)
    scheduler = _scheduler(args)
    now = scheduler.now()
    numbers: list[int] = []
    events: list[tuple[datetime, str, str, str]] = []
    for number, line in lines:
        events.append(_event_line(line, f"{source} line {number}", now))
        numbers.append(number)
    if not events:
        msg = f"{source}: no events in the file: write one JSON object a line, {_LINE_FORM}"
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
    try:
        written: list[str | None] = list(scheduler.schedule_many(events, replace=args.replace, **extra))
        failures: list[tuple[int, BaseException]] = []
    except ScheduleManyError as exc:
        written, failures = exc.keys, exc.failures
    except ValueError as exc:  # a target outside allowed_targets, a name too long
        text = re.sub(r"\bevent (\d+) of the batch", lambda m: f"line {numbers[int(m.group(1))]}", str(exc))
        msg = f"{source}: {text}"
        raise UsageError(msg) from None
    for (when, bucket, path, _), key in zip(events, written):
        if key is not None:
            _print(out, args, key, {"key": key, "when": when.isoformat(), "bucket": bucket, "path": path})
    for index, error in failures:
        when, bucket, path, _ = events[index]
        if isinstance(error, EventExistsError):
            existing = encode_key(scheduler.prefix, when, bucket, path)
            reason = (
                f"an event with that time and target is already pending as {existing!r}: pass --replace to replace it"
            )
        else:
            reason = describe_error(error, args.bucket)
        print(f"s3-scheduler: {source} line {numbers[index]} (s3://{bucket}/{path}): {reason}", file=sys.stderr)
    if failures:
        msg = f"{len(failures)} of {len(events)} events were not written ({len(events) - len(failures)} were)"
        raise Failure(msg)
    past = [number for number, (when, _, _, _) in zip(numbers, events) if when < now]
    if past:
        shown = ("line " if len(past) == 1 else "lines ") + ", ".join(map(str, past[:5])) + (", ..." * (len(past) > 5))
        _warn(f"{source}: {len(past)} of {len(events)} events are in the past ({shown}): the next run delivers them")
    return 0


_LINE_FORM = '{"at": "2030-01-07T14:05", "to": "s3://work/in/report.json", "content": "hi"}'


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


def _event_line(line: str, where: str, now: datetime) -> tuple[datetime, str, str, str]:
    """Return the event one line of a --from file describes; a `UsageError` names the line."""
    try:
        item = json.loads(line)
    except ValueError as exc:
        msg = f"{where} is not JSON ({exc}): write {_LINE_FORM}"
        raise UsageError(msg) from None
    except RecursionError:
        msg = f"{where} nests too deeply to read: write {_LINE_FORM}"
        raise UsageError(msg) from None
    if isinstance(item, dict) and {"content_type", "metadata"} & set(item):
        msg = (
            f'{where}: "content_type" and "metadata" are not read per line: pass --content-type and --metadata,'
            " which apply to every event of the file (or split the file by value)"
        )
        raise UsageError(msg)
    if not isinstance(item, dict) or set(item) != {"at", "to", "content"}:
        msg = f'{where} must hold exactly "at", "to" and "content": {_LINE_FORM}'
        raise UsageError(msg)
    at, to, content = item["at"], item["to"], item["content"]
    if not all(isinstance(value, str) for value in (at, to, content)):
        msg = f'{where}: "at", "to" and "content" must be strings: {_LINE_FORM}'
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


@contextmanager
def _content(args: argparse.Namespace) -> Iterator[str | BinaryIO]:
    if args.content is not None:
        yield args.content
        return
    if args.file == "-":
        yield sys.stdin.buffer
        return
    with _open(args.file, f"--file {args.file!r}", "a file", "rb") as stream:
        yield stream


def _list(args: argparse.Namespace, out: TextIO) -> int:
    limit = None
    if args.limit is not None:
        try:
            limit = whole_number(args.limit)
        except ValueError:
            msg = f"--limit {args.limit!r} is not a whole number of zero or more: e.g. --limit 20"
            raise UsageError(msg) from None
    select = _selection(args, args.at)
    scheduler = _scheduler(args)
    now = scheduler.now()
    until = None if args.until is None else parse_when(args.until, now, "--until")
    events = _pending(scheduler, until, select, now)
    _print_events(out, args, list(itertools.islice(events, None if limit is None else min(limit, sys.maxsize))), now)
    return 0


def _print_events(out: TextIO, args: argparse.Namespace, events: list[ScheduledEvent], now: datetime) -> None:
    data = [{**event.to_dict(), "due_in": (event.when - now).total_seconds()} for event in events]
    if getattr(args, "array", False):
        out.write(json.dumps(data) + "\n")
        return
    if args.json:
        out.writelines(json.dumps(item) + "\n" for item in data)
        return
    rows = [("TIME (UTC)", "DUE IN", "TARGET", "KEY")]
    rows += [
        (
            event.when.strftime("%Y-%m-%d %H:%M:%S"),
            _due_in((event.when - now).total_seconds()),
            f"s3://{event.bucket}/{event.path}",
            shlex.quote(event.key),
        )
        for event in events
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3] + "\n")


def _due_in(seconds: float) -> str:
    if seconds <= 0:
        return "due"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


class _Selection:
    """Events picked by target (``--to``) and, optionally, by the second they are due (``--at``)."""

    def __init__(self, bucket: str, path: str, at: str | None) -> None:
        self.bucket, self.path, self.at = bucket, path, at

    def matches(self, event: ScheduledEvent, at: datetime | None) -> bool:
        return (event.bucket, event.path) == (self.bucket, self.path) and (
            at is None or event.when.replace(microsecond=0) == at.replace(microsecond=0)
        )

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.path}" + ("" if self.at is None else f" at {self.at}")


def _selection(args: argparse.Namespace, at: str | None = None) -> _Selection | None:
    if args.to is None:
        if at is not None:
            msg = "--at selects among the events of a target: pass --to s3://BUCKET/KEY too"
            raise UsageError(msg)
        return None
    bucket, path = parse_target(args.to)
    return _Selection(bucket, path, at)


def _pending(
    scheduler: Scheduler, until: datetime | None, select: _Selection | None, now: datetime
) -> Iterable[ScheduledEvent]:
    events: Iterable[ScheduledEvent] = scheduler.pending(until=until)
    if select is not None:
        at = None if select.at is None else parse_when(select.at, now, "--at")
        events = (event for event in events if select.matches(event, at))
    return events


def _one(scheduler: Scheduler, args: argparse.Namespace, select: _Selection, verb: str, out: TextIO) -> str:
    """Return the key of the one event ``select`` picks; otherwise print the matches and fail."""
    now = scheduler.now()
    matches = list(_pending(scheduler, None, select, now))
    if len(matches) == 1:
        return matches[0].key
    if not matches:
        msg = f"no pending event goes to {select}"
        raise Failure(msg)
    _print_events(out, args, matches, now)
    msg = f"{len(matches)} pending events go to {select}: nothing {verb}; name one by its KEY (listed above)"
    raise Failure(msg)


def _cancel(args: argparse.Namespace, out: TextIO) -> int:
    select = _selection(args, args.at)
    if select is not None and args.keys:
        msg = "cancel takes KEYs or --to, not both"
        raise UsageError(msg)
    if select is None and not args.keys:
        msg = "cancel needs the KEY of each event, or --to s3://BUCKET/KEY to select one"
        raise UsageError(msg)
    scheduler = _scheduler(args)
    keys = list(args.keys)
    for key in keys:
        _check_key(scheduler, key)
    if select is not None:
        keys = [_one(scheduler, args, select, "cancelled", out)]
    missed = 0
    for key in keys:
        cancelled = scheduler.cancel(key)
        missed += not cancelled
        word = "cancelled" if cancelled else "not pending (delivered, cancelled or never scheduled)"
        _print(out, args, f"{word}: {shlex.quote(key)}", {"key": key, "cancelled": cancelled})
    if missed:
        msg = f"{missed} of {len(keys)} events were not pending: delivered, cancelled or never scheduled"
        raise Failure(msg)
    return 0


def _reschedule(args: argparse.Namespace, out: TextIO) -> int:
    select = _selection(args)
    if (select is None) == (args.key is None):
        msg = "reschedule needs either the KEY of the event or --to s3://BUCKET/KEY to select it"
        raise UsageError(msg)
    scheduler = _scheduler(args)
    when = parse_when(args.at, scheduler.now(), "--at")
    if args.key is not None:
        _check_key(scheduler, args.key)
    key = args.key if select is None else _one(scheduler, args, select, "moved", out)
    try:
        new_key = scheduler.reschedule(key, when)
    except EventNotPendingError:
        msg = f"{key!r} is no longer pending: it was delivered, cancelled or never scheduled"
        raise Failure(msg) from None
    except EventExistsError:
        event = decode_event(key, scheduler.prefix)
        other = encode_key(scheduler.prefix, when, event.bucket, event.path)
        msg = f"another event to the same target is already pending at {when.isoformat()}, {other!r}: cancel it first"
        raise Failure(msg) from None
    except RunInProgressError:
        msg = (
            f"a handler run holds the lease {scheduler.prefix[:-1]}.lease and may be delivering {key!r}"
            " (it is due within 15.5 minutes): try again once the run is over, or cancel it and schedule it anew"
        )
        raise Failure(msg) from None
    except ValueError as exc:  # a new name over S3's 1,024 bytes
        raise UsageError(str(exc)) from None
    event = decode_event(new_key, scheduler.prefix)
    _print(out, args, new_key, {**event.to_dict(), "old_key": key})
    return 0


def _check_key(scheduler: Scheduler, key: str) -> None:
    try:
        decode_key(key, scheduler.prefix)
    except InvalidKeyError as exc:
        msg = f"{key!r} is not an event of {scheduler.prefix!r}: {exc}"
        raise UsageError(msg) from None


def _handle(args: argparse.Namespace, out: TextIO) -> int:
    timeout = None if args.timeout is None else parse_duration(args.timeout, "--timeout")
    scheduler = _scheduler(args)
    report = scheduler.handle(timeout=timeout)
    _print_report(out, args, report)
    if args.metrics:
        _print_metrics(out, args, report, scheduler.now())
    return 0 if report.ok else 1


def _run(args: argparse.Namespace, out: TextIO) -> int:
    interval = parse_duration(args.interval, "--interval")
    if not 0 < interval <= MAX_UNTIL.total_seconds():
        msg = (
            f"--interval {args.interval!r} must be more than 0 and at most {format_duration(MAX_UNTIL.total_seconds())}"
        )
        raise UsageError(msg)
    scheduler = _scheduler(args)

    def on_report(report: HandleReport) -> None:
        if report.failed or report.expired:
            _print_report(out, args, report)
        if args.metrics:
            _print_metrics(out, args, report, scheduler.now())
        out.flush()

    with stop_on_signals(threading.Event()) as stop:
        run_until_stopped(
            scheduler,
            interval,
            stop,
            on_delivery=lambda event, late: _print_delivery(out, args, event, late),
            on_report=on_report,
            describe=lambda error: describe_error(error, args.bucket),
        )
    return 0


def _check(args: argparse.Namespace, out: TextIO) -> int:
    report: CheckReport = _scheduler(args).check()
    offsets = len(report.offset_keys)
    if offsets:
        advice = (
            f"{offsets} event(s) named with a UTC offset (as 0.0.3 wrote them) or sorting after their time:"
            " keep legacy offsets on (do not pass --no-legacy-offsets)"
        )
    else:
        advice = "every event sorts at its time: --no-legacy-offsets (S3_SCHEDULER_LEGACY_OFFSETS=0) is safe"
    if args.json:
        out.write(json.dumps({**report.to_dict(), "ok": report.ok, "legacy_offsets_needed": bool(offsets)}) + "\n")
    else:
        for key, reason in report.not_events:
            out.write(f"not an event: {shlex.quote(key)}: {reason}\n")
        for key, reason in report.late:
            out.write(f"read late: {shlex.quote(key)}: {reason}\n")
        out.write(f"{report.summary()}\n{advice}\n")
    return 0 if report.ok else 1


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from .demo import run_demo

    return run_demo(out, keep=args.keep)


# output ----------------------------------------------------------------------------------


def _print_delivery(out: TextIO, args: argparse.Namespace, event: ScheduledEvent, late: float) -> None:
    text = f"delivered s3://{event.bucket}/{event.path} ({late:.3f} s late) {shlex.quote(event.key)}"
    _print(out, args, text, {"delivered": event.to_dict(), "late": late})
    out.flush()


def _print_report(out: TextIO, args: argparse.Namespace, report: HandleReport) -> None:
    lines = [report.summary()] + [f"failed: {f.event.key!r}: {one_line(f.error)}" for f in report.failed]
    lines += [f"expired: {event.key!r}" for event in report.expired]
    _print(out, args, "\n".join(lines), report.to_dict())


def _print_metrics(out: TextIO, args: argparse.Namespace, report: HandleReport, now: datetime) -> None:
    """Print ``report`` as one CloudWatch Embedded Metric Format line, with or without --json."""
    out.write(emf_line(report, now=now, dimensions=metrics_dimensions(args.bucket, args.prefix)) + "\n")


def _print(out: TextIO, args: argparse.Namespace, text: str, data: Any) -> None:
    out.write((json.dumps(data) if args.json else text) + "\n")


# errors ----------------------------------------------------------------------------------


def describe_error(error: BaseException, bucket: str | None) -> str:
    """Return one line saying what went wrong with S3 or AWS and what to check."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        NoCredentialsError,
        NoRegionError,
        ProfileNotFound,
    )

    if isinstance(error, NoCredentialsError):
        return "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
    if isinstance(error, ProfileNotFound):
        profile = error.kwargs.get("profile")
        return f"no AWS profile {profile!r}: check AWS_PROFILE and the profiles in ~/.aws/config"
    if isinstance(error, NoRegionError):
        return "no AWS region: pass --region or set AWS_REGION"
    if isinstance(error, ConnectionError):
        parts = urlsplit(str(error.kwargs.get("endpoint_url", "")))
        return f"cannot reach S3 at {parts.scheme}://{parts.netloc}: check --endpoint-url and the network"
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket" or (code in ("404", "NotFound") and error.operation_name == "HeadBucket"):
            return f"no such bucket {bucket!r}: check --bucket (or S3_SCHEDULER_BUCKET) and --region"
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return f"access denied to bucket {bucket!r} ({code}): check the credentials and the IAM policy"
        return f"S3 refused the request: {_flat(error)}"
    if isinstance(error, BotoCoreError):
        return f"AWS error: {_flat(error)}"
    return one_line(error)


@contextmanager
def _aws_errors(args: argparse.Namespace) -> Iterator[None]:
    """Turn every botocore and boto3 error into a `Failure` of one line that names the fix."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError, Boto3Error) as exc:
        raise Failure(describe_error(exc, args.bucket)) from None
