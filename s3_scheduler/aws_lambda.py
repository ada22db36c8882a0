"""The ready Lambda handler: point a function at ``s3_scheduler.aws_lambda.handler``.

Configured by the environment:

- ``S3_SCHEDULER_BUCKET`` (required): the schedule bucket.
- ``S3_SCHEDULER_PREFIX`` (default ``jobs``): the scheduler path.
- ``S3_SCHEDULER_ALLOWED_TARGETS``: comma-separated ``bucket`` or ``bucket/prefix``
  entries; when set, nothing else is delivered.
- ``S3_SCHEDULER_PRECISE=1``: deliver each event on its second within the coming
  minute (``handle(until=now + 55 s)``; those of the minute's last 5 s go at the next
  run's start); give the function a timeout over 60 s.
- ``S3_SCHEDULER_DEAD_LETTER_AFTER``: seconds after which a failing event is moved to the
  dead letters (off when unset).

Run it every minute (an EventBridge ``rate(1 minute)`` rule). It passes the invocation's
remaining time, less a margin, as ``timeout``, logs one summary line and returns the
report's ``to_dict()``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, NamedTuple

from .exceptions import ConfigurationError
from .report import HandleReport
from .scheduler import Scheduler
from .utils import nowut

MARGIN_SECONDS = 5.0
"""Time kept back from the invocation's remaining time, to finish and return."""

PRECISE_WINDOW = timedelta(seconds=55)
"""How far ahead a precise run delivers. Short of the one-minute tick, so that a run has
released its lease when the next one starts; events of the last seconds of a minute are
delivered at the start of the next run."""


class Settings(NamedTuple):
    """The handler's configuration, read from the environment."""

    bucket: str
    prefix: str
    allowed_targets: tuple[str, ...] | None
    precise: bool
    dead_letter_after: float | None


_cached: tuple[Settings, Scheduler] | None = None


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Deliver the due events; return the run's report as plain data."""
    _configure_logging()
    settings = _settings(os.environ)
    scheduler = _scheduler(settings)
    remaining = context.get_remaining_time_in_millis() / 1000.0 - MARGIN_SECONDS
    timeout = max(0.0, remaining)
    until = None
    if settings.precise:
        until = nowut() + min(PRECISE_WINDOW, timedelta(seconds=timeout))
    report: HandleReport = scheduler.handle(until=until, timeout=timeout)  # logs the summary line
    return report.to_dict()


def _settings(env: Mapping[str, str]) -> Settings:
    bucket = env.get("S3_SCHEDULER_BUCKET", "").strip()
    if not bucket:
        msg = "S3_SCHEDULER_BUCKET is not set: set it to the bucket that holds the schedule"
        raise ConfigurationError(msg)
    prefix = env.get("S3_SCHEDULER_PREFIX", "jobs")
    targets = env.get("S3_SCHEDULER_ALLOWED_TARGETS")
    allowed = None if targets is None else tuple(t.strip() for t in targets.split(",") if t.strip())
    precise = env.get("S3_SCHEDULER_PRECISE", "0").strip().lower() in ("1", "true", "yes")
    dead_letter = env.get("S3_SCHEDULER_DEAD_LETTER_AFTER")
    try:
        dead_letter_after = None if not dead_letter else float(dead_letter)
    except ValueError:
        msg = f"S3_SCHEDULER_DEAD_LETTER_AFTER={dead_letter!r} is not a number of seconds"
        raise ConfigurationError(msg) from None
    return Settings(bucket, prefix, allowed, precise, dead_letter_after)


def _scheduler(settings: Settings) -> Scheduler:
    """Return the scheduler for ``settings``, built once per container and reused."""
    global _cached
    if _cached is None or _cached[0] != settings:
        dead_letter = settings.dead_letter_after
        scheduler = Scheduler(
            settings.bucket,
            settings.prefix,
            allowed_targets=settings.allowed_targets,
            dead_letter_after=None if dead_letter is None else timedelta(seconds=dead_letter),
        )
        _cached = (settings, scheduler)
    return _cached[1]


def _configure_logging() -> None:
    """Show the package's INFO lines in CloudWatch (Lambda's root logger has the handler)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig()
    logging.getLogger("s3_scheduler").setLevel(os.environ.get("S3_SCHEDULER_LOG_LEVEL", "INFO").upper())
