"""The command line as a process of its own over HTTP: `run` stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from typing import IO, Any

import pytest

from ..conftest import Endpoint


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
