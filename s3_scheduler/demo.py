"""``s3-scheduler demo``: the whole flow on a laptop, with no AWS account.

It starts an S3 on 127.0.0.1 (moto's server, from the ``local`` extra), creates a
schedule bucket and a target bucket, schedules a handful of events a second or two
apart, delivers each on its second with ``handle(until=...)``, printing every delivery
as it happens, then a summary, and stops the server.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Callable, TextIO

from .report import ScheduledEvent
from .runner import wait_for_stop_signal
from .scheduler import Scheduler

SCHEDULE_BUCKET = "demo-schedule"
TARGET_BUCKET = "demo-target"
EVENTS = [
    (1.0, "greetings/hello.txt", "Hello from s3-scheduler"),
    (2.0, "orders/42.json", '{"order": 42, "action": "ship"}'),
    (3.5, "reports/daily.csv", "day,count\n2026-11-27,7\n"),
    (5.0, "reminders/standup.txt", "Stand-up in 5 minutes"),
    (6.0, "greetings/bye.txt", "Bye from s3-scheduler"),
]
INSTALL = 'pip install -e ".[local]"  (from a checkout of this repository)'


def run_demo(
    out: TextIO,
    *,
    keep: bool = False,
    clock: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    wait_forever: Callable[[], None] | None = None,
) -> int:
    """Run the demo, printing to ``out``; return the exit status.

    ``clock`` and ``sleep`` are the scheduler's (tests pass their own). With ``keep`` the
    server stays up after the summary until ``wait_forever`` returns (default: until
    Ctrl-C or SIGTERM).
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        out.write(f"s3-scheduler demo needs moto's server, from the local extra: {INSTALL}\n")
        return 1
    import boto3

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the server logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="demo",
            aws_secret_access_key="demo",
        )
        for bucket in (SCHEDULE_BUCKET, TARGET_BUCKET):
            client.create_bucket(Bucket=bucket)
        out.write(f"S3 (moto) on {endpoint}: buckets {SCHEDULE_BUCKET} and {TARGET_BUCKET}\n")
        scheduler = Scheduler(SCHEDULE_BUCKET, "jobs", s3_client=client, clock=clock, sleep=sleep)
        start = scheduler.now()
        for offset, target, content in EVENTS:
            scheduler.schedule(start + timedelta(seconds=offset), TARGET_BUCKET, target, content)
            out.write(f"scheduled s3://{TARGET_BUCKET}/{target} for +{offset:g} s\n")
        out.write("delivering each event on its second...\n")
        out.flush()
        lateness: list[float] = []

        def show(event: ScheduledEvent, late: float) -> None:
            lateness.append(late)
            body = client.get_object(Bucket=TARGET_BUCKET, Key=event.path)["Body"].read()
            out.write(f"  delivered s3://{event.bucket}/{event.path} ({len(body)} bytes), {late:.3f} s late\n")
            out.flush()

        report = scheduler.handle(until=start + timedelta(seconds=EVENTS[-1][0] + 1), on_delivery=show)
        worst = max(lateness, default=0.0)
        out.write(f"done: {report.summary()}; worst lateness {worst:.3f} s\n")
        if keep:
            _show_commands(out, endpoint)
            (wait_forever or wait_for_stop_signal)()
        return 0 if report.ok and len(report.delivered) == len(EVENTS) else 1
    finally:
        server.stop()


def _show_commands(out: TextIO, endpoint: str) -> None:
    out.write(
        f"\nThe S3 stays up on {endpoint} until Ctrl-C. Try, in another shell:\n"
        f"  export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo"
        " AWS_REGION=us-east-1\n"
        f"  s3-scheduler --bucket {SCHEDULE_BUCKET} schedule --at +30s --to s3://{TARGET_BUCKET}/mine.txt"
        " --content hi\n"
        f"  s3-scheduler --bucket {SCHEDULE_BUCKET} list\n"
        f"  s3-scheduler --bucket {SCHEDULE_BUCKET} run --interval 10s\n"
    )
    out.flush()
