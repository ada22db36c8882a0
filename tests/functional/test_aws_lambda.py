"""The ready Lambda handler, driven as Lambda drives it: a fake context, moto, the environment."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from s3_scheduler import ConfigurationError, Scheduler, aws_lambda
from s3_scheduler import settings as settings_module
from s3_scheduler.aws_lambda import LambdaHandler, margin, read_settings

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

    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()

    assert "s3_scheduler.settings" in loaded
    assert [name for name in loaded if name == "s3_scheduler.cli" or name.startswith("s3_scheduler.cli.")] == []
    assert "argparse" not in loaded
    assert "dateutil.parser" not in loaded


def test_the_handler_reads_its_settings_through_the_settings_module() -> None:
    """read_settings and Settings, the handler's names for its configuration, are s3_scheduler.settings' own."""
    assert aws_lambda.read_settings is settings_module.read_settings
    assert aws_lambda.Settings is settings_module.Settings
