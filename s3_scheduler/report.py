"""Values the scheduler hands back: `ScheduledEvent`, `FailedDelivery`, `HandleReport`, `CheckReport`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, overload


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


class EventList(Sequence[ScheduledEvent]):
    """A list of events that keeps what the pipeline adds as bare keys, decoded when read.

    A run over 100,000 due events reports each of them; holding each as its key alone
    keeps the report's memory to about a key's size per event.
    """

    def __init__(self, events: Iterable[ScheduledEvent] = (), *, prefix: str = "") -> None:
        self._items: list[str | ScheduledEvent] = list(events)
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

    def _event(self, item: str | ScheduledEvent) -> ScheduledEvent:
        if isinstance(item, ScheduledEvent):
            return item
        from .keys import decode_event

        return decode_event(item, self.prefix)


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
        """Return the counts in one line: ``delivered=3 failed=0 skipped=0 deferred=1 ...``."""
        return " ".join(f"{name}={len(getattr(self, name))}" for name in _FIELDS)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-ready data (what a Lambda handler returns)."""
        data: dict[str, Any] = {}
        for name in _FIELDS:
            items = getattr(self, name)
            data[name] = [item if isinstance(item, str) else item.to_dict() for item in items]
        return data

    def __repr__(self) -> str:
        return f"HandleReport({self.summary().replace(' ', ', ')})"


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
    """

    not_events: list[tuple[str, str]] = field(default_factory=list)
    late: list[tuple[str, str]] = field(default_factory=list)
    offset_keys: list[str] = field(default_factory=list)
    events: int = 0

    @property
    def ok(self) -> bool:
        """Whether every name is an event that `handle` reads in time."""
        return not self.not_events and not self.late

    def summary(self) -> str:
        """Return the counts in one line."""
        return (
            f"events={self.events} not_events={len(self.not_events)} late={len(self.late)}"
            f" offset_keys={len(self.offset_keys)}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the findings as plain JSON-ready data."""
        return {
            "events": self.events,
            "not_events": [{"key": key, "reason": reason} for key, reason in self.not_events],
            "late": [{"key": key, "reason": reason} for key, reason in self.late],
            "offset_keys": list(self.offset_keys),
        }
