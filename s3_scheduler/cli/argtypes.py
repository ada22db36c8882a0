"""The command line's argument types: each turns an option's text into a value, or raises
`UsageError` naming the option and the forms it accepts.

Times (`parse_when`), durations (`parse_duration`, `parse_max_lateness`), targets
(`parse_target`), ``--content-type``, ``--metadata``, ``--limit``, ``--max-workers``,
``--shards``, ``--shard``, ``--region`` and ``--endpoint-url``. The forms an option shares with an environment
variable are `s3_scheduler.settings`'s, so that both accept the same.

>>> from datetime import datetime, timezone
>>> now = datetime(2030, 1, 7, 14, 5, tzinfo=timezone.utc)
>>> parse_when("+90s", now).isoformat(), parse_when("2030-01-07 15:05 Europe/Paris", now).isoformat()
('2030-01-07T14:06:30+00:00', '2030-01-07T14:05:00+00:00')
>>> parse_target("s3://work/in/report.json")
('work', 'in/report.json')
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone, tzinfo

from dateutil.parser import isoparse

from ..keys import MAX_SHARDS
from ..settings import (
    DEFAULT_MAX_WORKERS,
    MAX_WORKERS_LIMIT,
    UNIT_SECONDS,
    bucket_problem,
    duration_seconds,
    duration_timedelta,
    endpoint_problem,
    lateness_problem,
    region_problem,
    text_problem,
    whole_number,
)
from .errors import UsageError

EARLIEST = datetime(1, 1, 2, tzinfo=timezone.utc)
"""The earliest time accepted: ``datetime``'s own range, less a margin for the listing."""

LATEST = datetime(9999, 12, 30, tzinfo=timezone.utc)
"""The latest time accepted: the listing reads 14 hours past it, and ``datetime`` ends at year 9999."""

WHEN_FORMS = (
    "ISO 8601 (2030-01-07T14:05, no offset = UTC), a time and an IANA zone ('2030-01-07 14:05 Europe/Paris'),"
    " or relative: +90s, +10m, +2h, +1d, -5m"
)
"""The forms of a time (``WHEN``), as the help and the errors give them."""

MAX_METADATA_BYTES = 2048
"""S3's limit on an object's user metadata: the bytes of every name and value together."""

UTC = timezone.utc
_RELATIVE = re.compile(r"([+-]) *([0-9]+(?:\.[0-9]+)?) *([smhd])")
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*")
_MIME_NAME = r"[A-Za-z0-9!#$&^_.+-]+"
_MIME = re.compile(rf"{_MIME_NAME}/{_MIME_NAME}(?:\s*;.*)?")
_METADATA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_WHEN_OPTIONS = ("--at", "--until")
_DURATION_OPTIONS = ("--max-lateness", "--timeout", "--interval")
_PATH_OPTIONS = ("file", "from_file")
"""The options naming a local file: any bytes the file system holds are fine there."""


# times -----------------------------------------------------------------------------------


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
            when = now + sign * timedelta(seconds=float(relative.group(2)) * UNIT_SECONDS[relative.group(3)])
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


def join_negative_times(argv: Sequence[str]) -> list[str]:
    """Return ``argv`` with ``--at -5m`` written ``--at=-5m``, which argparse would
    otherwise take for an option (also for a duration option, whose error then names
    the forms in one line).

    >>> join_negative_times(["list", "--at", "-5m", "--limit", "-5m"])
    ['list', '--at=-5m', '--limit', '-5m']
    """
    joined: list[str] = []
    for token in argv:
        option = joined[-1] if joined else None
        if "--" not in joined and option in _WHEN_OPTIONS + _DURATION_OPTIONS and _RELATIVE.fullmatch(token):
            joined[-1] = f"{joined[-1]}={token}"
        else:
            joined.append(token)
    return joined


# durations and numbers -------------------------------------------------------------------


def parse_duration(text: str, option: str) -> float:
    """Return the seconds ``text`` names (see `s3_scheduler.settings.duration_seconds`); a
    `UsageError` names ``option``."""
    try:
        return duration_seconds(text)
    except ValueError as exc:
        msg = f"{option} {exc}"
        raise UsageError(msg) from None


def parse_max_lateness(text: str) -> timedelta:
    """Return ``--max-lateness``: a duration of a minute or more (as ``S3_SCHEDULER_MAX_LATENESS``)."""
    try:
        lateness = duration_timedelta(text)
    except ValueError as exc:
        msg = f"--max-lateness {exc}"
        raise UsageError(msg) from None
    problem = lateness_problem(lateness)
    if problem:
        msg = f"--max-lateness {text!r} {problem}"
        raise UsageError(msg)
    return lateness


def parse_max_workers(text: str) -> int:
    """Return ``--max-workers``: a whole number from 1 to `MAX_WORKERS_LIMIT` (as ``S3_SCHEDULER_MAX_WORKERS``)."""
    return _count("--max-workers", text, MAX_WORKERS_LIMIT, f", e.g. {DEFAULT_MAX_WORKERS}")


def parse_shards(text: str) -> int:
    """Return ``--shards``: a whole number from 1 to `s3_scheduler.keys.MAX_SHARDS` (as ``S3_SCHEDULER_SHARDS``)."""
    return _count("--shards", text, MAX_SHARDS, " (1: no shards), e.g. 4")


def _count(option: str, text: str, most: int, example: str) -> int:
    """Return ``text`` as a whole number from 1 to ``most``, or raise `UsageError` naming ``option``."""
    try:
        count = whole_number(text)
    except ValueError:
        count = 0
    if not 1 <= count <= most:
        msg = f"{option} {text!r} must be a whole number from 1 to {most}{example}"
        raise UsageError(msg)
    return count


def parse_shard(text: str, shards: int, option: str = "--shard") -> int:
    """Return ``--shard``: a shard's number, a whole number from 0 to ``shards`` - 1."""
    try:
        shard = whole_number(text)
    except ValueError:
        shard = shards
    if not 0 <= shard < shards:
        msg = (
            f"{option} {text!r} must be a whole number from 0 to {shards - 1} with {shards} shard(s)"
            " (--shards or S3_SCHEDULER_SHARDS), e.g. 0"
        )
        raise UsageError(msg)
    return shard


def parse_limit(text: str) -> int:
    """Return ``--limit``: a whole number of zero or more (a huge one means no limit in practice)."""
    try:
        return whole_number(text)
    except ValueError:
        msg = f"--limit {text!r} is not a whole number of zero or more: e.g. --limit 20"
        raise UsageError(msg) from None


# S3 and AWS names ------------------------------------------------------------------------


def parse_target(text: str, option: str = "--to") -> tuple[str, str]:
    """Return the bucket and key of ``s3://bucket/key``; the bucket must be a name S3 may hold
    (`s3_scheduler.settings.bucket_problem`)."""
    bucket, _, key = text[len("s3://") :].partition("/") if text.startswith("s3://") else ("", "", "")
    if not bucket or not key:
        msg = f"{option} {text!r} is not a target: use s3://bucket/key"
        raise UsageError(msg)
    problem = bucket_problem(bucket)
    if problem:
        msg = f"{option} {text!r}: {problem}"
        raise UsageError(msg)
    return bucket, key


def check_bucket(name: str) -> str:
    """Return ``--bucket`` if S3 may hold a bucket of that name (`s3_scheduler.settings.bucket_problem`)."""
    problem = bucket_problem(name)
    if problem:
        msg = f"--bucket {problem}"
        raise UsageError(msg)
    return name


def check_endpoint(url: str) -> str:
    """Return ``--endpoint-url`` if it is an http(s)://host[:port] URL (`s3_scheduler.settings.endpoint_problem`)."""
    problem = endpoint_problem(url)
    if problem:
        msg = f"--endpoint-url {problem}"
        raise UsageError(msg)
    return url


def check_region(name: str) -> str:
    """Return ``--region`` if botocore can make an endpoint of it (`s3_scheduler.settings.region_problem`)."""
    problem = region_problem(name)
    if problem:
        msg = f"--region {name!r} {problem}"
        raise UsageError(msg)
    return name


# what is sent to S3 ----------------------------------------------------------------------


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


def check_text(args: argparse.Namespace) -> None:
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
