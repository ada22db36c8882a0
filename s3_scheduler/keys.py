"""The key format of a scheduled event: encode, decode, the listing bound, and what a run
makes of a name (`check_name`).

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

A scheduler with ``shards=N > 1`` keeps the event of a target in shard
``s = shard_of(bucket, key, N)``, a scheduler at ``{path}/{s}`` (`shard_path`), so under
``{path}/{s}/|{when}|{bucket}|{target}``; ``shards=1`` is the layout above, unchanged.

>>> from datetime import datetime
>>> prefix = listing_prefix("jobs")
>>> key = encode_key(prefix, datetime(2018, 8, 5, 10), "s3-bucket", "in/report.csv")
>>> key
'jobs/|2018-08-05%2010%3A00%3A00%2B00%3A00|s3-bucket|in~~report.csv'
>>> decode_key(key, prefix)
DecodedKey(when=datetime.datetime(2018, 8, 5, 10, 0, tzinfo=datetime.timezone.utc), \
bucket='s3-bucket', path='in/report.csv')

Times are read strictly: what ``str(datetime)`` writes and ISO 8601 extended format
(``T`` or a space, optional seconds and fraction, optional ``Z`` or offset, or a date
alone). Anything a parser would have to guess (zone abbreviations, ``GMT-3``, day and
month orders, month names) is not an event, so nothing is ever delivered early because
a guess went wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from datetime import datetime, timedelta, timezone
from typing import NamedTuple
from urllib.parse import quote, unquote

from .exceptions import InvalidKeyError

SEPARATOR = "|"
"""Separates the parts of an event's name."""

SLASH_ESCAPE = "~~"
"""What a ``/`` of the target key becomes in the event's name."""

MAX_KEY_BYTES = 1024
"""S3's limit on the length of an object key, in UTF-8 bytes."""

LOOKAHEAD = timedelta(hours=14)
"""How far past *now* the handler reads the listing when legacy offsets are on.

Keys sort by the wall-clock time they spell. This package writes UTC, but 0.0.3 kept
the caller's offset, and the largest offset of any real time zone is +14:00: such a
key spells a time up to 14 hours later than the instant it is due.
"""

MAX_SHARDS = 1000
"""The most shards a scheduler may have (``Scheduler(..., shards=N)``, 1 to this)."""

UNSHARDED = "unsharded"
"""The label of the unsharded prefix ``{path}/|`` among the shards of a sharded scheduler
(a shard's label is its number in decimal, so none is this)."""

ATTEMPTS_TAG = "s3-scheduler-failed-runs"
"""The object tag in which an event keeps how many runs failed to deliver it."""

SERIES_META = "s3-scheduler-series"
"""The user metadata name of a recurring event's series: an id of 16 hexadecimal digits,
the same on every occurrence of one series."""

REPEAT_META = "s3-scheduler-repeat"
"""The user metadata name of a recurring event's rule: an RFC 5545 RRULE, without ``DTSTART``
(``FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0``)."""

ZONE_META = "s3-scheduler-zone"
"""The user metadata name of the zone a recurring event's rule is evaluated in: an IANA
name (``Europe/Berlin``), or ``UTC``."""

START_META = "s3-scheduler-start"
"""The user metadata name of a series' start (the rule's ``DTSTART``): its local time in
its zone, ISO 8601 without an offset (``2030-01-07T09:00:00``)."""

OCCURRENCE_META = "s3-scheduler-occurrence"
"""The user metadata name, on a delivered occurrence of a series, of the occurrence's time
(ISO 8601, UTC)."""

SERIES_MARKERS = ".series/"
"""Beside ``.dead-letters/``: ``{path}/.series/{when}|{bucket}|{target}`` marks the event
of that name as an occurrence of a series, so a run reads the rule of that event alone."""

# The form str() gives an aware datetime (what this package and 0.0.3 write), and ISO
# 8601's extended format: a date, then optionally T or a space and a time of day, then
# optionally Z or an offset. ASCII digits only.
_TIME = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:[T ](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?:[.,](?P<fraction>[0-9]{1,9}))?)?"
    r"(?P<zone>Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)
_WRITTEN = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})%20([0-9]{2})%3A([0-9]{2})%3A([0-9]{2})(?:\.([0-9]{6}))?%2B00%3A00"
)
"""The time part as `encode_time` writes it (UTC, quoted): read without the general form's steps."""
_BUCKET = re.compile(r"[A-Za-z0-9._-]{3,255}")
_END_OF_SECOND = "\U0010ffff"
"""Sorts after every character: a bound ending with it lies past every name of that second."""


class DecodedKey(NamedTuple):
    """The parts of an event's name: when it is due and where it goes."""

    when: datetime
    bucket: str
    path: str


def normalize_path(path: str) -> str:
    """Return the scheduler path as 0.0.3 stored it: one trailing ``/`` removed."""
    return path[:-1] if path.endswith("/") else path


def normalize_target(target: str) -> str:
    """Return the target key as it is delivered: one leading ``/`` dropped, as 0.0.3 did."""
    return target[1:] if target.startswith("/") else target


def listing_prefix(path: str) -> str:
    """Return the prefix that holds exactly the events of the scheduler at ``path``.

    The ``|`` matters: a scheduler at ``jobs`` never sees the events of one at
    ``jobs-archive``.
    """
    return f"{normalize_path(path)}/{SEPARATOR}"


def shard_of(bucket: str, key: str, shards: int) -> int:
    """Return the shard, from 0 to ``shards`` - 1, that holds the events of the target
    ``bucket``/``key``.

    The first 8 bytes of SHA-256 of ``f"{bucket}/{key}"`` (UTF-8, ``key`` with one
    leading ``/`` dropped, as the event's name stores it), read big-endian, modulo
    ``shards``. The same in every process, version and language: every event of one
    target lies in one shard. ``shards=1`` gives 0.

    >>> shard_of("work", "in/report.json", 8), shard_of("work", "/in/report.json", 8)
    (3, 3)

    Raises `TypeError` unless ``bucket`` and ``key`` are str and ``shards`` an int, and
    `ValueError` for a number of shards outside 1 to `MAX_SHARDS`.
    """
    if not isinstance(bucket, str) or not isinstance(key, str):
        msg = "bucket and key must be str: the target bucket name and object key"
        raise TypeError(msg)
    check_shards(shards)
    digest = hashlib.sha256(f"{bucket}/{normalize_target(key)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def check_shards(shards: object) -> int:
    """Return ``shards`` when it is a number of shards: an int from 1 to `MAX_SHARDS`.

    Raises `TypeError` for another type (a bool included), `ValueError` out of range.
    """
    if isinstance(shards, bool) or not isinstance(shards, int):
        msg = f"shards must be an int from 1 to {MAX_SHARDS:,} (1: no shards), not {type(shards).__name__}"
        raise TypeError(msg)
    if not 1 <= shards <= MAX_SHARDS:
        msg = f"shards must be an int from 1 to {MAX_SHARDS:,} (1: no shards), not {shards}"
        raise ValueError(msg)
    return shards


def shard_root(path: str) -> str:
    """Return the prefix under which the shards of the scheduler at ``path`` lie: ``{path}/``.

    Its unsharded prefix ``{path}/|``, its lease and its dead letters lie there too.
    """
    return f"{normalize_path(path)}/"


def shard_path(path: str, shard: int) -> str:
    """Return the path of shard ``shard`` of the scheduler at ``path``: ``{path}/{shard}``.

    A shard is exactly a scheduler at that path (its events under ``{path}/{shard}/|``,
    its lease ``{path}/{shard}/.lease``, its dead letters under
    ``{path}/{shard}/.dead-letters/``).

    >>> shard_path("jobs/", 7), listing_prefix(shard_path("jobs", 7))
    ('jobs/7', 'jobs/7/|')
    """
    return f"{shard_root(path)}{shard}"


def shard_number(label: str) -> int | None:
    """Return the shard that the name part ``label`` (between ``{path}/`` and the next
    ``/``) stands for, or None when it is not one: a shard is a decimal number written
    without padding (``0``, ``7``, ``12``; not ``07``, ``+7`` or another script's digits)."""
    if not label or not label.isascii() or not label.isdigit() or (label != "0" and label.startswith("0")):
        return None
    return int(label)


def event_prefix(key: str, path: str) -> str:
    """Return the prefix, among those of the sharded scheduler at ``path``, that the event
    ``key`` lies under: the unsharded ``{path}/|`` or a shard's ``{path}/{s}/|``.

    Raises `InvalidKeyError` for a key under neither.

    >>> event_prefix("jobs/3/|2030-01-07%2014%3A05%3A00%2B00%3A00|b|k", "jobs")
    'jobs/3/|'
    """
    unsharded = listing_prefix(path)
    root = shard_root(path)
    if isinstance(key, str) and key.startswith(unsharded):
        return unsharded
    if isinstance(key, str) and key.startswith(root):
        label, slash, rest = key[len(root) :].partition("/")
        if slash and rest.startswith(SEPARATOR) and shard_number(label) is not None:
            return listing_prefix(f"{root}{label}")
    msg = f"{key!r} is not an event of the scheduler at {path!r}: {unsharded}... or {root}{{shard}}/{SEPARATOR}..."
    raise InvalidKeyError(msg)


def lease_key(prefix: str) -> str:
    """Return the key of the run lease of the scheduler whose prefix is ``prefix``.

    It stands beside the events, outside ``{path}/|``, so no listing of events sees it.
    """
    return prefix[: -len(SEPARATOR)] + ".lease"


def dead_letter_prefix(prefix: str) -> str:
    """Return the prefix under which the scheduler whose prefix is ``prefix`` keeps dead letters.

    A dead letter keeps its event's name and adds a token of its own:
    ``{path}/.dead-letters/{when}|{bucket}|{target}|{token}``.
    """
    return prefix[: -len(SEPARATOR)] + ".dead-letters/"


def series_marker_prefix(prefix: str) -> str:
    """Return the prefix under which the scheduler whose prefix is ``prefix`` marks the
    occurrences of series: ``{path}/.series/`` (see `SERIES_MARKERS`)."""
    return prefix[: -len(SEPARATOR)] + SERIES_MARKERS


def series_marker(prefix: str, key: str) -> str:
    """Return the marker of the event ``key`` of the scheduler at ``prefix``.

    >>> series_marker("jobs/|", "jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|b|k")
    'jobs/.series/2030-01-07%2014%3A05%3A00%2B00%3A00|b|k'
    """
    return series_marker_prefix(prefix) + key[len(prefix) :]


def marked_event(prefix: str, marker: str) -> str:
    """Return the event key that the marker ``marker`` of the scheduler at ``prefix`` marks."""
    return prefix + marker[len(series_marker_prefix(prefix)) :]


DEAD_LETTER_TOKEN = re.compile(r"[0-9a-f]{8}")
"""The form of the token that makes each dead letter's name its own: 8 hexadecimal digits."""


def dead_letter_key(prefix: str, key: str, token: str) -> str:
    """Return the name the event ``key`` of the scheduler at ``prefix`` takes among the
    dead letters, made its own by ``token`` (`DEAD_LETTER_TOKEN`): a later event of the
    same time and target never takes the same name.

    >>> dead_letter_key("jobs/|", "jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|b|k", "0badcafe")
    'jobs/.dead-letters/2030-01-07%2014%3A05%3A00%2B00%3A00|b|k|0badcafe'
    """
    if not DEAD_LETTER_TOKEN.fullmatch(token):
        msg = f"a dead letter's token is 8 hexadecimal digits, not {token!r}"
        raise ValueError(msg)
    return dead_letter_prefix(prefix) + key[len(prefix) :] + SEPARATOR + token


def decode_dead_letter(key: str, prefix: str) -> DecodedKey:
    """Return when and where the event went whose dead letter, of the scheduler at
    ``prefix``, is named ``key``.

    Reads the names `dead_letter_key` writes, and those written without a token (before
    0.3). Raises `InvalidKeyError` for anything else.
    """
    letters = dead_letter_prefix(prefix)
    name = key
    head, separator, token = key.rpartition(SEPARATOR)
    if separator and DEAD_LETTER_TOKEN.fullmatch(token) and head[len(letters) :].count(SEPARATOR) == 2:
        name = head
    return decode_key(name, letters)


def is_reserved(prefix: str, schedule_bucket: str, bucket: str, target: str) -> bool:
    """Whether ``bucket``/``target`` is the lease, a dead letter or a series marker of the
    scheduler at ``prefix`` in ``schedule_bucket``: no event may be delivered there."""
    target = normalize_target(target)
    return bucket == schedule_bucket and (
        target == lease_key(prefix)
        or target.startswith(dead_letter_prefix(prefix))
        or target.startswith(series_marker_prefix(prefix))
    )


def is_reserved_in_shards(path: str, schedule_bucket: str, bucket: str, target: str) -> bool:
    """Whether ``bucket``/``target`` is the lease, a dead letter or a series marker of the
    sharded scheduler at ``path`` in ``schedule_bucket``, or of any of its shards (whatever
    their number)."""
    target = normalize_target(target)
    if is_reserved(listing_prefix(path), schedule_bucket, bucket, target):
        return True
    root = shard_root(path)
    if bucket != schedule_bucket or not target.startswith(root):
        return False
    label, slash, _ = target[len(root) :].partition("/")
    return (
        bool(slash)
        and shard_number(label) is not None
        and is_reserved(listing_prefix(root + label), schedule_bucket, bucket, target)
    )


def check_not_reserved(path: str, shards: int, schedule_bucket: str, bucket: str, target: str) -> None:
    """Raise `ValueError` where ``bucket``/``target`` is the lease, a dead letter or a series
    marker of the scheduler at ``path`` in ``schedule_bucket`` (with ``shards`` > 1, of any
    of its shards): no event may be written for it."""
    if (
        is_reserved(listing_prefix(path), schedule_bucket, bucket, target)
        if shards == 1
        else is_reserved_in_shards(path, schedule_bucket, bucket, target)
    ):
        where = f"s3://{bucket}/{normalize_target(target)}"
        msg = f"the target {where} is this scheduler's lease, a dead letter or a series marker"
        raise ValueError(msg)


def to_utc(when: datetime) -> datetime:
    """Return ``when`` as an aware UTC datetime; a naive ``when`` is taken as UTC.

    Raises `ValueError` for a time that has no UTC equivalent (an aware year-1 time
    east of UTC, or the last hours of year 9999 west of it).
    """
    if when.tzinfo is None or when.utcoffset() is None:
        return when.replace(tzinfo=timezone.utc)
    try:
        return when.astimezone(timezone.utc)
    except OverflowError:
        msg = f"{when.isoformat()} is outside the times a datetime can hold in UTC"
        raise ValueError(msg) from None


def encode_time(when: datetime) -> str:
    """Return the ``when`` part of an event's name: the time in UTC, quoted."""
    return quote(str(to_utc(when)))


def encode_target(target: str) -> str:
    """Return the ``target`` part of an event's name for the target key ``target``."""
    return quote(normalize_target(target)).replace("~", "%7E").replace("/", SLASH_ESCAPE)


def decode_target(part: str) -> str:
    """Return the target key that the name part ``part`` stands for.

    ``~~`` is turned back into ``/`` *before* unquoting, so a ``~`` of the target
    (escaped as ``%7E``) never takes part in it.
    """
    return unquote(part.replace(SLASH_ESCAPE, "/"))


def parse_time(part: str) -> datetime:
    """Return the aware UTC time that the name part ``part`` spells.

    Accepted: ``str(datetime)``'s form and ISO 8601's extended format (``T`` or a space,
    optional seconds and fraction, ``Z`` or an offset such as ``+02:00``, ``+0200`` or
    ``+02``); a time without an offset is UTC, and a date alone is midnight UTC. The
    part is quoted as ``quote()`` quotes it (``%20``, ``%3A``, ``%2B``), or not at all.
    Raises `InvalidKeyError` for anything else, and for a time that does not exist or
    cannot be had in UTC: nothing is guessed.
    """
    written = _WRITTEN.fullmatch(part)
    if written is not None:  # what this package writes: the same time as the general form gives
        with contextlib.suppress(ValueError):  # a day that does not exist: said below
            year, month, day, hour, minute, second, fraction = (int(n or 0) for n in written.groups())
            return datetime(year, month, day, hour, minute, second, fraction, tzinfo=timezone.utc)
    text = unquote(part)
    match = _TIME.fullmatch(text)
    if match is None:
        msg = f"{text!r} is not a time of the form YYYY-MM-DD HH:MM:SS+00:00 (or ISO 8601)"
        raise InvalidKeyError(msg)
    if part not in (text, quote(text)):
        # Quoted in part (or in lower case), a name sorts where no listing window looks.
        msg = f"{part!r} quotes some of its characters and not others: write it {quote(text)!r}"
        raise InvalidKeyError(msg)
    try:
        return to_utc(_from_match(match))
    except (ValueError, OverflowError) as exc:
        msg = f"{text!r} is not a time: {exc}"
        raise InvalidKeyError(msg) from None


def _from_match(match: re.Match[str]) -> datetime:
    year, month, day = (int(n) for n in match["date"].split("-"))
    if match["hour"] is None:
        return datetime(year, month, day, tzinfo=timezone.utc)
    fraction = (match["fraction"] or "").ljust(6, "0")[:6]
    when = datetime(
        year, month, day, int(match["hour"]), int(match["minute"]), int(match["second"] or 0), int(fraction or 0)
    )
    zone = match["zone"]
    if zone is None or zone == "Z":
        return when.replace(tzinfo=timezone.utc)
    digits = zone[1:].replace(":", "")
    if int(digits[2:] or 0) >= 60:
        msg = f"the offset {zone} has {digits[2:]} minutes"
        raise ValueError(msg)
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
    if offset > (LOOKAHEAD if zone[0] == "+" else timedelta(hours=12)):
        msg = f"the offset {zone} is past any real time zone's (-12:00 to +14:00)"
        raise ValueError(msg)
    return when.replace(tzinfo=timezone(-offset if zone[0] == "-" else offset))


def has_offset(part: str) -> bool:
    """Whether the ``when`` part ``part`` of a name spells a UTC offset other than zero
    (as 0.0.3 wrote the caller's offset); False for anything that is not a time."""
    match = _TIME.fullmatch(unquote(part))
    zone = None if match is None else match["zone"]
    return zone is not None and zone != "Z" and zone[1:].replace(":", "").strip("0") != ""


def check_bucket_name(bucket: str) -> None:
    """Raise `ValueError` unless ``bucket`` is a name S3 can accept for a bucket.

    Lenient enough for the legacy names of us-east-1 (upper case, ``_``, up to 255
    characters): what it refuses, S3 refuses everywhere.
    """
    if not _BUCKET.fullmatch(bucket):
        msg = (
            f"the target bucket {bucket!r} is not a bucket name: 3 to 63 characters of a-z, 0-9, '.' and '-'"
            " (legacy us-east-1 names also A-Z and '_')"
        )
        raise ValueError(msg)


def encode_key(prefix: str, when: datetime, bucket: str, target: str) -> str:
    """Return the name of the event that copies to ``bucket``/``target`` at ``when``.

    ``prefix`` is the scheduler's `listing_prefix`.

    Raises `ValueError` when the bucket is not a bucket name, the target is empty, the
    time has no UTC equivalent, or the name would be longer than S3's 1,024 bytes.
    """
    if not bucket:
        msg = "the target bucket must be a non-empty bucket name"
        raise ValueError(msg)
    if "/" in bucket:
        msg = f"the target bucket {bucket!r} must be a bucket name, without '/'"
        raise ValueError(msg)
    check_bucket_name(bucket)
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
    ``|`` inside the scheduler path is harmless. Raises `InvalidKeyError`, and nothing
    else, for a name that is not ``{prefix}{when}|{bucket}|{target}``.
    """
    if not isinstance(key, str) or not key.startswith(prefix):
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


class KeyRange(NamedTuple):
    """The names after ``after`` up to and including ``last``, in S3's key order."""

    after: str
    last: str

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.after < key <= self.last


class Window(NamedTuple):
    """What a listing must read to find every event due at a time: the names up to
    ``bound`` (all, if None) and those in each of the ``extra`` ranges past it."""

    bound: str | None
    extra: tuple[KeyRange, ...] = ()

    def reads(self, key: str) -> bool:
        """Whether ``key`` lies in the window."""
        return self.bound is None or key <= self.bound or any(key in r for r in self.extra)

    @property
    def last(self) -> str | None:
        """The greatest name in the window (None: no bound)."""
        if self.bound is None:
            return None
        return max([self.bound, *(r.last for r in self.extra)])


def listing_bound(prefix: str, now: datetime, *, legacy_offsets: bool = True) -> str | None:
    """Return the greatest name written in this package's form (``%20`` between date and
    time) that the handler needs to read at ``now``, or None for no bound.

    Every such name due at ``now`` sorts at or before it (with ``legacy_offsets``, a key
    0.0.3 wrote with an offset up to +14:00 included); so does every name of that minute,
    whether or not it spells its seconds. None when that time lies past what a datetime
    can hold. `listing_window` adds the other forms a name may take.
    """
    try:
        end = to_utc(now) + (LOOKAHEAD if legacy_offsets else timedelta(0))
    except (OverflowError, ValueError):
        return None
    return prefix + quote(end.strftime("%Y-%m-%d %H:%M")) + _END_OF_SECOND


def listing_window(prefix: str, now: datetime, *, legacy_offsets: bool = True) -> Window:
    """Return what the handler reads at ``now``: `listing_bound`, and the names of each
    date a time due by ``now`` may spell that sort after it.

    A name with ``T`` between date and time (ISO 8601), or a date alone, sorts after
    every ``%20``-separated name of its date (``T`` and ``|`` sort after ``%``). For
    each date from ``now``'s to that of ``now`` + 14 h (any real offset, whatever
    ``legacy_offsets`` says) that the bound does not pass, the window holds the range of
    that date's ``T`` names and date-alone names: nothing else sorts there, so it costs a
    LIST request only where the first listing did not already reach past it.
    """
    bound = listing_bound(prefix, now, legacy_offsets=legacy_offsets)
    if bound is None:
        return Window(None)
    try:
        first, last = to_utc(now), to_utc(now) + LOOKAHEAD
    except (OverflowError, ValueError):
        return Window(None)
    extra = []
    for day in dict.fromkeys((first.date(), last.date())):
        date = day.isoformat()
        late = KeyRange(prefix + date + "T", prefix + date + SEPARATOR + _END_OF_SECOND)
        if late.last > bound:
            extra.append(late)
    return Window(bound, tuple(extra))


def is_canonical(key: str, prefix: str, when: datetime) -> bool:
    """Whether ``key`` spells its time ``when`` as this package writes it (UTC, ``str()`` form)."""
    return key[len(prefix) :].split(SEPARATOR, 1)[0] == encode_time(when)


def sorts_late(key: str, prefix: str, when: datetime, *, legacy_offsets: bool = True) -> bool:
    """Whether ``key``, due at ``when``, lies outside the listing window at ``when``: a
    run then reads it late, once the window has moved past it."""
    return not listing_window(prefix, when, legacy_offsets=legacy_offsets).reads(key)


class NameCheck(NamedTuple):
    """What `check_name` finds of one name under a scheduler's prefix."""

    not_event: str | None
    """Why the name is not an event (a run skips it); None for an event."""
    offset: bool = False
    """Whether the event needs ``legacy_offsets=True`` to be read in time: named with a
    UTC offset other than zero, as 0.0.3 wrote them, or otherwise sorting after its time."""
    late: str | None = None
    """Why a run under the settings checked reads the event late, naming what to rename
    it to; None when a run reads it in time."""


def check_name(key: str, prefix: str, *, legacy_offsets: bool = True) -> NameCheck:
    """Return what a run of the scheduler at ``prefix`` (listing as ``legacy_offsets``
    says) makes of the name ``key``: not an event, an event it reads in time, or late.

    >>> offset_name = "jobs/|2030-01-07%2016%3A05%3A00%2B02%3A00|b|k"  # 0.0.3's, for 14:05 UTC
    >>> check_name(offset_name, "jobs/|")
    NameCheck(not_event=None, offset=True, late=None)
    >>> check_name(offset_name, "jobs/|", legacy_offsets=False).late.split(": ")[-1]
    "rename it 'jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|b|k'"
    """
    try:
        when = decode_key(key, prefix).when
    except InvalidKeyError as exc:
        return NameCheck(str(exc))
    if is_canonical(key, prefix, when):
        return NameCheck(None)
    time_part, rest = key[len(prefix) :].split(SEPARATOR, 1)
    offset = has_offset(time_part) or sorts_late(key, prefix, when, legacy_offsets=False)
    late = None
    if sorts_late(key, prefix, when, legacy_offsets=legacy_offsets):
        canonical = f"{prefix}{encode_time(when)}{SEPARATOR}{rest}"
        late = f"its time sorts after the names due then; handle() reads it late: rename it {canonical!r}"
    return NameCheck(None, offset, late)
