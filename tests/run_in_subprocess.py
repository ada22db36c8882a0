"""A `Scheduler.handle` run in a process of its own, for the kill test of test_faults.py.

    python tests/run_in_subprocess.py ENDPOINT BUCKET PATH COPIES

It runs against the S3 at ``ENDPOINT`` (moto's server), with the real clock and the
default lease. Once ``COPIES`` copies have landed it holds every further copy and every
batch delete before they are sent, so S3 is left mid-delivery (copied, not deleted, the
lease held), prints ``copied COPIES`` and waits to be killed. It never waits long: after
``HOLD_SECONDS`` it exits with status 3 by itself, so no stray process outlives a test.

    python tests/run_in_subprocess.py loop SPEC

A handler that loops on `Scheduler.handle` (of one shard, or of every shard) until
SIGTERM, for the shards' kill test (tests/wire/test_shards_kill.py): see `loop`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from datetime import datetime, timedelta, timezone
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


def loop(argv: list[str]) -> int:
    """Loop on ``handle()`` until SIGTERM, writing what the process does to a log.

    ``argv[2]`` is a JSON object: ``endpoint`` (the credentials come from the
    environment, as boto3 reads them), ``bucket``, ``path``, ``shards``, ``shard`` (a
    number: ``handle(shard=...)``; null: ``handle()`` over every shard), ``offset``
    (seconds: the process's clock is the real UTC time plus this, so processes given one
    offset share a clock), ``max_workers``, ``lease_ttl`` (seconds), ``pause`` (real
    seconds between runs), ``log`` (a file) and ``client``: ``"boto3"`` (a boto3 client
    passed in: every request through botocore) or ``"own"`` (none passed: the client the
    package builds, ``fast_client``, which sends its copies, listings and batch deletes
    directly; see `s3_scheduler._direct`).

    Each line of the log is a JSON object, written with one ``write`` to a file opened
    for appending, so a SIGKILL never leaves half a line, and each says when it was
    written by the process's clock (``"at"``):

    - ``{"ready": true}`` once the scheduler is made;
    - ``{"call": n, "send": target, "attempt": a}`` before each HTTP attempt of
      CopyObject number ``n`` of the process: written before the request leaves, so
      every copy that may have landed has its line, with the clock when it was sent;
    - ``{"call": n, "copied": target}`` once S3 answered that copy with success, or
      ``{"call": n, "failed": target, "error": ...}`` once it answered or raised an error;
    - ``{"deleted": [keys]}`` and ``{"undeleted": [keys]}``: the events a DeleteObjects
      removed, and those it did not (refused, or the request failed);
    - ``{"run": summary}`` after each run, with ``"direct"``: the copies, batch deletes
      and pages the client sent directly so far, where it is the package's own;
      ``{"raised": error}`` after one that raised (the loop goes on);
      ``{"stopped": true}`` after SIGTERM's run.

    On SIGTERM the run in progress stops as `Scheduler.handle`'s ``stop`` stops it
    (deletes sent, lease released) and the process exits with status 0.
    """
    spec: dict[str, Any] = json.loads(argv[2])

    import boto3
    from botocore.config import Config

    from s3_scheduler import Scheduler

    log = DeliveryLog(spec["log"], timedelta(seconds=spec["offset"]))
    if spec.get("client", "boto3") == "own":
        from s3_scheduler._s3 import fast_client

        os.environ.update(AWS_ENDPOINT_URL=spec["endpoint"], AWS_DEFAULT_REGION="us-east-1")
        client = fast_client(spec["max_workers"] + 3 * (spec["shards"] + 1))
    else:
        client = boto3.client(
            "s3",
            endpoint_url=spec["endpoint"],
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                retries={"mode": "standard"},
                max_pool_connections=spec["max_workers"] + 3 * (spec["shards"] + 1),
            ),
        )
    log.attach(client)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scheduler = Scheduler(
        spec["bucket"],
        spec["path"],
        s3_client=client,
        shards=spec["shards"],
        max_workers=spec["max_workers"],
        lease_ttl=timedelta(seconds=spec["lease_ttl"]),
        clock=log.clock,
    )
    log.write({"ready": True})
    while not stop.is_set():
        try:
            report = scheduler.handle(shard=spec["shard"], stop=stop)
        except Exception as exc:  # noqa: BLE001 - logged, and the next run tries again
            log.write({"raised": repr(exc)})
        else:
            log.write({"run": report.summary(), **_direct_counts(client)})
        stop.wait(spec["pause"])
    log.write({"stopped": True})
    return 0


def _direct_counts(client: Any) -> dict[str, Any]:
    """What the client has sent directly so far (`s3_scheduler._direct`), for the log: copies
    answered as copied, batch deletes answered, pages read; nothing for a client passed in."""
    from s3_scheduler._direct import Direct

    direct = Direct.of(client)
    if direct is None:
        return {}
    return {"direct": {"copies": direct.sent, "deletes": direct.batches, "pages": direct.listed}}


_CALL = "s3-scheduler-tests-call"
_DELETE = "s3-scheduler-tests-delete"


class DeliveryLog:
    """The log of `loop`: the process's clock (real UTC time plus ``offset``), and the
    hooks that record each copy and batch delete of a client."""

    def __init__(self, path: str, offset: timedelta) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._offset = offset
        self._lock = threading.Lock()
        self._calls = 0
        self._local = threading.local()

    def clock(self) -> datetime:
        """The clock shared by the processes given the same offset."""
        return datetime.now(timezone.utc) + self._offset

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line, in one ``write``, with the clock (``at``)."""
        os.write(self._fd, (json.dumps({**record, "at": self.clock().isoformat()}) + "\n").encode())

    def attach(self, client: Any) -> None:
        """Record every copy and batch delete ``client`` makes."""
        events = client.meta.events
        events.register("before-parameter-build.s3.CopyObject", self._copy_built)
        events.register("before-send.s3.CopyObject", self._copy_sent)
        events.register("after-call.s3.CopyObject", self._copy_answered)
        events.register("after-call-error.s3.CopyObject", self._copy_raised)
        events.register("before-parameter-build.s3.DeleteObjects", self._delete_built)
        events.register("after-call.s3.DeleteObjects", self._delete_answered)
        events.register("after-call-error.s3.DeleteObjects", self._delete_raised)
        from s3_scheduler._direct import Direct

        direct = Direct.of(client)
        if direct is not None:
            self._attach_direct(direct)

    def _attach_direct(self, direct: Any) -> None:
        """Record the copies and batch deletes the client sends directly, as botocore's are
        recorded: a copy is one call whatever carried its attempts (each direct attempt,
        and botocore's where the direct one was not answered as copied, is a ``send`` line
        from the ``before-send`` the direct path emits too), its outcome what the call
        returned or raised; a batch delete answered directly names what it removed (one
        handed to botocore is recorded by botocore's hooks)."""
        copy, delete = direct.copy, direct.delete

        def copied(bucket: str, key: str, source_bucket: str, source_key: str, **options: Any) -> None:
            number = self._next_call()
            self._local.call, self._local.attempts, self._local.direct = (number, key), 0, True
            try:
                copy(bucket, key, source_bucket, source_key, **options)
            except Exception as exc:
                response = getattr(exc, "response", None)
                status = (
                    response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, dict) else None
                )
                self.write({"call": number, "failed": key, "error": status or type(exc).__name__})
                raise
            finally:
                self._local.direct = False
            self.write({"call": number, "copied": key})

        def deleted(bucket: str, objects: list[tuple[str, Any]]) -> Any:
            errors = delete(bucket, objects)
            if errors is not None:
                refused = [str(error.get("Key", "")) for error in errors]
                self.write({"deleted": [key for key, _ in objects if key not in refused]})
                if refused:
                    self.write({"undeleted": refused})
            return errors

        direct.copy, direct.delete = copied, deleted

    def _next_call(self) -> int:
        with self._lock:
            self._calls += 1
            return self._calls

    def _copy_built(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if getattr(self._local, "direct", False):
            return  # botocore sends a direct copy again: the same call
        # a call's attempts are sent from the thread that makes the call
        context[_CALL] = self._local.call = (self._next_call(), str(params["Key"]))
        self._local.attempts = 0

    def _copy_sent(self, **_: Any) -> None:
        number, target = self._local.call
        self._local.attempts += 1
        self.write({"call": number, "send": target, "attempt": self._local.attempts})

    def _copy_answered(self, http_response: Any, parsed: Any, context: dict[str, Any], **_: Any) -> None:
        if _CALL not in context:
            return  # a direct copy's: its call records its outcome
        number, target = context[_CALL]
        if http_response.status_code == 200 and "Error" not in parsed:
            self.write({"call": number, "copied": target})
        else:
            self.write({"call": number, "failed": target, "error": http_response.status_code})

    def _copy_raised(self, exception: BaseException, context: dict[str, Any], **_: Any) -> None:
        if _CALL not in context:
            return  # a direct copy's: its call records its outcome
        number, target = context[_CALL]
        self.write({"call": number, "failed": target, "error": type(exception).__name__})

    def _delete_built(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[_DELETE] = [str(o["Key"]) for o in params["Delete"]["Objects"]]

    def _delete_answered(self, http_response: Any, parsed: Any, context: dict[str, Any], **_: Any) -> None:
        if http_response.status_code != 200:
            self.write({"undeleted": context[_DELETE]})
            return
        # the run asks quietly (``Quiet``): S3 names only the keys it did not delete
        refused = [str(e["Key"]) for e in parsed.get("Errors", ())]
        self.write({"deleted": [key for key in context[_DELETE] if key not in refused]})
        if refused:
            self.write({"undeleted": refused})

    def _delete_raised(self, context: dict[str, Any], **_: Any) -> None:
        self.write({"undeleted": context[_DELETE]})


if __name__ == "__main__":
    sys.exit(loop(sys.argv) if sys.argv[1:2] == ["loop"] else main(sys.argv))
