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
- ``S3_SCHEDULER_SHARDS`` (1 to 1000, default 1): the scheduler's ``shards`` (see
  `Scheduler`). With 1, nothing below about shards applies: the handler runs as it always
  did.
- ``S3_SCHEDULER_FANOUT`` (yes/no as above, default yes): with shards, whether the tick
  fans out (below) or delivers every shard itself (``handle()``, the shards side by side
  in threads of this one invocation).
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

With shards (``S3_SCHEDULER_SHARDS`` above 1) an invocation is one of two kinds:

- A *shard invocation*, whose event is ``{"shard": k}`` (``k`` an int of 0 or more;
  anything else fails the invocation with a `ValueError` naming it, before any request),
  delivers shard ``k`` alone, as above: ``handle(shard=k)``, or, for a shard numbered
  ``S3_SCHEDULER_SHARDS`` or more (written with a larger N), a scheduler at ``{path}/{k}``,
  which is what a shard is. Its report and metrics line are that shard's, with the same
  dimensions (an alarm's Sum or Maximum covers every shard).
- The *tick*, any other event (EventBridge's): with fan-out on, it lists ``{path}/`` once
  (`Scheduler.shards_found`), sends one asynchronous invocation of this same function per
  shard found, whatever its number (``InvocationType="Event"``, ``FunctionName`` the
  context's ``invoked_function_arn``, payload ``{"shard": k}``; at most `FANOUT_AT_ONCE` at
  a time), then delivers the unsharded prefix ``{path}/|`` (events written before
  sharding) itself, as a scheduler at ``{path}`` without shards, and prints its metrics
  line. It returns ``{"invoked": [...], "not_invoked": [...], "unsharded": {...}}``: the
  shards invoked, those whose invocation failed (each logged as an ERROR; the next tick
  tries them again; the others are invoked all the same), and the unsharded run's report.
  The function needs ``lambda:InvokeFunction`` on itself (the SAM example grants it). With
  fan-out off, the tick delivers every shard itself and returns the totals (``shards``:
  each one's report).

A shard invocation is honoured with ``S3_SCHEDULER_SHARDS`` at 1 too (one sent before N
went back to 1 still delivers its shard); the tick with 1 never looks for shards. The Lambda
client is built by the first tick that finds a shard (``boto3.client("lambda")``) and kept.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Callable, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from ._s3 import POOL_EXTRA, fast_client
from .keys import shard_path
from .metrics import emf_line
from .report import HandleReport
from .scheduler import Scheduler, within_shards
from .settings import Settings, metrics_dimensions, read_settings
from .shards import SHARDS_AT_ONCE
from .utils import warn

__all__ = ["LambdaHandler", "Settings", "event_shard", "handler", "margin", "read_settings"]

logger = logging.getLogger(__name__)

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

FANOUT_AT_ONCE = 10
"""The most shard invocations the tick sends at once (the Lambda client's connection pool):
a thousand shards are started in about a hundred round trips."""


def margin(remaining: float) -> float:
    """Return the seconds kept back from ``remaining``: a twentieth, at least 0.2 s, at most half.

    >>> margin(3.0), margin(60.0), margin(0.3), margin(0.0)
    (0.2, 3.0, 0.15, 0.0)
    """
    if remaining <= 0:
        return 0.0
    return min(max(MIN_MARGIN_SECONDS, MARGIN_FRACTION * remaining), remaining / 2)


class _Built(NamedTuple):
    """What a container builds once for its settings: the scheduler, and its S3 client."""

    settings: Settings
    scheduler: Scheduler
    client: Any


class LambdaHandler:
    """A Lambda handler: ``LambdaHandler()(event, context)`` delivers the due events.

    `handler` is one, made with the defaults. ``clock`` and ``sleep`` are handed to the
    `Scheduler` (tests set the time with them); ``environ`` defaults to ``os.environ``,
    read at each invocation; ``lambda_client`` is the client the tick invokes the shards
    with (default: ``boto3.client("lambda")``, built by the first tick that finds a shard). The scheduler
    and its client are built at the first invocation and kept while the settings stay the
    same, as are the schedulers of the unsharded prefix and of shards numbered past
    ``S3_SCHEDULER_SHARDS``, which share that client.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] | None = None,
        environ: Mapping[str, str] | None = None,
        lambda_client: Any = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._environ = environ
        self._lambda_client = lambda_client
        self._cached: _Built | None = None
        self._places: dict[str, Scheduler] = {}

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        """Deliver the due events (a shard's, with ``{"shard": k}``; or fan the tick out);
        return the run's report as plain data."""
        settings = read_settings(os.environ if self._environ is None else self._environ)
        _configure_logging(settings.log_level)
        shard = event_shard(event)
        scheduler = self.scheduler(settings, context.get_remaining_time_in_millis() / 1000.0)
        if shard is not None and settings.shards > 1 and shard < settings.shards:
            return self._run(settings, context, scheduler, shard=shard).to_dict()
        if shard is not None:  # a shard past N (or N back at 1): a scheduler at the shard's path
            return self._run(settings, context, self._place(settings, shard_path(settings.prefix, shard))).to_dict()
        if settings.shards > 1 and settings.fanout:
            return self._fan_out(settings, context, scheduler)
        return self._run(settings, context, scheduler).to_dict()

    def scheduler(self, settings: Settings, remaining: float = 900.0) -> Scheduler:
        """Return the scheduler for ``settings``, built once and reused while they hold.

        ``remaining`` is the first invocation's time: its client's requests give up after
        a third of it (1 s to 60 s), so none outlives an invocation by much.
        """
        if self._cached is None or self._cached.settings != settings:
            request_timeout = min(60.0, max(1.0, remaining * REQUEST_TIMEOUT_FRACTION))
            pool = settings.max_workers
            if settings.shards > 1 and not settings.fanout:  # shards side by side, each with its own three
                pool += POOL_EXTRA * (SHARDS_AT_ONCE - 1)
            client = fast_client(pool, timeout=request_timeout)
            self._cached = _Built(settings, self._build(settings, client, settings.prefix), client)
            self._places = {}
        return self._cached.scheduler

    def _place(self, settings: Settings, path: str) -> Scheduler:
        """Return the scheduler without shards at ``path`` (the unsharded prefix's, or a
        shard's), on the cached scheduler's client, built once while the settings hold."""
        assert self._cached is not None  # scheduler() ran first
        made = self._places.get(path)
        if made is None:
            made = self._build(settings._replace(shards=1), self._cached.client, path)
            self._places[path] = made = within_shards(made, settings.prefix)
        return made

    def _build(self, settings: Settings, client: Any, path: str) -> Scheduler:
        dead_letter, max_lateness = settings.dead_letter_after, settings.max_lateness
        return Scheduler(
            settings.bucket,
            path,
            s3_client=client,
            allowed_targets=settings.allowed_targets,
            dead_letter_after=None if dead_letter is None else timedelta(seconds=dead_letter),
            dead_letter_attempts=settings.dead_letter_attempts,
            max_workers=settings.max_workers,
            legacy_offsets=settings.legacy_offsets,
            max_lateness=None if max_lateness is None else timedelta(seconds=max_lateness),
            clock=self._clock,
            sleep=self._sleep,
            shards=settings.shards,
        )

    def _run(self, settings: Settings, context: Any, scheduler: Scheduler, *, shard: int | None = None) -> HandleReport:
        """Run ``scheduler`` (shard ``shard`` of it, if given) in the invocation's time, less
        the margin (up to 55 s ahead in precise mode), and print the metrics line."""
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
        if shard is None:
            report = scheduler.handle(until=until, timeout=timeout)  # logs the summary line
        else:
            report = scheduler.handle(until=until, timeout=timeout, shard=shard)
        if settings.metrics:
            dimensions = metrics_dimensions(settings.bucket, settings.prefix)
            print(emf_line(report, now=scheduler.now(), dimensions=dimensions), flush=True)
        return report

    def _fan_out(self, settings: Settings, context: Any, scheduler: Scheduler) -> dict[str, Any]:
        """The tick with shards: invoke this function once per shard found, then deliver
        the unsharded prefix here."""
        found = scheduler.shards_found().shards
        arn = context.invoked_function_arn
        client = self._lambda_client
        if client is None and found:
            client = self._lambda_client = _lambda_client()

        def invoke(shard: int) -> bool:
            payload = json.dumps({"shard": shard})
            try:
                client.invoke(FunctionName=arn, InvocationType="Event", Payload=payload)
            except (BotoCoreError, ClientError) as exc:
                logger.error("Could not invoke %s for shard %d (the next tick tries again): %s", arn, shard, exc)
                return False
            return True

        with ThreadPoolExecutor(max_workers=max(1, min(len(found), FANOUT_AT_ONCE))) as pool:
            started = list(pool.map(invoke, found))
        invoked = [shard for shard, ok in zip(found, started) if ok]
        not_invoked = [shard for shard, ok in zip(found, started) if not ok]
        logger.info("Invoked %d of %d shards found: %s", len(invoked), len(found), invoked)
        report = self._run(settings, context, self._place(settings, settings.prefix))
        return {"invoked": invoked, "not_invoked": not_invoked, "unsharded": report.to_dict()}


def event_shard(event: Any) -> int | None:
    """Return the shard an invocation's event asks for (``{"shard": 3}`` gives 3), or None
    for any event without one (the tick).

    Raises `ValueError` for a ``"shard"`` that is not an int of 0 or more, naming it.

    >>> event_shard({"shard": 3}), event_shard({"source": "aws.events"}), event_shard(None)
    (3, None, None)
    """
    if not isinstance(event, Mapping) or "shard" not in event:
        return None
    shard = event["shard"]
    if isinstance(shard, bool) or not isinstance(shard, int) or shard < 0:
        msg = f'the event\'s "shard" must be a shard\'s number, an int of 0 or more ({{"shard": 3}}), not {shard!r}'
        raise ValueError(msg)
    return shard


_default = LambdaHandler()


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The ready Lambda handler: deliver the due events; return the run's report as plain data."""
    return _default(event, context)


def _lambda_client() -> Any:
    """Return the client the tick invokes the shards with: boto3's, its pool `FANOUT_AT_ONCE`."""
    import boto3
    from botocore.config import Config

    return boto3.client("lambda", config=Config(max_pool_connections=FANOUT_AT_ONCE))


def _configure_logging(level: str) -> None:
    """Show the package's lines in CloudWatch at ``level`` (Lambda's root logger has the handler)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig()
    logging.getLogger("s3_scheduler").setLevel(level)
