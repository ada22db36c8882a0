"""The shards of a scheduler: its events spread over many prefixes, each a scheduler of its own.

A scheduler with ``shards=N > 1`` writes the event of the target (bucket, key) under
``{path}/{s}/|``, ``s = keys.shard_of(bucket, key, N)``. Shard ``s`` is exactly a
scheduler at ``{path}/{s}``, with its own lease and dead letters, so one handler (or one
Lambda invocation, or a 0.0.3 handler) can deliver it while others deliver the rest.

`ShardSet` is what a sharded `Scheduler` delegates to when an operation covers every
shard. It never trusts N to say where events are: `ShardSet.find` lists ``{path}/`` once
with ``Delimiter="/"`` and keeps the folders named by a decimal number, and whether the
unsharded prefix ``{path}/|`` (events written before sharding) holds anything. So writers
and handlers that disagree on N, or a change of N, strand nothing: every shard found, and
the unsharded prefix, is delivered, listed and checked.

It does not import the scheduler: it is handed a factory that makes the scheduler of one
shard (`Shard`), given the shard's path and the copies it may have in flight.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any, Callable, NamedTuple, Protocol

from . import _s3
from .keys import SEPARATOR, UNSHARDED, check_name, listing_prefix, shard_number, shard_path, shard_root
from .report import CheckReport, HandleReport, ScheduledEvent

logger = logging.getLogger(__name__)

SHARDS_AT_ONCE = 32
"""The most shards one `ShardSet.handle` runs at once, each in a thread of its own.

A run with ``until`` waits in its window for events not yet due, so every shard holding
events of the window must run at the same time for none to be late; past this many,
the others start as runs end. Run one process per shard beyond it."""

_POLL = 0.05
"""How long (real seconds) the calling thread waits at once for a shard's run or its callback."""

OnDelivery = Callable[[ScheduledEvent, float], None]


class Shard(Protocol):
    """What `ShardSet` uses of the scheduler of one shard (a `Scheduler` at ``{path}/{s}``)."""

    @property
    def prefix(self) -> str:
        """The prefix of its events: ``{path}/{s}/|``."""

    def handle(
        self,
        *,
        until: datetime | None = None,
        timeout: float | None = None,
        on_delivery: OnDelivery | None = None,
        stop: threading.Event | None = None,
    ) -> HandleReport:
        """Deliver its due events."""

    def pending(self, *, until: datetime | None = None) -> Iterator[ScheduledEvent]:
        """Yield its pending events in key order, lazily."""

    def dead_letters(self) -> Iterator[ScheduledEvent]:
        """Yield its dead letters in key order, lazily."""


ShardFactory = Callable[[str, int], Shard]
"""Makes the scheduler at a path (a shard's, or the unsharded one's), with at most that
many copies in flight."""


class Found(NamedTuple):
    """What one listing of ``{path}/`` found."""

    shards: tuple[int, ...]
    """The shards that hold anything, ascending."""
    unsharded: bool
    """Whether the unsharded prefix ``{path}/|`` holds anything."""
    dead_letters: bool
    """Whether the unsharded scheduler's dead letters ``{path}/.dead-letters/`` hold anything."""

    def places(self, path: str, *, unsharded: bool | None = None) -> list[tuple[str, str]]:
        """Return each place found as (label, path): the unsharded one (``"unsharded"``,
        ``path``) first when it holds anything (or when ``unsharded`` says so), then each
        shard (``"7"``, ``{path}/7``)."""
        first = [(UNSHARDED, path)] if (self.unsharded if unsharded is None else unsharded) else []
        return first + [(str(number), shard_path(path, number)) for number in self.shards]


class ShardSet:
    """The shards of the scheduler at ``path`` in ``bucket``, ``count`` of them (2 to 1,000).

    ``make`` builds the scheduler of one place, given its path and the copies it may have
    in flight; each is made once per number of copies and kept (its warnings are given
    once). ``client`` and ``resource`` are the scheduler's; ``max_workers`` its copies in
    flight at once; ``clock`` its clock, which times a whole `handle`'s budget.
    """

    def __init__(
        self,
        *,
        path: str,
        count: int,
        bucket: str,
        client: Any,
        resource: Any,
        make: ShardFactory,
        max_workers: int,
        clock: Callable[[], datetime],
        legacy_offsets: bool = True,
    ) -> None:
        self._path = path
        self._count = count
        self._bucket = bucket
        self._client = client
        self._resource = resource
        self._make = make
        self._max_workers = max_workers
        self._clock = clock
        self._legacy_offsets = legacy_offsets
        self._made: dict[tuple[str, int], Shard] = {}

    @property
    def count(self) -> int:
        """How many shards the scheduler writes to."""
        return self._count

    def shard(self, path: str, max_workers: int | None = None) -> Shard:
        """Return the scheduler at ``path`` (a shard's or the unsharded one's), with
        ``max_workers`` copies in flight at once (default: the scheduler's)."""
        workers = self._max_workers if max_workers is None else max_workers
        made = self._made.get((path, workers))
        if made is None:
            made = self._made[path, workers] = self._make(path, workers)
        return made

    def find(self) -> Found:
        """List ``{path}/`` with ``Delimiter="/"`` and return what it holds: the shards,
        whether the unsharded prefix holds anything, and whether its dead letters do.

        One LIST request: S3 lists in key order, and the digits of the shards' folders
        and ``.`` of the lease and dead letters sort before ``|``, so the listing stops at
        the first name at or past ``{path}/|`` (a further page only past 1,000 names).
        """
        root = shard_root(self._path)
        shards: set[int] = set()
        unsharded = letters = False
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=root, Delimiter="/")
        for page in pages:
            names = [item["Prefix"] for item in page.get("CommonPrefixes", ())]
            names += [item["Key"] for item in page.get("Contents", ())]
            for name in names:
                rest = name[len(root) :]
                number = shard_number(rest[:-1]) if rest.endswith("/") else None
                unsharded = unsharded or rest.startswith(SEPARATOR)
                letters = letters or rest == ".dead-letters/"
                if number is not None:
                    shards.add(number)
            if names and max(names) >= root + SEPARATOR:
                break  # every shard, and the first unsharded name if any, was read
        return Found(tuple(sorted(shards)), unsharded, letters)

    # delivering ----------------------------------------------------------------------

    def handle(
        self,
        *,
        until: datetime | None,
        deadline: datetime | None,
        on_delivery: OnDelivery | None,
        stop: threading.Event | None,
    ) -> HandleReport:
        """Deliver every place found (`find`), each under its own lease, at once (up to
        `SHARDS_AT_ONCE`); return the totals, with each place's report in ``shards``.

        The scheduler's ``max_workers`` is shared out between the places that run at
        once, so the copies in flight stay within it (each has one at least). Each run
        gets what is left of ``deadline`` when it starts. ``on_delivery`` is called in
        the calling thread, one call at a time; if it raises, or ``stop`` is set, every
        run stops as one run would. When runs raise, the others still finish, then the
        callback's error, else the first place's, is raised.
        """
        places = self.find().places(self._path)
        at_once = max(1, min(len(places), SHARDS_AT_ONCE))
        workers = max(1, self._max_workers // at_once)
        shards = {label: self.shard(path, workers) for label, path in places}
        halt = _Halt(stop)
        relay = None if on_delivery is None else _Relay(on_delivery, halt)

        def run(shard: Shard) -> HandleReport:
            return shard.handle(until=until, timeout=self._left(deadline), on_delivery=relay, stop=halt)

        with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="s3-scheduler-shard") as pool:
            futures = {label: pool.submit(run, shard) for label, shard in shards.items()}
            _serve(futures.values(), relay, halt)
        report = _gather(futures, relay)
        where = f"s3://{self._bucket}/{shard_root(self._path)}"
        logger.info("Handled %r: %s", where, report.summary())
        return report

    def _left(self, deadline: datetime | None) -> float | None:
        """The seconds left until ``deadline`` by the scheduler's clock (None: no deadline)."""
        return None if deadline is None else max(0.0, (deadline - self._clock()).total_seconds())

    # inspecting ----------------------------------------------------------------------

    def pending(self, *, until: datetime | None) -> Iterator[ScheduledEvent]:
        """Yield the pending events of every place found, merged in time order, lazily:
        one LIST page per place in memory at once."""
        places = self.find().places(self._path)
        yield from _merged(self.shard(path).pending(until=until) for _, path in places)

    def dead_letters(self) -> Iterator[ScheduledEvent]:
        """Yield the dead letters of every place found, merged in time order, lazily."""
        found = self.find()
        places = found.places(self._path, unsharded=found.unsharded or found.dead_letters)
        yield from _merged(self.shard(path).dead_letters() for _, path in places)

    def check(self) -> CheckReport:
        """Scan every name of every place found once, as `Scheduler.check` scans one, and
        report besides the events under the unsharded prefix and those in shards numbered
        `count` or more (``unsharded``, ``outside_shards``)."""
        report = CheckReport(sharded=True)
        for label, path in self.find().places(self._path):
            prefix = listing_prefix(path)
            stray = report.unsharded if label == UNSHARDED else None
            if label != UNSHARDED and int(label) >= self._count:
                stray = report.outside_shards
            for page in _s3.list_pages(self._resource, self._client, self._bucket, prefix):
                for listed in page:
                    found = check_name(listed.key, prefix, legacy_offsets=self._legacy_offsets)
                    report.add(listed.key, found)
                    if stray is not None and found.not_event is None:
                        stray.append(listed.key)
        return report


def _merged(streams: Iterable[Iterator[ScheduledEvent]]) -> Iterator[ScheduledEvent]:
    """Merge event streams, each in key order, by time (ties in the order of ``streams``)."""
    return heapq.merge(*streams, key=lambda event: event.when)


class _Relay:
    """Calls ``on_delivery`` for the shards' runs in the calling thread, one call at a time,
    and hands its error back to the run that called it (which then stops, as a run does)."""

    def __init__(self, callback: OnDelivery, halt: threading.Event) -> None:
        self._callback = callback
        self._halt = halt
        self._calls: queue.Queue[tuple[ScheduledEvent, float, Future[None]]] = queue.Queue()
        self._closed = False
        self.error: BaseException | None = None
        """What the callback raised first."""

    def __call__(self, event: ScheduledEvent, lateness: float) -> None:
        """In a shard's run: have the calling thread call back, and wait for it."""
        done: Future[None] = Future()
        self._calls.put((event, lateness, done))
        if self._closed:  # the calling thread left: nobody to call back
            self._skip()
        done.result()

    def serve(self, timeout: float) -> bool:
        """In the calling thread: make the next call waiting, up to ``timeout``; return whether one was made."""
        try:
            event, lateness, done = self._calls.get(timeout=timeout)
        except queue.Empty:
            return False
        try:
            self._callback(event, lateness)
        except BaseException as exc:  # noqa: BLE001 - handed to the run that called, raised by handle
            if self.error is None:
                self.error = exc
            self._halt.set()
            done.set_exception(exc)
        else:
            done.set_result(None)
        return True

    def close(self) -> None:
        """Answer every call from now on without calling back (the calling thread is leaving)."""
        self._closed = True
        self._skip()

    def _skip(self) -> None:
        while True:
            try:
                _, _, done = self._calls.get_nowait()
            except queue.Empty:
                return
            if not done.done():
                done.set_result(None)


class _Halt(threading.Event):
    """The stop event of every shard's run: set when the caller's ``stop`` is (seen at once:
    no copy starts after it), or when the whole call must stop (a callback raised, the
    calling thread was interrupted)."""

    def __init__(self, stop: threading.Event | None) -> None:
        super().__init__()
        self._stop = stop

    def is_set(self) -> bool:
        """Whether the runs must stop."""
        return super().is_set() or (self._stop is not None and self._stop.is_set())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the runs must stop, up to ``timeout`` seconds; return whether they must."""
        if self._stop is None:
            return super().wait(timeout)
        end = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = _POLL if end is None else min(_POLL, end - time.monotonic())
            if left <= 0:
                return False
            super().wait(left)
        return True


def _serve(futures: Iterable[Future[HandleReport]], relay: _Relay | None, halt: threading.Event) -> None:
    """In the calling thread, until every run has ended: make their callbacks. If the
    calling thread is interrupted, every run stops (``halt``)."""
    waiting = set(futures)
    try:
        while waiting:
            if relay is None or not relay.serve(_POLL):
                waiting = wait(waiting, timeout=0 if relay else _POLL, return_when=FIRST_COMPLETED).not_done
    except BaseException:
        halt.set()
        if relay is not None:
            relay.close()
        raise


def _gather(futures: dict[str, Future[HandleReport]], relay: _Relay | None) -> HandleReport:
    """Return the totals of the runs' reports, or raise the callback's error, else the first run's."""
    reports: dict[str, HandleReport] = {}
    error: BaseException | None = None
    for label, future in futures.items():
        failure = future.exception()
        if failure is None:
            reports[label] = future.result()
        elif error is None:
            error = failure
    if relay is not None and relay.error is not None:
        raise relay.error
    if error is not None:
        raise error
    return HandleReport.merged(reports)
