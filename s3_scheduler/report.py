"""Values the scheduler hands back: `ScheduledEvent`, `FailedDelivery`, `HandleReport`, `CheckReport`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Union, overload

from .keys import NameCheck, decode_dead_letter, decode_key


@dataclass(frozen=True)
class ScheduledEvent:
    """A pending event, read from its name alone.

    ``key`` is the event's object key in the scheduler's bucket, ``when`` the aware UTC
    time it is due, ``bucket`` and ``path`` the bucket and key it is copied to.
    """

    __slots__ = ("bucket", "key", "path", "when")

    key: str
    when: datetime
    bucket: str
    path: str

    @classmethod
    def from_key(cls, key: str, prefix: str) -> ScheduledEvent:
        """Return the event named ``key`` under the scheduler prefix ``prefix`` (``{path}/|``).

        Raises `InvalidKeyError` for a name that is not an event (see `keys.decode_key`).
        """
        when, bucket, path = decode_key(key, prefix)
        return cls(key, when, bucket, path)

    @classmethod
    def from_dead_letter(cls, key: str, prefix: str) -> ScheduledEvent:
        """Return the dead letter ``key`` of the scheduler at ``prefix`` as an event whose
        ``key`` is the dead letter's own and whose time and target are the event's.

        Raises `InvalidKeyError` for a name that is not a dead letter (see `keys.decode_dead_letter`).
        """
        when, bucket, path = decode_dead_letter(key, prefix)
        return cls(key, when, bucket, path)

    def to_dict(self) -> dict[str, str]:
        """Return the event as JSON-ready data, ``when`` in ISO 8601."""
        return {"key": self.key, "when": self.when.isoformat(), "bucket": self.bucket, "path": self.path}


@dataclass(frozen=True)
class FailedDelivery:
    """An event whose copy or delete failed, with the error; the event stays pending."""

    event: ScheduledEvent
    error: BaseException

    def to_dict(self) -> dict[str, str]:
        """Return the event as JSON-ready data, with the error's type and message."""
        return {**self.event.to_dict(), "error": f"{type(self.error).__name__}: {self.error}"}


_Item = Union[str, ScheduledEvent, tuple[str, str]]
"""An event of an `EventList`: a bare key under the list's prefix, an event, or a bare key
with the prefix it lies under (a key of another shard's list)."""


class EventList(Sequence[ScheduledEvent]):
    """A list of events that keeps what the pipeline adds as bare keys, decoded when read.

    A run over 100,000 due events reports each of them; holding each as its key alone
    keeps the report's memory to about a key's size per event.
    """

    def __init__(self, events: Iterable[ScheduledEvent] = (), *, prefix: str = "") -> None:
        self._items: list[_Item] = list(events)
        self.prefix = prefix

    def append(self, event: ScheduledEvent) -> None:
        """Add ``event``."""
        self._items.append(event)

    def extend(self, events: Iterable[ScheduledEvent]) -> None:
        """Add each of ``events``."""
        self._items.extend(events)

    def append_key(self, key: str) -> None:
        """Add the event named ``key`` (under this list's prefix), kept as its key alone."""
        self._items.append(key)

    def extend_list(self, other: EventList) -> None:
        """Add the events of ``other``, its bare keys kept bare (with its prefix, when it
        differs from this list's): the totals of a run over shards cost no decoding."""
        if other.prefix == self.prefix:
            self._items.extend(other._items)
            return
        self._items.extend((item, other.prefix) if isinstance(item, str) else item for item in other._items)

    @overload
    def __getitem__(self, index: int) -> ScheduledEvent: ...

    @overload
    def __getitem__(self, index: slice) -> list[ScheduledEvent]: ...

    def __getitem__(self, index: int | slice) -> ScheduledEvent | list[ScheduledEvent]:
        if isinstance(index, slice):
            return [self._event(item) for item in self._items[index]]
        return self._event(self._items[index])

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[ScheduledEvent]:
        return (self._event(item) for item in self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (EventList, list)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Iterable[ScheduledEvent]) -> list[ScheduledEvent]:
        return [*self, *other]

    def __radd__(self, other: Iterable[ScheduledEvent]) -> list[ScheduledEvent]:
        return [*other, *self]

    def __repr__(self) -> str:
        return repr(list(self))

    def _event(self, item: _Item) -> ScheduledEvent:
        if isinstance(item, ScheduledEvent):
            return item
        if isinstance(item, tuple):
            return ScheduledEvent.from_key(*item)
        return ScheduledEvent.from_key(item, self.prefix)


def _events(prefix: str = "") -> EventList:
    return EventList(prefix=prefix)


@dataclass
class HandleReport:
    """What one `Scheduler.handle` run did.

    - ``delivered``: events copied to their target and removed, in delivery order.
    - ``failed``: events whose delivery failed; they stay for the next run.
    - ``skipped``: keys under the prefix that are not events; left alone.
    - ``deferred``: events due in the run's window whose delivery never started (the
      ``timeout`` passed); they stay for the next run.
    - ``vanished``: events gone before their copy, cancelled or delivered by another
      run meanwhile; nothing to do.
    - ``rejected``: events whose target is outside ``allowed_targets``; never copied,
      left in place.
    - ``dead_lettered``: failed or rejected events older than ``dead_letter_after``,
      moved to the dead letters this run.
    - ``expired``: events found later than ``max_lateness`` after their time: not
      delivered, moved to the dead letters (or removed, when dead letters are off).
    - ``worst_lateness``: the largest lateness of a delivery of this run, in seconds
      (0.0 when nothing was delivered). Named ``max_lateness`` before 0.3, which read as
      the scheduler's option; that name still reads it.
    - ``shards``: for a run over the shards of a sharded scheduler, each shard's own
      report by its label (``"0"``, ``"1"``, ..., and ``"unsharded"`` for ``{path}/|``),
      in the order they were found; the fields above are then the totals (each list the
      shards' lists one after the other, ``worst_lateness`` the largest). None for a run
      over one prefix (`summary` and `to_dict` are then what they always were).
    - ``coalesced``: occurrences of series skipped this run because they were missed
      (due while no run ran): each such series had one occurrence delivered and goes on
      at its first instance after the run's time. `summary` and `to_dict` show it when
      it is not zero.
    """

    delivered: EventList = field(default_factory=_events)
    failed: list[FailedDelivery] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deferred: EventList = field(default_factory=_events)
    vanished: EventList = field(default_factory=_events)
    rejected: EventList = field(default_factory=_events)
    dead_lettered: EventList = field(default_factory=_events)
    expired: EventList = field(default_factory=_events)
    worst_lateness: float = 0.0
    shards: dict[str, HandleReport] | None = None
    coalesced: int = 0

    @classmethod
    def merged(cls, reports: Mapping[str, HandleReport]) -> HandleReport:
        """Return the report of a run over shards: the totals of ``reports`` (each shard's
        report by its label), which it keeps as its ``shards``."""
        total = cls(shards=dict(reports))
        for report in reports.values():
            for name in _EVENT_FIELDS:
                getattr(total, name).extend_list(getattr(report, name))
            total.failed.extend(report.failed)
            total.skipped.extend(report.skipped)
            total.worst_lateness = max(total.worst_lateness, report.worst_lateness)
            total.coalesced += report.coalesced
        return total

    @classmethod
    def under(cls, prefix: str) -> HandleReport:
        """Return an empty report whose event lists decode keys added bare under ``prefix``."""
        report = cls()
        for name in _EVENT_FIELDS:
            getattr(report, name).prefix = prefix
        return report

    def __post_init__(self) -> None:
        for name in _EVENT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, EventList):
                setattr(self, name, EventList(value))

    @property
    def ok(self) -> bool:
        """Whether no delivery failed."""
        return not self.failed

    @property
    def max_lateness(self) -> float:
        """The name `worst_lateness` had before 0.3."""
        return self.worst_lateness

    def summary(self) -> str:
        """Return the counts in one line: ``delivered=3 failed=0 skipped=0 deferred=1 ...``.

        A run over shards adds how many it ran and, in brackets, the counts that are not
        zero of each shard that did something:
        ``delivered=3 ... expired=0 shards=9 (2: delivered=1; unsharded: delivered=2)``.
        """
        counts = " ".join(f"{name}={len(getattr(self, name))}" for name in _FIELDS)
        if self.coalesced:
            counts += f" coalesced={self.coalesced}"
        if self.shards is None:
            return counts
        busy = "; ".join(f"{label}: {report._busy()}" for label, report in self.shards.items() if report._busy())
        return f"{counts} shards={len(self.shards)}" + (f" ({busy})" if busy else "")

    def _busy(self) -> str:
        """The counts that are not zero, in one line (empty when the run did nothing)."""
        return " ".join(f"{name}={len(getattr(self, name))}" for name in _FIELDS if getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-ready data (what a Lambda handler returns); a
        run over shards adds ``shards``, each shard's own report by its label."""
        data: dict[str, Any] = {}
        for name in _FIELDS:
            items = getattr(self, name)
            data[name] = [item if isinstance(item, str) else item.to_dict() for item in items]
        if self.coalesced:
            data["coalesced"] = self.coalesced
        if self.shards is not None:
            data["shards"] = {label: report.to_dict() for label, report in self.shards.items()}
        return data

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={len(getattr(self, name))}" for name in _FIELDS)
        return f"HandleReport({counts}" + ("" if self.shards is None else f", shards={len(self.shards)}") + ")"


_FIELDS = ("delivered", "failed", "skipped", "deferred", "vanished", "rejected", "dead_lettered", "expired")
_EVENT_FIELDS = ("delivered", "deferred", "vanished", "rejected", "dead_lettered", "expired")


@dataclass
class CheckReport:
    """What `Scheduler.check` found under the scheduler's prefix.

    - ``not_events``: names that are not events, with the reason; `handle` skips them.
    - ``late``: events whose name sorts past where `handle` reads at their time, with
      the reason; they are delivered late (when the listing bound passes them).
    - ``offset_keys``: events that need ``legacy_offsets=True`` (the default) to be
      found in time: named with a UTC offset other than ``+00:00`` (as 0.0.3 wrote
      them), or otherwise sorting after their time.
    - ``events``: how many events were read in all.

    A check of a sharded scheduler (``sharded``) covers its unsharded prefix and every
    shard found, and also reports, by key, the events that a fleet agreeing on its number
    of shards would not hold (`handle` delivers them all the same):

    - ``unsharded``: events under the unsharded prefix ``{path}/|``, written before
      sharding or by a writer with ``shards=1``;
    - ``outside_shards``: events in shards numbered ``shards`` or more, written by a
      writer with more shards.
    """

    not_events: list[tuple[str, str]] = field(default_factory=list)
    late: list[tuple[str, str]] = field(default_factory=list)
    offset_keys: list[str] = field(default_factory=list)
    events: int = 0
    unsharded: list[str] = field(default_factory=list)
    outside_shards: list[str] = field(default_factory=list)
    sharded: bool = False

    def add(self, key: str, found: NameCheck) -> None:
        """Count the name ``key`` with what `keys.check_name` found of it."""
        if found.not_event is not None:
            self.not_events.append((key, found.not_event))
            return
        self.events += 1
        if found.offset:
            self.offset_keys.append(key)
        if found.late is not None:
            self.late.append((key, found.late))

    @property
    def ok(self) -> bool:
        """Whether every name is an event that `handle` reads in time (and, sharded, in a
        shard the scheduler's number of shards gives)."""
        return not self.not_events and not self.late and not self.unsharded and not self.outside_shards

    def summary(self) -> str:
        """Return the counts in one line (a sharded check adds ``unsharded`` and ``outside_shards``)."""
        counts = (
            f"events={self.events} not_events={len(self.not_events)} late={len(self.late)}"
            f" offset_keys={len(self.offset_keys)}"
        )
        if self._says_shards:
            counts += f" unsharded={len(self.unsharded)} outside_shards={len(self.outside_shards)}"
        return counts

    def to_dict(self) -> dict[str, Any]:
        """Return the findings as plain JSON-ready data (a sharded check adds ``unsharded``
        and ``outside_shards``)."""
        data: dict[str, Any] = {
            "events": self.events,
            "not_events": [{"key": key, "reason": reason} for key, reason in self.not_events],
            "late": [{"key": key, "reason": reason} for key, reason in self.late],
            "offset_keys": list(self.offset_keys),
        }
        if self._says_shards:
            data["unsharded"] = list(self.unsharded)
            data["outside_shards"] = list(self.outside_shards)
        return data

    @property
    def _says_shards(self) -> bool:
        return self.sharded or bool(self.unsharded) or bool(self.outside_shards)
