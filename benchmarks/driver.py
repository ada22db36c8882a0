"""One measured run of an s3-scheduler implementation, in its own process.

Run by ``compare.py``, never by hand: it imports whichever ``s3_scheduler`` is first on
``PYTHONPATH`` (this package, or 0.0.3 unpacked from the package index), so both are
driven by the same code through the API they share: ``Scheduler(bucket, path,
s3_resource, s3_client)``, ``schedule(when, bucket, path, what)`` and ``handle()``.

Reads a JSON order on stdin, prints a JSON result on stdout. Every S3 request of the run
sleeps ``latency_ms`` first (a botocore ``before-send`` hook: the network round trip of
an in-region S3 request) and is counted by operation.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
from botocore.config import Config


def main() -> None:
    order = json.load(sys.stdin)
    import s3_scheduler
    from s3_scheduler.scheduler import Scheduler

    s3 = boto3.resource(
        "s3",
        endpoint_url=order["endpoint"],
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    client = s3.meta.client
    requests: Counter[str] = Counter()
    lock = threading.Lock()
    latency = order["latency_ms"] / 1000.0

    def count(model: Any, **_: Any) -> None:
        with lock:
            requests[model.name] += 1

    def delay(**_: Any) -> None:
        time.sleep(latency)

    client.meta.events.register("before-call.s3", count)
    client.meta.events.register("before-send.s3", delay)
    scheduler = Scheduler(order["bucket"], order["path"], s3, client)
    rss_before = _reset_peak_rss()
    start = time.perf_counter()
    if order["mode"] == "handle":
        scheduler.handle()
    elif order["mode"] == "floor":
        _floor(client, order)
    else:
        when = datetime.now(timezone.utc) + timedelta(days=1)
        for i in range(order["count"]):
            scheduler.schedule(when + timedelta(seconds=i), order["target"], f"bench/{i}", "x" * 64)
    seconds = time.perf_counter() - start
    result = {
        "module": s3_scheduler.__file__,
        "seconds": seconds,
        "requests": dict(requests),
        "rss_before_kib": rss_before,
        "rss_peak_kib": _peak_rss(),
        "cpu_seconds": resource.getrusage(resource.RUSAGE_SELF).ru_utime,
    }
    json.dump(result, sys.stdout)


def _floor(client: Any, order: dict[str, Any]) -> None:
    """The floor's requests, sent by bare boto3: LIST pages up to the last due key, then a COPY
    and a DELETE per due key over 10 threads (botocore's default pool). No scheduler logic.
    Run with this package on the path, for its key format."""
    from concurrent.futures import ThreadPoolExecutor

    from s3_scheduler import keys

    prefix = keys.listing_prefix(order["path"])
    bound = prefix + keys.encode_time(datetime.now(timezone.utc))
    due: list[str] = []
    for page in client.get_paginator("list_objects").paginate(Bucket=order["bucket"], Prefix=prefix):
        names = [obj["Key"] for obj in page.get("Contents", ())]
        due += [name for name in names if name <= bound]
        if names and names[-1] > bound:
            break

    def move(key: str) -> None:
        target = keys.decode_key(key, prefix).target
        client.copy_object(Bucket=order["target"], Key=target, CopySource={"Bucket": order["bucket"], "Key": key})
        client.delete_object(Bucket=order["bucket"], Key=key)

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(move, due))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> int:
    """Reset the peak-RSS mark (Linux: /proc/self/clear_refs) and return the RSS now, KiB."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return _status_kib("VmRSS")
    except OSError:
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _peak_rss() -> int:
    """The peak RSS since the reset, KiB (ru_maxrss where /proc is missing)."""
    try:
        return _status_kib("VmHWM")
    except OSError:
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


if __name__ == "__main__":
    main()
