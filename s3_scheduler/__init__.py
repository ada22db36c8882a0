"""s3-scheduler: one-time events on plain S3, a drop-in replacement for 0.0.3.

Each event is one object under the scheduler's prefix whose name says when and where
it goes and whose body is what gets delivered. A handler woken every minute copies each
due event to its target bucket and key, where an S3 event notification starts the real
work, then deletes it.

- Schedule text, bytes or a binary file for any time: ``Scheduler.schedule``.
- Cancel with ``Scheduler.stop``.
- Deliver with ``Scheduler.handle``: one LIST request per 1,000 names in the due window
  (never the whole backlog), the copies done concurrently.

Usage::

    from datetime import datetime, timezone
    from s3_scheduler import Scheduler

    scheduler = Scheduler("my-bucket", "jobs")
    key = scheduler.schedule(datetime(2030, 1, 7, 14, 5, tzinfo=timezone.utc),
                             "work-bucket", "in/report.json", '{"id": 7}')
    scheduler.stop(key)      # cancel it, or
    scheduler.handle()       # every minute: deliver what is due

Everything logs to the ``"s3_scheduler"`` logger; content is never logged.
"""

from __future__ import annotations

import logging

from .details import EventDetails
from .exceptions import (
    ConfigurationError,
    EventExistsError,
    EventNotPendingError,
    InvalidKeyError,
    RunInProgressError,
    S3SchedulerError,
    ScheduleManyError,
    TargetNotAllowedError,
    UnableToMoveFileError,
)
from .report import CheckReport, FailedDelivery, HandleReport, ScheduledEvent
from .scheduler import Scheduler

__all__ = [
    "CheckReport",
    "ConfigurationError",
    "EventDetails",
    "EventExistsError",
    "EventNotPendingError",
    "FailedDelivery",
    "HandleReport",
    "InvalidKeyError",
    "RunInProgressError",
    "S3SchedulerError",
    "ScheduleManyError",
    "ScheduledEvent",
    "Scheduler",
    "TargetNotAllowedError",
    "UnableToMoveFileError",
    "__version__",
    "name",
]

__version__ = "0.1.0"

name = "s3_scheduler"
"""The package's name, as 0.0.3 defined it."""

logging.getLogger(name).addHandler(logging.NullHandler())
