"""One measured run, in a process of its own; run by ``compare.py``, never by hand.

It imports whichever ``s3_scheduler`` is first on ``PYTHONPATH`` (this package, or 0.0.3
unpacked from the package index), so both are driven by the same code through the API
they share: ``Scheduler(bucket, path, s3_resource, s3_client)``, ``schedule(when,
bucket, path, what)`` and ``handle()``; this package's runs may add keyword options
(``legacy_offsets``) and use ``schedule_many``. Mode ``floor`` uses no scheduler at all:
bare boto3 sends the least requests the job needs (see `_floor`). With ``"client":
"own"`` in the order, this package's scheduler gets no resource and the client that
``s3_scheduler._s3.fast_client`` builds (as the Lambda handler passes it) instead of
the boto3 resource and client made here; the hooks below go on that client.

Reads a JSON order on stdin and prints a JSON result on stdout. Every HTTP request sent
(a botocore ``before-send`` hook, so retries count too) is counted by operation and
sleeps ``latency_ms`` first, in the sending thread: the round trip of an in-region S3
request. Measured around the call alone (not the process start): wall time, this
process's CPU seconds, the server's CPU seconds (``/proc/<pid>/stat`` of each server
process named in the order), the whole machine's busy CPU, the 1-minute load average
before, peak RSS growth, when the first COPY was sent and when each LIST page came back;
and a fingerprint of the imported package's sources, so a run says which code it measured.

For ``bench_shards.py`` an order may also carry: ``shard`` (``handle(shard=k)``),
``until_seconds`` (``handle(until=now + that)``, taken once the run starts),
``start_at`` (a ``time.time()`` moment to wait for after the imports and the client are
ready, so that several handler processes start together) and ``lateness`` (true: each
delivery's lateness in seconds, from ``on_delivery``, in the result's ``lateness``). The
result's ``start_wall`` and ``end_wall`` are the run's start and end by ``time.time()``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import sys
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

PAGE = 1000


def main() -> None:
    order = json.load(sys.stdin)
    import s3_scheduler
    from s3_scheduler.scheduler import Scheduler

    workers = int(order.get("workers", 32))
    s3: Any = boto3.resource(
        "s3",
        endpoint_url=order["endpoint"],
        aws_access_key_id=order.get("access_key", "bench"),
        aws_secret_access_key=order.get("secret_key", "bench"),
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=workers),
    )
    client = s3.meta.client
    if order.get("client") == "own":
        s3, client = None, _own_client(order, workers)
    requests: Counter[str] = Counter()
    lock = threading.Lock()
    latency = order["latency_ms"] / 1000.0
    marks: dict[str, Any] = {"first_copy": None, "list_done": []}
    start = 0.0

    def send(event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        with lock:
            requests[operation] += 1
            if operation == "CopyObject" and marks["first_copy"] is None:
                marks["first_copy"] = time.perf_counter() - start
        if latency:
            time.sleep(latency)

    def listed(**_: Any) -> None:
        with lock:
            marks["list_done"].append(time.perf_counter() - start)

    def drop_next_marker(parsed: dict[str, Any], **_: Any) -> None:
        # radosgw 16.2 url-encodes the keys of a ListObjects (v1) answer but not its NextMarker,
        # which boto3 then decodes into a name that does not exist: 0.0.3's listing stops with
        # PaginationError on its second page. Without NextMarker, boto3's paginator continues
        # from the last key, as it does on AWS S3 (the same requests).
        parsed.pop("NextMarker", None)

    if order.get("fix_next_marker"):
        client.meta.events.register("after-call.s3.ListObjects", drop_next_marker)
    client.meta.events.register("before-send.s3", send)
    client.meta.events.register("after-call.s3.ListObjectsV2", listed)
    client.meta.events.register("after-call.s3.ListObjects", listed)
    mode = order["mode"]
    scheduler = None if mode == "floor" else Scheduler(order["bucket"], order["path"], s3, client, **order["options"])
    base = datetime.fromisoformat(order["base"]) if "base" in order else None
    pids = [int(p) for p in order.get("server_pids", [])]

    lateness: list[float] = []
    handle_args = _handle_args(order, lateness)

    rss_before = _reset_peak_rss()
    load = os.getloadavg()[0]
    server_before = [_cpu_of(pid) for pid in pids]
    machine_before = _machine()
    self_before = _self_cpu()
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    delivered = None
    start_wall = time.time()
    start = time.perf_counter()
    if mode == "handle":
        report = scheduler.handle(**handle_args)  # type: ignore[union-attr]
        if report is not None:  # 0.0.3's handle() returns None
            delivered = len(report.delivered)
    elif mode == "floor":
        _floor(client, order, workers)
    elif mode == "schedule":
        assert base is not None
        for i in range(order["count"]):
            scheduler.schedule(base + timedelta(seconds=i), order["target"], f"bench/{i}", "x" * 64)  # type: ignore[union-attr]
    elif mode == "schedule_many":
        assert base is not None
        events = [(base + timedelta(seconds=i), order["target"], f"bench/{i}", "x" * 64) for i in range(order["count"])]
        scheduler.schedule_many(events)  # type: ignore[union-attr]
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    seconds = time.perf_counter() - start
    end_wall = time.time()
    self_cpu = _self_cpu() - self_before
    usage_after = resource.getrusage(resource.RUSAGE_SELF)
    machine_after = _machine()
    server_cpu = sum(_cpu_of(pid) - before for pid, before in zip(pids, server_before))
    busy = machine_after[0] - machine_before[0]
    total = machine_after[1] - machine_before[1]
    result = {
        "module": s3_scheduler.__file__,
        "source": _fingerprint(s3_scheduler.__file__),
        "seconds": seconds,
        "requests": dict(requests),
        "delivered": delivered,
        "first_copy": marks["first_copy"],
        "list_done": marks["list_done"],
        "rss_before_kib": rss_before,
        "rss_peak_kib": _peak_rss(),
        "client_cpu": self_cpu,
        "client_system_cpu": usage_after.ru_stime - usage_before.ru_stime,
        "context_switches": (usage_after.ru_nvcsw - usage_before.ru_nvcsw)
        + (usage_after.ru_nivcsw - usage_before.ru_nivcsw),
        "server_cpu": server_cpu,
        "machine_busy_cores": (busy / total * (os.cpu_count() or 1)) if total else 0.0,
        "load": load,
        "start_wall": start_wall,
        "end_wall": end_wall,
    }
    if order.get("lateness"):
        result["lateness"] = lateness
    json.dump(result, sys.stdout)


def _handle_args(order: dict[str, Any], lateness: list[float]) -> dict[str, Any]:
    """The keyword arguments of ``handle()`` that the order asks for (``bench_shards.py``'s),
    once the order's ``start_at`` has come; each delivery's lateness goes to ``lateness``."""
    handle_args: dict[str, Any] = {}
    if "shard" in order:
        handle_args["shard"] = int(order["shard"])
    if order.get("lateness"):
        handle_args["on_delivery"] = lambda event, late: lateness.append(late)
    start_at = order.get("start_at")
    if start_at is not None:  # several handler processes start together: wait for the agreed moment
        time.sleep(max(0.0, float(start_at) - time.time()))
    if "until_seconds" in order:
        handle_args["until"] = datetime.now(timezone.utc) + timedelta(seconds=float(order["until_seconds"]))
    return handle_args


def _own_client(order: dict[str, Any], workers: int) -> Any:
    """The client this package builds for itself (``fast_client``), aimed at the order's server.

    ``fast_client`` takes the endpoint, the credentials and the region from the
    environment, as boto3 does; a numeric endpoint is addressed path-style."""
    from s3_scheduler._s3 import fast_client

    os.environ.update(
        AWS_ENDPOINT_URL=order["endpoint"],
        AWS_ACCESS_KEY_ID=order.get("access_key", "bench"),
        AWS_SECRET_ACCESS_KEY=order.get("secret_key", "bench"),
        AWS_DEFAULT_REGION="us-east-1",
    )
    return fast_client(workers)


def _floor(client: Any, order: dict[str, Any], workers: int) -> None:
    """The least work the job needs, sent by bare boto3, with no scheduler logic.

    ``ceil(window / 1000)`` full ListObjectsV2 pages (the floor knows how many names its
    window holds, ``order["window"]``, so it never reads a page to find where the window
    ends), a CopyObject for each of the window's events on ``workers`` threads, started as
    each page arrives, and one DeleteObjects for each 1,000 copied events, sent as soon as
    they are copied. Run with this package on the path, for its key format only."""
    from s3_scheduler import keys

    prefix = keys.listing_prefix(order["path"])
    bucket, window = order["bucket"], int(order["window"])
    lock = threading.Lock()
    copied: list[str] = []
    deletes: list[Future[Any]] = []
    deleter = ThreadPoolExecutor(max_workers=1)

    def delete(batch: list[str]) -> None:
        objects = [{"Key": key} for key in batch]
        client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})

    def copy(key: str) -> None:
        event = keys.decode_key(key, prefix)
        client.copy_object(Bucket=event.bucket, Key=event.path, CopySource={"Bucket": bucket, "Key": key})
        with lock:
            copied.append(key)
            if len(copied) >= PAGE:
                deletes.append(deleter.submit(delete, copied[:]))
                copied.clear()

    copies: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        token: dict[str, str] = {}
        listed = 0
        for _ in range(math.ceil(window / PAGE)):
            page = client.list_objects_v2(Bucket=bucket, Prefix=prefix, **token)
            names = [obj["Key"] for obj in page.get("Contents", ())][: window - listed]
            listed += len(names)
            copies += [pool.submit(copy, name) for name in names]
            if "NextContinuationToken" not in page:
                break
            token = {"ContinuationToken": page["NextContinuationToken"]}
        for done in copies:
            done.result()
    if copied:
        deletes.append(deleter.submit(delete, copied[:]))
    for done in deletes:
        done.result()
    deleter.shutdown()


def _fingerprint(module_file: str) -> str:
    """A short hash of the package's ``.py`` files: which code a run measured."""
    digest = hashlib.sha256()
    for path in sorted(Path(module_file).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _cpu_of(pid: int) -> float:
    """User plus system CPU seconds of process ``pid``, all its threads (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine() -> tuple[int, int]:
    """Busy and total jiffies of all CPUs (``/proc/stat``): busy is all but idle and iowait."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    total = sum(values)
    return total - values[3] - values[4], total


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
