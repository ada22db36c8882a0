"""The exceptions of s3-scheduler, under one base: `S3SchedulerError`."""

from __future__ import annotations


class S3SchedulerError(Exception):
    """Base of every exception this package raises on its own account."""


class UnableToMoveFileError(S3SchedulerError):
    """`move_file` was not given a source bucket, a source key and a target bucket."""


class InvalidKeyError(S3SchedulerError, ValueError):
    """An object name under the scheduler's prefix is not an event this package can read."""


class EventNotPendingError(S3SchedulerError, LookupError):
    """The event is no longer pending: delivered, cancelled, or never scheduled."""


class EventExistsError(S3SchedulerError, ValueError):
    """An event with that name is already pending, and replacing it was not asked for."""


class TargetNotAllowedError(S3SchedulerError, ValueError):
    """A target bucket and key outside the scheduler's ``allowed_targets``."""


class ScheduleManyError(S3SchedulerError):
    """Some events of a `Scheduler.schedule_many` batch were not written; the others were.

    ``failures`` holds ``(index, error)`` for each event not written, in batch order;
    ``keys`` the key of each event of the batch, None for those not written.
    """

    def __init__(self, failures: list[tuple[int, BaseException]], keys: list[str | None]) -> None:
        self.failures = failures
        self.keys = keys
        lines = [f"event {index}: {type(error).__name__}: {error}" for index, error in failures]
        written = sum(key is not None for key in keys)
        super().__init__(
            f"{len(failures)} of {len(keys)} events were not written ({written} were):\n" + "\n".join(lines)
        )


class RunInProgressError(S3SchedulerError, RuntimeError):
    """A run holds the lease and may be delivering the event: try again once it ends."""


class ConfigurationError(S3SchedulerError, ValueError):
    """A setting read from the environment is missing or malformed; the message names it."""
