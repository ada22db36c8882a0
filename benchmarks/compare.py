"""This package against s3-scheduler 0.0.3, side by side, in one run.

    python benchmarks/compare.py --quick          # under 3 minutes on 2 cores
    python benchmarks/compare.py --chart docs/handle-time.png

s3-scheduler 0.0.3 is downloaded from the package index into a temporary folder at run
time (its code is never part of this project). Both run against the same S3 stand-in,
moto's server on 127.0.0.1 started here, each in its own process (``driver.py``), on
the same data, with the same injected latency before every request (default 20 ms, a
typical in-region S3 round trip), and every request is counted by operation.

Measured: ``handle()`` wall time and requests over backlogs of far-future events with
some events due; ``schedule()`` time per event; the peak memory of a ``handle()`` over
the largest backlog; and the floor: one LIST page per 1,000 due-window keys plus a COPY
and a DELETE per due event, overlapped across the client's 10 connections. Goals are
printed, never asserted.

Needs this package's ``test`` or ``local`` extra (moto's server); the chart needs the
``bench`` extra (matplotlib).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from s3_scheduler import keys  # noqa: E402

WORKERS = 10  # botocore's default connection pool: both implementations' clients use it
PAGE = 1000
FULL = {"backlogs": [0, 10_000, 100_000], "dues": [0, 100, 1000], "schedule": 1000}
QUICK = {"scenarios": [(0, 0), (0, 100), (0, 1000), (10_000, 0), (10_000, 100)], "schedule": 200}


def fetch_original(folder: Path) -> Path:
    """Download and unpack the sdist of s3-scheduler 0.0.3; return the folder to put on PYTHONPATH."""
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
    subprocess.run([*command, "-d", str(folder), "s3-scheduler==0.0.3"], check=True, capture_output=True)
    with tarfile.open(next(folder.glob("*.tar.gz"))) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(folder, filter="data")
        else:  # pragma: no cover
            archive.extractall(folder)
    return folder / "s3_scheduler-0.0.3"


class Stand:
    """moto's server in this process; buckets are filled through its backend, quickly."""

    def __init__(self) -> None:
        import logging

        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
        self.serial = 0

    def buckets(self) -> tuple[str, str]:
        self.serial += 1
        made = (f"sched-{self.serial}", f"target-{self.serial}")
        for bucket in made:
            self.backend.create_bucket(bucket, "us-east-1")
        return made

    def fill(self, bucket: str, target: str, backlog: int, due: int, now: datetime) -> None:
        """``due`` events due in the last minutes and ``backlog`` events two days ahead."""
        prefix = keys.listing_prefix("jobs")
        for i in range(due):
            key = keys.encode_key(prefix, now - timedelta(seconds=i + 1), target, f"due/{i}")
            self.backend.put_object(bucket, key, b"x" * 64)
        for i in range(backlog):
            key = keys.encode_key(prefix, now + timedelta(days=2, seconds=i), target, f"later/{i}")
            self.backend.put_object(bucket, key, b"x" * 64)

    def count(self, bucket: str) -> int:
        return len(list(self.backend.get_bucket(bucket).keys))

    def drop(self, *buckets: str) -> None:
        for bucket in buckets:
            for key in list(self.backend.get_bucket(bucket).keys):
                self.backend.delete_object(bucket, key)
            self.backend.delete_bucket(bucket)


def measure(source: Path, order: dict[str, Any]) -> dict[str, Any]:
    """Run one order in a fresh process with ``source`` first on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run(
        [sys.executable, str(HERE / "driver.py")],
        input=json.dumps(order),
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"driver failed for {source}:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    if not result["module"].startswith(str(source)):
        raise RuntimeError(f"the driver imported {result['module']}, not the code under {source}")
    return result


def floor_seconds(due: int, latency: float) -> float:
    """One LIST page per 1,000 due-window keys, plus COPY and DELETE per due event over the workers."""
    pages = max(1, math.ceil(due / PAGE))
    return pages * latency + math.ceil(due / WORKERS) * 2 * latency


def requests_text(requests: dict[str, int]) -> str:
    short = {"ListObjects": "L", "ListObjectsV2": "L", "CopyObject": "C", "DeleteObject": "D", "PutObject": "P"}
    totals: dict[str, int] = {}
    for name, n in requests.items():
        totals[short.get(name, "other")] = totals.get(short.get(name, "other"), 0) + n
    return " ".join(f"{k}{v}" for k, v in sorted(totals.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller set, under 3 minutes")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="injected per-request latency (default 20)")
    parser.add_argument("--chart", type=Path, help="write the handle()-time chart (PNG) here")
    parser.add_argument("--json", type=Path, help="write every figure as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    if args.quick:
        scenarios, schedule_count = QUICK["scenarios"], QUICK["schedule"]
    else:
        scenarios = [(b, d) for b in FULL["backlogs"] for d in FULL["dues"]]
        schedule_count = FULL["schedule"]

    started = time.perf_counter()
    print(
        f"s3-scheduler benchmark: {platform.python_implementation()} {platform.python_version()},"
        f" {os.cpu_count()} cores, {args.latency_ms:g} ms injected before every request, moto's server as S3"
    )
    with tempfile.TemporaryDirectory() as tmp:
        implementations = {"0.0.3": fetch_original(Path(tmp)), "ours": ROOT}
        stand = Stand()
        rows = [run_handle(stand, implementations, backlog, due, args.latency_ms) for backlog, due in scenarios]
        schedule = {
            (name, latency_ms): run_schedule(stand, source, schedule_count, latency_ms)
            for latency_ms in (args.latency_ms, 0.0)
            for name, source in implementations.items()
        }
        stand.server.stop()

    report(rows, schedule, schedule_count, args.latency_ms)
    print(f"\n(whole run: {time.perf_counter() - started:.0f} s)")
    if args.json:
        figures = {"handle": rows, "schedule": [{"impl": n, "latency_ms": ms, **r} for (n, ms), r in schedule.items()]}
        args.json.write_text(json.dumps(figures, indent=1))
    if args.chart:
        chart(rows, args.chart, args.latency_ms)
    return 0


def run_handle(
    stand: Stand, implementations: dict[str, Path], backlog: int, due: int, latency_ms: float
) -> dict[str, Any]:
    """One handle() scenario for each implementation, and the measured floor, on fresh copies of the data."""
    row: dict[str, Any] = {"backlog": backlog, "due": due, "floor_computed": floor_seconds(due, latency_ms / 1000)}
    runs = {**implementations, "floor": ROOT} if due else dict(implementations)
    for name, source in runs.items():
        bucket, target = stand.buckets()
        stand.fill(bucket, target, backlog, due, datetime.now(timezone.utc))
        mode = "floor" if name == "floor" else "handle"
        order = {
            "endpoint": stand.endpoint,
            "bucket": bucket,
            "path": "jobs",
            "target": target,
            "mode": mode,
            "latency_ms": latency_ms,
        }
        row[name] = measure(source, order)
        delivered = stand.count(target)
        stand.drop(bucket, target)
        if delivered != due:
            raise RuntimeError(f"{name} delivered {delivered} of {due} events")
    seconds = {name: row[name]["seconds"] for name in runs}
    print(
        f"  handle backlog={backlog:>6} due={due:>4}: " + ", ".join(f"{n} {s:.3f} s" for n, s in seconds.items()),
        flush=True,
    )
    return row


def run_schedule(stand: Stand, source: Path, count: int, latency_ms: float) -> dict[str, Any]:
    bucket, target = stand.buckets()
    order = {
        "endpoint": stand.endpoint,
        "bucket": bucket,
        "path": "jobs",
        "mode": "schedule",
        "target": target,
        "latency_ms": latency_ms,
        "count": count,
    }
    result = measure(source, order)
    stand.drop(bucket, target)
    return result


def report(rows: list[dict[str, Any]], schedule: dict[tuple[str, float], Any], count: int, latency_ms: float) -> None:
    print("\nhandle(): wall time, ratio 0.0.3 / ours, requests (L list, C copy, D delete, P put), and two floors:")
    print(f"  computed: LIST pages + a COPY and a DELETE per due event over {WORKERS} connections, latency alone;")
    print(f"  measured: those requests sent by bare boto3 on {WORKERS} threads to this stand-in, with the latency")
    print(
        f"{'backlog':>8} {'due':>5} | {'0.0.3 s':>8} {'ours s':>7} {'ratio':>6} | {'computed':>8} {'measured':>8}"
        f" {'ours/comp':>9} {'ours/meas':>9} | requests 0.0.3 ; ours"
    )
    for row in rows:
        theirs, ours = row["0.0.3"], row["ours"]
        computed = row["floor_computed"]
        measured = row["floor"]["seconds"] if "floor" in row else float("nan")
        print(
            f"{row['backlog']:>8} {row['due']:>5} | {theirs['seconds']:8.3f} {ours['seconds']:7.3f}"
            f" {theirs['seconds'] / ours['seconds']:6.1f} | {computed:8.3f} {measured:8.3f}"
            f" {ours['seconds'] / computed:9.2f} {ours['seconds'] / measured:9.2f} |"
            f" {requests_text(theirs['requests'])} ; {requests_text(ours['requests'])}"
        )

    print(f"\nschedule(): {count} events, one after the other")
    ratios = {}
    for latency in (latency_ms, 0.0):
        per = {name: schedule[(name, latency)]["seconds"] / count * 1000 for name in ("0.0.3", "ours")}
        ratios[latency] = per["0.0.3"] / per["ours"]
        print(
            f"  {latency:g} ms per request: 0.0.3 {per['0.0.3']:.2f} ms/event, ours {per['ours']:.2f} ms/event,"
            f" ratio {ratios[latency]:.2f} (each makes one PUT per event)"
        )

    largest = max(rows, key=lambda r: (r["backlog"], r["due"] == 100))
    print(f"\npeak memory of the handle() process, backlog {largest['backlog']}, due {largest['due']}:")
    for name in ("0.0.3", "ours"):
        result = largest[name]
        print(
            f"  {name:>5}: peak RSS {result['rss_peak_kib'] / 1024:.1f} MiB during handle()"
            f" (RSS before it {result['rss_before_kib'] / 1024:.1f} MiB)"
        )

    print("\ngoals:")
    for r in (r for r in rows if r["due"] == 1000):
        ratio = r["0.0.3"]["seconds"] / r["ours"]["seconds"]
        computed = r["ours"]["seconds"] / r["floor_computed"]
        measured = r["ours"]["seconds"] / r["floor"]["seconds"]
        print(
            f"  handle() with 1,000 due, backlog {r['backlog']}: {ratio:.1f}x faster than 0.0.3"
            f" (goal 8x: {_met(ratio >= 8)}); {computed:.2f}x the computed floor ({_met(computed <= 1.5)}),"
            f" {measured:.2f}x the measured floor ({_met(measured <= 1.5)}) (goal 1.5x)"
        )
    for r in (r for r in rows if r["due"] == 0):
        lists = {
            n: r[n]["requests"].get("ListObjects", 0) + r[n]["requests"].get("ListObjectsV2", 0)
            for n in ("0.0.3", "ours")
        }
        print(
            f"  idle run at backlog {r['backlog']}: LIST requests ours {lists['ours']}, 0.0.3 {lists['0.0.3']}"
            f" (goal: ours 1: {_met(lists['ours'] == 1)})"
        )
    for latency, ratio in ratios.items():
        print(
            f"  schedule() at {latency:g} ms per request: {ratio:.2f}x less time per event than 0.0.3"
            f" (goal 2x: {_met(ratio >= 2)})"
        )


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def chart(rows: list[dict[str, Any]], path: Path, latency_ms: float) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f'no chart: matplotlib is missing (pip install -e ".[bench]"); {path} not written')
        return
    figure, axis = plt.subplots(figsize=(7, 4.2), dpi=110)
    for due in sorted({r["due"] for r in rows}):
        points = sorted((r["backlog"], r["0.0.3"]["seconds"], r["ours"]["seconds"]) for r in rows if r["due"] == due)
        if len(points) < 2:
            continue
        backlog = [max(p[0], 1) for p in points]
        axis.plot(backlog, [p[1] for p in points], "o--", label=f"0.0.3, {due} due")
        axis.plot(backlog, [p[2] for p in points], "s-", label=f"this package, {due} due")
    axis.set_xscale("symlog", linthresh=1000)
    axis.set_yscale("log")
    axis.set_xlabel("far-future events pending (backlog)")
    axis.set_ylabel("handle() wall time, s")
    axis.set_title(f"handle() time against backlog ({latency_ms:g} ms per request, moto)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    print(f"chart written to {path}")


if __name__ == "__main__":
    sys.exit(main())
