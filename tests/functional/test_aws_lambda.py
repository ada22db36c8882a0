"""The ready Lambda handler, driven as Lambda drives it: a fake context, moto, the environment."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from s3_scheduler import ConfigurationError, Scheduler, aws_lambda
from s3_scheduler import settings as settings_module
from s3_scheduler.aws_lambda import LambdaHandler, event_shard, margin, read_settings
from s3_scheduler.keys import shard_of

from ..conftest import T0, ClientSpy, Clock

SETTINGS = (
    "S3_SCHEDULER_PREFIX",
    "S3_SCHEDULER_ALLOWED_TARGETS",
    "S3_SCHEDULER_PRECISE",
    "S3_SCHEDULER_DEAD_LETTER_AFTER",
    "S3_SCHEDULER_LOG_LEVEL",
    "S3_SCHEDULER_LEGACY_OFFSETS",
    "S3_SCHEDULER_MAX_WORKERS",
    "S3_SCHEDULER_DEAD_LETTER_ATTEMPTS",
    "S3_SCHEDULER_METRICS",
    "S3_SCHEDULER_MAX_LATENESS",
    "S3_SCHEDULER_SHARDS",
    "S3_SCHEDULER_FANOUT",
)


class FakeContext:
    """What the Lambda runtime passes: here only the remaining time matters."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto with a schedule and a target bucket, and the handler's settings in the environment."""
    monkeypatch.setenv("S3_SCHEDULER_BUCKET", "sched")
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        client = boto3.client("s3")
        for bucket in ("sched", "target", "victim"):
            client.create_bucket(Bucket=bucket)
        yield client


@pytest.fixture
def handler(clock: Clock) -> LambdaHandler:
    """A handler whose scheduler runs on the test's clock: its waits move the clock, never sleep."""
    return LambdaHandler(clock=clock, sleep=clock.advance)


def schedule(client: Any, when: datetime, bucket: str, key: str) -> str:
    return Scheduler("sched", "jobs", s3_client=client).schedule(when, bucket, key, key)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_handler_delivers_and_returns_the_report_as_json(
    lambda_env: Any, handler: LambdaHandler, caplog: pytest.LogCaptureFixture
) -> None:
    """The handler delivers what is due, returns to_dict(), and logs one summary line."""
    key = schedule(lambda_env, T0 - timedelta(minutes=1), "target", "done.txt")
    schedule(lambda_env, T0 + timedelta(minutes=5), "target", "later.txt")

    result = handler({}, FakeContext(60_000))

    assert json.loads(json.dumps(result))["delivered"][0]["key"] == key
    assert result["deferred"] == result["expired"] == []
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Handled")]
    assert len(summaries) == 1
    assert "s3://sched/jobs/|" in summaries[0]
    assert summaries[0].endswith(
        ": delivered=1 failed=0 skipped=0 deferred=0 vanished=0 rejected=0 dead_lettered=0 expired=0"
    )
    assert warnings(caplog) == []


def test_each_run_prints_its_metrics_line(
    lambda_env: Any, handler: LambdaHandler, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After each run one Embedded Metric Format line goes to stdout (SAM alarms read it); METRICS=0 turns it off."""
    schedule(lambda_env, T0 - timedelta(minutes=1), "no-such-target", "k")

    handler({}, FakeContext(60_000))
    printed = capsys.readouterr().out
    monkeypatch.setenv("S3_SCHEDULER_METRICS", "0")
    handler({}, FakeContext(60_000))

    (line,) = printed.splitlines()
    metrics = json.loads(line)
    assert metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "S3Scheduler"
    assert (metrics["Bucket"], metrics["Prefix"]) == ("sched", "jobs")
    assert (metrics["Failed"], metrics["OldestDueAgeSeconds"]) == (1, 60)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(("dead_letter_after", "put_aside"), [("1d", 1), ("", 0)])
def test_max_lateness_expires_an_event_found_too_late(
    lambda_env: Any,
    handler: LambdaHandler,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    dead_letter_after: str,
    put_aside: int,
) -> None:
    """MAX_LATENESS=1h: an event 2 h late is not delivered but dead-lettered (or removed, without them): expired=1."""
    monkeypatch.setenv("S3_SCHEDULER_MAX_LATENESS", "1h")
    monkeypatch.setenv("S3_SCHEDULER_DEAD_LETTER_AFTER", dead_letter_after)
    late = schedule(lambda_env, T0 - timedelta(hours=2), "target", "late")
    schedule(lambda_env, T0 - timedelta(minutes=30), "target", "recent")

    result = handler({}, FakeContext(60_000))

    assert [e["key"] for e in result["expired"]] == [late]
    assert [e["path"] for e in result["delivered"]] == ["recent"]
    assert [o["Key"] for o in lambda_env.list_objects_v2(Bucket="target")["Contents"]] == ["recent"]
    left = [o["Key"] for o in lambda_env.list_objects_v2(Bucket="sched").get("Contents", [])]
    assert len(left) == put_aside
    assert all(".dead-letters/" in key for key in left)
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Handled")]
    assert [s.rsplit(": ", 1)[1] for s in summaries] == [
        "delivered=1 failed=0 skipped=0 deferred=0 vanished=0 rejected=0 dead_lettered=0 expired=1"
    ]


def test_the_module_handler_delivers_on_the_real_clock(lambda_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """s3_scheduler.aws_lambda.handler, the name a function points at, delivers an event that is due."""
    monkeypatch.setattr(aws_lambda, "_default", LambdaHandler())
    key = schedule(lambda_env, datetime(2020, 1, 1), "target", "k")

    result = aws_lambda.handler({}, FakeContext(60_000))

    assert [e["key"] for e in result["delivered"]] == [key]


@pytest.mark.parametrize(
    ("remaining", "kept"),
    [(3.0, 0.2), (60.0, 3.0), (900.0, 45.0), (1.5, 0.2), (0.3, 0.15), (0.0, 0.0), (-1.0, 0.0)],
)
def test_the_margin_is_a_twentieth_at_least_a_fifth_of_a_second_never_half(remaining: float, kept: float) -> None:
    """The time kept back to return is 5% of what is left, at least 0.2 s, and at most half of it: the run
    keeps back its own wind-down, measured."""
    assert margin(remaining) == pytest.approx(kept)


def test_the_default_3_s_timeout_still_delivers(
    lambda_env: Any, handler: LambdaHandler, caplog: pytest.LogCaptureFixture
) -> None:
    """With AWS's default 3 s timeout the run gets 2.8 s, enough to deliver, and no warning."""
    key = schedule(lambda_env, T0 - timedelta(minutes=1), "target", "k")

    result = handler({}, FakeContext(3_000))

    assert [e["key"] for e in result["delivered"]] == [key]
    assert warnings(caplog) == []


def test_no_time_left_defers_and_warns_which_timeout_to_set(
    lambda_env: Any, handler: LambdaHandler, caplog: pytest.LogCaptureFixture
) -> None:
    """With no time left nothing starts: the due event stays pending and a warning names the timeout to set."""
    key = schedule(lambda_env, T0 - timedelta(minutes=1), "target", "k")

    result = handler({}, FakeContext(0))

    assert result["delivered"] == []
    assert [o["Key"] for o in lambda_env.list_objects_v2(Bucket="sched")["Contents"]] == [key]
    assert len(warnings(caplog)) == 1
    assert "set the function's timeout to 10 s or more" in warnings(caplog)[0]


def test_a_short_time_left_warns_but_still_delivers(
    lambda_env: Any, handler: LambdaHandler, caplog: pytest.LogCaptureFixture
) -> None:
    """1.1 s left keeps 0.2 s back: the run is warned about, and what can start still goes."""
    schedule(lambda_env, T0 - timedelta(minutes=1), "target", "k")

    result = handler({}, FakeContext(1_100))

    assert len(result["delivered"]) == 1
    assert ["Only 0.9 s" in w for w in warnings(caplog)] == [True]


def test_precise_mode_delivers_each_event_on_its_second(
    lambda_env: Any,
    handler: LambdaHandler,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """S3_SCHEDULER_PRECISE=on delivers the events of the coming 55 s, each at its time."""
    monkeypatch.setenv("S3_SCHEDULER_PRECISE", "on")
    for offset in (10, 30, 50, 58):
        schedule(lambda_env, T0 + timedelta(seconds=offset), "target", f"t{offset}")

    result = handler({}, FakeContext(90_000))

    assert [e["path"] for e in result["delivered"]] == ["t10", "t30", "t50"]
    lateness = [r.args[-1] for r in caplog.records if r.getMessage().startswith("Delivered")]  # type: ignore[index]
    assert lateness == [0.0, 0.0, 0.0]
    assert T0 + timedelta(seconds=50) <= clock.now < T0 + timedelta(seconds=58)
    assert warnings(caplog) == []


def test_precise_mode_with_a_short_timeout_warns_and_covers_what_it_can(
    lambda_env: Any, handler: LambdaHandler, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With 30 s left precise mode covers the next 28.5 s only, and says to set 70 s."""
    monkeypatch.setenv("S3_SCHEDULER_PRECISE", "1")
    for offset in (10, 40):
        schedule(lambda_env, T0 + timedelta(seconds=offset), "target", f"t{offset}")

    result = handler({}, FakeContext(30_000))

    assert [e["path"] for e in result["delivered"]] == ["t10"]
    assert len(warnings(caplog)) == 1
    assert "only the coming 28.5 s" in warnings(caplog)[0]
    assert "70 s or more" in warnings(caplog)[0]


def test_allowed_targets_come_from_the_environment(
    lambda_env: Any, handler: LambdaHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3_SCHEDULER_ALLOWED_TARGETS (comma-separated) is enforced: other targets are rejected."""
    monkeypatch.setenv("S3_SCHEDULER_ALLOWED_TARGETS", "target/in/, other-bucket,")
    evil = schedule(lambda_env, T0 - timedelta(minutes=1), "victim", "x")
    good = schedule(lambda_env, T0 - timedelta(minutes=1), "target", "in/y")

    result = handler({}, FakeContext(60_000))

    assert [e["key"] for e in result["rejected"]] == [evil]
    assert [e["key"] for e in result["delivered"]] == [good]
    assert lambda_env.list_objects_v2(Bucket="victim")["KeyCount"] == 0


def test_a_missing_bucket_setting_fails_the_invocation_naming_it(
    lambda_env: Any, handler: LambdaHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without S3_SCHEDULER_BUCKET the invocation fails with a message naming it."""
    monkeypatch.delenv("S3_SCHEDULER_BUCKET")

    with pytest.raises(ConfigurationError, match="S3_SCHEDULER_BUCKET is not set"):
        handler({}, FakeContext(60_000))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("S3_SCHEDULER_BUCKET", "Bad_Bucket!", r"S3_SCHEDULER_BUCKET: 'Bad_Bucket!' is not a bucket name: use 3 to 63"),
        ("S3_SCHEDULER_ALLOWED_TARGETS", "", r"S3_SCHEDULER_ALLOWED_TARGETS='' is set but empty.*'bucket/prefix'"),
        ("S3_SCHEDULER_ALLOWED_TARGETS", " , ", r"S3_SCHEDULER_ALLOWED_TARGETS=' , ' is set but empty"),
        ("S3_SCHEDULER_ALLOWED_TARGETS", "work, bad bucket/x", r"entry 'bad bucket/x': 'bad bucket' is not a bucket"),
        ("S3_SCHEDULER_LOG_LEVEL", "verbose", r"S3_SCHEDULER_LOG_LEVEL='verbose' .* DEBUG, INFO, WARNING, ERROR"),
        ("S3_SCHEDULER_DEAD_LETTER_AFTER", "nan", r"S3_SCHEDULER_DEAD_LETTER_AFTER='nan' .* 90s, 10m, 2h, 1d"),
        ("S3_SCHEDULER_DEAD_LETTER_AFTER", "inf", r"S3_SCHEDULER_DEAD_LETTER_AFTER='inf' is not a duration"),
        ("S3_SCHEDULER_DEAD_LETTER_AFTER", "-60", r"S3_SCHEDULER_DEAD_LETTER_AFTER='-60' is not a duration"),
        ("S3_SCHEDULER_DEAD_LETTER_AFTER", "a day", r"S3_SCHEDULER_DEAD_LETTER_AFTER='a day' is not a duration"),
        (
            "S3_SCHEDULER_DEAD_LETTER_AFTER",
            "99999999999d",
            r"S3_SCHEDULER_DEAD_LETTER_AFTER='99999999999d' is too long",
        ),
        (
            "S3_SCHEDULER_MAX_LATENESS",
            "soon",
            r"S3_SCHEDULER_MAX_LATENESS='soon' is not a duration: use seconds or 90s",
        ),
        ("S3_SCHEDULER_MAX_LATENESS", "-1h", r"S3_SCHEDULER_MAX_LATENESS='-1h' is not a duration"),
        ("S3_SCHEDULER_MAX_LATENESS", "nan", r"S3_SCHEDULER_MAX_LATENESS='nan' is not a duration"),
        ("S3_SCHEDULER_MAX_LATENESS", "99999999999d", r"S3_SCHEDULER_MAX_LATENESS='99999999999d' is too long: use at"),
        ("S3_SCHEDULER_PRECISE", "sometimes", r"S3_SCHEDULER_PRECISE='sometimes' .* 1/0, true/false, yes/no or on/off"),
        ("S3_SCHEDULER_PRECISE", "2", r"S3_SCHEDULER_PRECISE='2' is not yes or no"),
        ("S3_SCHEDULER_LEGACY_OFFSETS", "maybe", r"S3_SCHEDULER_LEGACY_OFFSETS='maybe' .* yes/no or on/off"),
        ("S3_SCHEDULER_MAX_WORKERS", "0", r"S3_SCHEDULER_MAX_WORKERS='0' is not a whole number of 1 or more"),
        ("S3_SCHEDULER_MAX_WORKERS", "many", r"S3_SCHEDULER_MAX_WORKERS='many' is not a whole number"),
        ("S3_SCHEDULER_DEAD_LETTER_ATTEMPTS", "-1", r"S3_SCHEDULER_DEAD_LETTER_ATTEMPTS='-1' is not a whole number"),
    ],
)
def test_each_bad_setting_is_refused_naming_the_variable_and_the_forms(
    lambda_env: Any, handler: LambdaHandler, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    """A malformed environment value fails the invocation with a ConfigurationError naming it, before any request."""
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigurationError, match=message):
        handler({}, FakeContext(60_000))


def test_the_scheduler_is_built_once_per_container(lambda_env: Any, handler: LambdaHandler) -> None:
    """Warm invocations reuse the scheduler (and its client) while the settings stay the same."""
    settings = read_settings({"S3_SCHEDULER_BUCKET": "sched"})
    first = handler.scheduler(settings)

    again = handler.scheduler(settings)
    other = handler.scheduler(settings._replace(prefix="other"))

    assert again is first
    assert other is not first


def test_the_client_pool_fits_max_workers(
    lambda_env: Any, handler: LambdaHandler, monkeypatch: pytest.MonkeyPatch, client_spy: ClientSpy
) -> None:
    """The handler's S3 client holds max_workers connections and 3 more (the listing, the batch delete, the
    lease): 32 copies by default, S3_SCHEDULER_MAX_WORKERS when set."""
    handler({}, FakeContext(60_000))
    monkeypatch.setenv("S3_SCHEDULER_MAX_WORKERS", "8")
    handler({}, FakeContext(60_000))

    assert client_spy.pools == [35, 11]
    assert (
        handler.scheduler(read_settings({"S3_SCHEDULER_BUCKET": "sched", "S3_SCHEDULER_MAX_WORKERS": "8"})).max_workers
        == 8
    )


def test_legacy_offsets_come_from_the_environment(
    lambda_env: Any, handler: LambdaHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A due event named with +14:00, as 0.0.3 wrote it, is delivered by default, not with LEGACY_OFFSETS=0."""
    key = "jobs/|2026-11-27%2012%3A30%3A00%2B14%3A00|target|off"
    lambda_env.put_object(Bucket="sched", Key=key, Body=b"x")

    monkeypatch.setenv("S3_SCHEDULER_LEGACY_OFFSETS", "0")
    strict = handler({}, FakeContext(60_000))
    monkeypatch.delenv("S3_SCHEDULER_LEGACY_OFFSETS")
    legacy = handler({}, FakeContext(60_000))

    assert strict["delivered"] == []
    assert [e["key"] for e in legacy["delivered"]] == [key]


@pytest.mark.parametrize(("attempts", "dead_lettered"), [("1", 1), ("", 0)])
def test_dead_letter_attempts_come_from_the_environment(
    lambda_env: Any, handler: LambdaHandler, monkeypatch: pytest.MonkeyPatch, attempts: str, dead_lettered: int
) -> None:
    """DEAD_LETTER_ATTEMPTS=1 dead-letters a failing event at its first failed run; the default, 3, does not."""
    monkeypatch.setenv("S3_SCHEDULER_DEAD_LETTER_AFTER", "0")
    monkeypatch.setenv("S3_SCHEDULER_DEAD_LETTER_ATTEMPTS", attempts)
    schedule(lambda_env, T0 - timedelta(minutes=1), "no-such-target", "k")

    result = handler({}, FakeContext(60_000))

    assert len(result["failed"]) == 1
    assert len(result["dead_lettered"]) == dead_lettered


def test_a_cold_start_loads_neither_the_cli_nor_argparse() -> None:
    """Importing the handler, as a cold start does, imports no module of the CLI, nor argparse nor dateutil's
    parser (issue 18): the settings come from s3_scheduler.settings."""
    script = "import sys, s3_scheduler.aws_lambda; print(' '.join(sorted(sys.modules)))"

    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    loaded = run.stdout.split()

    assert "s3_scheduler.settings" in loaded
    assert [name for name in loaded if name == "s3_scheduler.cli" or name.startswith("s3_scheduler.cli.")] == []
    assert "argparse" not in loaded
    assert "dateutil.parser" not in loaded


def test_the_handler_reads_its_settings_through_the_settings_module() -> None:
    """read_settings and Settings, the handler's names for its configuration, are s3_scheduler.settings' own."""
    assert aws_lambda.read_settings is settings_module.read_settings
    assert aws_lambda.Settings is settings_module.Settings


# Shards: the shard invocation, the tick's fan-out (issue 19) ---------------------------------

ARN = "arn:aws:lambda:us-east-1:123456789012:function:s3-scheduler"


class ShardContext(FakeContext):
    """The context of an invocation of the function at `ARN`."""

    invoked_function_arn = ARN


class FakeLambda:
    """A stand-in for boto3's Lambda client that records each invoke; those for a shard in
    ``failing`` raise what Lambda answers when throttled."""

    def __init__(self, failing: tuple[int, ...] = ()) -> None:
        self.calls: list[dict[str, Any]] = []
        self.failing = failing
        self._lock = threading.Lock()

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            self.calls.append(kwargs)
        if json.loads(kwargs["Payload"])["shard"] in self.failing:
            error = {"Error": {"Code": "TooManyRequestsException", "Message": "Rate Exceeded."}}
            raise ClientError(error, "Invoke")
        return {"StatusCode": 202}

    @property
    def shards(self) -> list[int]:
        """The shard each invoke asked for, ascending."""
        return sorted(json.loads(call["Payload"])["shard"] for call in self.calls)


def sharded(client: Any, shards: int, names: list[str], when: datetime = T0 - timedelta(minutes=1)) -> dict[str, int]:
    """Schedule one event per name for target/name with ``shards`` shards; return each name's shard."""
    scheduler = Scheduler("sched", "jobs", s3_client=client, shards=shards)
    for name in names:
        scheduler.schedule(when, "target", name, name)
    return {name: shard_of("target", name, shards) for name in names}


def targets(client: Any) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket="target").get("Contents", ()))


def schedule_keys(client: Any) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket="sched").get("Contents", ()))


NAMES = [f"k{i}" for i in range(8)]  # with 4 shards: in shards 0, 1, 2 and 3


def test_a_shard_event_delivers_that_shard_only(
    lambda_env: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """{"shard": 3} with SHARDS=4 delivers shard 3's due events alone, invokes nothing, and prints its
    metrics line with the scheduler's dimensions."""
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "4")
    where = sharded(lambda_env, 4, NAMES)
    lambdas = FakeLambda()
    handler = LambdaHandler(clock=clock, sleep=clock.advance, lambda_client=lambdas)

    result = handler({"shard": 3}, ShardContext(60_000))

    in_three = sorted(name for name, shard in where.items() if shard == 3)
    assert in_three == ["k1", "k3", "k5"]
    assert sorted(e["path"] for e in result["delivered"]) == targets(lambda_env) == in_three
    assert all(key.startswith(("jobs/0/|", "jobs/1/|", "jobs/2/|")) for key in schedule_keys(lambda_env))
    assert len(schedule_keys(lambda_env)) == len(NAMES) - 3
    assert lambdas.calls == []
    metrics = json.loads(capsys.readouterr().out)
    assert (metrics["Bucket"], metrics["Prefix"], metrics["Delivered"]) == ("sched", "jobs", 3)


def test_a_shard_event_in_precise_mode_delivers_on_the_second(
    lambda_env: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A shard invocation keeps the handler's time rules: precise mode delivers its shard's events of the
    coming 55 s, each on its second, and leaves the later ones."""
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "4")
    monkeypatch.setenv("S3_SCHEDULER_PRECISE", "on")
    scheduler = Scheduler("sched", "jobs", s3_client=lambda_env, shards=4)
    for offset, name in ((10, "k1"), (50, "k3"), (58, "k5"), (20, "k0")):  # k0 is in shard 1
        scheduler.schedule(T0 + timedelta(seconds=offset), "target", name, name)
    handler = LambdaHandler(clock=clock, sleep=clock.advance, lambda_client=FakeLambda())

    result = handler({"shard": 3}, ShardContext(90_000))

    assert [e["path"] for e in result["delivered"]] == ["k1", "k3"]
    lateness = [r.args[-1] for r in caplog.records if r.getMessage().startswith("Delivered")]  # type: ignore[index]
    assert lateness == [0.0, 0.0]
    assert targets(lambda_env) == ["k1", "k3"]


def test_the_tick_fans_out_one_invocation_per_shard_and_delivers_the_unsharded_prefix(
    lambda_env: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tick (EventBridge's event) with SHARDS=4 invokes this function asynchronously once per shard
    found, {"shard": k}, by the context's ARN; delivers the events written before sharding itself; and
    returns what it started, leaving the shards' events to their invocations."""
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "4")
    sharded(lambda_env, 4, ["k0", "k6"])  # shards 1 and 2 only
    before = schedule(lambda_env, T0 - timedelta(minutes=1), "target", "before-sharding")
    lambdas = FakeLambda()
    handler = LambdaHandler(clock=clock, sleep=clock.advance, lambda_client=lambdas)
    tick = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}

    result = handler(tick, ShardContext(60_000))

    assert [(c["FunctionName"], c["InvocationType"]) for c in lambdas.calls] == [(ARN, "Event")] * 2
    assert lambdas.shards == [1, 2]
    assert all(set(json.loads(c["Payload"])) == {"shard"} for c in lambdas.calls)
    assert (result["invoked"], result["not_invoked"]) == ([1, 2], [])
    assert [e["key"] for e in result["unsharded"]["delivered"]] == [before]
    assert targets(lambda_env) == ["before-sharding"]
    assert len(schedule_keys(lambda_env)) == 2
    assert json.loads(json.dumps(result)) == result
    metrics = json.loads(capsys.readouterr().out)
    assert (metrics["Prefix"], metrics["Delivered"]) == ("jobs", 1)


def test_neither_the_tick_nor_a_shard_beyond_n_delivers_to_a_shards_lease_or_dead_letters(
    lambda_env: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SHARDS=4, the unsharded prefix (delivered by the tick) and shard 7 (written with a larger N,
    delivered by its invocation) hold names aimed at shard 1's lease and shard 2's dead letters, as a
    scheduler of one prefix writes them: both are rejected, and neither target is written."""
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "4")
    in_unsharded = schedule(lambda_env, T0 - timedelta(minutes=1), "sched", "jobs/1/.lease")
    in_seven = Scheduler("sched", "jobs/7", s3_client=lambda_env).schedule(
        T0 - timedelta(minutes=1), "sched", "jobs/2/.dead-letters/x", "x"
    )
    lambdas = FakeLambda()
    handler = LambdaHandler(clock=clock, sleep=clock.advance, lambda_client=lambdas)

    tick = handler({}, ShardContext(60_000))
    seven = handler({"shard": 7}, ShardContext(60_000))

    assert lambdas.shards == [7]
    assert [e["key"] for e in tick["unsharded"]["rejected"]] == [in_unsharded]
    assert [e["key"] for e in seven["rejected"]] == [in_seven]
    assert not {"jobs/1/.lease", "jobs/2/.dead-letters/x"} & set(schedule_keys(lambda_env))


def test_the_tick_with_no_shard_found_invokes_nothing_and_still_reports(
    lambda_env: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An idle sharded schedule: the tick builds no Lambda client, invokes nothing, and still prints its
    metrics line (the alarm on runs that report counts it)."""
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "4")
    monkeypatch.setattr(aws_lambda, "_lambda_client", lambda: pytest.fail("no Lambda client is needed"))
    handler = LambdaHandler(clock=clock, sleep=clock.advance)

    result = handler({}, ShardContext(60_000))

    assert (result["invoked"], result["not_invoked"], result["unsharded"]["delivered"]) == ([], [], [])
    assert json.loads(capsys.readouterr().out)["Delivered"] == 0


@pytest.mark.parametrize("unsharded", [None, 30])
def test_the_precise_tick_lasts_only_as_long_as_the_unsharded_prefix_needs(
    lambda_env: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch, unsharded: int | None
) -> None:
    """In precise mode the tick invokes the shards first, then delivers the unsharded prefix
    on the second: it returns at once when that prefix holds nothing in its window (no
    55 s paid for an empty prefix), and after its last event when it holds some."""
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "4")
    monkeypatch.setenv("S3_SCHEDULER_PRECISE", "on")
    sharded(lambda_env, 4, ["k0", "k6"], when=T0 + timedelta(seconds=20))
    if unsharded is not None:
        schedule(lambda_env, T0 + timedelta(seconds=unsharded), "target", "before-sharding")
    lambdas = FakeLambda()
    handler = LambdaHandler(clock=clock, sleep=clock.advance, lambda_client=lambdas)

    result = handler({"source": "aws.events"}, ShardContext(90_000))

    assert sorted(result["invoked"]) == [1, 2]
    assert [e["path"] for e in result["unsharded"]["delivered"]] == ([] if unsharded is None else ["before-sharding"])
    assert clock.now - T0 == timedelta(seconds=unsharded or 0)


def test_a_failed_invoke_leaves_the_other_shards_invoked(
    lambda_env: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """When Lambda refuses the invocation of one shard, the others are invoked all the same, the failure
    is logged as an ERROR naming the shard, and the result counts it; the next tick tries it again."""
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "4")
    sharded(lambda_env, 4, NAMES)
    lambdas = FakeLambda(failing=(1,))
    handler = LambdaHandler(clock=clock, sleep=clock.advance, lambda_client=lambdas)

    first = handler({}, ShardContext(60_000))
    lambdas.failing = ()
    second = handler({}, ShardContext(60_000))

    assert (first["invoked"], first["not_invoked"]) == ([0, 2, 3], [1])
    assert (second["invoked"], second["not_invoked"]) == ([0, 1, 2, 3], [])
    assert lambdas.shards == [0, 0, 1, 1, 2, 2, 3, 3]
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"Could not invoke {ARN} for shard 1" in error
    assert "TooManyRequestsException" in error


def test_shards_found_beyond_n_are_invoked_and_delivered_by_their_invocation(
    lambda_env: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events written with 8 shards, a function at SHARDS=2: the tick invokes every shard found (up to 7),
    and the invocation of a shard numbered 2 or more delivers it; nothing is stranded."""
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "2")
    where = sharded(lambda_env, 8, NAMES)
    lambdas = FakeLambda()
    handler = LambdaHandler(clock=clock, sleep=clock.advance, lambda_client=lambdas)

    tick = handler({}, ShardContext(60_000))
    for shard in tick["invoked"]:
        handler({"shard": shard}, ShardContext(60_000))

    assert tick["invoked"] == lambdas.shards == sorted(set(where.values())) == [0, 1, 3, 5, 6]
    assert targets(lambda_env) == sorted(NAMES)
    assert schedule_keys(lambda_env) == []


def test_fanout_off_delivers_every_shard_in_the_one_invocation(
    lambda_env: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3_SCHEDULER_FANOUT=off: the tick invokes nothing and delivers every shard and the unsharded prefix
    itself; its report holds the totals and each shard's report."""
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "4")
    monkeypatch.setenv("S3_SCHEDULER_FANOUT", "off")
    sharded(lambda_env, 4, NAMES)
    schedule(lambda_env, T0 - timedelta(minutes=1), "target", "before-sharding")
    lambdas = FakeLambda()
    handler = LambdaHandler(clock=clock, sleep=clock.advance, lambda_client=lambdas)

    result = handler({}, ShardContext(60_000))

    assert lambdas.calls == []
    assert sorted(e["path"] for e in result["delivered"]) == targets(lambda_env) == sorted([*NAMES, "before-sharding"])
    assert sorted(result["shards"]) == ["0", "1", "2", "3", "unsharded"]
    assert schedule_keys(lambda_env) == []


def test_fanout_off_sizes_the_client_pool_for_the_shards_side_by_side(
    lambda_env: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch, client_spy: ClientSpy
) -> None:
    """Delivering the shards side by side, each run has its listing, deletes and lease: the handler's S3
    client holds 3 connections more per shard run at once (32) than max_workers and 3."""
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "4")
    monkeypatch.setenv("S3_SCHEDULER_FANOUT", "off")
    handler = LambdaHandler(clock=clock, sleep=clock.advance)

    handler({}, ShardContext(60_000))

    assert client_spy.pools == [32 + 3 * 32]


def test_one_shard_changes_nothing(
    lambda_env: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch, client_spy: ClientSpy
) -> None:
    """SHARDS=1 (the default) is the handler as before: each tick lists {path}/| (and the series
    markers of what is due),
    never looks for shards (jobs/0/ may be another scheduler's), builds no Lambda client and returns the
    report as before."""
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "1")
    monkeypatch.setattr(aws_lambda, "_lambda_client", lambda: pytest.fail("no Lambda client with one shard"))
    handler = LambdaHandler(clock=clock, sleep=clock.advance)
    handler({}, ShardContext(60_000))  # builds the handler's client
    ((_, client),) = client_spy.made
    listings: list[dict[str, Any]] = []  # every ListObjectsV2 sent, by botocore or directly (s3_scheduler._direct)
    client.meta.events.register(
        "before-send.s3.ListObjectsV2",
        lambda request, **_: listings.append({k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}),
    )
    key = schedule(lambda_env, T0 - timedelta(minutes=1), "target", "k")
    other = Scheduler("sched", "jobs/0", s3_client=lambda_env).schedule(T0 - timedelta(minutes=1), "target", "x", "x")

    result = handler({}, ShardContext(60_000))

    fields = ["dead_lettered", "deferred", "delivered", "expired", "failed", "rejected", "skipped", "vanished"]
    assert sorted(result) == fields
    assert [e["key"] for e in result["delivered"]] == [key]
    assert schedule_keys(lambda_env) == [other]
    assert [(p["prefix"], "delimiter" in p) for p in listings] == [("jobs/|", False), ("jobs/.series/", False)]
    assert {made.meta.service_model.service_name for _, made in client_spy.made} == {"s3"}


def test_a_shard_event_with_one_shard_delivers_that_shard(
    lambda_env: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An invocation sent before SHARDS went back to 1 still delivers its shard ({path}/{k}), as a
    scheduler at that path does; the tick with SHARDS=1 would never look there."""
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "1")
    where = sharded(lambda_env, 4, NAMES)
    handler = LambdaHandler(clock=clock, sleep=clock.advance)

    result = handler({"shard": 0}, ShardContext(60_000))

    in_zero = sorted(name for name, shard in where.items() if shard == 0)
    assert sorted(e["path"] for e in result["delivered"]) == targets(lambda_env) == in_zero == ["k7"]


@pytest.mark.parametrize("value", ["1", 1.0, -1, True, None, [1], {"k": 1}])
def test_a_bad_shard_in_the_event_is_refused_before_any_request(
    lambda_env: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch, client_spy: ClientSpy, value: Any
) -> None:
    """{"shard": ...} takes an int of 0 or more; anything else fails the invocation with a ValueError
    naming the field and the form, before any client is made."""
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "4")
    handler = LambdaHandler(clock=clock, sleep=clock.advance, lambda_client=FakeLambda())

    with pytest.raises(ValueError, match=r'the event\'s "shard" must be a shard\'s number, an int of 0 or more'):
        handler({"shard": value}, ShardContext(60_000))

    assert client_spy.made == []


def test_event_shard_reads_the_shard_or_none() -> None:
    """Only a mapping with "shard" asks for a shard: EventBridge's event, an empty one or None is the tick."""
    assert event_shard({"shard": 0}) == 0
    assert event_shard({"shard": 999, "other": 1}) == 999
    assert event_shard({"source": "aws.events", "detail-type": "Scheduled Event"}) is None
    assert event_shard({}) is None
    assert event_shard(None) is None
    assert event_shard([("shard", 1)]) is None


def test_the_lambda_client_is_built_once_per_container_when_fanning_out(
    lambda_env: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch, client_spy: ClientSpy
) -> None:
    """The first tick that has a shard to invoke builds one Lambda client (boto3's, a pool of 10), kept for
    the next; a function that is not there (moto has none) is a failed invoke, counted, not a crash."""
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "4")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    sharded(lambda_env, 4, ["k0"])
    handler = LambdaHandler(clock=clock, sleep=clock.advance)
    built: list[Any] = []
    build = aws_lambda._lambda_client

    def counted() -> Any:
        built.append(build())
        return built[-1]

    monkeypatch.setattr(aws_lambda, "_lambda_client", counted)

    first = handler({}, ShardContext(60_000))
    second = handler({}, ShardContext(60_000))

    # moto's Lambda makes clients of its own in some releases: only the handler's are counted
    lambdas = [client for _, client in client_spy.made if client.meta.service_model.service_name == "lambda"]
    assert len(built) == 1
    assert built[0] in lambdas
    assert built[0].meta.config.max_pool_connections == aws_lambda.FANOUT_AT_ONCE
    assert (first["not_invoked"], second["not_invoked"]) == ([1], [1])
