"""A `Scheduler.handle` run in a process of its own, for the kill test of test_faults.py.

    python tests/run_in_subprocess.py ENDPOINT BUCKET PATH COPIES

It runs against the S3 at ``ENDPOINT`` (moto's server), with the real clock and the
default lease. Once ``COPIES`` copies have landed it holds every further copy and every
batch delete before they are sent, so S3 is left mid-delivery (copied, not deleted, the
lease held), prints ``copied COPIES`` and waits to be killed. It never waits long: after
``HOLD_SECONDS`` it exits with status 3 by itself, so no stray process outlives a test.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

HOLD_SECONDS = 120.0


def main(argv: list[str]) -> int:
    endpoint, bucket, path, copies = argv[1], argv[2], argv[3], int(argv[4])

    import boto3
    from botocore.config import Config

    from s3_scheduler import Scheduler

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}),
    )
    lock = threading.Lock()
    started = [0]
    landed = [0]
    hold = threading.Event()

    def wait_to_be_killed() -> None:
        hold.wait(HOLD_SECONDS)
        os._exit(3)

    def before_copy(**_: Any) -> None:
        with lock:
            started[0] += 1
            go = started[0] <= copies
        if not go:
            wait_to_be_killed()

    def after_copy(http_response: Any, **_: Any) -> None:
        if http_response.status_code != 200:
            return
        with lock:
            landed[0] += 1
            done = landed[0] == copies
        if done:
            print(f"copied {copies}", flush=True)

    client.meta.events.register("before-call.s3.CopyObject", before_copy)
    client.meta.events.register("after-call.s3.CopyObject", after_copy)
    client.meta.events.register("before-call.s3.DeleteObjects", lambda **_: wait_to_be_killed())
    report = Scheduler(bucket, path, s3_client=client).handle()
    print(f"finished {report.summary()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
