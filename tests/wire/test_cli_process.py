"""The command line as a process of its own over HTTP: `run` stops cleanly on SIGTERM; `run --shards 3` runs,
restarts and stops one worker process per shard."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import IO, Any

import pytest

from ..conftest import Endpoint, targets_by_shard


def test_run_as_a_process_stops_on_sigterm(moto_endpoint: Endpoint, make_wire: Any) -> None:
    """A real `python -m s3_scheduler run` against moto's server delivers, then exits 0 on SIGTERM."""
    wire = make_wire(moto_endpoint)
    env = {
        **os.environ,
        "S3_SCHEDULER_BUCKET": wire.schedule_bucket,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    base = [sys.executable, "-m", "s3_scheduler", "--endpoint-url", moto_endpoint.url]
    scheduled = subprocess.run(
        [*base, "schedule", "--at", "+0s", "--to", f"s3://{wire.target_bucket}/k", "--content", "hello"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert scheduled.returncode == 0, scheduled.stderr

    runner = subprocess.Popen([*base, "run", "--interval", "2s"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert runner.stdout is not None
        first_line = readline_within(runner.stdout, 30)
        runner.send_signal(signal.SIGTERM)
        rest, _ = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate(timeout=30)

    assert first_line.startswith(f"delivered s3://{wire.target_bucket}/k ")
    assert runner.returncode == 0
    assert wire.body(wire.target_bucket, "k") == b"hello"
    assert wire.keys(wire.schedule_bucket) == []
    listed = subprocess.run([*base, "--json", "list"], capture_output=True, text=True, env=env, timeout=60)
    assert (listed.returncode, listed.stdout, rest) == (0, "", "")


def readline_within(stream: IO[str], seconds: float) -> str:
    """Return the next line of ``stream``, failing the test if none comes within ``seconds``."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=seconds)
    except queue.Empty:
        pytest.fail(f"no line within {seconds} s")


# run --shards N: one worker process per shard ---------------------------------------------------------------------

_STARTED = re.compile(r"Run: started the worker of shard (\d+) \(pid (\d+)\)")


class Supervised:
    """``python -m s3_scheduler -v run --shards 3`` against moto's server, its stdout and stderr read line by line
    in threads, so that the test waits for a line (with a timeout), never for a time."""

    def __init__(self, endpoint: Endpoint, wire: Any, *extra: str) -> None:
        self.env = {
            **os.environ,
            "S3_SCHEDULER_BUCKET": wire.schedule_bucket,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }
        argv = [sys.executable, "-m", "s3_scheduler", "--endpoint-url", endpoint.url, "-v"]
        self.process = subprocess.Popen(
            [*argv, "run", "--shards", "3", "--interval", "1s", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        self.out: queue.Queue[str | None] = queue.Queue()
        self.err: queue.Queue[str | None] = queue.Queue()
        self.err_lines: list[str] = []
        self.workers: dict[int, list[int]] = {}  # shard: the pid of each worker started, in order
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=_pump, args=(stream, lines), daemon=True).start()

    def next_err(self, seconds: float) -> str | None:
        """The next line of stderr (noting each worker started), None once it ended; fails the test if none comes
        in time."""
        try:
            line = self.err.get(timeout=seconds)
        except queue.Empty:
            pytest.fail(f"no line on stderr within {seconds} s; so far: {self.err_lines[-10:]}")
        if line is None:
            return None
        self.err_lines.append(line)
        started = _STARTED.search(line)
        if started:
            self.workers.setdefault(int(started.group(1)), []).append(int(started.group(2)))
        return line

    def worker(self, shard: int, number: int, seconds: float = 30) -> int:
        """The pid of the ``number``-th worker started for ``shard`` (1: the first), waiting for its start line."""
        deadline = time.monotonic() + seconds
        while len(self.workers.get(shard, [])) < number:
            if self.next_err(max(0.0, deadline - time.monotonic())) is None:
                pytest.fail(f"the command ended before worker {number} of shard {shard} started: {self.err_lines}")
        return self.workers[shard][number - 1]

    def delivered(self, targets: set[str], seconds: float = 30) -> set[str]:
        """Read stdout until every target of ``targets`` was delivered; return the targets delivered meanwhile."""
        seen: set[str] = set()
        deadline = time.monotonic() + seconds
        while not targets <= seen:
            try:
                line = self.out.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"not delivered within {seconds} s: {sorted(targets - seen)}")
            if line is None:
                pytest.fail(f"the command ended before delivering {sorted(targets - seen)}")
            if line.startswith("delivered s3://"):
                seen.add(line.split()[1])
        return seen

    def ended(self, seconds: float = 60) -> int:
        """Wait for the command's end, then read the rest of its stderr; return its exit status."""
        status = self.process.wait(timeout=seconds)
        while self.next_err(seconds) is not None:
            pass
        return status

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Put each line of ``stream`` (without its end) into ``lines``; None once it ends."""
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended: no such process, or a zombie nobody reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    """Wait until every process of ``pids`` ended, up to ``seconds``; return those still running."""
    deadline = time.monotonic() + seconds
    while True:
        alive = [pid for pid in pids if not _gone(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")


@needs_proc
def test_run_with_shards_delivers_every_shard_and_stops_all_on_sigterm(moto_endpoint: Endpoint, make_wire: Any) -> None:
    """`run --shards 3` starts one worker per shard; each shard's due events are delivered, and shard 0's worker also
    delivers the unsharded events and those of a shard numbered 3 or more; SIGTERM stops every worker, then the
    command exits 0."""
    wire = make_wire(moto_endpoint)
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    by_shard = targets_by_shard(wire.target_bucket, 3)
    for shard, key in by_shard.items():
        wire.scheduler("jobs", shards=3).schedule(past, wire.target_bucket, key, f"shard {shard}")
    wire.scheduler("jobs").schedule(past, wire.target_bucket, "unsharded", "unsharded")
    beyond = targets_by_shard(wire.target_bucket, 6, "beyond")[5]
    wire.scheduler("jobs", shards=6).schedule(past, wire.target_bucket, beyond, "shard 5 of 6")
    targets = {f"s3://{wire.target_bucket}/{key}" for key in [*by_shard.values(), "unsharded", beyond]}
    run = Supervised(moto_endpoint, wire)
    try:
        workers = [run.worker(shard, 1) for shard in range(3)]
        delivered = run.delivered(targets)
        run.process.send_signal(signal.SIGTERM)
        status = run.ended()
    finally:
        run.close()

    assert delivered == targets
    assert status == 0
    assert _wait_gone(workers, 0) == []  # the supervisor waited for each before it ended
    assert wire.keys(wire.schedule_bucket) == []
    assert wire.body(wire.target_bucket, by_shard[1]) == b"shard 1"
    assert sorted(run.workers) == [0, 1, 2]
    assert all(len(pids) == 1 for pids in run.workers.values())
    assert not [line for line in run.err_lines if "Traceback" in line or " ERROR " in line]


@needs_proc
def test_a_killed_worker_is_started_again_and_delivers_its_shard(moto_endpoint: Endpoint, make_wire: Any) -> None:
    """A worker killed with SIGKILL is started again (a WARNING names its shard and how it ended), and the new one
    delivers the events of its shard; the others run on."""
    wire = make_wire(moto_endpoint)
    key = targets_by_shard(wire.target_bucket, 3)[1]
    run = Supervised(moto_endpoint, wire)
    try:
        first = run.worker(1, 1)
        others = [run.worker(0, 1), run.worker(2, 1)]
        os.kill(first, signal.SIGKILL)
        second = run.worker(1, 2)
        past = datetime.now(timezone.utc) - timedelta(seconds=1)
        wire.scheduler("jobs", shards=3).schedule(past, wire.target_bucket, key, "after the restart")
        delivered = run.delivered({f"s3://{wire.target_bucket}/{key}"})
        alive = [pid for pid in others if not _gone(pid)]
        run.process.send_signal(signal.SIGTERM)
        status = run.ended()
    finally:
        run.close()

    assert second != first
    assert delivered == {f"s3://{wire.target_bucket}/{key}"}
    assert wire.body(wire.target_bucket, key) == b"after the restart"
    assert alive == others
    assert status == 0
    warnings = [line for line in run.err_lines if " WARNING " in line and "Run: the worker" in line]
    assert len(warnings) == 1
    assert f"the worker of shard 1 (pid {first}) ended (killed by SIGKILL); starting it again in 1 s" in warnings[0]


@needs_proc
def test_a_worker_that_keeps_dying_stops_the_command(moto_endpoint: Endpoint, make_wire: Any) -> None:
    """A worker killed three times within a minute makes the command stop the other workers and exit 1 with one
    line saying which shard ended, how often and how."""
    wire = make_wire(moto_endpoint)
    run = Supervised(moto_endpoint, wire)
    try:
        others = [run.worker(0, 1), run.worker(2, 1)]
        killed = []
        for number in (1, 2, 3):
            killed.append(run.worker(1, number))
            os.kill(killed[-1], signal.SIGKILL)
        status = run.ended()
    finally:
        run.close()

    assert status == 1
    last = run.err_lines[-1]
    assert last == (
        f"s3-scheduler: the worker of shard 1 ended 3 times within 60 s (last: pid {killed[-1]}, killed by SIGKILL):"
        " every worker stopped"
    )
    assert [line for line in run.err_lines if line.startswith("s3-scheduler:")] == [last]
    assert _wait_gone(others, 0) == []
    assert len(run.workers[1]) == 3


@needs_proc
def test_workers_stop_when_the_supervisor_is_killed(moto_endpoint: Endpoint, make_wire: Any) -> None:
    """A supervisor killed with SIGKILL (it cannot stop its workers) leaves none behind: each sees its parent gone
    and stops within seconds."""
    wire = make_wire(moto_endpoint)
    run = Supervised(moto_endpoint, wire)
    try:
        workers = [run.worker(shard, 1) for shard in range(3)]
        run.process.kill()
        run.process.wait(timeout=30)
        alive = _wait_gone(workers, 15)
    finally:
        for pid in _wait_gone(workers, 0):
            os.kill(pid, signal.SIGKILL)
        run.close()

    assert alive == []
