"""The ready Lambda handler, driven as Lambda drives it: a fake context, moto, the environment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from s3_scheduler import Scheduler, aws_lambda

from .conftest import T0, Clock


class FakeContext:
    """What the Lambda runtime passes: here only the remaining time matters."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> Iterator[Any]:
    """moto with a schedule and a target bucket, the handler's settings, and the clock injected."""
    monkeypatch.setenv("S3_SCHEDULER_BUCKET", "sched")
    for name in ("S3_SCHEDULER_PREFIX", "S3_SCHEDULER_ALLOWED_TARGETS", "S3_SCHEDULER_PRECISE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(aws_lambda, "_cached", None)
    monkeypatch.setattr("s3_scheduler.scheduler.nowut", clock)
    monkeypatch.setattr("s3_scheduler.aws_lambda.nowut", clock)
    monkeypatch.setattr("time.sleep", clock.advance)
    with mock_aws():
        client = boto3.client("s3")
        for bucket in ("sched", "target", "victim"):
            client.create_bucket(Bucket=bucket)
        yield client


def schedule(client: Any, when: datetime, bucket: str, key: str) -> str:
    return Scheduler("sched", "jobs", s3_client=client).schedule(when, bucket, key, key)


def test_handler_delivers_and_returns_the_report_as_json(lambda_env: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The handler delivers what is due, returns to_dict(), and logs one summary line."""
    key = schedule(lambda_env, T0 - timedelta(minutes=1), "target", "done.txt")
    schedule(lambda_env, T0 + timedelta(minutes=5), "target", "later.txt")

    result = aws_lambda.handler({}, FakeContext(60_000))

    assert json.loads(json.dumps(result))["delivered"][0]["key"] == key
    assert result["deferred"] == []
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Handled")]
    assert summaries == [
        "Handled s3://sched/jobs/|: delivered=1 failed=0 skipped=0 deferred=0 vanished=0 rejected=0 dead_lettered=0"
    ]


def test_handler_passes_the_remaining_time_less_a_margin(lambda_env: Any, clock: Clock) -> None:
    """With 5 s left (less the 5 s margin) no delivery starts: everything due is deferred."""
    key = schedule(lambda_env, T0 - timedelta(minutes=1), "target", "k")

    result = aws_lambda.handler({}, FakeContext(5_000))

    assert [e["key"] for e in result["deferred"]] == [key]
    assert result["delivered"] == []


def test_precise_mode_delivers_each_event_on_its_second(
    lambda_env: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """S3_SCHEDULER_PRECISE=1 delivers the events of the coming 55 s, each at its time."""
    monkeypatch.setenv("S3_SCHEDULER_PRECISE", "1")
    for offset in (10, 30, 50, 58):
        schedule(lambda_env, T0 + timedelta(seconds=offset), "target", f"t{offset}")

    result = aws_lambda.handler({}, FakeContext(90_000))

    assert [e["path"] for e in result["delivered"]] == ["t10", "t30", "t50"]
    lateness = [r.args[-1] for r in caplog.records if r.getMessage().startswith("Delivered")]  # type: ignore[index]
    assert lateness == [0.0, 0.0, 0.0]
    assert T0 + timedelta(seconds=50) <= clock.now < T0 + timedelta(seconds=58)


def test_allowed_targets_come_from_the_environment(lambda_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """S3_SCHEDULER_ALLOWED_TARGETS (comma-separated) is enforced: other targets are rejected."""
    monkeypatch.setenv("S3_SCHEDULER_ALLOWED_TARGETS", "target/in/, other")
    evil = schedule(lambda_env, T0 - timedelta(minutes=1), "victim", "x")
    good = schedule(lambda_env, T0 - timedelta(minutes=1), "target", "in/y")

    result = aws_lambda.handler({}, FakeContext(60_000))

    assert [e["key"] for e in result["rejected"]] == [evil]
    assert [e["key"] for e in result["delivered"]] == [good]
    assert lambda_env.list_objects_v2(Bucket="victim")["KeyCount"] == 0


def test_a_missing_bucket_setting_fails_the_invocation_naming_it(
    lambda_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without S3_SCHEDULER_BUCKET the invocation fails with a message naming it."""
    monkeypatch.delenv("S3_SCHEDULER_BUCKET")

    with pytest.raises(aws_lambda.ConfigurationError, match="S3_SCHEDULER_BUCKET is not set"):
        aws_lambda.handler({}, FakeContext(60_000))


def test_a_malformed_dead_letter_setting_is_named(lambda_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """S3_SCHEDULER_DEAD_LETTER_AFTER must be seconds."""
    monkeypatch.setenv("S3_SCHEDULER_DEAD_LETTER_AFTER", "a day")

    with pytest.raises(aws_lambda.ConfigurationError, match="S3_SCHEDULER_DEAD_LETTER_AFTER"):
        aws_lambda.handler({}, FakeContext(60_000))


def test_the_scheduler_is_built_once_per_container(lambda_env: Any) -> None:
    """Warm invocations reuse the scheduler (and its client)."""
    aws_lambda.handler({}, FakeContext(60_000))
    first = aws_lambda._cached

    aws_lambda.handler({}, FakeContext(60_000))

    assert aws_lambda._cached is first
