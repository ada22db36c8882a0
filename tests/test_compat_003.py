"""Cross-version tests: s3-scheduler 0.0.3 and this package on the same S3, both ways.

0.0.3 is downloaded from the package index at test time into a temporary folder (its
code is never part of this project) and run in a subprocess against the same S3 server
(moto's, and a real one when set). The tests skip, saying why, only when the index
cannot be reached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from s3_scheduler import Scheduler

from .conftest import S3, Endpoint

ORIGINAL = "s3-scheduler==0.0.3"

# Runs in a subprocess whose PYTHONPATH holds 0.0.3 only; reads its orders from stdin.
DRIVER = r"""
import json, sys
from datetime import datetime
import boto3
from botocore.config import Config
import s3_scheduler
from s3_scheduler.scheduler import Scheduler

spec = json.load(sys.stdin)
if not s3_scheduler.__file__.startswith(spec["source"]):
    sys.exit("imported the wrong s3_scheduler: " + s3_scheduler.__file__)
resource = boto3.resource(
    "s3", endpoint_url=spec["endpoint"], aws_access_key_id=spec["access_key"],
    aws_secret_access_key=spec["secret_key"], region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}),
)
scheduler = Scheduler(spec["bucket"], spec["path"], resource, resource.meta.client)
out = []
for order in spec["orders"]:
    if order[0] == "schedule":
        when, bucket, target, content = order[1:]
        out.append(scheduler.schedule(datetime.fromisoformat(when), bucket, target, content))
    else:
        scheduler.handle()
        out.append(None)
print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def original_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unpacked sdist of s3-scheduler 0.0.3, fetched from the package index."""
    folder = tmp_path_factory.mktemp("s3-scheduler-0.0.3")
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
    done = subprocess.run([*command, "-d", str(folder), ORIGINAL], capture_output=True, text=True, timeout=300)
    archives = list(folder.glob("*.tar.gz"))
    if done.returncode != 0 or not archives:
        reason = (done.stderr.strip().splitlines() or ["no sdist downloaded"])[-1]
        pytest.skip(f"the package index could not be reached for {ORIGINAL}: {reason}")
    with tarfile.open(archives[0]) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(folder, filter="data")
        else:  # pragma: no cover - Python without PEP 706
            archive.extractall(folder)
    source = folder / "s3_scheduler-0.0.3"
    assert (source / "s3_scheduler" / "scheduler.py").is_file()
    return source


def run_original(source: Path, endpoint: Endpoint, s3: S3, path: str, orders: list[list[Any]]) -> list[Any]:
    """Run ``orders`` with 0.0.3's Scheduler in a subprocess; return what each returned."""
    spec = {
        "source": str(source),
        "endpoint": endpoint.url,
        "access_key": endpoint.access_key,
        "secret_key": endpoint.secret_key,
        "bucket": s3.schedule_bucket,
        "path": path,
        "orders": orders,
    }
    env = {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env=env,
        cwd=source.parent,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: list[Any] = json.loads(done.stdout)
    return result


def real_now() -> datetime:
    # 0.0.3 reads the real clock, so these tests use it too.
    return datetime.now(timezone.utc)


def test_events_written_by_0_0_3_are_delivered_by_this_package(
    original_source: Path, endpoint: Endpoint, wire: S3
) -> None:
    """0.0.3's events, with UTC, naive and offset times, reach their targets via handle()."""
    now = real_now()
    india = timezone(timedelta(hours=5, minutes=30))
    arizona = timezone(timedelta(hours=-7))
    due = {
        "plain/key.txt": now - timedelta(hours=1),
        "with space+plus&%.txt": (now - timedelta(hours=1)).replace(tzinfo=None),
        "ünï/cødé/日本": (now - timedelta(minutes=30)).astimezone(india),
        "/leading/slash": (now - timedelta(hours=2)).astimezone(arizona),
        "pipe|hash#q?x": now - timedelta(minutes=1),
    }
    future = {"future.txt": now + timedelta(days=1)}
    orders = [
        ["schedule", when.isoformat(), wire.target_bucket, target, f"content of {target}"]
        for target, when in {**due, **future}.items()
    ]
    written = run_original(original_source, endpoint, wire, "/path", orders)

    Scheduler(wire.schedule_bucket, "/path", wire.resource, wire.client).handle()

    for target in due:
        key = target.lstrip("/")
        assert wire.body(wire.target_bucket, key) == f"content of {target}".encode()
    assert wire.keys(wire.schedule_bucket) == [written[-1]]


def test_events_written_by_this_package_are_delivered_by_0_0_3(
    original_source: Path, endpoint: Endpoint, wire: S3
) -> None:
    """Our events (inputs 0.0.3 handles: no '~' in targets) are delivered by 0.0.3."""
    now = real_now()
    tokyo = timezone(timedelta(hours=9))
    scheduler = Scheduler(wire.schedule_bucket, "jobs/", wire.resource, wire.client)
    due = {
        "a b+c/d.txt": now - timedelta(hours=1),
        "ünï/cødé": (now - timedelta(minutes=5)).astimezone(tokyo),
        "pct%41": (now - timedelta(minutes=2)).replace(tzinfo=None, microsecond=0),
        "/leading": now - timedelta(seconds=30),
    }
    for target, when in due.items():
        scheduler.schedule(when, wire.target_bucket, target, f"content of {target}")
    later = scheduler.schedule(now + timedelta(hours=3), wire.target_bucket, "later.txt", "later")

    run_original(original_source, endpoint, wire, "jobs/", [["handle"]])

    for target in due:
        assert wire.body(wire.target_bucket, target.lstrip("/")) == f"content of {target}".encode()
    assert wire.keys(wire.schedule_bucket) == [later]


def test_keys_for_utc_and_naive_times_are_byte_identical(original_source: Path, endpoint: Endpoint, wire: S3) -> None:
    """For UTC and naive times, with and without microseconds, both write the same keys."""
    base = datetime(2031, 3, 4, 5, 6, 7, 891011)
    times = [
        base.replace(tzinfo=timezone.utc),
        base.replace(tzinfo=timezone.utc, microsecond=0),
        base,
        base.replace(microsecond=0),
    ]
    targets = ["plain", "dir/sub/file name+1.txt", "ünï/cødé", "/leading", "pipe|q?#%"]
    inputs = [(when, target) for when in times for target in targets]
    orders = [["schedule", when.isoformat(), "target-b", target, "x"] for when, target in inputs]

    theirs = run_original(original_source, endpoint, wire, "/path/", orders)
    scheduler = Scheduler(wire.schedule_bucket, "/path/", wire.resource, wire.client)
    ours = [scheduler.schedule(when, "target-b", target, "x") for when, target in inputs]

    assert ours == theirs
    assert len(set(ours)) == 2 * len(targets)  # a naive time is the same key as its UTC twin
