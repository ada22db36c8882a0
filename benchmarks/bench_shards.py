"""Shards: how delivery scales with one handler process per shard, and precise mode's lateness.

    python benchmarks/bench_shards.py --quick                 # moto, 3,000 due, 3 runs each: a few minutes
    python benchmarks/bench_shards.py                         # moto, 20,000 due
    python benchmarks/bench_shards.py --servers moto,radosgw --out docs/benchmark-shards-DATE.txt
    python benchmarks/bench_shards.py --quick --precise       # also precise mode (10 s spreads)
    python benchmarks/bench_shards.py --apart                 # also 2 and 4 shards one after another

Throughput: ``--due`` events (default 20,000; ``--quick`` 3,000) all due, written with
1, 2 and 4 shards (``Scheduler(..., shards=S)``'s layout: ``{path}/{s}/|...``, the shard
of each target from ``keys.shard_of``; with 1 shard the unsharded layout ``{path}/|...``;
with more, the unsharded prefix is empty). S handler processes (``driver.py``, one per
shard) are started, import boto3 and build their client (``fast_client``, as the Lambda
handler and the command line do), then all begin at one agreed moment
``Scheduler(..., shards=S).handle(shard=k)``. Every request sleeps the injected latency
first (``--latency``, default 20 ms: an in-region S3 round trip), as in ``compare.py``.
The runs of 1, 2 and 4 shards are interleaved, ``--reps`` times (default 3), each on
freshly seeded data; every run is checked: every event at its target, none left.

Reported per run and as medians with their spread (min-max): the wall time from the
agreed start to the last process's end, events delivered per second, the client CPU per
delivered event (user + system CPU of the handler processes during ``handle()``, summed,
over the events), the server's CPU seconds during the run (``/proc/<pid>/stat`` of
moto's process, or of radosgw, its OSD and monitor), the whole machine's busy cores and
the 1-minute load average before the run. On a 2-core machine the store is the limit of
events/s; the client CPU per event is what sets how many shards a load takes, and it must
not grow with the shard count by more than 10 %: the report compares each shard count's
to one shard's. On 2 cores, 4 handler processes share the machine with the server, so
each one's CPU per event also holds what that contention costs it; ``--apart`` adds runs of
2 and 4 shards whose handler processes run one after another, each alone with the server
(as each shard's Lambda invocation has a vCPU of its own): the same work per shard, without
the contention, so a cost that grows with the shard count itself still shows there. The
report also gives each run's handler CPU over the server's: the server's work per event is
about the same at every shard count, so where the machine's speed drifts between runs (a
shared virtual machine's does), the ratio compares the shard counts with that drift taken
out.

Precise mode (``--precise``): events spread evenly over 40 s (``--quick``: 10 s; or
``--spread``) at 75, 250 and 1,000 a second, with 1 and 4 shards; the handler processes
start a few seconds before the first is due, with ``handle(until=...)`` reaching 5 s past
the last. Reported: the lateness of every delivery (``on_delivery``'s, in seconds) p50,
p99 and max, the client CPU per event, the server's CPU and the load. ``--precise-reps``
runs of each (default 1).

Servers: moto's S3 server (``stand.py``, seeded straight through its backend) and Ceph
radosgw (``--servers radosgw``) started by ``scripts/start-rgw`` as ``compare.py`` starts
it (skipped, and said so, when it is not installed), seeded with concurrent PUTs. Nothing
is asserted: the figures are printed (and written with ``--out``, ``--json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from compare import MotoStore, Output, Store, git_head, start_radosgw, version_of, version_of_module  # noqa: E402
from driver import _cpu_of, _machine  # noqa: E402

from s3_scheduler import keys  # noqa: E402

PATH = "jobs"
WORKERS = 32
"""Each handler process's copiers (this package's default ``max_workers``)."""
SHARD_COUNTS = (1, 2, 4)
PRECISE_SHARDS = (1, 4)
PRECISE_RATES = (75, 250, 1000)
START_LEAD = 8.0
"""Seconds from launching the handler processes to their agreed start: time to import boto3."""
PRECISE_LEAD = 3.0
"""Seconds from the handlers' start to the first event due, in precise mode."""
PRECISE_TAIL = 5.0
"""Seconds past the last event that precise mode's ``handle(until=...)`` reaches."""
RUN_TIMEOUT = 1800.0
"""Seconds a handler process may take at most; then it is killed and the run fails."""

out = Output()


# the layout ------------------------------------------------------------------------


def shard_prefix(shards: int, shard: int) -> str:
    """The listing prefix of shard ``shard`` of ``shards`` (the unsharded prefix for one)."""
    return keys.listing_prefix(PATH if shards == 1 else keys.shard_path(PATH, shard))


def names(shards: int, target: str, times: list[datetime]) -> list[str]:
    """One event per time, target key ``ev/{i}`` in bucket ``target``, each in its shard."""
    found = []
    for i, when in enumerate(times):
        key = f"ev/{i}"
        found.append(keys.encode_key(shard_prefix(shards, keys.shard_of(target, key, shards)), when, target, key))
    return found


# one run ---------------------------------------------------------------------------


def run_handlers(
    store: Store,
    bucket: str,
    target: str,
    shards: int,
    latency_ms: float,
    *,
    until_at: float | None = None,
    lateness: bool = False,
    apart: bool = False,
) -> dict[str, Any]:
    """Start one handler process per shard, all beginning at one moment; return the run's figures.

    ``until_at`` (a ``time.time()`` moment): each handler runs ``handle(until=...)`` up to it.
    ``apart``: the shards' handler processes run one after another instead, each alone on the
    machine with the server (as each fanned-out Lambda invocation has a vCPU of its own); the
    run's seconds are then the sum of the handlers' own.
    """
    start_at = time.time() + START_LEAD
    base = {
        "endpoint": store.endpoint,
        "access_key": store.access_key,
        "secret_key": store.secret_key,
        "bucket": bucket,
        "path": PATH,
        "target": target,
        "mode": "handle",
        "options": {"shards": shards},
        "client": "own",
        "latency_ms": latency_ms,
        "workers": WORKERS,
        "server_pids": [],
        "start_at": start_at,
        "lateness": lateness,
    }
    if until_at is not None:
        base["until_seconds"] = until_at - start_at
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def launch() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(HERE / "driver.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tempfile.gettempdir(),
        )

    processes = [launch() for _ in range(1 if apart else shards)]
    time.sleep(max(0.0, start_at - time.time() - 0.05))
    load = os.getloadavg()[0]
    server_before = [_cpu_of(pid) for pid in store.pids]
    machine_before = _machine()

    def finish(k: int) -> dict[str, Any]:
        order = {**base, "shard": k}
        if apart and k > 0:  # the previous shard's handler has ended: this one starts alone
            processes.append(launch())
            order["start_at"] = time.time() + START_LEAD
        process = processes[k]
        try:
            stdout, stderr = process.communicate(json.dumps(order), timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=30)
            raise RuntimeError(f"the handler of shard {k} of {shards} took over {RUN_TIMEOUT:.0f} s") from None
        if process.returncode != 0:
            raise RuntimeError(f"the handler of shard {k} of {shards} failed:\n{stderr[-3000:]}")
        result: dict[str, Any] = json.loads(stdout)
        if not result["module"].startswith(str(ROOT)):
            raise RuntimeError(f"the driver imported {result['module']}, not this checkout's package")
        return result

    if apart:
        results = [finish(k) for k in range(shards)]
    else:
        with ThreadPoolExecutor(max_workers=shards) as pool:
            results = list(pool.map(finish, range(shards)))
    machine_after = _machine()
    server_cpu = sum(_cpu_of(pid) - before for pid, before in zip(store.pids, server_before))
    busy, total = machine_after[0] - machine_before[0], machine_after[1] - machine_before[1]
    delivered = sum(r["delivered"] or 0 for r in results)
    client_cpu = sum(r["client_cpu"] for r in results)
    late: list[float] = sorted(x for r in results for x in r.get("lateness", ()))
    if apart:  # the handlers' own times, one after another, without the imports between them
        seconds = sum(r["end_wall"] - r["start_wall"] for r in results)
        late_start = results[0]["start_wall"] - start_at
    else:
        seconds = max(r["end_wall"] for r in results) - start_at
        late_start = max(r["start_wall"] for r in results) - start_at
    return {
        "shards": shards,
        "apart": apart,
        "seconds": seconds,
        "late_start": late_start,
        "delivered": delivered,
        "requests": sum(sum(r["requests"].values()) for r in results),
        "client_cpu": client_cpu,
        "client_system_cpu": sum(r.get("client_system_cpu", 0.0) for r in results),
        "context_switches": sum(r.get("context_switches", 0) for r in results),
        "per_process_ms": [r["client_cpu"] * 1000 / r["delivered"] if r["delivered"] else 0.0 for r in results],
        "server_cpu": server_cpu,
        "busy_cores": (busy / total * (os.cpu_count() or 1)) if total else 0.0,
        "load": load,
        "lateness": late,
    }


def seed(store: Store, bucket: str, target: str, events: list[str]) -> float:
    """Empty both buckets, write ``events``; return the seconds it took."""
    began = time.perf_counter()
    store.clear(target)
    store.clear(bucket)
    store.put(bucket, events)
    return time.perf_counter() - began


def check(store: Store, bucket: str, target: str, expected: int, run: dict[str, Any]) -> None:
    """Every event at its target, no name left under the events' bucket (the leases released)."""
    landed, left = store.count(target), store.count(bucket)
    run["target_count"], run["left"] = landed, left
    if landed != expected or left != 0 or run["delivered"] < expected:
        raise RuntimeError(
            f"{run['shards']} shards: {landed} of {expected} at their target, {left} names left,"
            f" {run['delivered']} reported delivered"
        )


def ms_per_event(run: dict[str, Any]) -> float:
    return run["client_cpu"] * 1000 / run["delivered"] if run["delivered"] else float("nan")


def rate(run: dict[str, Any]) -> float:
    return run["delivered"] / run["seconds"] if run["seconds"] > 0 else float("nan")


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values`` (nearest rank)."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """The median, then min-max in brackets."""
    if not values:
        return "-"
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


# the two modes ---------------------------------------------------------------------


def series(apart: bool) -> list[tuple[str, int, bool]]:
    """The throughput runs of one round: (label, shards, apart)."""
    found = [(str(shards), shards, False) for shards in SHARD_COUNTS]
    if apart:
        found += [(f"{shards} apart", shards, True) for shards in SHARD_COUNTS if shards > 1]
    return found


def throughput(
    store: Store, due: int, reps: int, latency_ms: float, serial: int, apart: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """1, 2 and 4 shards (and with ``apart``, 2 and 4 one after another), interleaved, ``reps``
    times each; every run on fresh data."""
    bucket, target = f"shards{serial}-events", f"shards{serial}-target"
    store.make(bucket)
    store.make(target)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in series(apart)}
    for rep in range(reps):
        for label, shards, one_by_one in series(apart):
            anchor = datetime.now(timezone.utc).replace(microsecond=0)
            times = [anchor - timedelta(seconds=due - i) for i in range(due)]
            seeded = seed(store, bucket, target, names(shards, target, times))
            run = run_handlers(store, bucket, target, shards, latency_ms, apart=one_by_one)
            check(store, bucket, target, due, run)
            runs[label].append(run)
            out(
                f"    run {rep + 1}, {shards} shard(s){' apart' if one_by_one else ''}: {run['seconds']:.2f} s,"
                f" {rate(run):.0f} events/s,"
                f" client CPU {run['client_cpu']:.2f} s ({ms_per_event(run):.2f} ms/event; per process"
                f" {', '.join(f'{v:.2f}' for v in run['per_process_ms'])}; system"
                f" {run['client_system_cpu'] * 1000 / run['delivered']:.2f}; context switches"
                f" {run['context_switches'] / run['delivered']:.1f}/event), server CPU {run['server_cpu']:.2f} s,"
                f" {run['requests'] / run['delivered']:.3f} req/event, busy {run['busy_cores']:.2f} cores,"
                f" load {run['load']:.2f}; seeded in {seeded:.1f} s"
                + (f"; a handler began {run['late_start']:.2f} s late" if run["late_start"] > 0.2 else "")
            )
    store.clear(bucket)
    store.clear(target)
    return runs


def precise(
    store: Store, spread_s: float, reps: int, latency_ms: float, serial: int, rates: tuple[int, ...] = PRECISE_RATES
) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """Events spread over ``spread_s`` seconds at each rate, 1 and 4 shards, ``handle(until=...)``."""
    bucket, target = f"precise{serial}-events", f"precise{serial}-target"
    store.make(bucket)
    store.make(target)
    per_name = 0.0002 if store.name == "moto" else 0.01  # seconds to seed a name, at most, roughly
    runs: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for rep in range(reps):
        for per_second in rates:
            for shards in PRECISE_SHARDS:
                count = int(per_second * spread_s)
                seeding = 5.0 + count * per_name
                first = time.time() + seeding + START_LEAD + PRECISE_LEAD
                first_dt = datetime.fromtimestamp(first, timezone.utc)
                times = [first_dt + timedelta(seconds=i / per_second) for i in range(count)]
                seeded = seed(store, bucket, target, names(shards, target, times))
                run = run_handlers(
                    store,
                    bucket,
                    target,
                    shards,
                    latency_ms,
                    until_at=first + spread_s + PRECISE_TAIL,
                    lateness=True,
                )
                check(store, bucket, target, count, run)
                runs.setdefault((per_second, shards), []).append(run)
                late = run["lateness"]
                out(
                    f"    run {rep + 1}, {per_second}/s x {spread_s:g} s ({count:,} events), {shards} shard(s):"
                    f" lateness p50 {quantile(late, 0.5):.3f} s, p99 {quantile(late, 0.99):.3f} s,"
                    f" max {late[-1] if late else float('nan'):.3f} s; client CPU {ms_per_event(run):.2f} ms/event;"
                    f" {run['requests'] / run['delivered']:.3f} req/event;"
                    f" server CPU {run['server_cpu']:.2f} s; busy {run['busy_cores']:.2f} cores;"
                    f" load {run['load']:.2f}; seeded in {seeded:.1f} s"
                    + (" (LATE: past the first event's time)" if seeded > seeding else "")
                    + (f"; a handler began {run['late_start']:.2f} s late" if run["late_start"] > 0.2 else "")
                )
    store.clear(bucket)
    store.clear(target)
    return runs


# the report ------------------------------------------------------------------------


def throughput_table(server: str, due: int, latency_ms: float, runs: dict[str, list[dict[str, Any]]]) -> None:
    count = len(runs["1"])
    out(f"\n[throughput] {server}, {due:,} due, {latency_ms:g} ms per request; median [min-max] of {count} runs")
    out(
        f"  {'shards':>8}  {'wall s':<22} {'events/s':<22} {'client CPU ms/event':<22} {'vs 1 shard':>10}"
        f"  {'server CPU s':<22} {'busy cores':>10}  {'load':<18}"
    )
    grown = growth(runs, ms_per_event)
    for label, rs in runs.items():
        out(
            f"  {label:>8}  {spread([r['seconds'] for r in rs]):<22} {spread([rate(r) for r in rs], '{:.0f}'):<22}"
            f" {spread([ms_per_event(r) for r in rs]):<22} {grown[label] * 100:+9.1f}%"
            f"  {spread([r['server_cpu'] for r in rs]):<22} {statistics.median(r['busy_cores'] for r in rs):10.2f}"
            f"  {spread([r['load'] for r in rs]):<18}".rstrip()
        )
    for apart, how in ((False, "together"), (True, "apart (one after another)")):
        growths = [grown[label] for label, rs in runs.items() if label != "1" and rs[0]["apart"] is apart]
        if not growths:
            continue
        worst = max(growths)
        met = "met" if worst <= 0.10 else "NOT met"
        out(
            f"  handlers {how}: client CPU per event grows with the shard count by at most"
            f" {worst * 100:+.1f}% (goal <= +10%: {met})"
        )
    server = statistics.median(r["server_cpu"] * 1000 / r["delivered"] for rs in runs.values() for r in rs)
    out(f"  the server spends {server:.2f} ms of CPU per delivered event (median over every run)")
    out(
        "  the handlers' CPU over the server's, run by run: the server does about the same work per event"
        " at every shard count,\n  so on a machine whose speed drifts between runs the ratio shows the"
        " handlers' growth with that drift taken out"
    )
    grown = growth(runs, relative)
    for label, rs in runs.items():
        out(
            f"  {label:>8}  {spread([relative(r) for r in rs], '{:.3f}'):<26} {grown[label] * 100:+9.1f}%"
            f"  server ms/event {spread([r['server_cpu'] * 1000 / r['delivered'] for r in rs])}"
        )


def growth(runs: dict[str, list[dict[str, Any]]], measure: Callable[[dict[str, Any]], float]) -> dict[str, float]:
    """Each series' median of ``measure`` over one shard's ("1"), less 1."""
    one = statistics.median(measure(r) for r in runs["1"])
    return {label: statistics.median(measure(r) for r in rs) / one - 1 for label, rs in runs.items()}


def relative(run: dict[str, Any]) -> float:
    """The handlers' CPU over the server's, in one run."""
    return run["client_cpu"] / run["server_cpu"] if run["server_cpu"] > 0 else float("nan")


def precise_table(
    server: str, spread_s: float, latency_ms: float, runs: dict[tuple[int, int], list[dict[str, Any]]]
) -> None:
    out(f"\n[precise] {server}, events spread over {spread_s:g} s, {latency_ms:g} ms per request; median of runs")
    out(
        f"  {'rate/s':>6} {'shards':>6} {'events':>7}  {'p50 s':>7} {'p99 s':>7} {'max s':>7}"
        f"  {'client CPU ms/event':<22} {'req/event':>9} {'server CPU s':<14} {'busy':>5}  {'load':<6}"
    )
    med = statistics.median
    for (per_second, shards), rs in runs.items():
        p50 = med(quantile(r["lateness"], 0.5) for r in rs)
        p99 = med(quantile(r["lateness"], 0.99) for r in rs)
        worst = med(quantile(r["lateness"], 1.0) for r in rs)
        out(
            f"  {per_second:>6} {shards:>6} {rs[0]['delivered']:>7,}  {p50:7.3f} {p99:7.3f} {worst:7.3f}"
            f"  {spread([ms_per_event(r) for r in rs]):<22} {med(r['requests'] / r['delivered'] for r in rs):9.3f}"
            f" {med(r['server_cpu'] for r in rs):<14.2f}"
            f" {med(r['busy_cores'] for r in rs):5.2f}  {med(r['load'] for r in rs):<6.2f}"
        )
    goals = {(250, 1): "at 250/s on one shard", (1000, 4): "at 1,000/s on 4 shards"}
    for key, text in goals.items():
        if key in runs:
            p99 = statistics.median(quantile(r["lateness"], 0.99) for r in runs[key])
            out(f"  p99 lateness {text}: {p99:.3f} s (goal <= 1 s: {'met' if p99 <= 1.0 else 'NOT met'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3,000 due, precise spreads of 10 s")
    parser.add_argument("--due", type=int, help="due events of the throughput runs (default 20,000; --quick 3,000)")
    parser.add_argument("--reps", type=int, default=3, help="runs of each shard count, interleaved (default 3)")
    parser.add_argument("--servers", default="moto", help="comma-separated: moto, radosgw (default moto)")
    parser.add_argument("--latency", type=float, default=20.0, help="injected ms per request (default 20)")
    parser.add_argument("--precise", action="store_true", help="also precise mode (handle(until=...)'s lateness)")
    parser.add_argument(
        "--apart", action="store_true", help="also run 2 and 4 shards' handlers one after another, each alone"
    )
    parser.add_argument("--only-precise", action="store_true", help="precise mode alone")
    parser.add_argument("--spread", type=float, help="precise mode's spread in seconds (default 40; --quick 10)")
    parser.add_argument("--rates", help="precise mode's events per second, comma-separated (default 75,250,1000)")
    parser.add_argument("--precise-reps", type=int, default=1, help="runs of each precise configuration (default 1)")
    parser.add_argument("--rgw-port", type=int, default=7480, help="radosgw's port (default 7480)")
    parser.add_argument("--out", type=Path, help="write this report here as text")
    parser.add_argument("--json", type=Path, help="write every run's figures as JSON here")
    args = parser.parse_args(argv)
    due = args.due or (3000 if args.quick else 20_000)
    spread_s = args.spread or (10.0 if args.quick else 40.0)
    command = "python benchmarks/bench_shards.py" + "".join(" " + shlex.quote(a) for a in (argv or sys.argv[1:]))
    started = time.perf_counter()
    out(f"command: {command}")
    out(
        f"machine: {os.cpu_count()} cores, {platform.system()} {platform.machine()},"
        f" {platform.python_implementation()} {platform.python_version()}; moto {version_of_module('moto')},"
        f" boto3 {version_of_module('boto3')}; started {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC,"
        f" load average {'/'.join(f'{v:.2f}' for v in os.getloadavg())} (1/5/15 min)"
    )
    out(f"each handler process: fast_client, {WORKERS} copiers; this package: {ROOT.name} at {git_head()}")
    results: dict[str, Any] = {}
    serial = 0
    for server in args.servers.split(","):
        store: Store | str = MotoStore() if server == "moto" else start_radosgw(args.rgw_port)
        if isinstance(store, str):
            out(f"{server}: {store}; not run")
            continue
        if server == "radosgw":
            out(f"radosgw: {version_of(['radosgw', '--version'])}")
        try:
            serial += 1
            if not args.only_precise:
                out(f"  [{server}] throughput: {due:,} due, 1, 2 and 4 shards, {args.reps} runs each")
                runs = throughput(store, due, args.reps, args.latency, serial, args.apart)
                results[f"{server} throughput"] = runs
                throughput_table(server, due, args.latency, runs)
            if args.precise or args.only_precise:
                out(f"\n  [{server}] precise mode: {spread_s:g} s spreads, {args.precise_reps} run(s) each")
                rates = tuple(int(r) for r in args.rates.split(",")) if args.rates else PRECISE_RATES
                found = precise(store, spread_s, args.precise_reps, args.latency, serial, rates)
                results[f"{server} precise"] = {f"{r}/s {s} shards": v for (r, s), v in found.items()}
                precise_table(server, spread_s, args.latency, found)
        finally:
            store.close()
    out(
        f"\nwhole run: {time.perf_counter() - started:.0f} s; load average at the end"
        f" {'/'.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(out.lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
