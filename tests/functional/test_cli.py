"""The s3-scheduler command: parsing, every subcommand, --json, the user errors, run and demo."""

from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from moto import mock_aws

from s3_scheduler import ConfigurationError, Scheduler, cli
from s3_scheduler.aws_lambda import read_settings
from s3_scheduler.cli import commands, options, workers
from s3_scheduler.cli.commands import run as run_command
from s3_scheduler.demo import EVENTS, run_demo
from s3_scheduler.runner import run_until_stopped
from s3_scheduler.shards import SHARDS_AT_ONCE

from ..conftest import T0, ClientSpy, Clock, targets_by_shard

UTC = timezone.utc


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto in-process with buckets 'sched' and 'target'; the CLI's bucket comes from the environment."""
    monkeypatch.setenv("S3_SCHEDULER_BUCKET", "sched")
    for name in (
        "S3_SCHEDULER_PREFIX",
        "S3_SCHEDULER_MAX_WORKERS",
        "S3_SCHEDULER_LEGACY_OFFSETS",
        "S3_SCHEDULER_MAX_LATENESS",
        "S3_SCHEDULER_SHARDS",
    ):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        client = boto3.client("s3")
        for bucket in ("sched", "target"):
            client.create_bucket(Bucket=bucket)
        yield client


def run(capsys: pytest.CaptureFixture[str], *argv: str, clock: Clock | None = None) -> tuple[int, str, str]:
    status = cli.main(list(argv), clock=clock)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def keys(client: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def scheduler(client: Any, clock: Clock) -> Scheduler:
    return Scheduler("sched", "jobs", s3_client=client, clock=clock)


# the parser: built from the command table -------------------------------------------------


def test_every_command_and_option_is_described() -> None:
    """Each subcommand has a description, and each option's help gives an example and its environment variable."""
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    for name, sub in subparsers.choices.items():
        assert sub.description, name
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (name, action.dest)
            assert "e.g." in action.help, (name, action.dest)
            assert "env" in action.help, (name, action.dest)
    assert set(subparsers.choices) == {
        "schedule",
        "list",
        "show",
        "cancel",
        "reschedule",
        "handle",
        "run",
        "check",
        "dead-letters",
        "demo",
    }


def test_each_command_is_registered_with_its_function() -> None:
    """The parser is built from the one command table: each subcommand, in the table's order, carries the function
    of its module, and every module of s3_scheduler/cli/commands/ is a row of the table (issue 18)."""
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    modules = {path.stem for path in Path(commands.__file__).parent.glob("*.py")} - {"__init__"}

    assert list(subparsers.choices) == list(commands.COMMANDS)
    assert {commands.module_of(name) for name in commands.COMMANDS} == modules
    assert parser.parse_args(["list"]).func is commands.load("list").run
    for name, sub in subparsers.choices.items():
        command = commands.load(name)
        assert isinstance(command, commands.Command)
        assert sub.get_default("func") is command.run
        assert sub.description == command.description


def test_a_new_command_is_one_module_and_one_row(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module of s3_scheduler.cli.commands defining COMMAND, and its name added to COMMANDS, is a command with
    the global options, its own arguments and its help, nothing else to touch (issue 18)."""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--name", help="whom to greet, e.g. you (no env)")

    def greet(args: argparse.Namespace, out: Any) -> int:
        out.write(f"hello {args.name} from {args.prefix}\n")
        return 0

    module = types.ModuleType("s3_scheduler.cli.commands.hello")
    setattr(module, "COMMAND", commands.Command("say hello", "Say hello.", add_arguments, greet))  # noqa: B010
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(commands, "COMMANDS", (*commands.COMMANDS, "hello"))

    greeted = run(capsys, "--prefix", "p", "hello", "--name", "you")
    listed = run(capsys, "--help")

    assert greeted == (0, "hello you from p\n", "")
    assert "say hello" in listed[1]


# each subcommand ---------------------------------------------------------------------------


def test_schedule_prints_the_key_and_writes_the_event(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """schedule --at --to --content prints the event's key."""
    status, out, err = run(
        capsys, "schedule", "--at", "2030-01-07T14:05:00", "--to", "s3://target/in/a b", "--content", "hi"
    )

    assert (status, err) == (0, "")
    assert out.strip() == "jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|target|in~~a%20b"
    assert keys(aws, "sched") == [out.strip()]


def test_schedule_takes_a_zone_and_a_time_in_the_past(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock
) -> None:
    """--at with an IANA zone is stored in UTC; --at -5m (no '=') is 5 minutes before the scheduler's clock."""
    _, zoned, _ = run(
        capsys, "schedule", "--at", "2030-07-07 16:05 Europe/Paris", "--to", "s3://target/a", "--content", "x"
    )
    _, past, _ = run(
        capsys, "--json", "schedule", "--at", "-5m", "--to", "s3://target/b", "--content", "x", clock=clock
    )

    assert zoned.strip() == "jobs/|2030-07-07%2014%3A05%3A00%2B00%3A00|target|a"
    assert json.loads(past)["when"] == (T0 - timedelta(minutes=5)).isoformat()


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


def test_schedule_refuses_to_replace_a_pending_event_unless_told(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A second schedule of the same time and target fails in one line, content untouched; --replace replaces."""
    argv = ["schedule", "--at", "2030-01-07T14:05", "--to", "s3://target/k"]
    _, key, _ = run(capsys, *argv, "--content", "first")

    refused = run(capsys, *argv, "--content", "second")
    kept = aws.get_object(Bucket="sched", Key=key.strip())["Body"].read()
    replaced = run(capsys, *argv, "--content", "third", "--replace")

    assert refused[0] == 1
    assert refused[2] == (
        "s3-scheduler: an event to s3://target/k at 2030-01-07T14:05:00+00:00 is already pending"
        f" as {key.strip()!r}: pass --replace to replace its content\n"
    )
    assert kept == b"first"
    assert replaced[0] == 0
    assert aws.get_object(Bucket="sched", Key=key.strip())["Body"].read() == b"third"


def test_content_type_and_metadata_reach_the_target(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock, tmp_path: Any
) -> None:
    """--content-type and --metadata (repeatable; with --from, for every line) are on the target after handle."""
    one = run(
        capsys,
        "schedule",
        "--at",
        "-1m",
        "--to",
        "s3://target/one.json",
        "--content",
        "{}",
        "--content-type",
        "application/json",
        "--metadata",
        "order-id=42",
        "--metadata",
        "source=cli",
        clock=clock,
    )
    lines = jsonl(
        tmp_path,
        {"at": "-2m", "to": "s3://target/two.csv", "content": "a,b"},
        {"at": "-1m", "to": "s3://target/three.csv", "content": "c,d"},
    )
    many = run(capsys, "schedule", "--from", lines, "--content-type", "text/csv", "--metadata", "batch=7", clock=clock)
    handled = run(capsys, "handle", clock=clock)

    assert (one[0], many[0], handled[0]) == (0, 0, 0)
    assert handled[1].startswith("delivered=3 failed=0")
    found = {key: aws.head_object(Bucket="target", Key=key) for key in ("one.json", "two.csv", "three.csv")}
    assert {key: (head["ContentType"], head["Metadata"]) for key, head in found.items()} == {
        "one.json": ("application/json", {"order-id": "42", "source": "cli"}),
        "two.csv": ("text/csv", {"batch": "7"}),
        "three.csv": ("text/csv", {"batch": "7"}),
    }


def test_list_prints_a_table_and_json_lines(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """list shows time, due in, target and the shell-quoted key; --json, one object a line; --until, --limit cut."""
    first = scheduler(aws, clock).schedule(T0 + timedelta(hours=1), "target", "one", "1")
    second = scheduler(aws, clock).schedule(T0 + timedelta(days=3), "target", "two", "2")

    _, table, _ = run(capsys, "list", clock=clock)
    _, lines, _ = run(capsys, "--json", "list", "--until", "+2h", clock=clock)
    _, limited, _ = run(capsys, "list", "--limit", "1", clock=clock)

    header, *rows = table.splitlines()
    assert header.split() == ["TIME", "(UTC)", "DUE", "IN", "TARGET", "KEY"]
    assert [r.split()[3] for r in rows] == ["s3://target/one", "s3://target/two"]
    assert [r.split()[2] for r in rows] == ["1.0h", "3.0d"]
    assert [r.split()[4] for r in rows] == [shlex.quote(first), shlex.quote(second)]
    assert [shlex.split(r)[-1] for r in rows] == [first, second]
    assert [json.loads(line) for line in lines.splitlines()] == [
        {"key": first, "when": "2026-11-27T13:00:00+00:00", "bucket": "target", "path": "one", "due_in": 3600.0}
    ]
    assert len(limited.splitlines()) == 2


def test_list_array_prints_one_json_array(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """list --array prints one JSON array, [] when nothing is pending."""
    _, empty, _ = run(capsys, "list", "--array", clock=clock)
    key = scheduler(aws, clock).schedule(T0 + timedelta(hours=1), "target", "one", "1")
    _, full, _ = run(capsys, "--json", "list", "--array", clock=clock)

    assert empty == "[]\n"
    assert [event["key"] for event in json.loads(full)] == [key]


def test_global_options_work_before_or_after_the_command(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    """--bucket, --prefix and --json mean the same before or after the subcommand, and one before is kept."""
    monkeypatch.delenv("S3_SCHEDULER_BUCKET")
    aws.create_bucket(Bucket="other-bucket")
    key = Scheduler("other-bucket", "p", s3_client=aws).schedule(T0 + timedelta(hours=1), "target", "k", "x")

    before = run(capsys, "--bucket", "other-bucket", "--prefix", "p", "--json", "list", clock=clock)
    after = run(capsys, "list", "--bucket", "other-bucket", "--json", "--prefix", "p", clock=clock)
    mixed = run(capsys, "--bucket", "other-bucket", "list", "--prefix", "p", "--json", clock=clock)

    assert before == after == mixed
    assert json.loads(before[1])["key"] == key


def test_cancel_reports_each_key_and_fails_when_one_was_not_pending(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock
) -> None:
    """cancel KEY... exits 0 when each was cancelled, 1 with one line on stderr when one was not pending."""
    key = scheduler(aws, clock).schedule(T0 + timedelta(hours=1), "target", "x", "x")

    first = run(capsys, "cancel", key)
    second = run(capsys, "--json", "cancel", key)

    assert first[0] == 0
    assert first[1] == f"cancelled: {shlex.quote(key)}\n"
    assert second[0] == 1
    assert json.loads(second[1]) == {"key": key, "cancelled": False}
    assert second[2] == "s3-scheduler: 1 of 1 events were not pending: delivered, cancelled or never scheduled\n"


def test_cancel_and_list_select_events_by_target(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """--to s3://bucket/key picks the events going there, so no one has to type an encoded key."""
    mine = scheduler(aws, clock).schedule(T0 + timedelta(hours=1), "target", "in/mine.txt", "x")
    other = scheduler(aws, clock).schedule(T0 + timedelta(hours=1), "target", "in/other.txt", "x")

    listed = run(capsys, "--json", "list", "--to", "s3://target/in/mine.txt", clock=clock)
    cancelled = run(capsys, "cancel", "--to", "s3://target/in/mine.txt", clock=clock)

    assert [json.loads(line)["key"] for line in listed[1].splitlines()] == [mine]
    assert cancelled[:2] == (0, f"cancelled: {shlex.quote(mine)}\n")
    assert keys(aws, "sched") == [other]


def test_an_ambiguous_selection_lists_the_matches_and_changes_nothing(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock
) -> None:
    """Two events to one target: cancel or reschedule --to lists both and exits 1; --at picks one."""
    early = scheduler(aws, clock).schedule(T0 + timedelta(hours=1), "target", "k", "x")
    late = scheduler(aws, clock).schedule(T0 + timedelta(hours=2), "target", "k", "x")

    cancel = run(capsys, "cancel", "--to", "s3://target/k", clock=clock)
    reschedule = run(capsys, "--json", "reschedule", "--to", "s3://target/k", "--at", "+3h", clock=clock)
    untouched = keys(aws, "sched")
    picked = run(capsys, "cancel", "--to", "s3://target/k", "--at", "2026-11-27T13:00:00", clock=clock)

    assert cancel[0] == 1
    assert [shlex.split(line)[-1] for line in cancel[1].splitlines()[1:]] == [early, late]
    assert cancel[2] == (
        "s3-scheduler: 2 pending events go to s3://target/k: nothing cancelled; name one by its KEY (listed above)\n"
    )
    assert reschedule[0] == 1
    assert [json.loads(line)["key"] for line in reschedule[1].splitlines()] == [early, late]
    assert untouched == [early, late]
    assert picked[0] == 0
    assert keys(aws, "sched") == [late]


def test_reschedule_prints_the_new_key(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """reschedule KEY --at WHEN moves the event; a missing one fails in one line naming the key."""
    key = scheduler(aws, clock).schedule(T0 + timedelta(hours=1), "target", "x", "x")

    status, out, _ = run(capsys, "reschedule", key, "--at", "2031-01-01T00:00:00", clock=clock)
    again = run(capsys, "reschedule", key, "--at", "+1h", clock=clock)

    assert status == 0
    assert out.strip() == "jobs/|2031-01-01%2000%3A00%3A00%2B00%3A00|target|x"
    assert keys(aws, "sched") == [out.strip()]
    assert again[0] == 1
    assert again[2] == f"s3-scheduler: {key!r} is no longer pending: it was delivered, cancelled or never scheduled\n"


def test_reschedule_while_a_run_holds_the_lease_is_one_line(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event due within 15.5 minutes cannot be moved while a run holds the lease: one line saying what to do,
    no traceback; an event due later moves without waiting."""
    soon = scheduler(aws, clock).schedule(T0 + timedelta(minutes=15), "target", "soon", "x")
    later = scheduler(aws, clock).schedule(T0 + timedelta(minutes=16), "target", "later", "x")
    assert scheduler(aws, clock)._lease.acquire(T0).run is not None  # a run that holds the lease
    waits: list[float] = []
    monkeypatch.setattr("s3_scheduler.scheduler.time.sleep", waits.append)  # its wait for the run, not sleeping

    status, _, err = run(capsys, "reschedule", soon, "--at", "+2h", clock=clock)
    moved = run(capsys, "reschedule", later, "--at", "+3h", clock=clock)

    assert status == 1
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "holds the lease jobs/.lease" in err
    assert "try again once the run is over" in err
    assert len(waits) == 60  # one lease_ttl, a second at a time
    assert moved[0] == 0


def test_reschedule_onto_a_pending_event_names_it(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """Moving an event onto the time of another to the same target fails in one line naming the other's key."""
    key = scheduler(aws, clock).schedule(T0 + timedelta(hours=1), "target", "x", "x")
    other = scheduler(aws, clock).schedule(T0 + timedelta(hours=2), "target", "x", "y")

    status, _, err = run(capsys, "reschedule", key, "--at", "+2h", clock=clock)

    assert status == 1
    assert err == (
        "s3-scheduler: another event to the same target is already pending at 2026-11-27T14:00:00+00:00,"
        f" {other!r}: cancel it first\n"
    )
    assert keys(aws, "sched") == [key, other]


def test_reschedule_selects_by_target(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """reschedule --to s3://bucket/key --at WHEN moves the one event going there."""
    scheduler(aws, clock).schedule(T0 + timedelta(hours=1), "target", "x", "x")

    status, out, _ = run(capsys, "reschedule", "--to", "s3://target/x", "--at", "+2h", clock=clock)

    assert status == 0
    assert keys(aws, "sched") == [out.strip()] == ["jobs/|2026-11-27%2014%3A00%3A00%2B00%3A00|target|x"]


def test_handle_prints_the_summary_and_fails_on_a_failed_delivery(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock
) -> None:
    """handle runs once; exit 1 if any event failed; --json prints the report; --timeout takes days."""
    past = T0 - timedelta(minutes=1)
    scheduler(aws, clock).schedule(past, "target", "ok", "ok")

    ok = run(capsys, "handle", "--timeout", "1d", clock=clock)
    scheduler(aws, clock).schedule(past, "no-such-bucket", "bad", "x")
    failed = run(capsys, "--json", "handle", clock=clock)

    assert ok[0] == 0
    assert ok[1].startswith("delivered=1 failed=0")
    assert keys(aws, "target") == ["ok"]
    assert failed[0] == 1
    assert len(json.loads(failed[1])["failed"]) == 1
    assert "Unable to deliver" in failed[2]  # warnings reach stderr without -v


def test_max_lateness_expires_an_event_found_too_late(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock
) -> None:
    """handle --max-lateness 1h does not deliver an event 2 h late: removed with a WARNING, counted expired=1."""
    late = scheduler(aws, clock).schedule(T0 - timedelta(hours=2), "target", "late", "x")
    scheduler(aws, clock).schedule(T0 - timedelta(minutes=30), "target", "recent", "x")

    status, out, err = run(capsys, "handle", "--max-lateness", "1h", clock=clock)

    assert status == 0
    assert out.splitlines() == [
        "delivered=1 failed=0 skipped=0 deferred=0 vanished=0 rejected=0 dead_lettered=0 expired=1",
        f"expired: {late!r}",
    ]
    assert keys(aws, "target") == ["recent"]
    assert keys(aws, "sched") == []
    assert f"Not delivering {late!r}: 7200 s late, past max_lateness; removed" in err


def test_max_lateness_comes_from_the_environment(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3_SCHEDULER_MAX_LATENESS applies when --max-lateness is not given; the option wins; a bad value is exit 2."""
    first = scheduler(aws, clock).schedule(T0 - timedelta(hours=2), "target", "first", "x")
    monkeypatch.setenv("S3_SCHEDULER_MAX_LATENESS", "1h")

    from_env = run(capsys, "--json", "handle", clock=clock)
    scheduler(aws, clock).schedule(T0 - timedelta(hours=2), "target", "second", "x")
    overridden = run(capsys, "--json", "handle", "--max-lateness", "1d", clock=clock)
    monkeypatch.setenv("S3_SCHEDULER_MAX_LATENESS", "an hour")
    bad = run(capsys, "handle", clock=clock)

    assert [e["key"] for e in json.loads(from_env[1])["expired"]] == [first]
    assert [e["path"] for e in json.loads(overridden[1])["delivered"]] == ["second"]
    assert json.loads(overridden[1])["expired"] == []
    assert keys(aws, "target") == ["second"]
    assert bad[0] == 2
    assert bad[2] == (
        "s3-scheduler: S3_SCHEDULER_MAX_LATENESS='an hour' is not a duration: use seconds or 90s, 10m, 2h, 1d\n"
    )


def emf(line: str) -> dict[str, Any]:
    """Parse one metrics line and check it has the Embedded Metric Format structure."""
    document: dict[str, Any] = json.loads(line)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "S3Scheduler"
    assert directive["Dimensions"] == [["Bucket", "Prefix"]]
    assert all(metric["Name"] in document for metric in directive["Metrics"])
    assert isinstance(document["_aws"]["Timestamp"], int)
    return document


def test_handle_metrics_prints_one_emf_line(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """handle --metrics prints one Embedded Metric Format line after the summary, and after the report with --json."""
    scheduler(aws, clock).schedule(T0 - timedelta(minutes=1), "target", "ok", "x")
    scheduler(aws, clock).schedule(T0 - timedelta(minutes=2), "no-such-bucket", "bad", "x")

    text = run(capsys, "handle", "--metrics", clock=clock)
    lines = run(capsys, "--json", "handle", "--metrics", clock=clock)
    plain = run(capsys, "handle", clock=clock)

    summary, failed, metrics_line = text[1].splitlines()
    assert summary.startswith("delivered=1 failed=1 ")
    assert failed.startswith("failed: ")
    first = emf(metrics_line)
    assert (first["Bucket"], first["Prefix"], first["Delivered"], first["Failed"]) == ("sched", "jobs", 1, 1)
    assert first["_aws"]["Timestamp"] == int(T0.timestamp() * 1000)
    report, second_line = lines[1].splitlines()
    assert len(json.loads(report)["failed"]) == 1
    second = emf(second_line)
    assert (second["Delivered"], second["Failed"], second["OldestDueAgeSeconds"]) == (0, 1, 120)
    assert "_aws" not in plain[1]


def test_run_prints_expired_windows_and_each_windows_metrics(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run --max-lateness --metrics prints a window's summary when it expired an event, and each window's EMF line."""
    late = scheduler(aws, clock).schedule(T0 - timedelta(hours=2), "target", "late", "x")
    scheduler(aws, clock).schedule(T0 - timedelta(seconds=1), "target", "due", "x")

    def one_window(*args: Any, **kwargs: Any) -> None:
        run_until_stopped(*args, wait=lambda seconds: True, **kwargs)  # the first wait ends the run: no real wait

    monkeypatch.setattr(run_command, "run_until_stopped", one_window)

    status, out, _ = run(capsys, "run", "--max-lateness", "1h", "--metrics", clock=clock)

    delivered, summary, expired, metrics_line = out.splitlines()
    assert status == 0
    assert delivered.startswith("delivered s3://target/due (1.000 s late) ")
    assert summary == "delivered=1 failed=0 skipped=0 deferred=0 vanished=0 rejected=0 dead_lettered=0 expired=1"
    assert expired == f"expired: {late!r}"
    assert (emf(metrics_line)["Delivered"], emf(metrics_line)["Prefix"]) == (1, "jobs")
    assert keys(aws, "target") == ["due"]


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


def test_the_client_pool_fits_max_workers(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, client_spy: ClientSpy
) -> None:
    """The CLI's S3 client holds --max-workers connections (default 32, or S3_SCHEDULER_MAX_WORKERS) and 3 more."""
    run(capsys, "list")
    run(capsys, "list", "--max-workers", "7")
    monkeypatch.setenv("S3_SCHEDULER_MAX_WORKERS", "5")
    run(capsys, "list")

    assert client_spy.pools == [32 + 3, 7 + 3, 5 + 3]  # the copies, and the listing, the batch delete and the lease


def test_the_client_pool_fits_the_shards_run_at_once(
    aws: Any, capsys: pytest.CaptureFixture[str], client_spy: ClientSpy
) -> None:
    """With --shards N > 1 the client holds 3 more connections for each shard a run delivers at once (up to 32), as
    the client a sharded Scheduler makes itself does."""
    run(capsys, "list", "--shards", "2", "--max-workers", "7")
    run(capsys, "list", "--shards", "1", "--max-workers", "7")

    assert client_spy.pools == [7 + 3 * SHARDS_AT_ONCE, 7 + 3]


def test_max_workers_and_legacy_offsets_reach_the_scheduler(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--max-workers and --no-legacy-offsets (or their variables) are the Scheduler's options."""
    made: list[dict[str, Any]] = []

    class Recording(Scheduler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(options, "Scheduler", Recording)

    run(capsys, "list")
    run(capsys, "list", "--max-workers", "7", "--no-legacy-offsets")
    monkeypatch.setenv("S3_SCHEDULER_LEGACY_OFFSETS", "off")
    monkeypatch.setenv("S3_SCHEDULER_MAX_WORKERS", "5")
    run(capsys, "list")

    assert [(m["max_workers"], m["legacy_offsets"]) for m in made] == [(32, True), (7, False), (5, False)]
    assert [m["shards"] for m in made] == [1, 1, 1]


OFFSET_KEY = "jobs/|2026-11-27%2012%3A30%3A00%2B14%3A00|target|off"  # as 0.0.3 wrote it: due 2026-11-26 22:30 UTC
T_KEY = "jobs/|2026-11-27T11%3A00%3A00%2B00%3A00|target|t"  # written by hand: due 11:00 UTC, sorts after 12:00


def test_no_legacy_offsets_lists_only_up_to_the_window(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A due event named with +14:00 is listed by default, and not with --no-legacy-offsets (or the variable at 0)."""
    aws.put_object(Bucket="sched", Key=OFFSET_KEY, Body=b"x")

    legacy = run(capsys, "--json", "list", "--until", "+0s", clock=clock)
    strict = run(capsys, "--json", "--no-legacy-offsets", "list", "--until", "+0s", clock=clock)
    monkeypatch.setenv("S3_SCHEDULER_LEGACY_OFFSETS", "0")
    from_env = run(capsys, "--json", "list", "--until", "+0s", clock=clock)
    monkeypatch.setenv("S3_SCHEDULER_LEGACY_OFFSETS", "maybe")
    bad = run(capsys, "list", clock=clock)

    assert [json.loads(line)["key"] for line in legacy[1].splitlines()] == [OFFSET_KEY]
    assert strict[1] == from_env[1] == ""
    assert bad[0] == 2
    assert bad[2] == (
        "s3-scheduler: S3_SCHEDULER_LEGACY_OFFSETS='maybe' is not yes or no: use 1/0, true/false, yes/no or on/off\n"
    )


def test_check_prints_each_problem_and_fails(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """check prints each name that is not an event or read late, with its reason, and that offset keys need legacy;
    it exits 1 with one line on stderr counting them."""
    scheduler(aws, clock).schedule(T0, "target", "ok", "x")
    for key in ("jobs/|not-a-time|target|x", OFFSET_KEY, T_KEY):
        aws.put_object(Bucket="sched", Key=key, Body=b"x")

    status, out, err = run(capsys, "check", clock=clock)
    strict = run(capsys, "--no-legacy-offsets", "--json", "check", clock=clock)

    assert status == 1
    assert err == (
        "s3-scheduler: check found 1 name(s) to look at, listed on stdout: events=3 not_events=1 late=0 offset_keys=1\n"
    )
    assert strict[2].count("\n") == 1
    lines = out.splitlines()
    assert lines[0].startswith("not an event: 'jobs/|not-a-time|target|x': 'not-a-time' is not a time")
    assert lines[-2] == "events=3 not_events=1 late=0 offset_keys=1"  # the T-form name is read in time either way
    assert lines[-1].startswith("1 event(s) named with a UTC offset (as 0.0.3 wrote them) or sorting after their time")
    assert strict[0] == 1
    report = json.loads(strict[1])
    assert [item["key"] for item in report["late"]] == [OFFSET_KEY]
    assert (report["ok"], report["legacy_offsets_needed"]) == (False, True)


def test_check_says_when_no_legacy_offsets_is_safe(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """With only events this package wrote, check exits 0 and says --no-legacy-offsets is safe."""
    scheduler(aws, clock).schedule(T0 + timedelta(hours=1), "target", "ok", "x")

    status, out, _ = run(capsys, "check", clock=clock)

    assert status == 0
    assert out.splitlines() == [
        "events=1 not_events=0 late=0 offset_keys=0",
        "every event sorts at its time: --no-legacy-offsets (S3_SCHEDULER_LEGACY_OFFSETS=0) is safe",
    ]


def jsonl(tmp_path: Any, *items: Any) -> str:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(item if isinstance(item, str) else json.dumps(item) for item in items) + "\n")
    return str(path)


def test_schedule_from_a_jsonl_file_writes_each_event(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock, tmp_path: Any
) -> None:
    """schedule --from FILE.jsonl writes one event a line (blank lines skipped) and prints each key."""
    path = jsonl(
        tmp_path,
        {"at": "+10m", "to": "s3://target/a", "content": "first"},
        "",
        {"at": "2030-01-07 15:05 Europe/Paris", "to": "s3://target/b/c.json", "content": '{"id": 7}'},
    )

    status, out, err = run(capsys, "schedule", "--from", path, clock=clock)

    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "jobs/|2026-11-27%2012%3A10%3A00%2B00%3A00|target|a",
        "jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|target|b~~c.json",
    ]
    assert aws.get_object(Bucket="sched", Key=out.splitlines()[1])["Body"].read() == b'{"id": 7}'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"at": "soon", "to": "s3://target/b", "content": "x"}', "line 2: \"at\" 'soon' is not a time"),
        ('{"at": "+1h", "to": "target/b", "content": "x"}', "line 2: \"to\" 'target/b' is not a target"),
        ('{"at": "+1h", "to": "s3://target/b"}', 'line 2 must hold exactly "at", "to" and "content"'),
        ('{"at": "+1h", "to": "s3://target/b", "content": 7}', 'line 2: "at", "to" and "content" must be strings'),
        ("not json", "line 2 is not JSON"),
        (
            '{"at": "+1h", "to": "s3://target/b", "content": "x", "metadata": {"a": "1"}}',
            'line 2: "content_type" and "metadata" are not read per line: pass --content-type and --metadata',
        ),
        ('{"at": "+10m", "to": "s3://target/a", "content": "again"}', "lines 1 and 2 have the same time and target"),
    ],
)
def test_schedule_from_checks_every_line_before_any_request(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock, tmp_path: Any, line: str, message: str
) -> None:
    """A bad line fails the whole file in one line naming it, and nothing is written."""
    path = jsonl(tmp_path, {"at": "+10m", "to": "s3://target/a", "content": "x"}, line)

    status, out, err = run(capsys, "schedule", "--from", path, clock=clock)

    assert (status, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith(f"s3-scheduler: --from {path!r} {message}")  # each names its line right after the file
    assert keys(aws, "sched") == []


def test_schedule_from_reports_each_failed_event_in_one_line(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock, tmp_path: Any
) -> None:
    """Events that could not be written get one stderr line each; the others are written and printed; exit 1."""
    taken = scheduler(aws, clock).schedule(T0 + timedelta(minutes=10), "target", "b", "old")
    path = jsonl(
        tmp_path,
        {"at": "+5m", "to": "s3://target/a", "content": "x"},
        {"at": "+10m", "to": "s3://target/b", "content": "new"},
        {"at": "+15m", "to": "s3://target/c", "content": "x"},
    )

    status, out, err = run(capsys, "schedule", "--from", path, clock=clock)

    assert status == 1
    assert [line.rsplit("|", 1)[1] for line in out.splitlines()] == ["a", "c"]
    assert err.splitlines() == [
        f"s3-scheduler: --from {path!r} line 2 (s3://target/b): an event with that time and target is already"
        f" pending as {taken!r}: pass --replace to replace it",
        "s3-scheduler: 1 of 3 events were not written (2 were)",
    ]
    assert aws.get_object(Bucket="sched", Key=taken)["Body"].read() == b"old"


def test_schedule_from_names_the_line_of_an_event_the_scheduler_refuses(
    aws: Any, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """An event refused by Scheduler.schedule_many (here a name over S3's 1,024 bytes) is named by its line in the
    file, read from the error's batch_index, not from its message; nothing is written (issue 18)."""
    path = jsonl(
        tmp_path,
        {"at": "2030-01-07T14:05", "to": "s3://target/a", "content": "x"},
        "",
        {"at": "2030-01-07T14:05", "to": "s3://target/" + "b" * 40, "content": "x"},
    )

    status, out, err = run(capsys, "--prefix", "j" * 975, "schedule", "--from", path)

    assert (status, out) == (2, "")
    assert err == (
        f"s3-scheduler: --from {path!r}: line 3: the event's name would be 1060 bytes, over S3's 1024-byte limit on"
        " keys: shorten the scheduler path or the target key\n"
    )
    assert keys(aws, "sched") == []


# user errors: one line on stderr, the right exit code ------------------------------------


SCHEDULE_K = ["schedule", "--at", "+1h", "--to", "s3://target/k", "--content", "x"]


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["schedule", "--at", "soon", "--to", "s3://target/k", "--content", "x"], 2, "--at 'soon' is not a time"),
        (["schedule", "--at", "+99999999999d", "--to", "s3://target/k", "--content", "x"], 2, "is out of range"),
        (["schedule", "--at", "+1h", "--to", "target/k", "--content", "x"], 2, "use s3://bucket/key"),
        (["schedule", "--at", "+1h", "--to", "s3://Bad_Bucket!/k", "--content", "x"], 2, "is not a bucket name"),
        (["schedule", "--at", "+1h", "--to", "s3://target/k", "--file", "/no/such/file"], 2, "no such file"),
        (["schedule", "--at", "+1h", "--to", "s3://target/k", "--file", "/"], 2, "--file '/' is a directory"),
        (["schedule", "--at", "+1h"], 2, "schedule needs --at WHEN, --to s3://BUCKET/KEY, and --content"),
        (["schedule", "--from", "/no/such.jsonl"], 2, "--from '/no/such.jsonl': no such file"),
        (["schedule", "--from", "/"], 2, "--from '/' is a directory"),
        (["schedule", "--from", "/dev/null"], 2, "no events in the file"),
        (["schedule", "--from", "-", "--at", "+1h"], 2, "--from FILE.jsonl takes the times"),
        (["list", "--until", "9999-12-31T23:59:59"], 2, "--until '9999-12-31T23:59:59' is out of range"),
        (["list", "--until", "soon"], 2, "--until 'soon' is not a time"),
        (["list", "--limit", "-1"], 2, "--limit '-1' is not a whole number of zero or more: e.g. --limit 20"),
        (["list", "--limit", "1e20"], 2, "--limit '1e20' is not a whole number of zero or more"),
        (["--bucket", "Bad_Bucket!", "list"], 2, "--bucket 'Bad_Bucket!' is not a bucket name: use 3 to 63"),
        (["--endpoint-url", "localhost:5101", "list"], 2, "'localhost:5101' is not a URL: use the form http://host"),
        (["--max-workers", "0", "list"], 2, "--max-workers '0' must be a whole number from 1 to 1000, e.g. 32"),
        (["--max-workers", "1e20", "list"], 2, "--max-workers '1e20' must be a whole number from 1 to 1000"),
        (["--max-workers", "1001", "list"], 2, "--max-workers '1001' must be a whole number from 1 to 1000"),
        (["--bucket", "no-such-bucket", "list"], 1, "no such bucket 'no-such-bucket'"),
        (
            ["--bucket", "no-such-bucket", "cancel", "jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|t|k"],
            1,
            "no such bucket",
        ),
        (
            ["--region", "not a region", "list"],
            2,
            "--region 'not a region' is not a region: use a name such as eu-west-3",
        ),
        (["--region", "", "list"], 2, "--region '' is not a region: use a name such as eu-west-3"),
        (["cancel", "other/|x"], 2, "'other/|x' is not an event of 'jobs/|'"),
        (
            ["cancel", "--shards", "3", "jobs/x/|t|b|k"],
            2,
            "'jobs/x/|t|b|k' is not an event of 'jobs/|' or jobs/{shard}/|",
        ),
        (["cancel"], 2, "cancel needs the KEY of each event, or --to"),
        (["cancel", "--at", "+1h"], 2, "--at selects among the events of a target: pass --to"),
        (["cancel", "--to", "s3://target/k"], 1, "no pending event goes to s3://target/k"),
        (["reschedule", "--at", "+1h"], 2, "reschedule needs either the KEY"),
        (["run", "--interval", "16m"], 2, "--interval '16m' must be more than 0 and at most 15m"),
        (["handle", "--timeout", "soon"], 2, "--timeout 'soon' is not a duration"),
        (["--max-lateness", "soon", "handle"], 2, "--max-lateness 'soon' is not a duration: use seconds or 90s"),
        (["handle", "--max-lateness", "-1h"], 2, "--max-lateness '-1h' is not a duration"),
        (["handle", "--max-lateness", "99999999999d"], 2, "--max-lateness '99999999999d' is too long"),
        (["handle", "--max-lateness", "10s"], 2, "--max-lateness '10s' is under 1m: runs a minute apart find events"),
        ([*SCHEDULE_K, "--metadata", "order-id"], 2, "--metadata 'order-id' is not NAME=VALUE: e.g. --metadata"),
        ([*SCHEDULE_K, "--metadata", "=42"], 2, "--metadata '=42' is not NAME=VALUE"),
        ([*SCHEDULE_K, "--metadata", "numéro=42"], 2, "--metadata 'numéro=42': the name must be ASCII letters"),
        ([*SCHEDULE_K, "--metadata", "a b=1"], 2, "the name must be ASCII letters"),
        ([*SCHEDULE_K, "--metadata", "n=é"], 2, "--metadata 'n=é': the value must be printable ASCII"),
        ([*SCHEDULE_K, "--metadata", "n=a\nb"], 2, "the value must be printable ASCII"),
        ([*SCHEDULE_K, "--metadata", "id=1", "--metadata", "ID=2"], 2, "--metadata 'ID' is given twice"),
        ([*SCHEDULE_K, "--metadata", "n=" + "x" * 2048], 2, "2049 bytes of names and values, over S3's 2048-byte"),
        ([*SCHEDULE_K, "--content-type", "json"], 2, "--content-type 'json' is not a MIME type: use type/subtype"),
        ([*SCHEDULE_K, "--content-type", "text/plain\r\nX: y"], 2, "is not a MIME type"),
        (["schedule", "--from", "/no/such.jsonl", "--metadata", "x"], 2, "--metadata 'x' is not NAME=VALUE"),
    ],
)
def test_user_errors_print_one_line_and_exit(
    aws: Any, capsys: pytest.CaptureFixture[str], argv: list[str], status: int, message: str
) -> None:
    """Each mistake a user can make prints one line naming the fix; no traceback (issues 9, 11)."""
    code, _, err = run(capsys, *argv)

    assert code == status
    assert err.count("\n") == 1
    assert err.startswith("s3-scheduler: ")
    assert message in err


def test_a_closed_pipe_ends_quietly(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    """`s3-scheduler list | head -1`: when the reader goes away, exit 1 with no traceback."""

    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    scheduler(aws, clock).schedule(T0 + timedelta(hours=1), "target", "k", "x")
    monkeypatch.setattr(sys, "stdout", ClosedPipe())

    status = cli.main(["list"], clock=clock)

    assert status == 1
    assert capsys.readouterr().err == ""


def test_reschedule_to_a_name_too_long_is_a_usage_error(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock
) -> None:
    """A new time is checked like any other: a name over S3's 1,024 bytes fails in one line, nothing moved."""
    key = Scheduler("sched", "j" * 975, s3_client=aws, clock=clock).schedule(T0, "target", "k", "x")

    status, _, err = run(capsys, "--prefix", "j" * 975, "reschedule", key, "--at", "2030-01-07T14:05:00.123456")

    assert status == 2
    assert err.count("\n") == 1
    assert "over S3's 1024-byte limit" in err
    assert keys(aws, "sched") == [key]


def test_usage_errors_send_no_request(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad bucket name, endpoint or time fails before any client is even made."""
    made: list[bool] = []
    monkeypatch.setattr(boto3.session.Session, "client", lambda *a, **k: made.append(True))

    statuses = [
        run(capsys, "--bucket", "Bad_Bucket!", "list")[0],
        run(capsys, "--endpoint-url", "localhost:5101", "list")[0],
        run(capsys, "schedule", "--at", "+1h", "--to", "s3://x/k", "--content", "x")[0],
        run(capsys, *SCHEDULE_K, "--metadata", "numéro=42")[0],
        run(capsys, *SCHEDULE_K, "--content-type", "json")[0],
        run(capsys, "--max-lateness", "soon", "handle")[0],
    ]

    assert statuses == [2, 2, 2, 2, 2, 2]
    assert made == []


def test_a_bad_endpoint_in_the_environment_is_named(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_ENDPOINT_URL without a scheme is named as the variable, exit 2, in the words the Lambda handler uses
    (s3_scheduler.settings reads it for both)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "localhost:5101")

    code, _, err = run(capsys, "list")

    assert code == 2
    assert err == (
        "s3-scheduler: AWS_ENDPOINT_URL: 'localhost:5101' is not a URL: use the form http://host:port or https://host\n"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("S3_SCHEDULER_BUCKET", "Bad_Bucket!"),
        ("S3_SCHEDULER_PREFIX", os.fsdecode(b"jobs\xff")),
        ("S3_SCHEDULER_MAX_WORKERS", "1001"),
        ("S3_SCHEDULER_MAX_WORKERS", "0"),
        ("S3_SCHEDULER_LEGACY_OFFSETS", "maybe"),
        ("S3_SCHEDULER_MAX_LATENESS", "10s"),
        ("AWS_ENDPOINT_URL", "localhost:5101"),
        ("AWS_ENDPOINT_URL_S3", "http://a b"),
    ],
)
def test_a_malformed_variable_is_refused_in_the_lambda_handlers_words(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """Each variable the command reads is read by s3_scheduler.settings, as the Lambda handler's are: a malformed
    one is exit 2 with the handler's ConfigurationError, word for word (issue 18)."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as raised:
        read_settings({"S3_SCHEDULER_BUCKET": "sched", **{name: value}})

    status, _, err = run(capsys, "list")

    assert (status, err) == (2, f"s3-scheduler: {raised.value}\n")


def test_a_variable_an_option_overrides_is_not_read(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    """An option given wins over its variable, which is then not even read: a malformed one does not matter; nor
    does a malformed variable the command has no use for (S3_SCHEDULER_PRECISE is the Lambda handler's)."""
    key = scheduler(aws, clock).schedule(T0 + timedelta(hours=1), "target", "k", "x")
    for name, value in (
        ("S3_SCHEDULER_BUCKET", "Bad_Bucket!"),
        ("S3_SCHEDULER_PREFIX", "\udcff"),
        ("S3_SCHEDULER_MAX_WORKERS", "many"),
        ("S3_SCHEDULER_LEGACY_OFFSETS", "maybe"),
        ("S3_SCHEDULER_MAX_LATENESS", "soon"),
        ("S3_SCHEDULER_PRECISE", "sometimes"),
    ):
        monkeypatch.setenv(name, value)
    given = [
        "--bucket",
        "sched",
        "--prefix",
        "jobs",
        "--max-workers",
        "4",
        "--no-legacy-offsets",
        "--max-lateness",
        "1h",
    ]

    status, out, err = run(capsys, *given, "--json", "list", clock=clock)

    assert (status, err) == (0, "")
    assert [json.loads(line)["key"] for line in out.splitlines()] == [key]


def test_the_region_comes_from_aws_region_and_a_malformed_one_is_named(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, client_spy: ClientSpy
) -> None:
    """--region, else AWS_REGION (as documented; boto3 reads only AWS_DEFAULT_REGION), names the client's region; an
    empty or malformed region is a usage error naming its source, not botocore's bare ValueError (issue 17)."""
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    from_env = run(capsys, "list")
    given = run(capsys, "--region", "us-west-2", "list")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "")
    empty = run(capsys, "list")

    assert (from_env[0], given[0]) == (0, 0)
    assert client_spy.regions == ["eu-west-3", "us-west-2"]
    assert empty == (2, "", "s3-scheduler: AWS_DEFAULT_REGION='' is not a region: use a name such as eu-west-3\n")


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

    code, _, err = run(capsys, "--bucket", "sched", "--endpoint-url", "http://127.0.0.1:9", "list")

    assert code == 1
    assert err == "s3-scheduler: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE\n"


def test_an_unknown_profile_is_named(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_PROFILE naming no profile: exit 1 naming it, not botocore's traceback."""
    monkeypatch.setenv("AWS_PROFILE", "nope")

    code, _, err = run(capsys, "--bucket", "sched", "list")

    assert code == 1
    assert err == "s3-scheduler: no AWS profile 'nope': check AWS_PROFILE and the profiles in ~/.aws/config\n"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ListObjects"),
            "access denied to bucket 'sched' (AccessDenied): check the credentials and the IAM policy",
        ),
        (
            ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadBucket"),
            "no such bucket 'sched': check --bucket (or S3_SCHEDULER_BUCKET) and --region",
        ),
        (
            ClientError({"Error": {"Code": "InternalError", "Message": "try\nagain"}}, "PutObject"),
            "S3 refused the request: An error occurred (InternalError) when calling the PutObject operation: try again",
        ),
        (ParamValidationError(report="bad\nparameter"), "AWS error: Parameter validation failed: bad parameter"),
    ],
)
def test_aws_errors_become_one_line(error: Exception, message: str) -> None:
    """Every botocore error becomes a Failure of one line; the common ones say what to check."""
    args = argparse.Namespace(bucket="sched")

    with pytest.raises(cli.Failure) as raised, cli._aws_errors(args):
        raise error

    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_an_unreachable_endpoint_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed port fails in one line naming the endpoint and --endpoint-url."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no retries: the test stays fast

    code, _, err = run(capsys, "--bucket", "sched", "--endpoint-url", "http://127.0.0.1:9", "list")

    assert code == 1
    assert err == "s3-scheduler: cannot reach S3 at http://127.0.0.1:9: check --endpoint-url and the network\n"


def test_usage_errors_from_argparse_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A missing subcommand or an unknown option is argparse's usage error, exit 2."""
    assert run(capsys)[0] == 2
    assert run(capsys, "list", "--no-such-option")[0] == 2


@pytest.mark.parametrize("argv", [["list", "--shard", "4"], ["schedule", "--shard", "3"], ["list", "--max-work", "4"]])
def test_options_are_not_abbreviated(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """``--shard`` where a command has none is not read as ``--shards`` (nor any prefix as an option): usage error."""
    status, _, err = run(capsys, *argv)

    assert status == 2
    assert f"unrecognized arguments: {argv[1]} {argv[2]}" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "s3-scheduler: the following arguments are required: COMMAND (see s3-scheduler --help)"),
        (["list", "--no-such-option"], "s3-scheduler: unrecognized arguments: --no-such-option"),
        (["list", "--limit"], "s3-scheduler list: argument --limit: expected one argument"),
        (["nope"], "s3-scheduler: argument COMMAND: invalid choice: 'nope'"),
        (["cancel", "--to"], "s3-scheduler cancel: argument --to: expected one argument"),
        (["list", "--bogus\u2028x"], "s3-scheduler: unrecognized arguments: --bogus x"),
    ],
)
def test_argparse_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    """argparse's own errors are one line naming --help, not a usage block (issue 17)."""
    status, out, err = run(capsys, *argv)

    assert (status, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert err.startswith(message)
    assert err.endswith("--help)\n")


def test_a_huge_limit_means_no_limit(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """list --limit 100000000000000000000 lists everything instead of failing in itertools (issue 17)."""
    key = scheduler(aws, clock).schedule(T0 + timedelta(hours=1), "target", "one", "1")

    status, out, err = run(capsys, "--json", "list", "--limit", "100000000000000000000", clock=clock)
    zero = run(capsys, "--json", "list", "--limit", "0", clock=clock)

    assert (status, err) == (0, "")
    assert [json.loads(line)["key"] for line in out.splitlines()] == [key]
    assert zero == (0, "", "")


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://a b",
        "http://host:99999",
        "http://host:port",
        "ftp://host",
        "http://",
        "http://h\u2028st",
        "http://host/\u00e9",
        "http://-host-",
    ],
)
def test_a_malformed_endpoint_is_a_usage_error(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """An endpoint botocore would refuse with a bare ValueError fails in one line naming the option or the
    variable, exit 2 (issue 17)."""
    given = run(capsys, "--endpoint-url", url, "list")
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    from_env = run(capsys, "list")

    assert given[0] == from_env[0] == 2
    assert given[2].startswith("s3-scheduler: --endpoint-url '")
    assert from_env[2].startswith("s3-scheduler: AWS_ENDPOINT_URL: '")
    assert all(
        len(err.splitlines()) == 1 and "is not a URL: use the form http" in err for err in (given[2], from_env[2])
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--prefix", "\udcff", "list"], "--prefix '\\udcff' is not UTF-8 text"),
        ([*SCHEDULE_K[:4], "s3://target/\udcff", "--content", "x"], "--to 's3://target/\\udcff' is not UTF-8 text"),
        ([*SCHEDULE_K[:6], "secret \udcff"], "--content is not UTF-8 text"),
        (["cancel", "jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|target|\udcff"], "KEY 'jobs/|2030"),
        (["list", "--until", "+1\udcffh"], "--until '+1\\udcffh' is not UTF-8 text"),
    ],
)
def test_an_argument_that_is_not_utf8_is_a_usage_error(
    aws: Any, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """A byte that is not UTF-8 on the command line (a lone surrogate in argv) fails in one line naming the option,
    content never echoed, nothing written (issue 17)."""
    status, out, err = run(capsys, *argv)

    assert (status, out) == (2, "")
    assert err.startswith(f"s3-scheduler: {message}")
    assert len(err.splitlines()) == 1
    assert "secret" not in err
    assert keys(aws, "sched") == []


def test_a_prefix_that_is_not_utf8_in_the_environment_is_named(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3_SCHEDULER_PREFIX holding a byte that is not UTF-8 is a usage error naming the variable."""
    monkeypatch.setenv("S3_SCHEDULER_PREFIX", os.fsdecode(b"jobs\xff"))

    status, _, err = run(capsys, "list")

    assert status == 2
    assert err.startswith("s3-scheduler: S3_SCHEDULER_PREFIX='jobs\\udcff' is not UTF-8 text")


def test_a_file_name_that_is_not_utf8_is_read(aws: Any, capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    """--file names a file by any bytes the file system holds: only S3 names and text must be UTF-8."""
    path = os.path.join(os.fsdecode(bytes(tmp_path)), os.fsdecode(b"\xff.bin"))
    with open(path, "wb") as stream:
        stream.write(b"payload")

    status, out, err = run(capsys, *SCHEDULE_K[:5], "--file", path)

    assert (status, err) == (0, "")
    assert aws.get_object(Bucket="sched", Key=out.strip())["Body"].read() == b"payload"


def test_schedule_at_plus_5_space_m(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """`schedule --at '+5 m'` schedules five minutes ahead, and `--at '-5 m'` is not taken for an option."""
    ahead = run(capsys, *SCHEDULE_K[:1], "--at", "+5 m", *SCHEDULE_K[3:], clock=clock)
    behind = run(capsys, "--json", "schedule", "--at", "-5 m", "--to", "s3://target/b", "--content", "x", clock=clock)

    assert ahead[:2] == (0, "jobs/|2026-11-27%2012%3A05%3A00%2B00%3A00|target|k\n")
    assert json.loads(behind[1])["when"] == "2026-11-27T11:55:00+00:00"


def test_run_help_gives_the_interval_limit_as_a_duration(capsys: pytest.CaptureFixture[str]) -> None:
    """run --help says `at most 15m`, the form --interval takes, not timedelta's 0:15:00."""
    status, out, _ = run(capsys, "run", "--help")

    assert status == 0
    assert "at most 15m" in " ".join(out.split())
    assert "0:15:00" not in out


def test_deeply_nested_json_in_a_from_file_is_one_line(
    aws: Any, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """A line nesting deeper than the JSON reader goes fails in one line naming it, not a RecursionError (issue 17)."""
    path = jsonl(tmp_path, {"at": "+1h", "to": "s3://target/a", "content": "x"}, "[" * 100_000 + "]" * 100_000)

    status, out, err = run(capsys, "schedule", "--from", path)

    assert (status, out) == (2, "")
    assert err == (
        f"s3-scheduler: --from {path!r} line 2 nests too deeply to read: write"
        ' {"at": "2030-01-07T14:05", "to": "s3://work/in/report.json", "content": "hi"}\n'
    )
    assert keys(aws, "sched") == []


def test_from_lines_end_at_newlines_only(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock, tmp_path: Any
) -> None:
    """U+2028, U+2029, U+0085, form feed and the like inside a --from line neither split it nor crash; CRLF ends
    a line as LF does (issue 17)."""
    separators = "\u2028\u2029\x85\x0c\x0b\x1c\x1d\x1e"
    events = [
        {"at": "+1h", "to": f"s3://target/a{separators}", "content": f"one{separators}line"},
        {"at": "+2h", "to": "s3://target/b", "content": "two"},
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes("\r\n".join(json.dumps(e, ensure_ascii=False) for e in events).encode("utf-8") + b"\r\n")

    status, out, err = run(capsys, "schedule", "--from", str(path), clock=clock)

    assert (status, err) == (0, "")
    written = out.split("\n")[:-1]
    assert len(written) == 2
    assert aws.get_object(Bucket="sched", Key=written[0])["Body"].read() == f"one{separators}line".encode()
    assert [e.path for e in scheduler(aws, clock).pending()] == [f"a{separators}", "b"]


@pytest.mark.parametrize("field", ["to", "content", "at"])
def test_a_lone_surrogate_in_a_from_line_is_a_usage_error(
    aws: Any, capsys: pytest.CaptureFixture[str], tmp_path: Any, field: str
) -> None:
    """A JSON escape of a lone surrogate ("\\ud800") in a --from line fails in one line naming the line and the
    field, before any request (issue 17)."""
    event = {"at": "+1h", "to": "s3://target/a", "content": "x"}
    event[field] += "\ud800"
    path = jsonl(tmp_path, {"at": "+1h", "to": "s3://target/z", "content": "x"}, json.dumps(event))

    status, _, err = run(capsys, "schedule", "--from", path)

    assert status == 2
    assert err.startswith(f's3-scheduler: --from {path!r} line 2: "{field}" is not UTF-8 text')
    assert len(err.splitlines()) == 1
    assert keys(aws, "sched") == []


def test_schedule_warns_when_the_time_is_past(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The CLI warns in one line when WHEN is past, and schedules anyway; the Python API stays silent as 0.0.3 was."""
    past = run(capsys, *SCHEDULE_K[:1], "--at", "-5m", *SCHEDULE_K[3:], clock=clock)
    ahead = run(capsys, *SCHEDULE_K[:1], "--at", "+5m", *SCHEDULE_K[3:], clock=clock)
    lines = jsonl(
        tmp_path,
        {"at": "2020-01-01T00:00", "to": "s3://target/a", "content": "x"},
        {"at": "+1h", "to": "s3://target/b", "content": "x"},
        {"at": "-1s", "to": "s3://target/c", "content": "x"},
    )
    many = run(capsys, "schedule", "--from", lines, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="s3_scheduler"):
        scheduler(aws, clock).schedule(T0 - timedelta(days=1), "target", "api", "x")

    assert past[0] == 0
    assert past[2] == (
        "s3-scheduler: warning: --at '-5m' is 2026-11-27T11:55:00+00:00, in the past: the next run delivers it\n"
    )
    assert ahead[0::2] == (0, "")
    assert many[0] == 0
    assert many[2] == (
        f"s3-scheduler: warning: --from {lines!r}: 2 of 3 events are in the past (lines 1, 3): the next run delivers"
        " them\n"
    )
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert len(keys(aws, "sched")) == 6


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("my..bucket", "two dots in a row"),
        ("-bucket", "starting and ending with a letter or digit"),
        ("bucket-", "starting and ending with a letter or digit"),
        (".bucket", "starting and ending with a letter or digit"),
        ("a" * 64, "3 to 63 characters"),
        ("192.168.1.1", "shaped as an IP address"),
        ("xn--bucket", "AWS keeps that prefix or suffix"),
        ("sthree-bucket", "AWS keeps that prefix or suffix"),
        ("bucket-s3alias", "AWS keeps that prefix or suffix"),
        ("bucket--ol-s3", "AWS keeps that prefix or suffix"),
    ],
)
def test_target_buckets_follow_s3s_naming_rules(
    aws: Any, capsys: pytest.CaptureFixture[str], tmp_path: Any, name: str, reason: str
) -> None:
    """A target bucket S3 would never create is refused at schedule time, in --to and in --from lines (issue 17)."""
    to = run(capsys, *SCHEDULE_K[:3], "--to", f"s3://{name}/k", "--content", "x")
    path = jsonl(tmp_path, {"at": "+1h", "to": f"s3://{name}/k", "content": "x"})
    many = run(capsys, "schedule", "--from", path)

    assert (to[0], many[0]) == (2, 2)
    assert to[2].startswith(f"s3-scheduler: --to 's3://{name}/k': {name!r} is not a bucket name (")
    assert many[2].startswith(f"s3-scheduler: --from {path!r} line 1: \"to\" 's3://{name}/k': {name!r} is not a")
    assert all(reason in err and err.count("\n") == 1 for err in (to[2], many[2]))
    assert keys(aws, "sched") == []


# --json: the keys the command-line guide (docs/guides/command-line.md) documents ----------------------------


EVENT_KEYS = {"key", "when", "bucket", "path"}
REPORT_KEYS = {"delivered", "failed", "skipped", "deferred", "vanished", "rejected", "dead_lettered", "expired"}


def test_every_json_line_has_the_documented_keys(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock, tmp_path: Any
) -> None:
    """Each command's --json line has the keys the command-line guide documents: an event's key, when, bucket and
    path (list adds due_in, reschedule old_key), cancel's key and cancelled, handle's report, check's findings
    (issue 17)."""
    scheduled = run(capsys, "--json", *SCHEDULE_K, clock=clock)
    many = run(
        capsys, "--json", "schedule", "--from", jsonl(tmp_path, {"at": "+2h", "to": "s3://target/m", "content": "x"})
    )
    listed = run(capsys, "--json", "list", clock=clock)
    moved = run(capsys, "--json", "reschedule", "--to", "s3://target/k", "--at", "-1m", clock=clock)
    cancelled = run(capsys, "--json", "cancel", "--to", "s3://target/m", clock=clock)
    handled = run(capsys, "--json", "handle", clock=clock)
    checked = run(capsys, "--json", "check", clock=clock)

    def one(result: tuple[int, str, str]) -> set[str]:
        assert result[0] == 0
        (line,) = result[1].splitlines()
        return set(json.loads(line))

    assert one(scheduled) == one(many) == EVENT_KEYS
    assert [set(json.loads(line)) for line in listed[1].splitlines()] == [EVENT_KEYS | {"due_in"}] * 2
    assert one(moved) == EVENT_KEYS | {"old_key"}
    assert one(cancelled) == {"key", "cancelled"}
    assert one(handled) == REPORT_KEYS
    assert one(checked) == {"events", "not_events", "late", "offset_keys", "ok", "legacy_offsets_needed"}
    assert json.loads(handled[1])["delivered"][0].keys() == EVENT_KEYS


# run ---------------------------------------------------------------------------------------


def test_run_in_process_stops_on_a_real_sigterm(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """main(['run']) turns SIGTERM into a clean stop with exit 0, finishing the delivery in flight."""
    Scheduler("sched", "jobs", s3_client=aws).schedule(datetime.now(UTC) - timedelta(seconds=1), "target", "k", "x")
    sent: list[bool] = []

    def send_sigterm(**_: Any) -> None:
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
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


class SigtermOnRetry(logging.Handler):
    """Records each retry warning of the run loop, and sends SIGTERM at the ``stop_at``-th."""

    def __init__(self, stop_at: int) -> None:
        super().__init__()
        self.stop_at = stop_at
        self.retries: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Run: "):
            self.retries.append(record.getMessage())
            if len(self.retries) == self.stop_at:
                os.kill(os.getpid(), signal.SIGTERM)  # in the main thread: the handler runs at once


@contextmanager
def listings_failing(monkeypatch: pytest.MonkeyPatch, code: str, after: int) -> Iterator[list[int]]:
    """Make every ListObjectsV2 of the CLI's clients after the first ``after`` fail with ``code``."""
    calls: list[int] = []
    original = boto3.session.Session.client

    def fail(**_: Any) -> None:
        calls.append(1)
        if len(calls) > after:
            raise ClientError({"Error": {"Code": code, "Message": code}}, "ListObjectsV2")

    def client_with_hook(self: Any, *args: Any, **kwargs: Any) -> Any:
        made = original(self, *args, **kwargs)
        made.meta.events.register("before-call.s3.ListObjectsV2", fail)
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client_with_hook)
    yield calls


def test_run_warns_about_an_outage_and_keeps_going(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a first good window, a bucket gone missing is warned on stderr in one line and retried; only SIGTERM
    ends the run."""
    monkeypatch.setattr("s3_scheduler.runner.FIRST_RETRY", 0.001)
    spy = SigtermOnRetry(stop_at=2)
    logging.getLogger("s3_scheduler").addHandler(spy)
    try:
        with listings_failing(monkeypatch, "NoSuchBucket", after=1):
            status, _, err = run(capsys, "run", "--interval", "0.001")
    finally:
        logging.getLogger("s3_scheduler").removeHandler(spy)

    assert status == 0
    assert spy.retries == [
        f"Run: no such bucket 'sched': check --bucket (or S3_SCHEDULER_BUCKET) and --region; trying again in {s:g} s"
        for s in (0.001, 0.002)
    ]
    assert err.count("WARNING s3_scheduler.") + err.count("WARNING s3_scheduler:") == 2
    assert err.count("\n") == 2


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("NoSuchBucket", "no such bucket 'sched': check --bucket (or S3_SCHEDULER_BUCKET) and --region"),
        ("AccessDenied", "access denied to bucket 'sched' (AccessDenied): check the credentials and the IAM policy"),
    ],
)
def test_run_ends_at_once_when_the_first_listing_finds_no_bucket_or_no_access(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, code: str, message: str
) -> None:
    """A bucket that does not exist, or is denied, at the first window ends run with one line and exit 1 (issue 17):
    waiting would not mend the configuration."""
    monkeypatch.setattr("s3_scheduler.runner.FIRST_RETRY", 0.001)
    spy = SigtermOnRetry(stop_at=1)  # without the fix, the run would retry: stop it there
    logging.getLogger("s3_scheduler").addHandler(spy)
    try:
        with listings_failing(monkeypatch, code, after=0) as calls:
            status, out, err = run(capsys, "run", "--interval", "0.001")
    finally:
        logging.getLogger("s3_scheduler").removeHandler(spy)

    assert (status, out) == (1, "")
    assert err == f"s3-scheduler: {message}\n"
    assert (len(calls), spy.retries) == (1, [])


def test_run_against_a_bucket_that_does_not_exist_fails_in_one_line(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`s3-scheduler --bucket no-such-bucket run` (a new user's typo) exits 1 with one line, no retries (issue 17)."""
    spy = SigtermOnRetry(stop_at=1)
    logging.getLogger("s3_scheduler").addHandler(spy)
    try:
        status, _, err = run(capsys, "--bucket", "no-such-bucket", "run")
    finally:
        logging.getLogger("s3_scheduler").removeHandler(spy)

    assert status == 1
    assert (
        err == "s3-scheduler: no such bucket 'no-such-bucket': check --bucket (or S3_SCHEDULER_BUCKET) and --region\n"
    )
    assert spy.retries == []


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


# shards: --shards N for every command, handle --shard K, run --shard K -------------------------------------------


def sharded(client: Any, clock: Clock, shards: int) -> Scheduler:
    return Scheduler("sched", "jobs", s3_client=client, clock=clock, shards=shards)


def test_shards_come_from_the_option_or_the_variable(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--shards N, else S3_SCHEDULER_SHARDS, else 1, is the Scheduler's shards; a variable the option overrides is
    not read."""
    made: list[dict[str, Any]] = []

    class Recording(Scheduler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(options, "Scheduler", Recording)

    run(capsys, "list")
    run(capsys, "--shards", "4", "list")
    run(capsys, "list", "--shards", "1000")
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "3")
    run(capsys, "list")
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "many")
    status, _, err = run(capsys, "list", "--shards", "2")

    assert (status, err) == (0, "")
    assert [m["shards"] for m in made] == [1, 4, 1000, 3, 2]


SHARDS_RULE = "must be a whole number from 1 to 1000 (1: no shards), e.g. 4"


def shard_rule(text: str, shards: int) -> str:
    return (
        f"--shard {text!r} must be a whole number from 0 to {shards - 1} with {shards} shard(s)"
        " (--shards or S3_SCHEDULER_SHARDS), e.g. 0"
    )


@pytest.mark.parametrize(
    ("argv", "variable", "message"),
    [
        (["--shards", "0", "list"], None, f"--shards '0' {SHARDS_RULE}"),
        (["list", "--shards", "1001"], None, f"--shards '1001' {SHARDS_RULE}"),
        (["schedule", "--shards", "four", *SCHEDULE_K[1:]], None, f"--shards 'four' {SHARDS_RULE}"),
        (["check", "--shards", "1e3"], None, f"--shards '1e3' {SHARDS_RULE}"),
        (["run", "--shards", "-2"], None, f"--shards '-2' {SHARDS_RULE}"),
        (["list"], "0", "S3_SCHEDULER_SHARDS='0' is not a whole number of 1 or more, such as 1"),
        (["handle"], "1001", "S3_SCHEDULER_SHARDS='1001' is over 1000: use a whole number from 1 to 1000, such as 1"),
        (["handle", "--shards", "4", "--shard", "4"], None, shard_rule("4", 4)),
        (["handle", "--shard", "-1"], "4", shard_rule("-1", 4)),
        (["handle", "--shard", "x"], "4", shard_rule("x", 4)),
        (["handle", "--shard", "1"], None, shard_rule("1", 1)),
        (["run", "--shards", "3", "--shard", "3"], None, shard_rule("3", 3)),
    ],
)
def test_a_bad_shards_or_shard_is_one_line_before_any_request(
    aws: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    variable: str | None,
    message: str,
) -> None:
    """--shards out of 1 to 1,000 (or S3_SCHEDULER_SHARDS), and --shard out of 0 to N-1, are usage errors in one line
    naming the range, before any S3 client is made."""
    if variable is not None:
        monkeypatch.setenv("S3_SCHEDULER_SHARDS", variable)
    made: list[bool] = []
    monkeypatch.setattr(boto3.session.Session, "client", lambda *a, **k: made.append(True))

    status, out, err = run(capsys, *argv)

    assert (status, out, made) == (2, "", [])
    assert err.startswith(f"s3-scheduler: {message}")
    assert err.count("\n") == 1


def test_schedule_with_shards_writes_under_the_targets_shard(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """schedule --shards 4 (or S3_SCHEDULER_SHARDS=4) writes each event under jobs/{s}/|, s the shard its target
    hashes to; --shards 1 writes under jobs/|, as 0.0.3 does."""
    targets = targets_by_shard("target", 4)
    written = {
        shard: run(capsys, "schedule", "--shards", "4", "--at", "2030-01-07T14:05", "--to", f"s3://target/{key}",
                   "--content", "x")[1].strip()
        for shard, key in targets.items()
    }  # fmt: skip
    monkeypatch.setenv("S3_SCHEDULER_SHARDS", "4")
    from_env = run(
        capsys, "schedule", "--at", "2030-01-07T14:06", "--to", f"s3://target/{targets[2]}", "--content", "x"
    )
    unsharded = run(capsys, "schedule", "--shards", "1", "--at", "2030-01-07T14:05", "--to", "s3://target/u",
                    "--content", "x")  # fmt: skip

    assert written == {
        shard: f"jobs/{shard}/|2030-01-07%2014%3A05%3A00%2B00%3A00|target|{key}" for shard, key in targets.items()
    }
    assert from_env[1].strip() == f"jobs/2/|2030-01-07%2014%3A06%3A00%2B00%3A00|target|{targets[2]}"
    assert unsharded[1].strip() == "jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|target|u"
    assert sorted(keys(aws, "sched")) == sorted([*written.values(), from_env[1].strip(), unsharded[1].strip()])


def test_list_with_shards_merges_every_shard_in_time_order(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock
) -> None:
    """list --shards 4 lists the events of every shard, of the unsharded prefix and of a shard numbered 4 or more,
    merged in time order; without --shards it lists the unsharded prefix alone (it never looks for shards)."""
    targets = targets_by_shard("target", 4)
    hour = timedelta(hours=1)
    written = [
        sharded(aws, clock, 4).schedule(T0 + 5 * hour, "target", targets[0], "x"),
        Scheduler("sched", "jobs", s3_client=aws).schedule(T0 + 2 * hour, "target", "unsharded", "x"),
        sharded(aws, clock, 4).schedule(T0 + 3 * hour, "target", targets[3], "x"),
        sharded(aws, clock, 8).schedule(T0 + 4 * hour, "target", targets_by_shard("target", 8, "beyond")[6], "x"),
        sharded(aws, clock, 4).schedule(T0 + hour, "target", targets[1], "x"),
    ]

    status, out, err = run(capsys, "--json", "list", "--shards", "4", clock=clock)
    _, table, _ = run(capsys, "list", "--shards", "4", "--until", "+3h", clock=clock)
    alone = run(capsys, "--json", "list", clock=clock)

    assert (status, err) == (0, "")
    listed = [json.loads(line) for line in out.splitlines()]
    assert [item["key"] for item in listed] == [written[4], written[1], written[2], written[3], written[0]]
    assert [item["due_in"] for item in listed] == [3600.0, 7200.0, 10800.0, 14400.0, 18000.0]
    assert [shlex.split(row)[-1] for row in table.splitlines()[1:]] == [written[4], written[1], written[2]]
    assert [json.loads(line)["key"] for line in alone[1].splitlines()] == [written[1]]


def test_check_with_shards_prints_the_unsharded_and_outside_events(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock
) -> None:
    """check --shards 4 prints each event under the unsharded prefix and each in a shard numbered 4 or more, one line
    each, counts them in the summary and exits 1 with one line on stderr; --json carries them as "unsharded" and
    "outside_shards"."""
    inside = sharded(aws, clock, 4).schedule(T0 + timedelta(hours=1), "target", targets_by_shard("target", 4)[2], "x")
    clean = run(capsys, "--json", "check", "--shards", "4", clock=clock)
    unsharded = Scheduler("sched", "jobs", s3_client=aws).schedule(T0, "target", "u", "x")
    outside = sharded(aws, clock, 8).schedule(T0, "target", targets_by_shard("target", 8, "beyond")[5], "x")

    status, out, err = run(capsys, "check", "--shards", "4", clock=clock)
    as_json = run(capsys, "--json", "check", "--shards", "4", clock=clock)

    assert clean[0] == 0
    assert json.loads(clean[1])["unsharded"] == json.loads(clean[1])["outside_shards"] == []
    assert status == 1
    assert err == (
        "s3-scheduler: check found 2 name(s) to look at, listed on stdout:"
        " events=3 not_events=0 late=0 offset_keys=0 unsharded=1 outside_shards=1\n"
    )
    assert out.splitlines()[:3] == [
        f"unsharded: {shlex.quote(unsharded)}: written without shards; run, handle and list still cover it",
        f"outside the shards: {shlex.quote(outside)}: in a shard numbered 4 or more; run, handle and list still"
        " cover it",
        "events=3 not_events=0 late=0 offset_keys=0 unsharded=1 outside_shards=1",
    ]
    report = json.loads(as_json[1])
    assert as_json[0] == 1
    assert (report["unsharded"], report["outside_shards"], report["events"]) == ([unsharded], [outside], 3)
    assert inside not in report["unsharded"] + report["outside_shards"]
    assert report["ok"] is False


def test_handle_shard_delivers_that_shard_alone(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """handle --shards 4 --shard 2 delivers shard 2's due events and nothing else; handle --shards 4 then delivers
    every other shard and the unsharded prefix, and its --json report says what each shard did."""
    targets = targets_by_shard("target", 4)
    past = T0 - timedelta(minutes=1)
    for key in targets.values():
        sharded(aws, clock, 4).schedule(past, "target", key, key)
    Scheduler("sched", "jobs", s3_client=aws).schedule(past, "target", "unsharded", "u")

    one = run(capsys, "handle", "--shards", "4", "--shard", "2", clock=clock)
    delivered_first = keys(aws, "target")
    rest = run(capsys, "--json", "handle", "--shards", "4", clock=clock)

    assert one[0] == 0
    assert one[1].startswith("delivered=1 failed=0")
    assert delivered_first == [targets[2]]
    assert rest[0] == 0
    report = json.loads(rest[1])
    assert len(report["delivered"]) == 4
    assert sorted(keys(aws, "target")) == sorted([*targets.values(), "unsharded"])
    assert keys(aws, "sched") == []


def test_cancel_and_reschedule_with_shards(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """reschedule --shards 4 --to moves an event within its target's shard; cancel --shards 4 --to finds it there
    (without --shards, the selection looks under jobs/| alone and finds nothing)."""
    key = targets_by_shard("target", 4)[3]
    sharded(aws, clock, 4).schedule(T0 + timedelta(hours=1), "target", key, "x")

    moved = run(capsys, "reschedule", "--shards", "4", "--to", f"s3://target/{key}", "--at", "+2h", clock=clock)
    unseen = run(capsys, "cancel", "--to", f"s3://target/{key}", clock=clock)
    cancelled = run(capsys, "cancel", "--shards", "4", "--to", f"s3://target/{key}", clock=clock)

    assert moved[0] == 0
    assert moved[1].strip() == f"jobs/3/|2026-11-27%2014%3A00%3A00%2B00%3A00|target|{key}"
    assert unseen[0] == 1
    assert "no pending event goes to" in unseen[2]
    assert cancelled[0] == 0
    assert keys(aws, "sched") == []


@pytest.fixture
def one_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """run makes one window, then stops (its wait says a stop was asked)."""
    monkeypatch.setattr(run_command, "run_until_stopped", functools.partial(run_until_stopped, wait=lambda _: True))


def test_run_shard_delivers_its_shard_and_shard_0_the_strays(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock, one_window: None
) -> None:
    """run --shards 3 --shard 1 delivers shard 1 alone; --shard 0 delivers shard 0, the unsharded prefix and a shard
    numbered 3 or more, never shard 1 or 2."""
    targets = targets_by_shard("target", 3)
    past = T0 - timedelta(seconds=1)
    for key in targets.values():
        sharded(aws, clock, 3).schedule(past, "target", key, key)
    Scheduler("sched", "jobs", s3_client=aws).schedule(past, "target", "unsharded", "u")
    beyond = targets_by_shard("target", 8, "beyond")[7]
    sharded(aws, clock, 8).schedule(past, "target", beyond, "b")

    first = run(capsys, "run", "--shards", "3", "--shard", "1", clock=clock)
    after_one = keys(aws, "target")
    zero = run(capsys, "run", "--shards", "3", "--shard", "0", clock=clock)

    assert first[0] == 0
    assert [line.split()[1] for line in first[1].splitlines()] == [f"s3://target/{targets[1]}"]
    assert after_one == [targets[1]]
    assert zero[0] == 0
    assert sorted(line.split()[1] for line in zero[1].splitlines()) == sorted(
        f"s3://target/{key}" for key in (targets[0], "unsharded", beyond)
    )
    assert [key for key in keys(aws, "sched") if "|" in key] == [
        f"jobs/2/|2026-11-27%2011%3A59%3A59%2B00%3A00|target|{targets[2]}"
    ]


def test_run_shard_0_rejects_a_stray_aimed_at_another_shards_lease(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock, one_window: None
) -> None:
    """An event in the unsharded prefix aimed at shard 1's lease (a scheduler of one prefix takes it):
    shard 0's worker, which delivers the strays, rejects it and leaves it pending."""
    stray = scheduler(aws, clock).schedule(T0 - timedelta(seconds=1), "sched", "jobs/1/.lease", "x")

    status, _, _ = run(capsys, "run", "--shards", "3", "--shard", "0", clock=clock)

    assert status == 0
    assert "jobs/1/.lease" not in keys(aws, "sched")
    assert [key for key in keys(aws, "sched") if "|" in key] == [stray]


class FakeWorker:
    """A worker process for `workers.Supervisor`: ends when told (``end``), on SIGTERM unless ``stubborn``."""

    def __init__(self, pid: int, *, stubborn: bool = False) -> None:
        self.pid = pid
        self.status: int | None = None
        self.stubborn = stubborn
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.status

    def wait(self, timeout: float | None = None) -> int:
        if self.status is None:
            raise subprocess.TimeoutExpired("worker", timeout or 0)
        return self.status

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        if not self.stubborn:
            self.status = 0

    def kill(self) -> None:
        self.signals.append(signal.SIGKILL)
        self.status = -signal.SIGKILL

    def end(self, status: int) -> None:
        self.status = status


class Fleet:
    """Starts `FakeWorker` s for a `workers.Supervisor` on a fake clock, and runs a script at given times."""

    def __init__(self, stop: threading.Event, script: dict[float, Callable[[Fleet], None]]) -> None:
        self.now = 0.0
        self.stop = stop
        self.script = dict(script)
        self.started: list[tuple[float, int, FakeWorker]] = []  # (when, shard, worker)

    def start(self, shard: int) -> FakeWorker:
        worker = FakeWorker(1000 + len(self.started))
        self.started.append((self.now, shard, worker))
        return worker

    def latest(self, shard: int) -> FakeWorker:
        return [worker for _, number, worker in self.started if number == shard][-1]

    def wait(self, seconds: float) -> bool:
        self.now = round(self.now + seconds, 6)
        for when in sorted(self.script):
            if when <= self.now:
                self.script.pop(when)(self)
        if self.now > 1000:
            pytest.fail("the supervisor never stopped")
        return self.stop.is_set()

    def supervisor(self, count: int, **options: Any) -> workers.Supervisor:
        return workers.Supervisor(count, self.start, self.stop, monotonic=lambda: self.now, wait=self.wait, **options)


def test_a_worker_that_ends_is_started_again_after_the_pause(caplog: pytest.LogCaptureFixture) -> None:
    """A worker killed (or exiting) is started again once the pause is over, not before, with one WARNING naming its
    shard and how it ended; on stop every worker gets SIGTERM and the supervisor returns None."""
    stop = threading.Event()
    fleet = Fleet(stop, {0.5: lambda f: f.latest(1).end(-signal.SIGKILL), 5.0: lambda f: f.latest(2).end(1),
                         20.0: lambda f: stop.set()})  # fmt: skip
    caplog.set_level(logging.INFO, logger="s3_scheduler")

    failure = fleet.supervisor(3, pause=1.0).run()

    assert failure is None
    assert [(when, shard) for when, shard, _ in fleet.started] == [(0, 0), (0, 1), (0, 2), (1.5, 1), (6.0, 2)]
    assert all(worker.signals == [signal.SIGTERM] for worker in (fleet.latest(0), fleet.latest(1), fleet.latest(2)))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "Run: the worker of shard 1 (pid 1001) ended (killed by SIGKILL); starting it again in 1 s",
        "Run: the worker of shard 2 (pid 1002) ended (exit status 1); starting it again in 1 s",
    ]
    started = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert started[-1] == "Run: started the worker of shard 2 (pid 1004)"


def test_a_worker_that_keeps_dying_stops_every_worker() -> None:
    """A worker ending 3 times within 60 s makes the supervisor stop the others (SIGTERM) and return one line
    naming the shard, the count and the last end; no fourth start."""
    stop = threading.Event()
    kill = lambda f: f.latest(2).end(-signal.SIGKILL)  # noqa: E731
    fleet = Fleet(stop, {1.0: kill, 10.0: kill, 50.0: kill, 100.0: lambda f: stop.set()})

    failure = fleet.supervisor(3).run()

    assert failure == (
        "the worker of shard 2 ended 3 times within 60 s (last: pid 1004, killed by SIGKILL): every worker stopped"
    )
    assert [shard for _, shard, _ in fleet.started] == [0, 1, 2, 2, 2]
    assert fleet.latest(0).signals == fleet.latest(1).signals == [signal.SIGTERM]
    assert fleet.latest(2).signals == []


def test_ends_further_apart_than_the_window_are_restarts_only() -> None:
    """A worker ending 4 times, never 3 within 60 s, is started again each time: the command goes on."""
    stop = threading.Event()
    kill = lambda f: f.latest(0).end(1)  # noqa: E731
    fleet = Fleet(stop, {1.0: kill, 40.0: kill, 70.0: kill, 102.0: kill, 150.0: lambda f: stop.set()})

    failure = fleet.supervisor(2).run()

    assert failure is None
    assert [shard for _, shard, _ in fleet.started] == [0, 1, 0, 0, 0, 0]


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace(caplog: pytest.LogCaptureFixture) -> None:
    """On stop, a worker still running after its grace is killed (SIGKILL) and waited for, with a WARNING."""
    stop = threading.Event()
    fleet = Fleet(stop, {1.0: lambda f: stop.set()})

    def start(shard: int) -> FakeWorker:
        worker = FakeWorker(2000 + shard, stubborn=shard == 1)
        fleet.started.append((fleet.now, shard, worker))
        return worker

    fleet.start = start  # type: ignore[method-assign]

    failure = fleet.supervisor(2, grace=5.0).run()

    assert failure is None
    assert fleet.latest(0).signals == [signal.SIGTERM]
    assert fleet.latest(1).signals == [signal.SIGTERM, signal.SIGKILL]
    assert "Run: the worker of shard 1 (pid 2001) did not stop within 5 s: killed" in caplog.text


def test_run_with_shards_starts_a_worker_per_shard_and_stops_them_on_sigterm(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """run --shards 3 starts three workers, each the same command line with --shard K, and on SIGTERM stops them
    and exits 0, the signal handlers restored."""
    started: list[tuple[list[str], int]] = []
    made: list[FakeWorker] = []

    def start(argv: list[str], shard: int) -> FakeWorker:
        started.append((list(argv), shard))
        made.append(FakeWorker(3000 + shard))
        if shard == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return made[-1]

    monkeypatch.setattr(run_command, "start_worker", start)
    previous = signal.getsignal(signal.SIGTERM)

    status, out, err = run(capsys, "--shards", "3", "run", "--interval", "2s")

    assert (status, out, err) == (0, "", "")
    assert started == [(["--shards", "3", "run", "--interval", "2s"], shard) for shard in range(3)]
    assert [worker.signals for worker in made] == [[signal.SIGTERM]] * 3
    assert signal.getsignal(signal.SIGTERM) is previous
    assert workers.worker_command(["run", "--shards", "3"], 2)[1:] == ["-m", "s3_scheduler", "run", "--shards", "3",
                                                                      "--shard", "2"]  # fmt: skip


def test_run_with_shards_and_no_bucket_fails_before_any_worker(
    aws: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """run --shards 3 against a bucket that does not exist exits 1 in one line, as run does, and starts no worker."""
    started: list[int] = []
    monkeypatch.setattr(run_command, "start_worker", lambda argv, shard: started.append(shard))

    status, out, err = run(capsys, "--bucket", "no-such-bucket", "run", "--shards", "3")

    assert (status, out, started) == (1, "", [])
    assert (
        err == "s3-scheduler: no such bucket 'no-such-bucket': check --bucket (or S3_SCHEDULER_BUCKET) and --region\n"
    )


def test_a_worker_stops_when_its_supervisor_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker whose supervisor's pid is not its parent's stops at once; a process that is no worker never does."""
    stop, alone = threading.Event(), threading.Event()
    monkeypatch.setenv(workers.SUPERVISOR_VARIABLE, str(os.getppid() + 1))
    workers.watch_parent(stop)
    monkeypatch.delenv(workers.SUPERVISOR_VARIABLE)
    workers.watch_parent(alone)

    assert stop.is_set()
    assert not alone.is_set()


def test_a_worker_whose_supervisor_lives_watches_it_with_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """With its supervisor as its parent, a worker runs on, watched by one daemon thread that ends with the stop."""
    stop = threading.Event()
    monkeypatch.setenv(workers.SUPERVISOR_VARIABLE, str(os.getppid()))

    def watchers() -> list[threading.Thread]:
        return [thread for thread in threading.enumerate() if thread.name == "s3-scheduler-parent"]

    before = watchers()
    workers.watch_parent(stop, period=0.01)
    started = [thread for thread in watchers() if thread not in before]
    stop.set()
    for thread in started:
        thread.join(timeout=5)

    assert len(started) == 1
    assert started[0].daemon
    assert not started[0].is_alive()


# show and dead-letters (issue 20) ---------------------------------------------------------------


def dead_letter(client: Any, when: datetime, target: str, body: bytes = b"x", path: str = "jobs") -> str:
    """Write a dead letter of the scheduler at ``path`` in 'sched' as a run names it; return its key."""
    from s3_scheduler import keys as names

    prefix = names.listing_prefix(path)
    key = names.dead_letter_key(prefix, names.encode_key(prefix, when, "target", target), "0badcafe")
    client.put_object(Bucket="sched", Key=key, Body=body, ContentType="text/plain", Tagging=f"{names.ATTEMPTS_TAG}=3")
    return key


def test_show_prints_an_event_as_lines_or_json(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """show KEY prints its time, target, size, type, failed runs and metadata; --json one object; --to selects it."""
    key = scheduler(aws, clock).schedule(
        T0, "target", "in/a.json", "{}", content_type="application/json", metadata={"order-id": "42"}
    )

    status, out, err = run(capsys, "show", key, clock=clock)
    as_json = run(capsys, "--json", "show", "--to", "s3://target/in/a.json", clock=clock)

    assert (status, err) == (0, "")
    shown = {name: value.strip() for name, value in (line.split(":", 1) for line in out.splitlines())}
    assert shown == {
        "key": shlex.quote(key),
        "kind": "pending event",
        "when": T0.isoformat(),
        "target": "s3://target/in/a.json",
        "size": "2 bytes",
        "content type": "application/json",
        "written": shown["written"],
        "failed runs": "0",
        "metadata order-id": "42",
    }
    assert datetime.fromisoformat(shown["written"]).tzinfo is not None
    assert as_json[0] == 0
    data = json.loads(as_json[1])
    assert (data["key"], data["size"], data["metadata"], data["dead_letter"]) == (key, 2, {"order-id": "42"}, False)


def test_show_content_writes_the_body_byte_for_byte(
    aws: Any, capsysbinary: pytest.CaptureFixture[bytes], clock: Clock
) -> None:
    """show --content writes the body alone to stdout, binary bytes intact."""
    body = b"\x00\xff\xfe binary \n\r\x80"
    key = scheduler(aws, clock).schedule(T0, "target", "bin", body)

    status = cli.main(["show", key, "--content"], clock=clock)
    captured = capsysbinary.readouterr()

    assert (status, captured.out, captured.err) == (0, body, b"")


def test_show_of_a_missing_or_foreign_key_fails_in_one_line(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock
) -> None:
    """A key with no object: exit 1; a name of no event or dead letter, or no KEY nor --to: exit 2."""
    key = scheduler(aws, clock).schedule(T0, "target", "k", "x")
    scheduler(aws, clock).cancel(key)

    missing = run(capsys, "show", key)
    foreign = run(capsys, "show", "other/|x|y|z")
    nothing = run(capsys, "show")

    assert missing[0] == 1
    assert (
        missing[2] == f"s3-scheduler: {key!r} is not there: delivered, cancelled, requeued, purged or never scheduled\n"
    )
    assert foreign[0] == 2
    assert "neither an event nor a dead letter" in foreign[2]
    assert nothing[0] == 2


def test_show_a_dead_letter(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """show takes a dead letter's key too, and says it is one, with its failed runs."""
    letter = dead_letter(aws, T0, "k")

    status, out, _ = run(capsys, "--json", "show", letter)

    data = json.loads(out)
    assert status == 0
    assert (data["dead_letter"], data["failed_runs"], data["path"]) == (True, 3, "k")


def test_dead_letters_list_in_time_order_as_a_table_or_json(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock
) -> None:
    """dead-letters list prints TIME (UTC), TARGET and KEY in time order; --json one object a line."""
    later = dead_letter(aws, T0 + timedelta(hours=1), "later")
    sooner = dead_letter(aws, T0, "sooner")

    status, out, _ = run(capsys, "dead-letters", "list")
    as_json = run(capsys, "dead-letters", "list", "--json")
    empty = run(capsys, "--prefix", "other", "dead-letters", "list", "--json")

    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "TARGET", "KEY"]
    assert [line.split()[2] for line in lines[1:]] == ["s3://target/sooner", "s3://target/later"]
    assert lines[1].endswith(shlex.quote(sooner))
    assert [json.loads(line)["key"] for line in as_json[1].splitlines()] == [sooner, later]
    assert empty == (0, "", "")


def test_dead_letters_requeue_sends_one_again(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """dead-letters requeue KEY --at WHEN prints the new key; the event is pending then, the dead letter gone;
    a second requeue of it fails in one line."""
    letter = dead_letter(aws, T0 - timedelta(days=1), "k", b"payload")

    status, out, err = run(capsys, "dead-letters", "requeue", letter, "--at", "+1h", clock=clock)
    again = run(capsys, "dead-letters", "requeue", letter, clock=clock)

    new_key = out.strip()
    assert (status, err) == (0, "")
    assert [(e.key, e.when) for e in scheduler(aws, clock).pending()] == [(new_key, T0 + timedelta(hours=1))]
    assert keys(aws, "sched") == [new_key]
    assert again[0] == 1
    assert "is not among the dead letters" in again[2]


def test_dead_letters_requeue_now_onto_a_pending_event_fails_and_changes_nothing(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock
) -> None:
    """A pending event at the new name: exit 1 naming it, the event and the dead letter as they were."""
    letter = dead_letter(aws, T0 - timedelta(days=1), "k")
    pending = scheduler(aws, clock).schedule(T0, "target", "k", "mine")

    status, out, err = run(capsys, "--json", "dead-letters", "requeue", letter, clock=clock)

    assert (status, out) == (1, "")
    assert "is already pending" in err
    assert sorted(keys(aws, "sched")) == sorted([pending, letter])


def test_dead_letters_purge_one_and_all(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """purge KEY deletes one (exit 1 when it was not there); purge --all --yes deletes every one."""
    first = dead_letter(aws, T0, "one")
    others = [dead_letter(aws, T0 + timedelta(minutes=i), f"other{i}") for i in range(1, 3)]

    purged = run(capsys, "dead-letters", "purge", first)
    again = run(capsys, "dead-letters", "purge", first)
    every = run(capsys, "--json", "dead-letters", "purge", "--all", "--yes")

    assert purged == (0, f"purged: {shlex.quote(first)}\n", "")
    assert again[0] == 1
    assert [json.loads(line) for line in every[1].splitlines()] == [{"key": k, "purged": True} for k in others]
    assert keys(aws, "sched") == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["purge", "--all"], "pass --yes to confirm"),
        (["purge"], "needs the KEY of a dead letter"),
        (["requeue"], "needs the KEY of a dead letter"),
        (["list", "KEY"], "takes no KEY"),
        (["list", "--at", "+1h"], "--at is for dead-letters requeue"),
        (["requeue", "KEY", "--all"], "--all and --yes are for dead-letters purge"),
        (["purge", "KEY", "--yes"], "--yes confirms purge --all"),
        (["requeue", "jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|b|k"], "is not a dead letter"),
        (["drop"], "invalid choice"),
    ],
)
def test_dead_letters_usage_errors_exit_2_and_delete_nothing(
    aws: Any, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    """Each misuse, purge --all without --yes first, is one line on stderr, exit 2, and every dead letter stays."""
    letter = dead_letter(aws, T0, "k")

    status, out, err = run(capsys, "dead-letters", *argv)

    assert (status, out) == (2, "")
    assert says in err
    assert len(err.splitlines()) == 1
    assert keys(aws, "sched") == [letter]


def test_dead_letters_with_shards_cover_every_shard(aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    """With --shards 4, list shows the dead letters of the shards and of the unsharded scheduler, and requeue
    writes into the shard of the target."""
    targets = targets_by_shard("target", 4)
    in_shard = dead_letter(aws, T0, targets[1], path="jobs/3")
    unsharded = dead_letter(aws, T0 + timedelta(seconds=1), targets[2])

    listed = run(capsys, "--shards", "4", "dead-letters", "list", "--json")
    requeued = run(capsys, "--shards", "4", "dead-letters", "requeue", in_shard, clock=clock)

    assert [json.loads(line)["key"] for line in listed[1].splitlines()] == [in_shard, unsharded]
    assert requeued[0] == 0
    assert requeued[1].startswith("jobs/1/|")
    assert sorted(keys(aws, "sched")) == sorted([requeued[1].strip(), unsharded])


def test_schedule_repeat_with_a_zone_starts_a_series_in_that_zone(
    aws: Any, capsys: pytest.CaptureFixture[str], clock: Clock
) -> None:
    """--repeat with --tz: --at without offset is a wall time there, the series' zone is that zone;
    a bad rule or zone is a usage error (exit 2) and writes nothing."""
    status, out, _ = run(
        capsys,
        "schedule",
        "--at",
        "2030-01-07 09:00",
        "--tz",
        "Europe/Berlin",
        "--to",
        "s3://target/daily",
        "--content",
        "x",
        "--repeat",
        "FREQ=DAILY;BYHOUR=9;BYMINUTE=0",
        clock=clock,
    )
    bad_rule = run(capsys, "schedule", "--at", "+1h", "--to", "s3://target/b", "--content", "x", "--repeat", "NOPE")
    bad_zone = run(capsys, "schedule", "--at", "+1h", "--tz", "Mars/Base", "--to", "s3://target/c", "--content", "x")

    assert status == 0
    assert out.strip() == "jobs/|2030-01-07%2008%3A00%3A00%2B00%3A00|target|daily"
    shown = scheduler(aws, clock).show(out.strip())
    assert (shown.repeat, shown.zone) == ("FREQ=DAILY;BYHOUR=9;BYMINUTE=0", "Europe/Berlin")
    assert bad_rule[0] == 2
    assert "repeat" in bad_rule[2]
    assert bad_zone[0] == 2
    assert "--tz" in bad_zone[2]
    assert [k for k in keys(aws, "sched") if k.startswith("jobs/|")] == [out.strip()]
