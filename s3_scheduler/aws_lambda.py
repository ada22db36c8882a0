"""The ready Lambda handler: point a function at ``s3_scheduler.aws_lambda.handler``.

Configured by the environment, read and checked by `s3_scheduler.settings` (as the
command line's are; `read_settings` and `Settings` are re-exported here); each malformed
value fails the invocation with a `ConfigurationError` naming the variable and the
accepted forms:

- ``S3_SCHEDULER_BUCKET`` (required): the schedule bucket.
- ``S3_SCHEDULER_PREFIX`` (default ``jobs``): the scheduler path.
- ``S3_SCHEDULER_ALLOWED_TARGETS``: comma-separated ``bucket`` or ``bucket/prefix``
  entries; when set, nothing else is delivered. Set but empty is refused: it would
  reject every event.
- ``S3_SCHEDULER_PRECISE`` (``1``/``0``, ``true``/``false``, ``yes``/``no``,
  ``on``/``off``): deliver each event on its second within the coming minute
  (``handle(until=now + 55 s)``; those of the minute's last 5 s go at the next run's
  start); give the function a timeout of 70 s or more.
- ``S3_SCHEDULER_DEAD_LETTER_AFTER`` (``90``, ``90s``, ``10m``, ``2h``, ``1d``): how long
  after its time a failing event is moved to the dead letters (off when unset).
- ``S3_SCHEDULER_DEAD_LETTER_ATTEMPTS`` (default 3): how many runs must have failed to
  deliver an event before it may be dead-lettered.
- ``S3_SCHEDULER_MAX_LATENESS`` (``90``, ``90s``, ``10m``, ``2h``, ``1d``): an event found
  later than this after its time is not delivered but moved to the dead letters (removed,
  with a WARNING, when ``S3_SCHEDULER_DEAD_LETTER_AFTER`` is unset) and reported as
  ``expired`` (a minute or more; off when unset).
- ``S3_SCHEDULER_MAX_WORKERS`` (1 to 1000, default 32): copies in flight at once; the S3
  client's connection pool holds 3 more.
- ``S3_SCHEDULER_LEGACY_OFFSETS`` (yes/no as above, default yes): ``0`` lists only up to
  each run's window instead of 14 hours past it; safe once ``s3-scheduler check`` finds
  no event named with a UTC offset.
- ``S3_SCHEDULER_LOG_LEVEL`` (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``, ``CRITICAL``;
  default ``INFO``).
- ``S3_SCHEDULER_METRICS`` (yes/no, default yes): after each run, print the report as
  one CloudWatch Embedded Metric Format line (`s3_scheduler.metrics.emf_line`, namespace
  ``S3Scheduler``, dimensions ``Bucket`` and ``Prefix``), which CloudWatch turns into
  metrics such as ``Failed`` and ``OldestDueAgeSeconds``.
- ``AWS_ENDPOINT_URL_S3`` and ``AWS_ENDPOINT_URL``, read by boto3, are checked too: one
  that is not an ``http(s)://host[:port]`` URL is refused naming it.

Run it every minute (an EventBridge ``rate(1 minute)`` rule). It passes the invocation's
remaining time less a margin (`margin`: a twentieth of it, at least 0.2 s, never all of
it) as ``timeout``; the run keeps back, from what it measured of S3's latency, the time
its copies in flight, its last deletes and the release of the lease take, so it returns
before the deadline instead of being killed mid-way (deferring what it cannot deliver),
and warns when that leaves too little to deliver. Each request of the handler's client
gives up after a third of the function's timeout (1 s to 60 s). It logs one summary line
(``delivered=1 failed=0 ... expired=0``), prints the metrics line and returns the
report's ``to_dict()``. The scheduler and its client are built once per container.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Callable

from ._s3 import fast_client
from .metrics import emf_line
from .scheduler import Scheduler
from .settings import Settings, metrics_dimensions, read_settings
from .utils import warn

__all__ = ["LambdaHandler", "Settings", "handler", "margin", "read_settings"]

MARGIN_FRACTION = 0.05
"""The share of the invocation's remaining time kept back to return: the run's own
wind-down (its copies in flight, its deletes, the release of the lease) is measured by the
run and fits before its ``timeout``."""

MIN_MARGIN_SECONDS = 0.2
"""The least time kept back, unless that would be all of it (then half is kept)."""

REQUEST_TIMEOUT_FRACTION = 1 / 3
"""Each S3 request of the handler's client gives up after this share of the function's
timeout (1 s to 60 s), so no request outlives the invocation by much."""

SHORT_TIMEOUT_SECONDS = 1.0
"""Below this much time for deliveries, each run warns that the function's timeout is too short."""

RECOMMENDED_TIMEOUT = "10 s or more (70 s or more with S3_SCHEDULER_PRECISE)"
"""The function timeout the warnings advise."""

PRECISE_WINDOW = timedelta(seconds=55)
"""How far ahead a precise run delivers. Short of the one-minute tick, so that a run has
released its lease when the next one starts; events of the last seconds of a minute are
delivered at the start of the next run."""


def margin(remaining: float) -> float:
    """Return the seconds kept back from ``remaining``: a twentieth, at least 0.2 s, at most half.

    >>> margin(3.0), margin(60.0), margin(0.3), margin(0.0)
    (0.2, 3.0, 0.15, 0.0)
    """
    if remaining <= 0:
        return 0.0
    return min(max(MIN_MARGIN_SECONDS, MARGIN_FRACTION * remaining), remaining / 2)


class LambdaHandler:
    """A Lambda handler: ``LambdaHandler()(event, context)`` delivers the due events.

    `handler` is one, made with the defaults. ``clock`` and ``sleep`` are handed to the
    `Scheduler` (tests set the time with them); ``environ`` defaults to ``os.environ``,
    read at each invocation. The scheduler and its client are built at the first
    invocation and kept while the settings stay the same.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._environ = environ
        self._cached: tuple[Settings, Scheduler] | None = None

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        """Deliver the due events; return the run's report as plain data."""
        settings = read_settings(os.environ if self._environ is None else self._environ)
        _configure_logging(settings.log_level)
        scheduler = self.scheduler(settings, context.get_remaining_time_in_millis() / 1000.0)
        remaining = context.get_remaining_time_in_millis() / 1000.0  # a cold start's build counts
        timeout = max(0.0, remaining - margin(remaining))
        if timeout < SHORT_TIMEOUT_SECONDS:
            warn(
                "Only %.1f s of this invocation left for deliveries: due events will be deferred;"
                " set the function's timeout to %s",
                timeout,
                RECOMMENDED_TIMEOUT,
            )
        until = None
        if settings.precise:
            window = min(PRECISE_WINDOW, timedelta(seconds=timeout))
            if window < PRECISE_WINDOW:
                warn(
                    "S3_SCHEDULER_PRECISE: only the coming %.1f s can be covered, later events wait for the next"
                    " run; set the function's timeout to 70 s or more",
                    window.total_seconds(),
                )
            until = scheduler.now() + window
        report = scheduler.handle(until=until, timeout=timeout)  # logs the summary line
        if settings.metrics:
            dimensions = metrics_dimensions(settings.bucket, settings.prefix)
            print(emf_line(report, now=scheduler.now(), dimensions=dimensions), flush=True)
        return report.to_dict()

    def scheduler(self, settings: Settings, remaining: float = 900.0) -> Scheduler:
        """Return the scheduler for ``settings``, built once and reused while they hold.

        ``remaining`` is the first invocation's time: its client's requests give up after
        a third of it (1 s to 60 s), so none outlives an invocation by much.
        """
        if self._cached is None or self._cached[0] != settings:
            self._cached = (settings, self._build(settings, remaining))
        return self._cached[1]

    def _build(self, settings: Settings, remaining: float) -> Scheduler:
        dead_letter, max_lateness = settings.dead_letter_after, settings.max_lateness
        request_timeout = min(60.0, max(1.0, remaining * REQUEST_TIMEOUT_FRACTION))
        return Scheduler(
            settings.bucket,
            settings.prefix,
            s3_client=fast_client(settings.max_workers, timeout=request_timeout),
            allowed_targets=settings.allowed_targets,
            dead_letter_after=None if dead_letter is None else timedelta(seconds=dead_letter),
            dead_letter_attempts=settings.dead_letter_attempts,
            max_workers=settings.max_workers,
            legacy_offsets=settings.legacy_offsets,
            max_lateness=None if max_lateness is None else timedelta(seconds=max_lateness),
            clock=self._clock,
            sleep=self._sleep,
        )


_default = LambdaHandler()


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The ready Lambda handler: deliver the due events; return the run's report as plain data."""
    return _default(event, context)


def _configure_logging(level: str) -> None:
    """Show the package's lines in CloudWatch at ``level`` (Lambda's root logger has the handler)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig()
    logging.getLogger("s3_scheduler").setLevel(level)
