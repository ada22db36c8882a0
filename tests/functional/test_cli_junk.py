"""Junk in, one line out (issue 17): the command line, ``--from`` lines, the Lambda settings and the public
API, fed generated junk (lone surrogates, huge numbers, control characters, U+2028, near-miss values).

- The CLI exits 0, 1 or 2, never with a traceback; on 1 (failure) or 2 (usage) it prints exactly one line
  on stderr (besides the log lines ``-v`` asked for); on 2 nothing was written to S3.
- `read_settings` returns settings a `Scheduler` can be built with, or raises `ConfigurationError` naming a
  variable it was given.
- The public API raises only what it documents: `TypeError`, `ValueError` and the package's own exceptions;
  ``stop`` never raises.

The CLI runs in-process through `s3_scheduler.cli.main` against moto. ``S3_SCHEDULER_FULL_CAMPAIGNS=1`` runs
each campaign at full size.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from datetime import timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.config import Config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from s3_scheduler import ConfigurationError, Scheduler, cli, runner
from s3_scheduler.aws_lambda import read_settings
from s3_scheduler.cli import workers
from s3_scheduler.cli.commands import run as run_command
from s3_scheduler.exceptions import S3SchedulerError
from s3_scheduler.settings import MAX_WORKERS_LIMIT

from ..conftest import T0, Clock

FULL = os.environ.get("S3_SCHEDULER_FULL_CAMPAIGNS", "") not in ("", "0")
EXAMPLES = 80 if FULL else 60
DOCUMENTED = (TypeError, ValueError, S3SchedulerError)
"""What the public API may raise."""

JUNK_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)

# junk ---------------------------------------------------------------------------------------------------------

FRAGMENTS = [
    "+10m", "-5m", "+5 m", "+0s", "+1.5h", "2030-01-07T14:05", "2030-01-07 15:05 Europe/Paris", "2020-01-01",
    "2030-03-31 02:30 Europe/Paris", "9999-12-31T23:59:59", "0001-01-01T00:00+01:00", "Europe/Pariss",
    "s3://target/k", "s3://target/", "s3://", "s3://Bad_Bucket!/k", "s3://my..bucket/k", "s3://192.168.1.1/k",
    "target", "sched", "jobs", "jobs/", "/", "|", "~~", "%7E", "%", "arn:aws:s3:x",
    "jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|target|k", "jobs/|2026-11-27%2013%3A00%3A00%2B00%3A00|target|k",
    "10s", "16m", "1d", "90", "0", "-1", "1e20", "100000000000000000000", "9" * 400, "nan", "inf", "1_000",
    "http://127.0.0.1:9", "http://[::1", "http://", "https://", ":99999", "localhost:5101",
    "application/json", "text/plain; charset=utf-8", "a=b", "order-id=42", "=", "-", "--json", "--at",
    "", " ", "\t", "\n", "\r\n", "\x00", "\x1b[31m", "\x85", "\u2028", "\u2029", "\ud800", "\udcff", "\ufeff",
    "é", "日本", "\U0001f600",
]  # fmt: skip
"""Near-misses and troublemakers, joined with each other and with any character."""

ANY_CHAR = st.characters(codec=None, exclude_categories=())  # surrogates and control characters included
JUNK = st.lists(st.one_of(st.sampled_from(FRAGMENTS), ANY_CHAR), max_size=3).map("".join)
"""A junk string: a near-miss, a troublemaker, any character, or a few of them joined."""

GLOBAL_OPTIONS = ["--bucket", "--prefix", "--endpoint-url", "--region", "--max-workers", "--max-lateness", "--shards"]
GLOBAL_FLAGS = ["--no-legacy-offsets", "--json", "-v"]
EVENT_KEY = "jobs/|2026-11-27%2013%3A00%3A00%2B00%3A00|target|k"
FROM_PATH = "events.jsonl"

OPTION_VALUES = {
    "--at": ["+10m", "-5m", "+5 m", "2030-01-07T14:05", "2030-01-07 15:05 Europe/Paris", "9999-12-31T23:59:59"],
    "--until": ["+1h", "+0s", "-1d", "0001-01-01T00:00+01:00", "+99999999999d"],
    "--to": ["s3://target/k", "s3://target/a b", "s3://Legacy_Bucket/k", "s3://my..bucket/k", "s3://sched/jobs/.lease"],
    "--content": ["x", "", "\u2028"],
    "--file": ["-", "/", "/dev/null", "missing", FROM_PATH, "\x00", "a" * 300],
    "--from": ["-", FROM_PATH, "/dev/null", "/", "missing"],
    "--content-type": ["application/json", "json", "text/plain\r\nX: y"],
    "--metadata": ["a=b", "a", "=b", "n=é", "A=1"],
    "--limit": ["0", "20", "-1", "1e20", "100000000000000000000"],
    "--timeout": ["0", "50s", "1d", "inf", "9" * 400],
    "--interval": ["1s", "0", "15m", "16m", "0.001"],
    "--bucket": ["sched", "target", "no-such-bucket", "Bad_Bucket!", "my..bucket", "Legacy_Bucket", "arn:aws:s3:x"],
    "--prefix": ["jobs", "", "/", "jobs/", "a|b", "j" * 1100],
    "--endpoint-url": ["http://127.0.0.1:9", "http://[::1", "localhost:5101", "http://a b", "http://h:99999"],
    "--region": ["eu-west-3", "", "not a region", "-x", "123"],
    "--max-workers": ["1", "32", "1000", "1001", "0", "1e20"],
    "--max-lateness": ["1h", "60", "59", "10s", "0", "-1h", "99999999999d"],
    "--shards": ["1", "4", "1000", "1001", "0", "-1", "1e3"],
    "--shard": ["0", "1", "3", "4", "-1", "x"],
}
"""Values each option meets in real life, good and bad."""

COMMANDS: dict[str, tuple[dict[str, str], list[str], list[str]]] = {
    # command: (a valid start, options that take a value, flags)
    "schedule": ({"--at": "+1h", "--to": "s3://target/k", "--content": "x"}, [
        "--at", "--to", "--content", "--file", "--from", "--content-type", "--metadata"], ["--replace"]),
    "schedule --from": ({"--from": FROM_PATH}, ["--from", "--content-type", "--metadata", "--at"], ["--replace"]),
    "list": ({}, ["--until", "--limit", "--to", "--at"], ["--array"]),
    "cancel": ({"--to": "s3://target/k"}, ["--to", "--at"], []),
    "reschedule": ({"--to": "s3://target/k", "--at": "+2h"}, ["--to", "--at"], []),
    "handle": ({}, ["--timeout", "--shard"], ["--metrics"]),
    "run": ({"--interval": "1s"}, ["--interval", "--shard"], ["--metrics"]),
    "check": ({}, [], []),
    "demo": ({}, [], []),  # always given a stray token below: it only ever meets a usage error here
}  # fmt: skip


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    """A command line: a valid start for one command, with some values replaced by junk and junk added."""
    name = draw(st.sampled_from(sorted(COMMANDS)))
    start, options, flags = COMMANDS[name]
    values = dict(start)
    for option in draw(st.lists(st.sampled_from(options + GLOBAL_OPTIONS), max_size=3)):
        values[option] = draw(st.one_of(st.sampled_from(OPTION_VALUES[option]), JUNK, st.sampled_from(FRAGMENTS)))
    before: list[str] = []
    after = [name.split()[0]]
    for option, value in values.items():
        (before if option in GLOBAL_OPTIONS and draw(st.booleans()) else after).extend([option, value])
    after += draw(st.lists(st.sampled_from(flags + GLOBAL_FLAGS), max_size=2))
    if name in ("cancel", "reschedule") and draw(st.booleans()):
        after.append(draw(st.one_of(st.just(EVENT_KEY), JUNK)))
    if name == "demo" or draw(st.integers(0, 9)) == 0:
        after.append(draw(JUNK) + "\x00stray")
    return before + after


def from_line(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["event", "junk", "nested", "blank"]))
    if kind == "junk":
        return draw(JUNK)
    if kind == "nested":
        depth = draw(st.sampled_from([1, 50, 5000, 200_000]))
        return "[" * depth + "]" * depth
    if kind == "blank":
        return draw(st.sampled_from(["", " ", "\t"]))
    event: dict[str, Any] = {"at": "+1h", "to": f"s3://target/{draw(st.integers(0, 9))}", "content": "x"}
    for field in draw(st.lists(st.sampled_from(["at", "to", "content", "extra", "metadata"]), max_size=2)):
        event[field] = draw(st.one_of(JUNK, st.sampled_from(FRAGMENTS), st.integers(), st.none()))
    return json.dumps(event, ensure_ascii=draw(st.booleans()))


@st.composite
def from_files(draw: st.DrawFn) -> bytes:
    """The bytes of a --from file: JSON events with junk fields, junk lines, deep nesting, blank lines."""
    lines = [from_line(draw) for _ in range(draw(st.integers(0, 4)))]
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    return ending.join(lines).encode("utf-8", "surrogatepass")  # a lone surrogate becomes bytes that are not UTF-8


# the S3 and the CLI around each example -------------------------------------------------------------------------


@functools.cache
def shared_client() -> Any:
    """One client for the examples' own requests: building one costs ~0.2 s; moto serves whichever mock is on."""
    return boto3.client("s3", region_name="us-east-1", config=Config(max_pool_connections=4))


@contextmanager
def fresh_buckets() -> Iterator[Any]:
    """A fresh moto (in-process) for one example, with buckets 'sched' and 'target'."""
    with mock_aws():
        client = shared_client()
        for bucket in ("sched", "target"):
            client.create_bucket(Bucket=bucket)
        yield client


def all_keys(client: Any) -> list[tuple[str, str]]:
    found = []
    for bucket in (b["Name"] for b in client.list_buckets()["Buckets"]):
        found += [(bucket, o["Key"]) for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return found


_CLIENTS: dict[tuple[Any, ...], Any] = {}
_ORIGINAL_CLIENT = boto3.session.Session.client


def _cached_client(self: Any, service: str, *args: Any, **kwargs: Any) -> Any:
    """boto3's Session.client, made once per region, endpoint and pool size (each costs ~0.2 s to build)."""
    config = kwargs.get("config")
    key = (service, self.region_name, kwargs.get("endpoint_url"), getattr(config, "max_pool_connections", None))
    if key not in _CLIENTS:
        _CLIENTS[key] = _ORIGINAL_CLIENT(self, service, *args, **kwargs)
    return _CLIENTS[key]


_ORIGINAL_GETADDRINFO = socket.getaddrinfo


def _local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
    """No junk endpoint reaches a name server: only loopback names resolve."""
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise socket.gaierror(socket.EAI_NONAME, "junk endpoint: not resolved in tests")
    return _ORIGINAL_GETADDRINFO(host, *args, **kwargs)


@pytest.fixture
def junk_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The CLI's environment for the campaigns: the bucket 'sched', clients cached, no retries, no name server,
    no real waits in run, no worker process started by run --shards N, in a scratch directory."""
    monkeypatch.setenv("S3_SCHEDULER_BUCKET", "sched")
    for name in ("S3_SCHEDULER_PREFIX", "S3_SCHEDULER_MAX_WORKERS", "S3_SCHEDULER_LEGACY_OFFSETS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("S3_SCHEDULER_MAX_LATENESS", raising=False)
    monkeypatch.delenv("S3_SCHEDULER_SHARDS", raising=False)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setattr(boto3.session.Session, "client", _cached_client)
    monkeypatch.setattr(socket, "getaddrinfo", _local_only)
    monkeypatch.setattr(
        run_command, "run_until_stopped", functools.partial(runner.run_until_stopped, wait=lambda _: True)
    )
    monkeypatch.setattr(run_command, "start_worker", lambda argv, shard: _StoppedWorker())
    monkeypatch.setattr(run_command, "Supervisor", functools.partial(workers.Supervisor, wait=lambda _: True))
    monkeypatch.chdir(tmp_path)


class _StoppedWorker:
    """A worker process of run --shards N in the campaigns: none is started; it ends at once when stopped."""

    pid = 0

    def poll(self) -> int | None:
        return 0

    def wait(self, timeout: float | None = None) -> int:
        return 0

    def send_signal(self, sig: int) -> None:
        pass

    def kill(self) -> None:
        pass


_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO) s3_scheduler")


def run_cli(argv: list[str], stdin: bytes = b"") -> tuple[int, str]:
    """Run the command line in-process; return its status and its stderr."""
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err), _stdin(stdin):
        status = cli.main(argv, clock=Clock())
    return status, err.getvalue()


@contextmanager
def _stdin(data: bytes) -> Iterator[None]:
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    try:
        yield
    finally:
        sys.stdin = saved


def assert_one_line_out(argv: list[str], status: int, err: str, before: list[Any], after: list[Any]) -> None:
    """The CLI's promise: 0, 1 or 2; no traceback; one line on a failure; nothing written on a usage error."""
    assert status in (0, 1, 2), (argv, status, err)
    assert "Traceback" not in err, (argv, err)
    if status:
        lines = [line for line in err.split("\n")[:-1] if not _LOG_LINE.match(line)]
        assert len(lines) == 1, (argv, err)
        assert len(err.splitlines()) == len(err.split("\n")) - 1, (argv, err)  # no U+2028 or the like inside
        assert lines[0].startswith("s3-scheduler"), (argv, err)
    if status == 2:
        assert after == before, (argv, err)


# the CLI ---------------------------------------------------------------------------------------------------------


@JUNK_SETTINGS
@given(argv=command_lines(), lines=from_files(), stdin=from_files())
@example(argv=["list", "--limit", "100000000000000000000"], lines=b"", stdin=b"")
@example(argv=["list", "--limit", "1e20"], lines=b"", stdin=b"")
@example(argv=["--prefix", "\udcff", "list"], lines=b"", stdin=b"")
@example(argv=["--endpoint-url", "http://[::1", "list"], lines=b"", stdin=b"")
@example(argv=["--endpoint-url", "http://a b", "list"], lines=b"", stdin=b"")
@example(argv=["schedule", "--from", FROM_PATH], lines=b"[" * 100_000 + b"]" * 100_000, stdin=b"")
@example(
    argv=["schedule", "--from", "-"], lines=b"", stdin=b'{"at": "+1h", "to": "s3://target/\\ud800", "content": "x"}'
)
@example(argv=["schedule", "--at", "+1h", "--to", "s3://target/k", "--file", "\x00"], lines=b"", stdin=b"")
@example(argv=["run", "--interval", "16m"], lines=b"", stdin=b"")
@example(argv=["--max-workers", "100000000000000000000", "list"], lines=b"", stdin=b"")
@example(argv=["cancel", EVENT_KEY], lines=b"", stdin=b"")
@example(argv=["handle", "--region", ""], lines=b"", stdin=b"")
@example(argv=["--max-lateness", "10s", "handle"], lines=b"", stdin=b"")
def test_the_cli_answers_junk_in_one_line(junk_cli: None, argv: list[str], lines: bytes, stdin: bytes) -> None:
    """Every command and option given junk exits 0, 1 or 2 without a traceback, a failure or usage error in one
    line on stderr, and a usage error writes nothing to S3."""
    with open(FROM_PATH, "wb") as stream:
        stream.write(lines)
    with fresh_buckets() as client:
        Scheduler("sched", "jobs", s3_client=client).schedule(T0 + timedelta(hours=1), "target", "k", "x")
        before = all_keys(client)

        status, err = run_cli(argv, stdin)

        assert_one_line_out(argv, status, err, before, all_keys(client))


@JUNK_SETTINGS
@given(lines=from_files())
@example(lines="\n".join(['{"at": "+1h", "to": "s3://target/a\u2028b", "content": "x\u2029y"}'] * 2).encode())
@example(lines=b'{"at": "+1h", "to": "s3://target/k", "content": "\\udcff"}')
def test_from_lines_answer_junk_in_one_line(junk_cli: None, lines: bytes) -> None:
    """Any --from file (junk lines, lone surrogates, U+2028, deep nesting, CRLF) is written or refused in one line,
    and a refused file writes nothing."""
    with open(FROM_PATH, "wb") as stream:
        stream.write(lines)
    with fresh_buckets() as client:
        status, err = run_cli(["schedule", "--from", FROM_PATH])

        assert_one_line_out(["--from", repr(lines)], status, err, [], all_keys(client))


# the Lambda settings ---------------------------------------------------------------------------------------------

SETTING_VALUES = {
    "S3_SCHEDULER_BUCKET": ["sched", "Legacy_Bucket", "my..bucket"],
    "S3_SCHEDULER_PREFIX": ["jobs", "a/b/", "", "\udcff"],
    "S3_SCHEDULER_ALLOWED_TARGETS": ["target", "target/in/, s3://work", "arn:aws:s3:x"],
    "S3_SCHEDULER_PRECISE": ["1", "off"],
    "S3_SCHEDULER_DEAD_LETTER_AFTER": ["1d", "90"],
    "S3_SCHEDULER_DEAD_LETTER_ATTEMPTS": ["3", "1"],
    "S3_SCHEDULER_MAX_LATENESS": ["1h", "2d", "60", "10s"],
    "S3_SCHEDULER_MAX_WORKERS": ["32", "1000", "1001", "100000000000000000000"],
    "S3_SCHEDULER_LEGACY_OFFSETS": ["yes", "0"],
    "S3_SCHEDULER_LOG_LEVEL": ["debug", "WARNING"],
    "S3_SCHEDULER_METRICS": ["no", "TRUE"],
    "AWS_ENDPOINT_URL": ["http://127.0.0.1:5000", "https://s3.example.com", "http://[::1", "localhost:9"],
    "AWS_ENDPOINT_URL_S3": ["http://[::1]:9000", "http://a b"],
}
"""Values each variable meets in real life, good and bad."""


@st.composite
def lambda_environments(draw: st.DrawFn) -> dict[str, str]:
    """A Lambda environment: each variable absent, a known value, or junk."""
    env = {}
    for name, good in SETTING_VALUES.items():
        choice = draw(
            st.sampled_from(["absent", "known", "junk"] if name != "S3_SCHEDULER_BUCKET" else ["known", "junk"])
        )
        if choice != "absent":
            env[name] = draw(st.sampled_from(good)) if choice == "known" else draw(JUNK)
    return env


@JUNK_SETTINGS
@given(env=lambda_environments())
@example(env={"S3_SCHEDULER_BUCKET": "sched", "AWS_ENDPOINT_URL": "http://[::1"})
@example(env={"S3_SCHEDULER_BUCKET": "sched", "AWS_ENDPOINT_URL_S3": "http://a b"})
@example(env={"S3_SCHEDULER_BUCKET": "sched", "S3_SCHEDULER_MAX_WORKERS": "100000000000000000000"})
@example(env={"S3_SCHEDULER_BUCKET": "sched", "S3_SCHEDULER_PREFIX": "\udcff"})
@example(env={"S3_SCHEDULER_BUCKET": "arn:aws:s3:x"})  # an ARN botocore refuses, found by CI's hypothesis run
def test_lambda_settings_answer_junk_with_a_configuration_error(env: dict[str, str]) -> None:
    """read_settings returns settings a Scheduler is built from and lists with, an endpoint boto3 takes, and a pool
    of at most 1,000 connections, or raises ConfigurationError naming a variable it was given."""
    try:
        found = read_settings(env)
    except ConfigurationError as exc:
        refused: ConfigurationError | None = exc
    else:
        refused = None
    if refused is not None:
        assert any(name in str(refused) for name in env), (env, refused)
        return

    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        client_for(endpoint)
    assert found.max_workers <= MAX_WORKERS_LIMIT  # urllib3 fills the whole pool up front
    with mock_aws():
        client = shared_client()
        client.create_bucket(Bucket=found.bucket)
        scheduler = Scheduler(
            found.bucket,
            found.prefix,
            s3_client=client,
            allowed_targets=found.allowed_targets,
            dead_letter_after=None if found.dead_letter_after is None else timedelta(seconds=found.dead_letter_after),
            dead_letter_attempts=found.dead_letter_attempts,
            max_workers=found.max_workers,
            legacy_offsets=found.legacy_offsets,
            max_lateness=None if found.max_lateness is None else timedelta(seconds=found.max_lateness),
        )
        assert list(scheduler.pending()) == []


@functools.cache
def client_for(endpoint: str) -> Any:
    """An S3 client for ``endpoint``, made as boto3 makes one from AWS_ENDPOINT_URL (no request is sent)."""
    return _ORIGINAL_CLIENT(boto3.session.Session(region_name="us-east-1"), "s3", endpoint_url=endpoint)


# the public API --------------------------------------------------------------------------------------------------

ANY = st.one_of(
    JUNK,
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(max_size=8),
    st.lists(JUNK, max_size=2),
    st.dictionaries(JUNK, JUNK, max_size=2),
    st.timedeltas(),
)
"""Any value at all, of the types a caller might pass by mistake."""

ZONES = st.one_of(
    st.none(),
    st.builds(
        timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
    ),
    st.timezones(),
)
WHEN = st.one_of(st.datetimes(timezones=ZONES), st.timedeltas(), ANY)
NEW_WHEN = WHEN
"""reschedule's ``when``, short of the timedeltas that overflow now + when: see
`test_reschedule_by_a_timedelta_out_of_range_is_a_value_error`."""
BUCKET = st.one_of(st.just("target"), JUNK, ANY)
PATH = st.one_of(st.just("k"), JUNK, ANY)
WHAT = st.one_of(st.just("x"), JUNK, st.binary(max_size=8), st.builds(io.BytesIO, st.binary(max_size=8)), ANY)
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "exclusive": ANY,
        "allowed_targets": st.one_of(st.lists(st.one_of(JUNK, st.just("target"))), ANY),
        "dead_letter_after": ANY,
        "dead_letter_attempts": ANY,
        "lease_ttl": ANY,
        "max_workers": st.one_of(st.integers(-2, 2000), ANY),
        "legacy_offsets": ANY,
        "max_lateness": ANY,
    },
)
CALLS = st.one_of(
    st.tuples(st.just("schedule"), st.tuples(WHEN, BUCKET, PATH, WHAT), st.fixed_dictionaries(
        {}, optional={"replace": ANY, "content_type": st.one_of(JUNK, ANY), "metadata": st.one_of(
            st.dictionaries(JUNK, JUNK, max_size=2), ANY)})),
    st.tuples(st.just("schedule_many"), st.tuples(st.one_of(
        st.lists(st.one_of(st.tuples(WHEN, BUCKET, PATH, WHAT), st.lists(ANY, max_size=5)), max_size=3), ANY)),
        st.fixed_dictionaries({}, optional={"replace": ANY})),
    st.tuples(st.just("cancel"), st.tuples(st.one_of(st.just(EVENT_KEY), JUNK, ANY)), st.just({})),
    st.tuples(st.just("reschedule"), st.tuples(st.one_of(st.just(EVENT_KEY), JUNK, ANY), NEW_WHEN), st.just({})),
    st.tuples(st.just("pending"), st.just(()), st.fixed_dictionaries({"until": WHEN})),
    st.tuples(st.just("stop"), st.tuples(st.one_of(st.just(EVENT_KEY), JUNK, ANY)), st.just({})),
)  # fmt: skip


@JUNK_SETTINGS
@given(bucket=st.one_of(st.just("sched"), ANY), path=st.one_of(st.just("jobs"), ANY), options=OPTIONS)
def test_scheduler_raises_only_documented_errors_for_junk_options(bucket: Any, path: Any, options: Any) -> None:
    """Scheduler(...) given junk is made, or raises TypeError, ValueError or one of the package's exceptions."""
    with suppress(*DOCUMENTED):
        Scheduler(bucket, path, s3_client=shared_client(), **options)


@JUNK_SETTINGS
@given(calls=st.lists(CALLS, min_size=1, max_size=3))
@example(calls=[("schedule_many", ([(T0, "target", "\ud800", "x")],), {})])
@example(calls=[("schedule", (timedelta.max, "target", "k", "x"), {})])
@example(calls=[("schedule", (T0, "target", "k", "\udcff"), {})])
def test_the_api_raises_only_documented_errors_for_junk(calls: list[tuple[str, tuple[Any, ...], Any]]) -> None:
    """schedule, schedule_many, cancel, reschedule and pending(until=...) given junk raise only TypeError,
    ValueError or the package's own exceptions; stop never raises."""
    clock = Clock()
    with fresh_buckets() as client:
        scheduler = Scheduler("sched", "jobs", s3_client=client, clock=clock, sleep=clock.advance)
        scheduler.schedule(T0 + timedelta(hours=1), "target", "k", "x")
        for method, args, kwargs in calls:
            if method == "stop":
                assert isinstance(scheduler.stop(*args), bool)
                continue
            try:
                result = getattr(scheduler, method)(*args, **kwargs)
                if method == "pending":
                    list(result)
            except DOCUMENTED:
                pass


def test_schedule_many_names_the_event_holding_a_lone_surrogate() -> None:
    """A lone surrogate in a batch's target path is a ValueError naming the event's index, not a TypeError from
    rebuilding a UnicodeEncodeError (issue 17)."""
    with fresh_buckets() as client:
        scheduler = Scheduler("sched", "jobs", s3_client=client)

        with pytest.raises(ValueError, match=r"^event 1 of the batch: path '\\ud800' holds a lone surrogate") as raised:
            scheduler.schedule_many([(T0, "target", "ok", "x"), (T0, "target", "\ud800", "x")])

        assert all_keys(client) == []
    assert type(raised.value) is ValueError


def test_schedule_many_keeps_the_packages_own_error_types() -> None:
    """An event outside allowed_targets is still a TargetNotAllowedError naming its index."""
    from s3_scheduler import TargetNotAllowedError

    with fresh_buckets() as client:
        scheduler = Scheduler("sched", "jobs", s3_client=client, allowed_targets=["target"])

        with pytest.raises(TargetNotAllowedError, match=r"^event 0 of the batch: the target s3://other/k is not"):
            scheduler.schedule_many([(T0, "other", "k", "x")])


def test_reschedule_by_a_timedelta_out_of_range_is_a_value_error() -> None:
    """reschedule(key, timedelta) past the years a datetime holds raises ValueError, as schedule does, not
    OverflowError (found by the API campaign)."""
    with fresh_buckets() as client:
        scheduler = Scheduler("sched", "jobs", s3_client=client, clock=Clock())
        key = scheduler.schedule(T0 + timedelta(hours=1), "target", "k", "x")

        with pytest.raises(ValueError, match="when"):
            scheduler.reschedule(key, timedelta(days=-739947))

        assert all_keys(client) == [("sched", key)]
