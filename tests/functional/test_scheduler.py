"""The Scheduler against moto in-process: schedule, stop and handle."""

from __future__ import annotations

import io
import itertools
import logging
from datetime import date, datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

import s3_scheduler
from s3_scheduler import ScheduledEvent, Scheduler, keys

from ..conftest import S3, T0, Clock, pooled_client

SECRET = "top-secret-content-7f3a"


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def test_public_names_of_0_0_3_are_importable() -> None:
    """The module paths and names of 0.0.3 are all there."""
    from s3_scheduler.scheduler import Scheduler as FromModule
    from s3_scheduler.utils import UnableToMoveFileError, add_utc_tz, info, logger, move_file, nowut, warn

    assert FromModule is Scheduler
    assert s3_scheduler.name == "s3_scheduler"
    assert logger.name == "s3_scheduler"
    assert all(callable(f) for f in (add_utc_tz, info, move_file, nowut, warn))
    assert issubclass(UnableToMoveFileError, Exception)


def test_schedule_writes_text_as_utf8_under_the_documented_key(s3: S3) -> None:
    """A str is stored as UTF-8 under {path}/|{when}|{bucket}|{target}."""
    scheduler = s3.scheduler("jobs")

    key = scheduler.schedule(datetime(2030, 1, 7, 14, 5), "work", "in/report.json", "héllo")

    assert key == "jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|work|in~~report.json"
    assert s3.body(s3.schedule_bucket, key) == "héllo".encode()


@pytest.mark.parametrize("what", [b"\x00\xffbinary", bytearray(b"\x00\xffbinary"), memoryview(b"\x00\xffbinary")])
def test_schedule_takes_bytes_like_content(s3: S3, what: Any) -> None:
    """bytes, bytearray and memoryview are stored byte for byte."""
    key = s3.scheduler().schedule(T0, s3.target_bucket, "k", what)

    assert s3.body(s3.schedule_bucket, key) == b"\x00\xffbinary"


def test_schedule_streams_a_large_binary_file_in_parts(s3: S3) -> None:
    """A binary file object is streamed; over 8 MiB it goes up in parts."""
    data = bytes(range(256)) * (9 * 4096)

    key = s3.scheduler().schedule(T0, s3.target_bucket, "big.bin", io.BytesIO(data))

    # Read back without response checksum validation: some moto releases compute the
    # whole-object checksum of a multipart object differently from botocore.
    try:
        config = Config(response_checksum_validation="when_required")
    except TypeError:  # botocore before 1.36 validates no response checksum
        config = Config()
    reader = boto3.client("s3", config=config)
    assert s3.counter.calls["CreateMultipartUpload"] == 1
    assert reader.get_object(Bucket=s3.schedule_bucket, Key=key)["Body"].read() == data


@pytest.mark.parametrize(
    ("when", "bucket", "path", "what", "error", "message"),
    [
        ("2030-01-01", "bkt", "k", "x", TypeError, "when must be a datetime"),
        (date(2030, 1, 1), "bkt", "k", "x", TypeError, "when must be a datetime"),
        (T0, "", "k", "x", ValueError, "non-empty bucket name"),
        (T0, "bkt", "", "x", ValueError, "non-empty S3 key"),
        (T0, "bkt", "k" * 1100, "x", ValueError, "1024-byte limit"),
        (T0, "bkt", "k", 42, TypeError, "what must be str"),
        (T0, "bkt", "k", None, TypeError, "what must be str"),
        (T0, "bkt", "k", io.StringIO("text"), TypeError, "binary file object"),
        (T0, None, "k", "x", TypeError, "must be str"),
    ],
)
def test_bad_input_raises_before_any_request(
    s3: S3, when: Any, bucket: Any, path: Any, what: Any, error: type, message: str
) -> None:
    """Each bad argument raises its error, naming the allowed form, and sends nothing."""
    scheduler = s3.scheduler()
    before = s3.counter.total

    with pytest.raises(error, match=message):
        scheduler.schedule(when, bucket, path, what)

    assert s3.counter.total == before


def test_content_is_never_logged(s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """Scheduling and delivering log keys and targets, never the content."""
    caplog.set_level(logging.DEBUG, logger="s3_scheduler")
    scheduler = s3.scheduler(clock=clock)

    scheduler.schedule(T0 - minutes(1), s3.target_bucket, "out.txt", SECRET)
    scheduler.handle()

    assert "out.txt" in caplog.text
    assert SECRET not in caplog.text


def test_handle_delivers_due_events_and_keeps_future_ones(s3: S3, clock: Clock) -> None:
    """A due event is copied to its target and deleted; a future one stays."""
    scheduler = s3.scheduler(clock=clock)
    due = scheduler.schedule(T0 - minutes(5), s3.target_bucket, "due.txt", "now")
    later = scheduler.schedule(T0 + minutes(5), s3.target_bucket, "later.txt", "later")

    scheduler.handle()

    assert s3.body(s3.target_bucket, "due.txt") == b"now"
    assert s3.keys(s3.schedule_bucket) == [later]
    assert due != later


def test_an_event_is_due_at_its_own_time(s3: S3, clock: Clock) -> None:
    """An event scheduled for exactly now is delivered now, not a minute later."""
    scheduler = s3.scheduler(clock=clock)
    scheduler.schedule(T0, s3.target_bucket, "exact.txt", "x")

    scheduler.handle()

    assert s3.keys(s3.target_bucket) == ["exact.txt"]


def test_handle_over_a_far_future_backlog_makes_one_list_request(s3: S3, clock: Clock) -> None:
    """3,000 far-future events and one due event cost one LIST request (#2), and one LIST
    of the series markers of the due page."""
    scheduler = s3.scheduler(clock=clock)
    s3.seed(scheduler, ((T0 + timedelta(days=2, seconds=i), s3.target_bucket, f"future/{i}", "f") for i in range(3000)))
    scheduler.schedule(T0 - minutes(1), s3.target_bucket, "due.txt", "d")
    s3.counter.calls.clear()

    scheduler.handle()

    assert s3.counter.lists == 2
    assert s3.keys(s3.target_bucket) == ["due.txt"]
    assert len(s3.keys(s3.schedule_bucket)) == 3000


def test_an_idle_run_costs_one_request(s3: S3, clock: Clock) -> None:
    """With nothing due, handle() sends one LIST and nothing else."""
    scheduler = s3.scheduler(clock=clock)
    scheduler.schedule(T0 + timedelta(days=1), s3.target_bucket, "later", "x")
    s3.counter.calls.clear()

    scheduler.handle()

    assert s3.counter.total == 1


@pytest.mark.slow
def test_handle_lists_every_page_of_a_large_due_window(s3: S3, clock: Clock) -> None:
    """1,100 due events span two LIST pages (each followed by a LIST of its series markers) and are
    all delivered."""
    scheduler = s3.scheduler(clock=clock)
    s3.seed(scheduler, ((T0 - timedelta(seconds=i + 1), s3.target_bucket, f"due/{i:04d}", str(i)) for i in range(1100)))
    s3.counter.calls.clear()

    scheduler.handle()

    assert s3.counter.lists == 4
    assert s3.counter.calls["CopyObject"] == 1100
    assert len(s3.keys(s3.target_bucket)) == 1100
    assert s3.keys(s3.schedule_bucket) == []


def test_a_failed_delivery_is_warned_once_and_stays(s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """A copy to a missing bucket fails alone: warned once, kept; the others go."""
    scheduler = s3.scheduler(clock=clock)
    broken = scheduler.schedule(T0 - minutes(2), "no-such-bucket", "x", "x")
    scheduler.schedule(T0 - minutes(1), s3.target_bucket, "ok.txt", "ok")

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        scheduler.handle()

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert broken in warnings[0].getMessage()
    assert s3.keys(s3.schedule_bucket) == [broken]
    assert s3.keys(s3.target_bucket) == ["ok.txt"]


def test_a_failed_delete_keeps_the_event_for_another_delivery(s3: S3, clock: Clock) -> None:
    """If the delete fails after the copy, the event stays: at-least-once, nothing lost."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0 - minutes(1), s3.target_bucket, "t.txt", "body")

    def refuse_delete(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == key or any(o["Key"] == key for o in params.get("Delete", {}).get("Objects", [])):
            raise RuntimeError("injected delete failure")

    for operation in ("DeleteObjects", "DeleteObject"):  # the batch, then the one-by-one fallback
        s3.client.meta.events.register(f"before-parameter-build.s3.{operation}", refuse_delete)
    report = scheduler.handle()
    for operation in ("DeleteObjects", "DeleteObject"):
        s3.client.meta.events.unregister(f"before-parameter-build.s3.{operation}", refuse_delete)

    assert s3.body(s3.target_bucket, "t.txt") == b"body"
    assert s3.keys(s3.schedule_bucket) == [key]
    assert [f.event.key for f in report.failed] == [key]
    assert "injected delete failure" in str(report.failed[0].error)
    scheduler.handle()
    assert s3.keys(s3.schedule_bucket) == []


def test_names_that_are_not_events_are_warned_and_never_deleted(
    s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Stray names under the prefix are skipped with a warning; the valid event goes."""
    stray = ["jobs/|2018-08-05|bucket|key|extra", "jobs/|2018-13-45|bucket|key", "jobs/|2018-08-05|onlybucket"]
    for key in stray:
        s3.client.put_object(Bucket=s3.schedule_bucket, Key=key, Body=b"?")
    scheduler = s3.scheduler(clock=clock)
    scheduler.schedule(T0 - minutes(1), s3.target_bucket, "ok.txt", "ok")

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        scheduler.handle()

    assert sorted(s3.keys(s3.schedule_bucket)) == sorted(stray)
    assert s3.keys(s3.target_bucket) == ["ok.txt"]
    assert sum(key in caplog.text for key in stray) == 3


def test_a_hand_written_date_only_key_is_delivered(s3: S3, clock: Clock) -> None:
    """The README form jobs/|2018-08-05|bucket|key means midnight UTC (0.0.3 raised TypeError)."""
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=f"jobs/|2018-08-05|{s3.target_bucket}|key", Body=b"v")
    scheduler = s3.scheduler(clock=clock)
    after = scheduler.schedule(T0 - minutes(1), s3.target_bucket, "after.txt", "a")

    scheduler.handle()

    assert sorted(s3.keys(s3.target_bucket)) == ["after.txt", "key"]
    assert after not in s3.keys(s3.schedule_bucket)


def test_a_legacy_key_with_an_offset_is_due_at_its_real_time(s3: S3, clock: Clock) -> None:
    """A 0.0.3 key written at +05:30 is delivered when that instant passes, not before."""
    key = f"jobs/|2026-11-27%2017%3A35%3A00%2B05%3A30|{s3.target_bucket}|legacy"  # 12:05 UTC
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=key, Body=b"v")
    scheduler = s3.scheduler(clock=clock)

    scheduler.handle()
    early = s3.keys(s3.target_bucket)
    clock.advance(5 * 60)
    scheduler.handle()

    assert early == []
    assert s3.keys(s3.target_bucket) == ["legacy"]


def test_a_sibling_prefix_is_never_touched(s3: S3, clock: Clock) -> None:
    """A scheduler at 'jobs' leaves the events of one at 'jobs-archive' alone."""
    archive = s3.scheduler("jobs-archive", clock=clock)
    kept = archive.schedule(T0 - minutes(1), s3.target_bucket, "archived", "a")

    s3.scheduler("jobs", clock=clock).handle()

    assert s3.keys(s3.schedule_bucket) == [kept]
    assert s3.keys(s3.target_bucket) == []


def test_a_pipe_in_the_scheduler_path_works(s3: S3, clock: Clock) -> None:
    """Events under a path holding '|' are delivered like any other."""
    scheduler = s3.scheduler("team|a/", clock=clock)
    scheduler.schedule(T0 - minutes(1), s3.target_bucket, "piped.txt", "p")

    scheduler.handle()

    assert s3.keys(s3.target_bucket) == ["piped.txt"]


def test_scheduler_with_only_a_client_lists_with_it(s3: S3, clock: Clock) -> None:
    """Given no resource, the scheduler lists with the client's paginator (the events, then
    the series markers of the due ones)."""
    scheduler = Scheduler(s3.schedule_bucket, "jobs", s3_client=s3.client, clock=clock)
    scheduler.schedule(T0 - minutes(1), s3.target_bucket, "c.txt", "c")

    scheduler.handle()

    assert s3.counter.calls["ListObjectsV2"] == 2
    assert s3.keys(s3.target_bucket) == ["c.txt"]


def test_scheduler_defaults_to_boto3s_resource_and_client() -> None:
    """Scheduler(bucket, path) works with boto3's defaults."""
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="sched")
        scheduler = Scheduler("sched", "jobs")

        key = scheduler.schedule(datetime(2000, 1, 1), "sched", "out/x", "x")
        scheduler.handle()

        names = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="sched")["Contents"]]
        assert names == ["out/x"]
        assert key.startswith("jobs/|2000-01-01")


def test_patching_nowut_moves_the_default_clock(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests written for 0.0.3 that patch scheduler.nowut still control the time."""
    scheduler = s3.scheduler()
    scheduler.schedule(datetime(2100, 1, 1), s3.target_bucket, "far.txt", "f")
    monkeypatch.setattr("s3_scheduler.scheduler.nowut", lambda: datetime(2100, 1, 2, tzinfo=timezone.utc))

    scheduler.handle()

    assert s3.keys(s3.target_bucket) == ["far.txt"]


def test_stop_deletes_an_event_and_is_true(s3: S3) -> None:
    """stop() removes the event and answers True."""
    scheduler = s3.scheduler()
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")

    assert scheduler.stop(key) is True
    assert s3.keys(s3.schedule_bucket) == []


def test_stop_of_a_missing_key_is_true_as_in_0_0_3(s3: S3) -> None:
    """S3 deletes are idempotent; 0.0.3 answered True for a missing key, and so do we."""
    assert s3.scheduler().stop("jobs/|never-written") is True


def test_stop_answers_false_on_error_and_never_raises(s3: S3, caplog: pytest.LogCaptureFixture) -> None:
    """An S3 error makes stop() warn and answer False."""
    scheduler = Scheduler("no-such-bucket", "jobs", s3.resource, s3.client)

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        assert scheduler.stop("jobs/|x") is False

    assert "Unable to delete" in caplog.text


@pytest.mark.parametrize(
    ("bucket", "path", "error"),
    [("", "jobs", ValueError), (None, "jobs", ValueError), ("b", None, TypeError)],
)
def test_constructor_checks_its_arguments(s3: S3, bucket: Any, path: Any, error: type) -> None:
    """A scheduler needs a bucket name and a str path."""
    with pytest.raises(error):
        Scheduler(bucket, path, s3.resource, s3.client)


def test_delivery_uses_threads_up_to_the_clients_pool(clock: Clock) -> None:
    """Deliveries run concurrently, three copies in flight at once, on no more threads than the client's pool
    holds less the listing's, the batch delete's and the lease's connections."""
    import threading

    with pooled_client(6) as client:
        scheduler = Scheduler("sched", "jobs", s3_client=client, clock=clock)
        for i in range(20):
            scheduler.schedule(T0 - timedelta(seconds=i + 1), "target", f"t{i}", "x")
        threads: set[int] = set()
        together = threading.Barrier(3, timeout=20)  # only passes with three copies in flight at once
        order = itertools.count(1)

        def copying(**_: Any) -> None:
            threads.add(threading.get_ident())
            if next(order) <= 3:
                together.wait()

        client.meta.events.register("before-call.s3.CopyObject", copying)

        report = scheduler.handle()

        assert scheduler.max_workers == 3
        assert len(report.delivered) == 20
        assert len(threads) <= 3
        assert threading.get_ident() not in threads
        assert client.list_objects_v2(Bucket="target")["KeyCount"] == 20


def test_scheduled_event_is_frozen() -> None:
    """ScheduledEvent is an immutable value."""
    event = ScheduledEvent("k", T0, "b", "p")

    with pytest.raises(AttributeError):
        event.key = "other"  # type: ignore[misc]


def test_prefix_property_matches_the_key_format(s3: S3) -> None:
    """The scheduler's prefix is {path}/| with one trailing '/' removed."""
    assert s3.scheduler("/path/").prefix == keys.listing_prefix("/path") == "/path/|"
    assert s3.scheduler().bucket == s3.schedule_bucket


def test_max_workers_over_a_thousand_is_refused() -> None:
    """max_workers sets the size of the connection pool, made whole at once: over 1,000 is a ValueError."""
    with pytest.raises(ValueError, match="at most 1000"):
        Scheduler("sched", "jobs", max_workers=10**20)
