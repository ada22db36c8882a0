"""The loop behind ``s3-scheduler run``: deliver each event on its second until stopped.

`run_until_stopped` calls `Scheduler.handle` window after window of ``interval``
seconds, so each event is delivered at its own time. It ends when its ``stop`` event is
set (`stop_on_signals` sets it on SIGINT and SIGTERM); the scheduler sees the same
event, so a delivery in flight finishes, no new one starts, and a wait ends at once.

A schedule bucket that does not exist, or that these credentials may not list, ends it
before a first window has succeeded (`FATAL_AT_START`: a mistake in the configuration,
which waiting would not mend); the error propagates. Otherwise an outage does not end
it: an S3 error or an unreachable endpoint during a window is logged as one WARNING line
and the window is tried again after a wait that doubles each time, from `FIRST_RETRY`
up to `MAX_RETRY` seconds. The first window that succeeds resets the wait. Events that
fell due meanwhile are delivered late, never lost, unless the scheduler has a
``max_lateness`` they are past: those expire (see `Scheduler`).

One clock: every time is read from `Scheduler.now`, and every wait between windows goes
through ``wait`` (default ``stop.wait``), so a test drives the loop with the scheduler's
``clock=`` and a fake ``wait``.

With shards, one loop may deliver one shard: `ShardRun` is what the loop drives then
(``handle(shard=k)`` each window), and the first shard's also delivers what no other
shard's loop would: the unsharded prefix and every shard found numbered at or beyond the
scheduler's shards (``s3-scheduler run --shards N`` runs one such loop per shard, each in
a process of its own).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Callable, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from ._s3 import DENIED, NO_BUCKET, error_code
from .keys import UNSHARDED
from .report import HandleReport, ScheduledEvent
from .scheduler import MAX_UNTIL, Scheduler, within_shards
from .utils import warn

FIRST_RETRY = 1.0
"""Seconds waited after the first failed window; each further failure doubles it."""

MAX_RETRY = 300.0
"""The longest wait between two failed windows, in seconds (5 minutes)."""

RETRIED = (BotoCoreError, ClientError)
"""The errors a window may end with and be tried again: S3 refusing, or not reached."""

FATAL_AT_START = NO_BUCKET | DENIED | {"InvalidAccessKeyId", "SignatureDoesNotMatch"}
"""The S3 error codes that end the run when the first window meets them: no such
bucket, or credentials refused. Met by a later window, they are retried like any outage
(a policy being changed, a bucket being re-created)."""


OnDelivery = Callable[[ScheduledEvent, float], None]


class Handler(Protocol):
    """What `run_until_stopped` drives: a `Scheduler`, or a `ShardRun`."""

    def now(self) -> datetime:
        """The clock's reading, aware UTC."""

    def handle(
        self,
        *,
        until: datetime | None = None,
        on_delivery: OnDelivery | None = None,
        stop: threading.Event | None = None,
    ) -> HandleReport:
        """Deliver the events due by ``until``, each at its time, until ``stop`` is set."""


def run_until_stopped(
    scheduler: Handler,
    interval: float,
    stop: threading.Event,
    *,
    wait: Callable[[float], bool] | None = None,
    on_delivery: OnDelivery | None = None,
    on_report: Callable[[HandleReport], None] | None = None,
    describe: Callable[[Exception], str] | None = None,
    max_retry: float = MAX_RETRY,
) -> None:
    """Deliver each event at its time, one ``interval`` window after the other, until
    ``stop`` is set.

    - ``wait(seconds)`` waits between windows and returns ``True`` once a stop was
      asked (default: ``stop.wait``); a fake one lets tests move the scheduler's clock.
    - ``on_delivery(event, lateness)`` is called after each delivery, ``on_report`` with
      every window's `HandleReport`.
    - ``describe(error)`` turns an S3 error into the text of its WARNING line (default:
      its type and message, on one line).

    ``interval`` must be more than 0 and at most `s3_scheduler.scheduler.MAX_UNTIL`.
    Only S3 errors (`RETRIED`) are retried, and not those of `FATAL_AT_START` before a
    first window has succeeded; any other exception propagates.
    """
    if not 0 < interval <= MAX_UNTIL.total_seconds():
        msg = f"interval must be more than 0 and at most {MAX_UNTIL.total_seconds():g} seconds, not {interval!r}"
        raise ValueError(msg)
    wait = stop.wait if wait is None else wait
    describe = one_line if describe is None else describe
    step = timedelta(seconds=interval)
    retry = 0.0
    started = False
    window_end = scheduler.now()
    while not stop.is_set():
        now = scheduler.now()
        window_end = min(max(window_end + step, now), now + step)
        try:
            report = scheduler.handle(until=window_end, on_delivery=on_delivery, stop=stop)
        except RETRIED as exc:
            if not started and error_code(exc) in FATAL_AT_START:
                raise
            retry = min(max_retry, retry * 2 or FIRST_RETRY)
            warn("Run: %s; trying again in %s", describe(exc), _seconds(retry))
            if stop.is_set() or wait(retry):
                return
            window_end = scheduler.now()
            continue
        retry = 0.0
        started = True
        if on_report is not None:
            on_report(report)
        remaining = (window_end - scheduler.now()).total_seconds()
        if stop.is_set() or wait(max(0.0, remaining)):
            return


class ShardRun:
    """Shard ``shard`` of the sharded ``scheduler`` (at ``path``), as `run_until_stopped` delivers it.

    Each window is ``scheduler.handle(shard=shard, ...)``. With ``strays`` (a factory making
    the unsharded `Scheduler` at a path), it also delivers, side by side with the shard in
    threads of its own, the unsharded prefix ``{path}/|`` and every shard found numbered
    ``scheduler.shards`` or more (written by a writer with more shards): each window then
    starts with one LIST (`Scheduler.shards_found`), and each such place is delivered by
    ``strays(its path)``, made once and kept, and made to reject an event aimed at any
    shard's lease, dead letters or markers (`within_shards`). So the loops of shards 0 to
    N-1, the first one with ``strays``, leave nothing undelivered. ``on_delivery`` is then called from
    those threads, one call at a time; the window's report is the totals, with each place's
    report in ``shards``; an error of one place is raised once every place's run ended.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        path: str,
        shard: int,
        *,
        strays: Callable[[str], Scheduler] | None = None,
    ) -> None:
        if not 0 <= shard < scheduler.shards:
            msg = f"shard must be from 0 to {scheduler.shards - 1}, not {shard}"
            raise ValueError(msg)
        self._scheduler = scheduler
        self._path = path
        self._shard = shard
        self._strays = strays
        self._made: dict[str, Scheduler] = {}
        self._calls = threading.Lock()

    def now(self) -> datetime:
        """The scheduler's clock reading."""
        return self._scheduler.now()

    def handle(
        self,
        *,
        until: datetime | None = None,
        on_delivery: OnDelivery | None = None,
        stop: threading.Event | None = None,
    ) -> HandleReport:
        """Deliver the shard's events due by ``until`` (and, with ``strays``, the stray places')."""
        places = self._stray_places()
        if not places:
            return self._scheduler.handle(shard=self._shard, until=until, on_delivery=on_delivery, stop=stop)
        relay = None if on_delivery is None else self._one_at_a_time(on_delivery)
        runs: dict[str, Callable[[], HandleReport]] = {
            str(self._shard): partial(
                self._scheduler.handle, shard=self._shard, until=until, on_delivery=relay, stop=stop
            )
        }
        for label, made in places:
            runs[label] = partial(made.handle, until=until, on_delivery=relay, stop=stop)
        with ThreadPoolExecutor(max_workers=len(runs), thread_name_prefix="s3-scheduler-stray") as pool:
            futures = {label: pool.submit(run) for label, run in runs.items()}
        errors = [error for error in (future.exception() for future in futures.values()) if error is not None]
        if errors:
            raise errors[0]
        return HandleReport.merged({label: future.result() for label, future in futures.items()})

    def _stray_places(self) -> list[tuple[str, Scheduler]]:
        """The unsharded prefix and the shards numbered ``shards`` or more that hold anything,
        each with its scheduler."""
        if self._strays is None:
            return []
        count = self._scheduler.shards
        stray = []
        for label, path in self._scheduler.shards_found().places(self._path):
            if label == UNSHARDED or int(label) >= count:
                if path not in self._made:
                    self._made[path] = within_shards(self._strays(path), self._path)
                stray.append((label, self._made[path]))
        return stray

    def _one_at_a_time(self, on_delivery: OnDelivery) -> OnDelivery:
        def relay(event: ScheduledEvent, lateness: float) -> None:
            with self._calls:
                on_delivery(event, lateness)

        return relay


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """Set ``stop`` on SIGINT or SIGTERM while the block runs; restore the previous
    handlers after it. Call it from the main thread (Python runs signal handlers there)."""
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()

    for sig in signals:
        signal.signal(sig, request_stop)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_for_stop_signal(stop: threading.Event | None = None) -> None:
    """Wait until SIGINT (Ctrl-C) or SIGTERM, or until ``stop`` is set by someone else."""
    with stop_on_signals(threading.Event() if stop is None else stop) as event:
        while not event.wait(3600):
            pass


def one_line(error: BaseException) -> str:
    """Return ``error`` as ``Type: message`` on a single line."""
    return " ".join(f"{type(error).__name__}: {error}".split())


def _seconds(seconds: float) -> str:
    return f"{seconds:g} s"
