"""Recurring events: a series of ordinary events, one pending at a time.

``schedule(..., repeat=RULE)`` writes the series' first occurrence: an ordinary event (same
name, so it sorts, lists and cancels like any other) whose user metadata also holds the
series (`keys.REPEAT_META`, `keys.ZONE_META`, `keys.START_META`, `keys.SERIES_META`), and a
marker ``{path}/.series/{when}|{bucket}|{target}`` beside it (`keys.SERIES_MARKERS`), so a
run reads the metadata of the marked events alone and delivers every other event with one
request as before. After delivering an occurrence, a run writes the next one (a copy of the
occurrence: content, content type and metadata) before it deletes the delivered one.

The rule is an RFC 5545 RRULE evaluated on local wall times in the series' zone, from its
start (``DTSTART``): 09:00 Berlin stays 09:00 Berlin across daylight-saving changes. A wall
time that does not exist (clocks spring forward) happens at the first instant after the gap;
one that happens twice (clocks fall back) happens once, at the first. Occurrences missed
while no run ran are coalesced: the first is delivered, and the series goes on at the first
instance after the run's time.

This module is pure: what a rule means, what the metadata says. The requests are in
`s3_scheduler.occurrences`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, NamedTuple

from dateutil import tz as dateutil_tz
from dateutil.rrule import rrule, rrulestr

from .keys import OCCURRENCE_META, REPEAT_META, SERIES_META, START_META, ZONE_META

UTC_NAMES = frozenset(("UTC", "Etc/UTC", "Z", "GMT", "Etc/GMT", "UCT", "Universal", "Zulu"))
"""Zone names that mean UTC itself (stored as ``UTC``)."""

METADATA_BYTES = 2048
"""S3's limit on an object's user metadata: the bytes of every name and value."""

MISSED_COUNTED = 10_000
"""The most missed occurrences a delivery counts (`HandleReport.coalesced`)."""

_FIXED_PERIODS = {
    "SECONDLY": timedelta(seconds=1),
    "MINUTELY": timedelta(minutes=1),
    "HOURLY": timedelta(hours=1),
    "DAILY": timedelta(days=1),
    "WEEKLY": timedelta(weeks=1),
}
"""The frequencies whose period is a fixed length of wall time."""

_UNTIL = re.compile(r"(?i)(UNTIL=)(\d{8}(?:T\d{6})?)(Z?)")
_START_FORMAT = "%Y-%m-%dT%H:%M:%S"
_SERIES_ID = re.compile(r"[0-9a-f]{16}")


class Series(NamedTuple):
    """What makes an event an occurrence of a series, as its metadata holds it."""

    rule: str
    """The RRULE, without ``DTSTART`` (``FREQ=DAILY;BYHOUR=9;BYMINUTE=0``)."""
    zone: str
    """The IANA name of the zone the rule is evaluated in, or ``UTC``."""
    start: datetime
    """The series' start, a naive local wall time in ``zone`` (the rule's ``DTSTART``)."""
    id: str
    """16 hexadecimal digits, the same on every occurrence of the series."""

    def metadata(self) -> dict[str, str]:
        """Return the user metadata that marks an event as an occurrence of this series."""
        return {
            REPEAT_META: self.rule,
            ZONE_META: self.zone,
            START_META: self.start.strftime(_START_FORMAT),
            SERIES_META: self.id,
        }

    def next_after(self, after: datetime) -> datetime | None:
        """Return the first occurrence (aware, UTC) strictly after ``after`` (aware), or None
        when the rule has none (its ``COUNT`` or ``UNTIL`` reached)."""
        for at in self._instants(after):
            return at
        return None

    def missed_between(self, start: datetime, end: datetime, *, limit: int = MISSED_COUNTED) -> int:
        """Return how many occurrences fall strictly after ``start`` and at or before ``end``
        (counted up to ``limit``)."""
        count = 0
        for at in self._instants(start):
            if at > end or count >= limit:
                break
            count += 1
        return count

    def _instants(self, after: datetime) -> Iterator[datetime]:
        """Yield the occurrences (aware, UTC) strictly after ``after``, in order, each once.

        The rule is read from `anchor`: the series' start, or for a rule of a fixed period
        without ``COUNT``, a whole number of periods later, so the cost does not grow with
        the instances since the start.
        """
        zone = resolve_zone(self.zone)
        # Instances are wall times; a zone's offset moves a wall time by less than a day.
        cursor = after.astimezone(zone).replace(tzinfo=None) - timedelta(days=1)
        start = self.anchor(cursor)
        rule = _rule(self.rule, start, zone)
        cursor = max(cursor, start - timedelta(seconds=1))
        last = None
        for wall in rule.xafter(cursor):
            at = to_instant(wall, zone)
            if at > after and at != last:  # two wall times in one gap are one instant
                last = at
                yield at

    def anchor(self, cursor: datetime) -> datetime:
        """Return a start that gives the same instances after the wall time ``cursor`` as the
        series' own: for ``FREQ`` from ``SECONDLY`` to ``WEEKLY`` without ``COUNT``, the
        start moved on by whole periods (``INTERVAL`` of them at a time) to at least one
        period and a week before ``cursor``: the periods stay aligned and what the rule
        takes from its start (the time of day, the weekday) stays the same. Any other rule
        starts at its start (``COUNT`` counts from it)."""
        parts = dict(part.split("=", 1) for part in self.rule.split(";") if "=" in part)
        period = _FIXED_PERIODS.get(parts.get("FREQ", ""))
        if period is None or "COUNT" in parts:
            return self.start
        try:
            period *= max(1, int(parts.get("INTERVAL", "1")))
        except ValueError:
            return self.start
        target = cursor - period - timedelta(weeks=1)
        if target <= self.start:
            return self.start
        return self.start + ((target - self.start) // period) * period


def new_series(repeat: Any, when: datetime) -> tuple[Series, datetime]:
    """Return the series that ``repeat`` makes from ``when``, and its first occurrence (UTC).

    ``repeat`` is an RRULE string (``"FREQ=WEEKLY;BYDAY=MO"``, with or without ``RRULE:``)
    or a `dateutil.rrule.rrule` (its rule is taken, its ``DTSTART`` is not: the series
    starts at ``when``). ``when`` is naive (UTC) or aware with a named zone (`zoneinfo`,
    `dateutil.tz`, or UTC). Raises `TypeError` for another type, `ValueError` for a string
    that is not a rule, a zone with no name (a fixed offset), or a rule with no instance
    at or after ``when``.
    """
    rule = _rule_text(repeat)
    zone_name = zone_of(when)
    zone = resolve_zone(zone_name)
    start = when.replace(tzinfo=None, fold=0, microsecond=0)  # when's own wall reading
    series = Series(rule, zone_name, start, secrets.token_hex(8))
    try:
        at = to_instant(start, zone)
        if at.astimezone(zone).replace(tzinfo=None) == start and when.tzinfo is not None:
            at = when.astimezone(timezone.utc).replace(microsecond=0)  # the second of an hour lived twice
        first = series.next_after(at - timedelta(microseconds=1))
    except OverflowError:
        msg = f"the series from {when!r} has no time S3 can name"
        raise ValueError(msg) from None
    if first is None:
        msg = f"the rule {rule!r} has no occurrence at or after {when.isoformat()}: nothing would be scheduled"
        raise ValueError(msg)
    return series, first


def check_metadata_size(metadata: Mapping[str, str] | None, series: Mapping[str, str]) -> None:
    """Raise `ValueError` when the user ``metadata`` with a series' and an occurrence's own
    would pass S3's 2 KB of user metadata (the bytes of every name and value, in UTF-8)."""
    names = {**(metadata or {}), **series, OCCURRENCE_META: "2030-01-07T14:05:00.000000+00:00"}
    size = sum(len(name.encode()) + len(value.encode()) for name, value in names.items())
    if size > METADATA_BYTES:
        msg = (
            f"the metadata of a recurring event would be {size} bytes with the series' own and the"
            f" occurrence's time, over S3's {METADATA_BYTES}: shorten the metadata or the rule"
        )
        raise ValueError(msg)


def from_metadata(metadata: Mapping[str, str]) -> Series | None:
    """Return the series an event's user ``metadata`` names, or None for a one-time event
    (or metadata that does not make a series: then the event is delivered once)."""
    folded = {name.lower(): value for name, value in metadata.items()}
    rule, zone, start, ident = (folded.get(name) for name in (REPEAT_META, ZONE_META, START_META, SERIES_META))
    if not rule or not zone or not start or ident is None or not _SERIES_ID.fullmatch(ident):
        return None
    try:
        series = Series(rule, zone, datetime.strptime(start, _START_FORMAT), ident)
        _rule(rule, series.start, resolve_zone(zone))
    except (ValueError, TypeError, OverflowError):
        return None
    return series


def zone_of(when: datetime) -> str:
    """Return the name of ``when``'s zone: ``UTC`` for a naive or UTC time, the IANA name
    of a `zoneinfo.ZoneInfo` or `dateutil.tz` zone; `ValueError` for a zone with no name."""
    zone = when.tzinfo
    if zone is None or isinstance(zone, dateutil_tz.tzutc) or (isinstance(zone, timezone) and zone == timezone.utc):
        return "UTC"
    name = getattr(zone, "key", None)  # zoneinfo.ZoneInfo
    if name is None:
        filename = getattr(zone, "_filename", None)  # dateutil.tz.tzfile, from gettz
        if isinstance(filename, str):
            name = _zone_from_filename(filename)
    if isinstance(name, str) and name:
        return "UTC" if name in UTC_NAMES else name
    msg = (
        f"a series needs a named zone for its rule (ZoneInfo('Europe/Berlin'), dateutil.tz.gettz('Europe/Berlin'),"
        f" or UTC), not {zone!r}: a fixed offset does not follow daylight-saving time"
    )
    raise ValueError(msg)


def resolve_zone(name: str) -> tzinfo:
    """Return the zone named ``name``: the system's zone files first, then the copy that
    python-dateutil carries (so zones resolve where the system has none, as on Lambda
    images without tzdata). `ValueError` for a name neither knows."""
    if name in UTC_NAMES:
        return timezone.utc
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - not found, or no zoneinfo module: dateutil's own copy
        pass
    zone = None if name.startswith(("/", ".")) or ".." in name else dateutil_tz.gettz(name)
    if zone is None:
        msg = f"unknown time zone {name!r} (an IANA name such as 'Europe/Berlin')"
        raise ValueError(msg)
    return zone


def to_instant(wall: datetime, zone: tzinfo) -> datetime:
    """Return the UTC instant of the naive wall time ``wall`` in ``zone``.

    A wall time that happens twice (clocks fall back) is its first; one that does not exist
    (clocks spring forward) is the first instant after the gap. (zoneinfo and dateutil read
    a wall time in a gap with different offsets: neither is relied on.)
    """
    readings = {wall.replace(tzinfo=zone, fold=fold).astimezone(timezone.utc) for fold in (0, 1)}
    for at in sorted(readings):
        if at.astimezone(zone).replace(tzinfo=None) == wall:
            return at
    # In a gap: the gap ends between the wall time read with the largest offset around it
    # and read with the smallest. Find that instant to the second.
    offsets = [zone.utcoffset(wall + timedelta(days=days)) or timedelta(0) for days in (-1, 1)]
    low = (wall - max(offsets)).replace(tzinfo=timezone.utc)
    high = (wall - min(offsets)).replace(tzinfo=timezone.utc)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) < wall:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)  # gaps begin on a whole second: the first one past the gap


def _zone_from_filename(filename: str) -> str | None:
    for root in ("zoneinfo/",):
        if root in filename:
            return filename.split(root, 1)[1]
    return filename if "/" in filename and not filename.startswith("/") else None


def _rule_text(repeat: Any) -> str:
    if isinstance(repeat, rrule):
        lines = [line for line in str(repeat).splitlines() if line.upper().startswith("RRULE:")]
        text = lines[0] if lines else ""
        until = getattr(repeat, "_until", None)
        if isinstance(until, datetime) and until.tzinfo is not None:  # str() gives it without its Z
            utc = until.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            text = re.sub(r"(?i)UNTIL=[0-9TZ]+", f"UNTIL={utc}", text)
    elif isinstance(repeat, str):
        text = repeat.strip()
    else:
        kind = type(repeat).__name__
        msg = f"repeat must be an RRULE string ('FREQ=DAILY;BYHOUR=9') or a dateutil.rrule.rrule, not {kind}"
        raise TypeError(msg)
    if text.upper().startswith("RRULE:"):
        text = text[len("RRULE:") :]
    if not text or "\n" in text or ":" in text:
        msg = f"repeat must be one RRULE (such as 'FREQ=DAILY;BYHOUR=9;BYMINUTE=0'), without DTSTART, not {repeat!r}"
        raise ValueError(msg)
    try:
        _rule(text, datetime(2000, 1, 1), timezone.utc)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        msg = f"repeat is not an RFC 5545 rule: {repeat!r} ({exc})"
        raise ValueError(msg) from exc
    if not text.upper().startswith("FREQ=") and ";FREQ=" not in text.upper():
        msg = f"repeat must give FREQ (such as 'FREQ=DAILY'): {repeat!r}"
        raise ValueError(msg)
    return text.upper()


def _rule(text: str, start: datetime, zone: tzinfo) -> rrule:
    """The rule ``text`` from the naive wall time ``start``; an ``UNTIL`` in UTC (``...Z``)
    is read as the wall time it is in ``zone``."""

    def local(match: re.Match[str]) -> str:
        value = match.group(2)
        if not match.group(3):
            return match.group(1) + value
        moment = datetime.strptime(value, "%Y%m%dT%H%M%S" if "T" in value else "%Y%m%d")
        wall = moment.replace(tzinfo=timezone.utc).astimezone(zone).replace(tzinfo=None)
        return match.group(1) + wall.strftime("%Y%m%dT%H%M%S")

    parsed = rrulestr(_UNTIL.sub(local, text), dtstart=start)
    if not isinstance(parsed, rrule):  # pragma: no cover - rrulestr of one RRULE is an rrule
        msg = f"not one rule: {text!r}"
        raise ValueError(msg)
    return parsed
