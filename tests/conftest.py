"""Shared fixtures: an injected clock, moto in-process, S3 over the wire (moto's server
or a real S3 server named by the environment), and a counter of S3 requests.

Set ``S3_SCHEDULER_TEST_ENDPOINT`` (with ``S3_SCHEDULER_TEST_ACCESS_KEY`` and
``S3_SCHEDULER_TEST_SECRET_KEY``) to run every test that takes the ``wire`` fixture
against that server as well; without it those runs are skipped.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws
from moto.core import config as moto_config
from moto.server import ThreadedMotoServer

from s3_scheduler import Scheduler, keys

SCHEDULE_BUCKET = "schedule-bucket"
TARGET_BUCKET = "target-bucket"
T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc)

REAL_S3_ENDPOINT = "S3_SCHEDULER_TEST_ENDPOINT"


class Clock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class RequestCounter:
    """Counts the S3 requests a client sends, by operation name."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def attach(self, client: Any) -> RequestCounter:
        client.meta.events.register("before-call.s3", self._count)
        return self

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    @property
    def lists(self) -> int:
        return self.calls["ListObjects"] + self.calls["ListObjectsV2"]

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@dataclass
class S3:
    """An S3 to test against: a resource, its client, and the buckets made for the test."""

    resource: Any
    client: Any
    schedule_bucket: str
    target_bucket: str
    counter: RequestCounter = field(default_factory=RequestCounter)
    in_process: bool = False

    def seed(self, scheduler: Scheduler, events: Iterable[tuple[datetime, str, str, str]]) -> list[str]:
        """Write events as ``scheduler.schedule`` names them, fast: straight into moto's store
        in-process (no request, so not counted), with ``schedule_many`` over the wire."""
        events = list(events)
        if not self.in_process:
            return scheduler.schedule_many(events)
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        names = [keys.encode_key(scheduler.prefix, when, bucket, path) for when, bucket, path, _ in events]
        for name, (_, _, _, content) in zip(names, events):
            backend.put_object(scheduler.bucket, name, content.encode())
        return names

    def scheduler(self, path: str = "jobs", **options: Any) -> Scheduler:
        return Scheduler(self.schedule_bucket, path, self.resource, self.client, **options)

    def keys(self, bucket: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [obj["Key"] for page in pages for obj in page.get("Contents", ())]

    def body(self, bucket: str, key: str) -> bytes:
        data: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return data


# moto replaces boto3's default session at each mock's start, so that a test's fake
# credentials cannot leak into a test that reaches AWS. No test here reaches AWS (each runs
# with the fake credentials below), and building a session's first client costs 0.1-0.3 s:
# keep boto3's default session across mocks. Every mock_aws() made after this reads it.
moto_config.default_user_config.setdefault("core", {})["reset_boto3_session"] = False


@pytest.fixture(autouse=True)
def _fake_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs with fake credentials and no AWS configuration of the machine."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


def targets_by_shard(bucket: str, count: int, name: str = "k") -> dict[int, str]:
    """A target key of ``bucket`` for each shard of ``count``: the first of k0, k1, ... (``name``
    then a number) that hashes there."""
    found: dict[int, str] = {}
    number = 0
    while len(found) < count:
        found.setdefault(keys.shard_of(bucket, f"{name}{number}", count), f"{name}{number}")
        number += 1
    return found


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def s3() -> Iterator[S3]:
    """moto in-process, with a schedule bucket and a target bucket."""
    with mock_aws():
        resource = boto3.resource("s3", region_name="us-east-1")
        client = resource.meta.client
        for bucket in (SCHEDULE_BUCKET, TARGET_BUCKET):
            client.create_bucket(Bucket=bucket)
        s3 = S3(resource, client, SCHEDULE_BUCKET, TARGET_BUCKET, in_process=True)
        s3.counter.attach(client)
        yield s3


def honours_if_match_on_delete(client: Any, bucket: str) -> bool:
    """Whether the store refuses a DELETE whose If-Match does not hold (moto 5.1 and Ceph 16 ignore it)."""
    from botocore.exceptions import ClientError

    try:
        client.delete_object(Bucket=bucket, Key="if-match-probe", IfMatch='"0"')
    except ClientError:
        return True
    return False


@contextmanager
def pooled_client(pool: int) -> Iterator[Any]:
    """moto in-process: a client with ``pool`` connections, and buckets 'sched' and 'target'."""
    with mock_aws():
        client = boto3.client("s3", config=Config(max_pool_connections=pool))
        for bucket in ("sched", "target"):
            client.create_bucket(Bucket=bucket)
        yield client


@dataclass(frozen=True)
class Endpoint:
    """An S3 reached over HTTP."""

    name: str
    url: str
    access_key: str
    secret_key: str

    def resource(self, **config: Any) -> Any:
        return boto3.resource(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}, **config),
        )


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[Endpoint]:
    """moto's server on an ephemeral port of 127.0.0.1, for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield Endpoint("moto", f"http://{host}:{port}", "testing", "testing")
    server.stop()


def _real_endpoint() -> Endpoint | None:
    url = os.environ.get(REAL_S3_ENDPOINT)
    if not url:
        return None
    return Endpoint(
        "real",
        url,
        os.environ.get("S3_SCHEDULER_TEST_ACCESS_KEY", "test"),
        os.environ.get("S3_SCHEDULER_TEST_SECRET_KEY", "testsecret"),
    )


@pytest.fixture(params=["moto", "real"])
def endpoint(request: pytest.FixtureRequest) -> Endpoint:
    """Each S3 over the wire: moto's server, and the real server when one is set."""
    if request.param == "moto":
        moto: Endpoint = request.getfixturevalue("moto_endpoint")
        return moto
    real = _real_endpoint()
    if real is None:
        pytest.skip(f"no real S3 server: set {REAL_S3_ENDPOINT} (and its credentials) to run")
    return real


def _empty_and_delete(client: Any, bucket: str) -> None:
    """Delete every version of every object (the bucket may be versioned), then the bucket."""
    while True:
        page = client.list_object_versions(Bucket=bucket)
        versions = page.get("Versions", []) + page.get("DeleteMarkers", [])
        if not versions:
            break
        objects = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions]
        for start in range(0, len(objects), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects[start : start + 1000]})
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def make_wire() -> Iterator[Callable[..., S3]]:
    """Builds an `S3` over the wire with fresh buckets, removed after the test."""
    made: list[tuple[Any, str]] = []

    def make(endpoint: Endpoint, **config: Any) -> S3:
        resource = endpoint.resource(**config)
        client = resource.meta.client
        suffix = uuid.uuid4().hex[:12]
        buckets = (f"schedule-{suffix}", f"target-{suffix}")
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
            made.append((client, bucket))
        s3 = S3(resource, client, *buckets)
        s3.counter.attach(client)
        return s3

    yield make
    for client, bucket in made:
        _empty_and_delete(client, bucket)


@pytest.fixture
def wire(endpoint: Endpoint, make_wire: Callable[..., S3]) -> S3:
    """S3 over HTTP (moto's server, and a real server when set), with fresh buckets."""
    return make_wire(endpoint)


@pytest.fixture(autouse=True)
def _restore_log_level() -> Iterator[None]:
    """Code that configures logging (the Lambda handler, the CLI) must not leak into other tests."""
    logger = logging.getLogger("s3_scheduler")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture(autouse=True, scope="session")
def _quiet_moto_server() -> None:
    """moto's server logs every request at INFO; keep test reports readable."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


# s3-scheduler 0.0.3 beside this package ---------------------------------------------------
# Shared by test_compat_003.py and test_mixed_fleet.py. Appended to this file, so its
# imports stand here rather than at the top.

import contextlib  # noqa: E402
import json  # noqa: E402
import queue  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402
from types import TracebackType  # noqa: E402
from typing import NoReturn  # noqa: E402

ORIGINAL = "s3-scheduler==0.0.3"
ORIGINAL_SDIST = "S3_SCHEDULER_ORIGINAL_SDIST"
"""Names 0.0.3's sdist archive, fetched beforehand (``pip download --no-deps --no-binary :all:``)."""

ORIGINAL_DRIVER = r"""
import json, logging, sys, time
from datetime import datetime
import boto3
from botocore.config import Config
import s3_scheduler
import s3_scheduler.scheduler as original
from s3_scheduler.scheduler import Scheduler

spec = json.loads(sys.stdin.readline())
if not s3_scheduler.__file__.startswith(spec["source"]):
    sys.exit("imported the wrong s3_scheduler: " + s3_scheduler.__file__)
resource = boto3.resource(
    "s3", endpoint_url=spec["endpoint"], aws_access_key_id=spec["access_key"],
    aws_secret_access_key=spec["secret_key"], region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}),
)
scheduler = Scheduler(spec["bucket"], spec["path"], resource, resource.meta.client)
real_nowut = original.nowut
warnings = []

class Recorder(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())

logging.getLogger("s3_scheduler").addHandler(Recorder(logging.WARNING))

def run(orders):
    out = []
    for order in orders:
        if order[0] == "schedule":
            when, bucket, target, content = order[1:]
            out.append(scheduler.schedule(datetime.fromisoformat(when), bucket, target, content))
            continue
        now = datetime.fromisoformat(order[1]) if len(order) > 1 else None
        original.nowut = real_nowut if now is None else (lambda: now)
        del warnings[:]
        started = time.time()
        scheduler.handle()
        out.append({"started": started, "ended": time.time(), "warnings": list(warnings)})
    return out

print(json.dumps(run(spec["orders"])), flush=True)
if spec.get("serve"):
    for line in sys.stdin:
        print(json.dumps(run(json.loads(line))), flush=True)
"""
"""0.0.3's `Scheduler` driven from stdin: a first line of JSON (where, and a list of orders),
then, when it says ``serve``, one list of orders a line until stdin closes; one line of JSON
answers each list. Orders: ``["schedule", when, bucket, target, content]`` (returns the key)
and ``["handle"]`` or ``["handle", now]``, ``now`` patched in as 0.0.3's ``nowut`` (returns
the run's wall-clock start and end and the warnings it logged)."""


@pytest.fixture(scope="session")
def original_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unpacked sdist of s3-scheduler 0.0.3: the archive ``S3_SCHEDULER_ORIGINAL_SDIST``
    names (.ci/run fetches it once), else fetched from the package index once per test
    process; skips, saying why, when the index cannot be reached."""
    folder = tmp_path_factory.mktemp("s3-scheduler-0.0.3")
    given = os.environ.get(ORIGINAL_SDIST)
    if given:
        archives = [Path(given)]
        if not archives[0].is_file():
            pytest.fail(f"{ORIGINAL_SDIST}={given!r} is not a file: fetch it with pip download {ORIGINAL}")
    else:
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


def _original_spec(source: Path, endpoint: Endpoint, s3: S3, path: str, orders: list[list[Any]]) -> dict[str, Any]:
    return {
        "source": str(source),
        "endpoint": endpoint.url,
        "access_key": endpoint.access_key,
        "secret_key": endpoint.secret_key,
        "bucket": s3.schedule_bucket,
        "path": path,
        "orders": orders,
    }


def _original_environment(source: Path) -> dict[str, str]:
    """The driver's environment: a PYTHONPATH holding 0.0.3 only (it runs from beside it)."""
    return {**os.environ, "PYTHONPATH": str(source)}


def run_original(source: Path, endpoint: Endpoint, s3: S3, path: str, orders: list[list[Any]]) -> list[Any]:
    """Run ``orders`` with 0.0.3's Scheduler in a subprocess; return what each returned."""
    done = subprocess.run(
        [sys.executable, "-c", ORIGINAL_DRIVER],
        input=json.dumps(_original_spec(source, endpoint, s3, path, orders)),
        capture_output=True,
        text=True,
        env=_original_environment(source),
        cwd=source.parent,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: list[Any] = json.loads(done.stdout)
    return result


class OriginalProcess:
    """0.0.3's Scheduler in a process that stays up between orders, so that one of its
    runs can overlap a run of this package: `send` returns at once, `receive` waits
    (at most ``timeout`` seconds) for the answer. Use it as a context manager."""

    def __init__(self, source: Path, endpoint: Endpoint, s3: S3, path: str, *, timeout: float = 120.0) -> None:
        self.timeout = timeout
        # A file, never a pipe that could fill up and stall the process; closed by close().
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self._process = subprocess.Popen(
            [sys.executable, "-c", ORIGINAL_DRIVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=_original_environment(source),
            cwd=source.parent,
        )
        self._answers: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.send([], spec={**_original_spec(source, endpoint, s3, path, []), "serve": True})
            self.receive()  # imported and set up: ready
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._answers.put(line)
        self._answers.put("")  # end of output: the process ended

    def send(self, orders: list[list[Any]], *, spec: dict[str, Any] | None = None) -> None:
        """Hand ``orders`` to the process (the first call sends the whole ``spec``)."""
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(orders if spec is None else spec) + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            self._ended()

    def receive(self) -> list[Any]:
        """Wait for the answer to the orders sent last: what each order returned."""
        try:
            line = self._answers.get(timeout=self.timeout)
        except queue.Empty:
            pytest.fail(f"0.0.3's process did not answer within {self.timeout} s")
        if not line:
            self._ended()
        answer: list[Any] = json.loads(line)
        return answer

    def _ended(self) -> NoReturn:
        self._process.wait(timeout=self.timeout)
        self._stderr.seek(0)
        pytest.fail(f"0.0.3's process ended ({self._process.returncode}): {self._stderr.read()}")

    def run(self, orders: list[list[Any]]) -> list[Any]:
        """Send ``orders`` and wait for what each returned."""
        self.send(orders)
        return self.receive()

    def close(self) -> None:
        """Close its stdin, so it ends, and wait for it (killing it after ``timeout``)."""
        if self._process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.close()
        try:
            self._process.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=self.timeout)
        self._reader.join(self.timeout)
        self._stderr.close()

    def __enter__(self) -> OriginalProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


FULL_SIZE = os.environ.get("S3_SCHEDULER_FULL_CAMPAIGNS", "") not in ("", "0")
"""Whether the full-size campaigns and the tests marked ``slow`` run (CI sets S3_SCHEDULER_FULL_CAMPAIGNS=1)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``slow`` (scale and cross-version tests) unless the full campaigns run."""
    if FULL_SIZE:
        return
    skip = pytest.mark.skip(reason="slow: runs with S3_SCHEDULER_FULL_CAMPAIGNS=1, as CI does")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


# The S3 clients the front ends make ------------------------------------------------------
# Shared by test_cli.py and test_aws_lambda.py. Appended to this file, as the section above.


class ClientSpy:
    """Records each S3 client made through ``boto3.session.Session.client`` while it is on: the
    keyword arguments it was made with, and the client (the CLI and the Lambda handler make their own)."""

    def __init__(self) -> None:
        self.made: list[tuple[dict[str, Any], Any]] = []

    @property
    def pools(self) -> list[int]:
        """Each client's connection pool size (``config.max_pool_connections``), in order."""
        return [kwargs["config"].max_pool_connections for kwargs, _ in self.made]

    @property
    def regions(self) -> list[str | None]:
        """Each client's region, in order."""
        return [client.meta.region_name for _, client in self.made]


@pytest.fixture
def client_spy(monkeypatch: pytest.MonkeyPatch) -> ClientSpy:
    """A `ClientSpy` on every client made during the test."""
    spy = ClientSpy()
    original = boto3.session.Session.client

    def client(self: Any, *args: Any, **kwargs: Any) -> Any:
        made = original(self, *args, **kwargs)
        spy.made.append((kwargs, made))
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)
    return spy


def cancel_during_handle(client: Any, scheduler: Scheduler, canceller: Scheduler, key: str, at: int) -> bool:
    """Run ``scheduler.handle()`` with ``canceller.cancel(key)`` made right after the ``at``-th
    request of ``client`` (or after the run, when it makes fewer); return what cancel answered."""
    answers: list[bool] = []
    count = [0]

    def maybe_cancel(**_: Any) -> None:
        count[0] += 1
        if count[0] == at and not answers:
            answers.append(canceller.cancel(key))

    client.meta.events.register("after-call.s3", maybe_cancel)
    try:
        scheduler.handle()
    finally:
        client.meta.events.unregister("after-call.s3", maybe_cancel)
    return answers[0] if answers else canceller.cancel(key)
