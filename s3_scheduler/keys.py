"""The key format of a scheduled event: encode, decode and the listing bound.

Pure functions, no I/O and no boto3. An event is stored under::

    {path}/|{when}|{bucket}|{target}

- ``path``: the scheduler path with one trailing ``/`` removed (a leading ``/`` is kept).
- ``when``: ``quote(str(t))`` of the time converted to UTC, for example
  ``2018-08-05%2010%3A00%3A00%2B00%3A00``. Fixed width up to the seconds, so S3's
  key order (UTF-8 binary order) is time order.
- ``bucket``: ``quote(bucket)``.
- ``target``: ``quote(key)`` with one leading ``/`` dropped, ``~`` escaped as ``%7E``
  and ``/`` replaced by ``~~`` (S3 would otherwise read it as a folder mark).

For a UTC or naive time and a target without ``~`` the key is byte-identical to the
one ``s3-scheduler`` 0.0.3 wrote, and every key 0.0.3 wrote decodes to what 0.0.3
meant (times with any UTC offset included).

>>> from datetime import datetime
>>> prefix = listing_prefix("jobs")
>>> key = encode_key(prefix, datetime(2018, 8, 5, 10), "s3-bucket", "in/report.csv")
>>> key
'jobs/|2018-08-05%2010%3A00%3A00%2B00%3A00|s3-bucket|in~~report.csv'
>>> decode_key(key, prefix)
DecodedKey(when=datetime.datetime(2018, 8, 5, 10, 0, tzinfo=datetime.timezone.utc), \
bucket='s3-bucket', target='in/report.csv')
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import NamedTuple
from urllib.parse import quote, unquote

from dateutil.parser import parse as _parse_date

from .exceptions import InvalidKeyError

SEPARATOR = "|"
"""Separates the parts of an event's name."""

SLASH_ESCAPE = "~~"
"""What a ``/`` of the target key becomes in the event's name."""

MAX_KEY_BYTES = 1024
"""S3's limit on the length of an object key, in UTF-8 bytes."""

LOOKAHEAD = timedelta(hours=14)
"""How far past *now* the handler reads the listing.

Keys sort by the wall-clock time they spell. This package writes UTC, but 0.0.3 kept
the caller's offset, and the largest offset of any real time zone is +14:00: such a
key spells a time up to 14 hours later than the instant it is due.
"""

# The form str() gives an aware datetime: what this package and 0.0.3 write.
_OWN_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{6})?[+-]\d{2}:\d{2}")


class DecodedKey(NamedTuple):
    """The parts of an event's name: when it is due and where it goes."""

    when: datetime
    bucket: str
    target: str


def normalize_path(path: str) -> str:
    """Return the scheduler path as 0.0.3 stored it: one trailing ``/`` removed."""
    return path[:-1] if path.endswith("/") else path


def listing_prefix(path: str) -> str:
    """Return the prefix that holds exactly the events of the scheduler at ``path``.

    The ``|`` matters: a scheduler at ``jobs`` never sees the events of one at
    ``jobs-archive``.
    """
    return f"{normalize_path(path)}/{SEPARATOR}"


def lease_key(prefix: str) -> str:
    """Return the key of the run lease of the scheduler whose prefix is ``prefix``.

    It stands beside the events, outside ``{path}/|``, so no listing of events sees it.
    """
    return prefix[: -len(SEPARATOR)] + ".lease"


def dead_letter_prefix(prefix: str) -> str:
    """Return the prefix under which the scheduler whose prefix is ``prefix`` keeps dead letters.

    A dead letter keeps its event's name: ``{path}/.dead-letters/{when}|{bucket}|{target}``.
    """
    return prefix[: -len(SEPARATOR)] + ".dead-letters/"


def to_utc(when: datetime) -> datetime:
    """Return ``when`` as an aware UTC datetime; a naive ``when`` is taken as UTC."""
    if when.tzinfo is None or when.utcoffset() is None:
        return when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def encode_time(when: datetime) -> str:
    """Return the ``when`` part of an event's name: the time in UTC, quoted."""
    return quote(str(to_utc(when)))


def encode_target(target: str) -> str:
    """Return the ``target`` part of an event's name for the target key ``target``."""
    if target.startswith("/"):
        target = target[1:]
    return quote(target).replace("~", "%7E").replace("/", SLASH_ESCAPE)


def decode_target(part: str) -> str:
    """Return the target key that the name part ``part`` stands for.

    ``~~`` is turned back into ``/`` *before* unquoting, so a ``~`` of the target
    (escaped as ``%7E``) never takes part in it.
    """
    return unquote(part.replace(SLASH_ESCAPE, "/"))


def parse_time(part: str) -> datetime:
    """Return the aware UTC time that the name part ``part`` spells.

    Any UTC offset is honoured and a time without one is UTC, so a hand-written
    ``2018-08-05`` is midnight UTC. Raises `InvalidKeyError` when it is not a time.
    """
    text = unquote(part)
    try:
        # The form this package writes parses faster without dateutil.
        when = datetime.fromisoformat(text) if _OWN_TIME.fullmatch(text) else _parse_date(text)
    except (ValueError, OverflowError) as exc:
        msg = f"{text!r} is not a time"
        raise InvalidKeyError(msg) from exc
    return to_utc(when)


def encode_key(prefix: str, when: datetime, bucket: str, target: str) -> str:
    """Return the name of the event that copies to ``bucket``/``target`` at ``when``.

    ``prefix`` is the scheduler's `listing_prefix`.

    Raises `ValueError` when the bucket or the target is empty, or when the name
    would be longer than S3's 1,024 bytes.
    """
    if not bucket:
        msg = "the target bucket must be a non-empty bucket name"
        raise ValueError(msg)
    if "/" in bucket:
        msg = f"the target bucket {bucket!r} must be a bucket name, without '/'"
        raise ValueError(msg)
    if not target or target == "/":
        msg = "the target key must be a non-empty S3 key, such as 'in/report.csv'"
        raise ValueError(msg)
    parts = (encode_time(when), quote(bucket), encode_target(target))
    key = prefix + SEPARATOR.join(parts)
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        msg = (
            f"the event's name would be {size} bytes, over S3's {MAX_KEY_BYTES}-byte"
            " limit on keys: shorten the scheduler path or the target key"
        )
        raise ValueError(msg)
    return key


def decode_key(key: str, prefix: str) -> DecodedKey:
    """Return when and where the event named ``key`` goes.

    ``prefix`` is the scheduler's `listing_prefix`; it is stripped, not split, so a
    ``|`` inside the scheduler path is harmless. Raises `InvalidKeyError` for a name
    that is not ``{prefix}{when}|{bucket}|{target}``.
    """
    if not key.startswith(prefix):
        msg = f"{key!r} does not start with {prefix!r}"
        raise InvalidKeyError(msg)
    parts = key[len(prefix) :].split(SEPARATOR)
    if len(parts) != 3:
        msg = f"{key!r} is not {prefix}{{when}}|{{bucket}}|{{target}}"
        raise InvalidKeyError(msg)
    time_part, bucket_part, target_part = parts
    bucket = unquote(bucket_part)
    target = decode_target(target_part)
    if not bucket or not target:
        msg = f"{key!r} names no target bucket or key"
        raise InvalidKeyError(msg)
    return DecodedKey(parse_time(time_part), bucket, target)


def listing_bound(prefix: str, now: datetime) -> str:
    """Return the greatest name the handler needs to read at ``now``.

    Every event due at ``now`` sorts at or before it (a legacy key with an offset up
    to +14:00 included); the listing can stop at the first key past it.
    """
    return prefix + encode_time(to_utc(now) + LOOKAHEAD)
