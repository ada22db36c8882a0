"""Values the scheduler hands back: `ScheduledEvent`, `FailedDelivery`, `HandleReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ScheduledEvent:
    """A pending event, read from its name alone.

    ``key`` is the event's object key in the scheduler's bucket, ``when`` the aware UTC
    time it is due, ``bucket`` and ``path`` the bucket and key it is copied to.
    """

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
    - ``max_lateness``: the largest lateness of a delivery of this run, in seconds
      (0.0 when nothing was delivered).
    """

    delivered: list[ScheduledEvent] = field(default_factory=list)
    failed: list[FailedDelivery] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deferred: list[ScheduledEvent] = field(default_factory=list)
    vanished: list[ScheduledEvent] = field(default_factory=list)
    rejected: list[ScheduledEvent] = field(default_factory=list)
    dead_lettered: list[ScheduledEvent] = field(default_factory=list)
    max_lateness: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether no delivery failed."""
        return not self.failed

    def summary(self) -> str:
        """Return the counts in one line: ``delivered=3 failed=0 skipped=0 deferred=1 ...``."""
        return " ".join(f"{name}={len(getattr(self, name))}" for name in _FIELDS)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-ready data (what a Lambda handler returns)."""
        return {
            "delivered": [event.to_dict() for event in self.delivered],
            "failed": [failure.to_dict() for failure in self.failed],
            "skipped": list(self.skipped),
            "deferred": [event.to_dict() for event in self.deferred],
            "vanished": [event.to_dict() for event in self.vanished],
            "rejected": [event.to_dict() for event in self.rejected],
            "dead_lettered": [event.to_dict() for event in self.dead_lettered],
        }

    def __repr__(self) -> str:
        return f"HandleReport({self.summary().replace(' ', ', ')})"


_FIELDS = ("delivered", "failed", "skipped", "deferred", "vanished", "rejected", "dead_lettered")
