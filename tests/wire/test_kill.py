"""A run killed with SIGKILL mid-delivery (issue 9): the run is a process of its own
(`tests/run_in_subprocess.py`) on moto's server; nothing is lost and its lease holds until it lapses."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

from s3_scheduler import Scheduler

from ..conftest import S3, Clock, Endpoint

LEASE = "jobs/.lease"
CHILD = (sys.executable, str(Path(__file__).parents[1] / "run_in_subprocess.py"))
"""The command that runs a handle() in a process of its own."""


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def lease_body(s3: S3) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(s3.body(s3.schedule_bucket, LEASE))
    return data


def test_a_run_killed_mid_delivery_loses_nothing_and_its_lease_holds_until_it_lapses(
    moto_endpoint: Endpoint, make_wire: Callable[..., S3]
) -> None:
    """A run in a subprocess SIGKILLed between its copies and its deletes: its lease defers a run 30 s later, and a
    run 2 minutes later delivers every event with its content."""
    wire = make_wire(moto_endpoint)
    now = datetime.now(timezone.utc)
    setup = Scheduler(wire.schedule_bucket, "jobs", wire.resource, wire.client)
    contents = {f"in/{i:02d}": f"event {i}".encode() for i in range(12)}
    for i, (target, content) in enumerate(contents.items()):
        setup.schedule(now - seconds(60 - i), wire.target_bucket, target, content)
    copies = 4
    child = subprocess.Popen(
        [*CHILD, moto_endpoint.url, wire.schedule_bucket, "jobs", str(copies)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in child.stdout or ():
            lines.put(line.decode())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            pytest.fail(f"the child never reported its copies: {_stderr_of(child)}")
        assert line.strip() == f"copied {copies}", line
        child.kill()  # SIGKILL
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        reader.join(timeout=10)
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()
    killed_at = datetime.now(timezone.utc)

    left = wire.keys(wire.schedule_bucket)
    assert len(left) == len(contents) + 1  # every event still pending, and the dead run's lease
    assert len(wire.keys(wire.target_bucket)) == copies
    held = lease_body(wire)
    assert datetime.fromisoformat(held["expires"]) > killed_at + seconds(30)

    soon = Scheduler(wire.schedule_bucket, "jobs", wire.resource, wire.client, clock=Clock(killed_at + seconds(30)))
    wire.counter.calls.clear()
    deferred = soon.handle()
    assert deferred.delivered == []
    assert len(deferred.deferred) >= 1
    assert wire.counter.calls["CopyObject"] == 0

    later = Scheduler(wire.schedule_bucket, "jobs", wire.resource, wire.client, clock=Clock(killed_at + seconds(120)))
    report = later.handle()
    assert len(report.delivered) == len(contents)
    assert report.failed == []
    assert wire.keys(wire.schedule_bucket) == []  # nothing pending, no lease left
    for target, content in contents.items():
        assert wire.body(wire.target_bucket, target) == content


def _stderr_of(child: subprocess.Popen[bytes]) -> str:
    if child.poll() is None:
        child.kill()
        child.wait(timeout=10)
    return child.stderr.read().decode(errors="replace")[-2000:] if child.stderr else ""
