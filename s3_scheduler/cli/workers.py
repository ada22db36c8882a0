"""One worker process per shard, for ``s3-scheduler run --shards N``: started, watched,
restarted when one ends, and stopped together.

`Supervisor` starts the worker of each shard (``run --shard K``, the same command line
with ``--shard K`` added, `worker_command`) and looks at them every `POLL` seconds. A
worker that ends while the command runs (killed, or exiting with any status) is logged
as one WARNING line and started again after `RESTART_PAUSE` seconds. A worker that ends
`DEATHS` times within `DEATH_WINDOW` seconds keeps dying for a reason a restart does not
mend: the supervisor then stops the others and returns the one line that says which
shard and why. Once ``stop`` is set (SIGINT or SIGTERM, see
`s3_scheduler.runner.stop_on_signals`), each worker gets SIGTERM, which ends its run as
it ends ``run``'s (the deliveries in flight finish), and is waited for up to
`STOP_GRACE` seconds, then killed (SIGKILL).

Each start is logged at INFO with the worker's pid (``-v`` shows it). A worker learns
that it is one from `SUPERVISOR_VARIABLE`, the supervisor's pid, and stops its run as
soon as its parent is no longer that process (`watch_parent`, looking every second): a
supervisor killed with SIGKILL leaves no worker running for more than about a second
beyond the deliveries it has in flight.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Callable, Protocol

logger = logging.getLogger(__name__)

RESTART_PAUSE = 1.0
"""Seconds between a worker's end and its restart."""

DEATHS = 3
"""How many times a worker may end within `DEATH_WINDOW` before the command stops (exit 1)."""

DEATH_WINDOW = 60.0
"""Seconds over which a worker's ends are counted (see `DEATHS`)."""

STOP_GRACE = 30.0
"""Seconds each worker is given to finish its run after SIGTERM, before SIGKILL."""

POLL = 0.1
"""Seconds between two looks at the workers."""

SUPERVISOR_VARIABLE = "S3_SCHEDULER_SUPERVISOR_PID"
"""The variable holding the supervisor's pid in a worker's environment (set by `start_worker`)."""


class Process(Protocol):
    """What `Supervisor` uses of a worker process (a `subprocess.Popen`)."""

    @property
    def pid(self) -> int:
        """The process id."""

    def poll(self) -> int | None:
        """The exit status once ended (minus the signal's number when killed by one), else None."""

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end, up to ``timeout`` seconds (`subprocess.TimeoutExpired` past it)."""

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the process."""

    def kill(self) -> None:
        """Send SIGKILL to the process."""


def worker_command(argv: Sequence[str], shard: int) -> list[str]:
    """Return the command line of shard ``shard``'s worker: ``python -m s3_scheduler``,
    ``argv`` (the supervisor's own arguments) and ``--shard K``."""
    return [sys.executable, "-m", "s3_scheduler", *argv, "--shard", str(shard)]


def start_worker(argv: Sequence[str], shard: int) -> subprocess.Popen[bytes]:
    """Start shard ``shard``'s worker: it shares the supervisor's stdout and stderr, reads nothing."""
    env = {**os.environ, SUPERVISOR_VARIABLE: str(os.getpid())}
    return subprocess.Popen(worker_command(argv, shard), stdin=subprocess.DEVNULL, env=env)


def describe_end(status: int) -> str:
    """Return how a process ended, from its exit status: ``exit status 1``, ``killed by SIGKILL``."""
    if status >= 0:
        return f"exit status {status}"
    try:
        return f"killed by {signal.Signals(-status).name}"
    except ValueError:
        return f"killed by signal {-status}"


class Supervisor:
    """The workers of shards 0 to ``count`` - 1, each started by ``start(shard)``, until ``stop`` is set.

    ``pause``, ``deaths``, ``within`` and ``grace`` default to `RESTART_PAUSE`, `DEATHS`,
    `DEATH_WINDOW` and `STOP_GRACE`. Time is read from ``monotonic`` and waited through
    ``wait(seconds)`` (default ``stop.wait``), which returns whether a stop was asked: a
    test drives both.
    """

    def __init__(
        self,
        count: int,
        start: Callable[[int], Process],
        stop: threading.Event,
        *,
        pause: float = RESTART_PAUSE,
        deaths: int = DEATHS,
        within: float = DEATH_WINDOW,
        grace: float = STOP_GRACE,
        monotonic: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self._count = count
        self._start = start
        self._stop = stop
        self._pause = pause
        self._deaths = deaths
        self._within = within
        self._grace = grace
        self._monotonic = monotonic
        self._wait = stop.wait if wait is None else wait
        self._workers: dict[int, Process] = {}
        self._ends: dict[int, deque[float]] = {shard: deque() for shard in range(count)}
        self._restarts: dict[int, float] = {}

    def run(self) -> str | None:
        """Start every worker, restart each that ends, and stop them all once ``stop`` is set
        (return None) or once one kept dying (return the line saying which and why)."""
        failure = None
        try:
            for shard in range(self._count):
                self._launch(shard)
            while failure is None and not self._wait(POLL):
                failure = self._look()
        finally:
            self._stop_all()
        return failure

    def _launch(self, shard: int) -> None:
        process = self._start(shard)
        self._workers[shard] = process
        logger.info("Run: started the worker of shard %d (pid %d)", shard, process.pid)

    def _look(self) -> str | None:
        """Note each worker that ended, and restart those whose pause is over; return the
        failure line of one that ended `DEATHS` times within `DEATH_WINDOW`."""
        now = self._monotonic()
        for shard, process in list(self._workers.items()):
            status = process.poll()
            if status is None:
                continue
            del self._workers[shard]
            ends = self._ends[shard]
            ends.append(now)
            while ends and ends[0] <= now - self._within:
                ends.popleft()
            how = describe_end(status)
            if len(ends) >= self._deaths:
                return (
                    f"the worker of shard {shard} ended {len(ends)} times within {self._within:g} s"
                    f" (last: pid {process.pid}, {how}): every worker stopped"
                )
            logger.warning(
                "Run: the worker of shard %d (pid %d) ended (%s); starting it again in %g s",
                shard,
                process.pid,
                how,
                self._pause,
            )
            self._restarts[shard] = now + self._pause
        for shard, due in list(self._restarts.items()):
            if due <= now:
                del self._restarts[shard]
                self._launch(shard)
        return None

    def _stop_all(self) -> None:
        """Send SIGTERM to every worker still running, wait for each up to the grace, then SIGKILL it."""
        for process in self._workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for shard, process in self._workers.items():
            try:
                process.wait(timeout=self._grace)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "Run: the worker of shard %d (pid %d) did not stop within %g s: killed",
                    shard,
                    process.pid,
                    self._grace,
                )
                process.kill()
                process.wait(timeout=self._grace)  # a SIGKILL is not refused: bounded all the same
        self._workers.clear()


def watch_parent(stop: threading.Event, *, period: float = POLL * 10) -> None:
    """In a worker (`SUPERVISOR_VARIABLE` set, to the supervisor's pid): set ``stop`` as soon
    as its parent is another process (the supervisor ended without stopping it), at once or
    looking every ``period`` seconds in a daemon thread. Elsewhere, do nothing."""
    supervisor = os.environ.get(SUPERVISOR_VARIABLE, "")
    if not supervisor.isdigit():
        return

    def gone() -> bool:
        if os.getppid() == int(supervisor):
            return False
        logger.warning("Run: the supervisor (pid %s) is gone: stopping", supervisor)
        stop.set()
        return True

    def watch() -> None:
        while not stop.wait(period) and not gone():
            pass

    if not gone():  # it may have ended while this worker started
        threading.Thread(target=watch, name="s3-scheduler-parent", daemon=True).start()
