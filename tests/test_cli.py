"""The s3-scheduler command: every subcommand, --json, the user errors, run and demo."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from s3_scheduler import Scheduler, cli
from s3_scheduler.demo import EVENTS, run_demo

from .conftest import T0, Clock, Endpoint

UTC = timezone.utc


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto in-process with buckets 'sched' and 'target'; the CLI's bucket comes from the environment."""
    monkeypatch.setenv("S3_SCHEDULER_BUCKET", "sched")
    monkeypatch.delenv("S3_SCHEDULER_PREFIX", raising=False)
    with mock_aws():
        client = boto3.client("s3")
        for bucket in ("sched", "target"):
            client.create_bucket(Bucket=bucket)
        yield client


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def keys(client: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


# parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+90s", T0 + timedelta(seconds=90)),
        ("+10m", T0 + timedelta(minutes=10)),
        ("+2h", T0 + timedelta(hours=2)),
        ("+1d", T0 + timedelta(days=1)),
        ("+1.5m", T0 + timedelta(seconds=90)),
        ("2030-01-07T14:05:00", datetime(2030, 1, 7, 14, 5, tzinfo=UTC)),
        ("2030-01-07T16:05:00+02:00", datetime(2030, 1, 7, 14, 5, tzinfo=UTC)),
        ("2030-01-07T14:05:00Z", datetime(2030, 1, 7, 14, 5, tzinfo=UTC)),
    ],
)
def test_when_is_iso_8601_or_relative(text: str, expected: datetime) -> None:
    """--at takes ISO 8601 (no offset = UTC) or +Ns/m/h/d from now."""
    assert cli.parse_when(text, T0) == expected


@pytest.mark.parametrize("text", ["tomorrow", "+5y", "2030-13-01", "+", ""])
def test_a_bad_when_is_a_usage_error(text: str) -> None:
    """A time that is not one names the allowed forms."""
    with pytest.raises(cli.UsageError, match="ISO 8601"):
        cli.parse_when(text, T0)


@pytest.mark.parametrize("text", ["bucket/key", "s3://bucket", "s3://bucket/", "s3:///key"])
def test_a_bad_target_is_a_usage_error(text: str) -> None:
    """--to must be s3://bucket/key."""
    with pytest.raises(cli.UsageError, match="s3://bucket/key"):
        cli.parse_target(text)


# each subcommand ---------------------------------------------------------------------------


def test_schedule_prints_the_key_and_writes_the_event(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """schedule --at --to --content prints the event's key."""
    status, out, err = run(
        capsys, "schedule", "--at", "2030-01-07T14:05:00", "--to", "s3://target/in/a b", "--content", "hi"
    )

    assert (status, err) == (0, "")
    assert out.strip() == "jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|target|in~~a%20b"
    assert keys(aws, "sched") == [out.strip()]


def test_schedule_from_a_file_and_from_stdin(
    aws: Any, capsys: pytest.CaptureFixture[str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--file PATH and --file - send the bytes as they are."""
    data = tmp_path / "payload.bin"
    data.write_bytes(b"\x00\x01binary")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin\n")))

    _, from_file, _ = run(capsys, "schedule", "--at", "+1h", "--to", "s3://target/f", "--file", str(data))
    _, from_stdin, _ = run(
        capsys, "--prefix", "other", "schedule", "--at", "+1h", "--to", "s3://target/s", "--file", "-"
    )

    assert aws.get_object(Bucket="sched", Key=from_file.strip())["Body"].read() == b"\x00\x01binary"
    assert aws.get_object(Bucket="sched", Key=from_stdin.strip())["Body"].read() == b"from stdin\n"
    assert from_stdin.startswith("other/|")


def test_list_prints_a_table_and_json_lines(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """list shows time, due in, target and key; --json gives one object a line; --until and --limit cut it."""
    scheduler = Scheduler("sched", "jobs", s3_client=aws)
    now = datetime.now(UTC)
    first = scheduler.schedule(now + timedelta(hours=1), "target", "one", "1")
    scheduler.schedule(now + timedelta(days=3), "target", "two", "2")

    _, table, _ = run(capsys, "list")
    _, lines, _ = run(capsys, "--json", "list", "--until", "+2h")
    _, limited, _ = run(capsys, "list", "--limit", "1")

    header, *rows = table.splitlines()
    assert header.split() == ["TIME", "(UTC)", "DUE", "IN", "TARGET", "KEY"]
    assert [r.split()[3] for r in rows] == ["s3://target/one", "s3://target/two"]
    assert rows[0].split()[2] in ("1.0h", "59.9m", "60.0m")
    parsed = [json.loads(line) for line in lines.splitlines()]
    assert [p["key"] for p in parsed] == [first]
    assert 3590 < parsed[0]["due_in"] <= 3600
    assert len(limited.splitlines()) == 2


def test_cancel_reports_each_key_and_fails_when_one_was_not_pending(
    aws: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """cancel KEY... exits 0 when each was cancelled, 1 when one was not pending."""
    key = Scheduler("sched", "jobs", s3_client=aws).schedule(datetime.now(UTC) + timedelta(hours=1), "target", "x", "x")

    first = run(capsys, "cancel", key)
    second = run(capsys, "--json", "cancel", key)

    assert first[0] == 0
    assert first[1] == f"cancelled: {key}\n"
    assert second[0] == 1
    assert json.loads(second[1]) == {"key": key, "cancelled": False}


def test_reschedule_prints_the_new_key(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """reschedule KEY --at WHEN moves the event; a missing one fails in one line."""
    key = Scheduler("sched", "jobs", s3_client=aws).schedule(datetime.now(UTC) + timedelta(hours=1), "target", "x", "x")

    status, out, _ = run(capsys, "reschedule", key, "--at", "2031-01-01T00:00:00")
    again = run(capsys, "reschedule", key, "--at", "+1h")

    assert status == 0
    assert out.strip() == "jobs/|2031-01-01%2000%3A00%3A00%2B00%3A00|target|x"
    assert keys(aws, "sched") == [out.strip()]
    assert again[0] == 1
    assert again[2].count("\n") == 1
    assert "no longer pending" in again[2]


def test_handle_prints_the_summary_and_fails_on_a_failed_delivery(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """handle runs once; exit 1 if any event failed; --json prints the report."""
    scheduler = Scheduler("sched", "jobs", s3_client=aws)
    past = datetime.now(UTC) - timedelta(minutes=1)
    scheduler.schedule(past, "target", "ok", "ok")

    ok = run(capsys, "handle", "--timeout", "30s")
    scheduler.schedule(past, "no-such-bucket", "bad", "x")
    failed = run(capsys, "--json", "handle")

    assert ok[0] == 0
    assert ok[1].startswith("delivered=1 failed=0")
    assert keys(aws, "target") == ["ok"]
    assert failed[0] == 1
    assert len(json.loads(failed[1])["failed"]) == 1


def test_schedule_json_output(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """--json schedule prints the key, time and target as JSON."""
    status, out, _ = run(
        capsys, "--json", "schedule", "--at", "2030-01-07T14:05:00Z", "--to", "s3://target/k", "--content", "x"
    )

    assert status == 0
    assert json.loads(out) == {
        "key": "jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|target|k",
        "when": "2030-01-07T14:05:00+00:00",
        "bucket": "target",
        "path": "k",
    }


# user errors: one line on stderr, the right exit code ------------------------------------


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["schedule", "--at", "soon", "--to", "s3://target/k", "--content", "x"], 2, "--at 'soon' is not a time"),
        (["schedule", "--at", "+1h", "--to", "target/k", "--content", "x"], 2, "use s3://bucket/key"),
        (["schedule", "--at", "+1h", "--to", "s3://target/k", "--file", "/no/such/file"], 2, "no such file"),
        (["--bucket", "no-such-bucket", "list"], 1, "no such bucket 'no-such-bucket'"),
        (["cancel", "other/|x"], 2, "is not an event of 'jobs/|'"),
        (["run", "--interval", "1h"], 2, "at most 0:15:00"),
        (["handle", "--timeout", "soon"], 2, "--timeout 'soon' is not a duration"),
    ],
)
def test_user_errors_print_one_line_and_exit(
    aws: Any, capsys: pytest.CaptureFixture[str], argv: list[str], status: int, message: str
) -> None:
    """Each mistake a user can make prints one line naming the fix; no traceback."""
    code, _, err = run(capsys, *argv)

    assert code == status
    assert err.count("\n") == 1
    assert err.startswith("s3-scheduler: ")
    assert message in err


def test_a_missing_bucket_names_the_option_and_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --bucket or S3_SCHEDULER_BUCKET: exit 2 naming both."""
    monkeypatch.delenv("S3_SCHEDULER_BUCKET", raising=False)

    code, _, err = run(capsys, "list")

    assert code == 2
    assert err == "s3-scheduler: no schedule bucket: pass --bucket or set S3_SCHEDULER_BUCKET\n"


def test_no_credentials_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without credentials anywhere: exit 1 naming the variables to set."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    code, _, err = run(capsys, "--bucket", "b", "--endpoint-url", "http://127.0.0.1:9", "list")

    assert code == 1
    assert err == "s3-scheduler: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE\n"


def test_access_denied_and_unreachable_endpoints_are_named() -> None:
    """AccessDenied and a refused connection become one line each."""
    args = argparse.Namespace(bucket="b")
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ListObjects")

    with pytest.raises(cli.Failure, match=r"access denied to bucket 'b'.*IAM policy"), cli._aws_errors(args):
        raise denied


def test_an_unreachable_endpoint_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A closed port fails in one line naming --endpoint-url."""
    code, _, err = run(capsys, "--bucket", "b", "--endpoint-url", "http://127.0.0.1:9", "list")

    assert code == 1
    assert "check --endpoint-url" in err
    assert err.count("\n") == 1


def test_usage_errors_from_argparse_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A missing subcommand or required option is argparse's usage error, exit 2."""
    assert run(capsys)[0] == 2
    assert run(capsys, "schedule", "--at", "+1h")[0] == 2


# run ---------------------------------------------------------------------------------------


class FakeWait:
    """A stop-aware wait on the injected clock; stops after ``stop_after`` waits or when told."""

    def __init__(self, clock: Clock, stop_after: int) -> None:
        self.clock = clock
        self.calls = 0
        self.stop_after = stop_after
        self.stop = False

    def __call__(self, seconds: float) -> bool:
        self.calls += 1
        if self.stop or self.calls > self.stop_after:
            return True
        self.clock.advance(seconds)
        return False


def _run_args() -> argparse.Namespace:
    return argparse.Namespace(json=False)


def test_run_delivers_each_event_at_its_time_across_windows(aws: Any, clock: Clock) -> None:
    """run delivers events due in later windows, each on its second, until stopped."""
    wait = FakeWait(clock, stop_after=20)
    scheduler = Scheduler("sched", "jobs", s3_client=aws, clock=clock, sleep=cli.stopping_sleep(wait))
    for offset in (3, 14, 25):
        scheduler.schedule(T0 + timedelta(seconds=offset), "target", f"t{offset}", "x")
    copied: dict[str, datetime] = {}
    aws.meta.events.register(
        "before-parameter-build.s3.CopyObject", lambda params, **_: copied.setdefault(params["Key"], clock.now)
    )
    out = io.StringIO()

    cli.run_until_stopped(scheduler, 10, wait, clock, _run_args(), out)

    assert {k: (v - T0).total_seconds() for k, v in copied.items()} == {"t3": 3, "t14": 14, "t25": 25}
    assert out.getvalue().count("delivered s3://target/") == 3


def test_a_stop_mid_delivery_finishes_that_delivery(aws: Any, clock: Clock) -> None:
    """A SIGTERM arriving during a copy lets the delivery finish (copy and delete), then the run ends."""
    wait = FakeWait(clock, stop_after=100)
    scheduler = Scheduler("sched", "jobs", s3_client=aws, clock=clock, sleep=cli.stopping_sleep(wait))
    scheduler.schedule(T0 + timedelta(seconds=2), "target", "in-flight", "x")
    later = scheduler.schedule(T0 + timedelta(seconds=5), "target", "later", "x")

    def stop(**_: Any) -> None:
        wait.stop = True

    aws.meta.events.register("after-call.s3.CopyObject", stop)

    cli.run_until_stopped(scheduler, 10, wait, clock, _run_args(), io.StringIO())

    assert keys(aws, "target") == ["in-flight"]
    assert keys(aws, "sched") == [later]


def test_run_in_process_stops_on_a_real_sigterm(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """main(['run']) turns SIGTERM into a clean stop with exit 0, finishing the delivery in flight."""
    Scheduler("sched", "jobs", s3_client=aws).schedule(datetime.now(UTC) - timedelta(seconds=1), "target", "k", "x")
    sent: list[bool] = []

    def send_sigterm(**_: Any) -> None:
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    boto3.DEFAULT_SESSION = None
    with pytest.MonkeyPatch.context() as patch:
        original = boto3.session.Session.client

        def client_with_hook(self: Any, *args: Any, **kwargs: Any) -> Any:
            made = original(self, *args, **kwargs)
            made.meta.events.register("after-call.s3.CopyObject", send_sigterm)
            return made

        patch.setattr(boto3.session.Session, "client", client_with_hook)
        status, out, _ = run(capsys, "run", "--interval", "1s")

    assert status == 0
    assert sent == [True]
    assert "delivered s3://target/k" in out
    assert keys(aws, "target") == ["k"]
    assert keys(aws, "sched") == []
    assert signal.getsignal(signal.SIGTERM) is previous


def test_run_as_a_process_stops_on_sigterm(moto_endpoint: Endpoint, make_wire: Any) -> None:
    """A real `python -m s3_scheduler run` against moto's server delivers, then exits 0 on SIGTERM."""
    wire = make_wire(moto_endpoint)
    env = {
        **os.environ,
        "S3_SCHEDULER_BUCKET": wire.schedule_bucket,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    base = [sys.executable, "-m", "s3_scheduler", "--endpoint-url", moto_endpoint.url]
    scheduled = subprocess.run(
        [*base, "schedule", "--at", "+0s", "--to", f"s3://{wire.target_bucket}/k", "--content", "hello"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert scheduled.returncode == 0, scheduled.stderr

    runner = subprocess.Popen([*base, "run", "--interval", "2s"], stdout=subprocess.PIPE, text=True, env=env)
    assert runner.stdout is not None
    first_line = runner.stdout.readline()  # blocks until the first delivery is printed
    runner.send_signal(signal.SIGTERM)
    rest, _ = runner.communicate(timeout=30)

    assert first_line.startswith(f"delivered s3://{wire.target_bucket}/k ")
    assert runner.returncode == 0
    assert wire.body(wire.target_bucket, "k") == b"hello"
    assert wire.keys(wire.schedule_bucket) == []
    listed = subprocess.run([*base, "--json", "list"], capture_output=True, text=True, env=env, timeout=60)
    assert (listed.returncode, listed.stdout, rest) == (0, "", "")


# demo --------------------------------------------------------------------------------------


def test_demo_delivers_each_event_and_prints_it(clock: Clock) -> None:
    """The demo starts a local S3, delivers its events on their second, prints each, exits 0."""
    out = io.StringIO()

    status = run_demo(out, clock=clock, sleep=clock.advance)

    text = out.getvalue()
    assert status == 0
    assert text.count("  delivered s3://demo-target/") == len(EVENTS)
    assert "0.000 s late" in text
    assert f"done: delivered={len(EVENTS)} failed=0" in text


def test_demo_keep_prints_the_endpoint_and_commands(clock: Clock) -> None:
    """--keep prints the endpoint and commands to try, and waits."""
    out = io.StringIO()
    waited: list[bool] = []

    run_demo(out, keep=True, clock=clock, sleep=clock.advance, wait_forever=lambda: waited.append(True))

    assert waited == [True]
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:" in out.getvalue()
    assert "s3-scheduler --bucket demo-schedule list" in out.getvalue()


def test_demo_without_the_local_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without moto's server the demo names the install command and exits 1."""
    monkeypatch.setitem(sys.modules, "moto.server", None)
    out = io.StringIO()

    assert run_demo(out) == 1
    assert 'pip install -e ".[local]"' in out.getvalue()
