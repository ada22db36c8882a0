"""Safe under overlap, faults and misuse: the lease, allowed targets, dead letters."""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from s3_scheduler import Scheduler, TargetNotAllowedError, keys

from ..conftest import S3, T0, Clock, honours_if_match_on_delete, pooled_client

LEASE = "jobs/.lease"
ROUNDS = 120 if os.environ.get("S3_SCHEDULER_FULL_CAMPAIGNS") else 25
"""Rounds of the fault campaign: 200 where CI asks for the full campaigns."""


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def put_lease(s3: S3, expires: datetime | str) -> None:
    body = expires if isinstance(expires, str) else json.dumps({"owner": "other", "expires": expires.isoformat()})
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=LEASE, Body=body.encode())


# the lease -----------------------------------------------------------------------------


def test_a_run_with_due_work_takes_and_releases_the_lease(s3: S3, clock: Clock) -> None:
    """The lease is written with If-None-Match before delivering and deleted after."""
    scheduler = s3.scheduler(clock=clock)
    scheduler.schedule(T0, s3.target_bucket, "k", "x")
    writes: list[dict[str, Any]] = []
    s3.client.meta.events.register(
        "before-parameter-build.s3.PutObject", lambda params, **_: writes.append(dict(params))
    )

    report = scheduler.handle()

    assert [(w["Key"], w.get("IfNoneMatch")) for w in writes] == [(LEASE, "*")]
    assert len(report.delivered) == 1
    assert LEASE not in s3.keys(s3.schedule_bucket)


def test_an_idle_run_takes_no_lease(s3: S3, clock: Clock) -> None:
    """With nothing due the run costs one LIST and writes no lease."""
    scheduler = s3.scheduler(clock=clock)
    scheduler.schedule(T0 + timedelta(hours=1), s3.target_bucket, "k", "x")
    s3.counter.calls.clear()

    scheduler.handle()

    assert dict(s3.counter.calls) == {"ListObjectsV2": 1}


def test_a_held_lease_defers_the_run_at_once(s3: S3, clock: Clock) -> None:
    """A run finding an unexpired lease copies nothing and counts its due events as deferred."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "x")
    put_lease(s3, T0 + timedelta(minutes=5))
    s3.counter.calls.clear()

    report = scheduler.handle()

    assert [e.key for e in report.deferred] == [key]
    assert s3.counter.calls["CopyObject"] == 0
    assert s3.keys(s3.target_bucket) == []


def test_an_expired_lease_is_taken_over(s3: S3, clock: Clock) -> None:
    """A lease past its time is taken over with If-Match, and the run delivers."""
    scheduler = s3.scheduler(clock=clock)
    scheduler.schedule(T0, s3.target_bucket, "k", "x")
    put_lease(s3, T0 - seconds(1))

    report = scheduler.handle()

    assert len(report.delivered) == 1
    assert LEASE not in s3.keys(s3.schedule_bucket)


def test_a_lease_that_does_not_say_when_it_expires_is_expired(s3: S3, clock: Clock) -> None:
    """A corrupt lease object cannot block the schedule forever."""
    scheduler = s3.scheduler(clock=clock)
    scheduler.schedule(T0, s3.target_bucket, "k", "x")
    put_lease(s3, "not json")

    assert len(scheduler.handle().delivered) == 1


def test_exclusive_false_runs_without_the_lease(s3: S3, clock: Clock) -> None:
    """exclusive=False ignores a held lease and never writes one."""
    scheduler = s3.scheduler(clock=clock, exclusive=False)
    scheduler.schedule(T0, s3.target_bucket, "k", "x")
    put_lease(s3, T0 + timedelta(minutes=5))

    report = scheduler.handle()

    assert len(report.delivered) == 1
    assert s3.counter.calls["GetObject"] == 0


@pytest.mark.parametrize(
    ("code", "warning"),
    [
        ("NotImplemented", "rejects conditional writes"),  # a store without conditional writes
        ("AccessDenied", "Access denied (s3:PutObject) to the lease 'jobs/.lease'"),  # an IAM policy made for 0.0.3
    ],
)
def test_a_lease_that_cannot_be_written_is_warned_once_and_runs_go_on(
    s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture, code: str, warning: str
) -> None:
    """Where the lease cannot be written, runs deliver without it, warned once."""

    def refuse(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == LEASE:
            raise ClientError({"Error": {"Code": code, "Message": "no"}}, "PutObject")

    s3.client.meta.events.register("before-parameter-build.s3.PutObject", refuse)
    scheduler = s3.scheduler(clock=clock)

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        for i in range(2):
            scheduler.schedule(T0, s3.target_bucket, f"k{i}", "x")
            scheduler.handle()

    assert sorted(s3.keys(s3.target_bucket)) == ["k0", "k1"]
    assert caplog.text.count(warning) == 1


def test_no_delivery_starts_near_the_end_of_the_lease(clock: Clock) -> None:
    """Without a renewal, no delivery starts once the lease has less than half its ttl left; the rest are deferred."""
    with pooled_client(1) as client:
        scheduler = Scheduler("sched", "jobs", s3_client=client, clock=clock, lease_ttl=timedelta(seconds=60))
        for i in range(4):
            scheduler.schedule(T0 - seconds(10 - i), "target", f"t{i}", "x")
        client.meta.events.register("after-call.s3.CopyObject", lambda **_: clock.advance(20))

        report = scheduler.handle()

        assert [e.path for e in report.delivered] == ["t0", "t1"]
        assert [e.path for e in report.deferred] == ["t2", "t3"]


def test_a_lease_taken_over_mid_run_is_left_to_its_new_holder(
    s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """If another run took the lease over, this run's release leaves it and says so."""
    if not honours_if_match_on_delete(s3.client, s3.schedule_bucket):
        pytest.skip("this moto ignores If-Match on DELETE; the time guard covers such stores")
    scheduler = s3.scheduler(clock=clock)
    scheduler.schedule(T0, s3.target_bucket, "k", "x")
    taken_over: list[bool] = []

    def take_over(**_: Any) -> None:
        if not taken_over:
            taken_over.append(True)
            put_lease(s3, T0 + timedelta(hours=1))

    s3.client.meta.events.register("after-call.s3.CopyObject", take_over)

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        scheduler.handle()

    assert LEASE in s3.keys(s3.schedule_bucket)
    assert "taken over" in caplog.text


def test_a_run_that_outlived_its_lease_leaves_it_to_expire(s3: S3, clock: Clock) -> None:
    """A lease at or past its end is not deleted (it may be another run's by now); the next run takes it over."""
    scheduler = s3.scheduler(clock=clock, lease_ttl=timedelta(minutes=1))
    scheduler.schedule(T0, s3.target_bucket, "first", "1")
    s3.client.meta.events.register("after-call.s3.CopyObject", lambda **_: clock.advance(90))

    scheduler.handle()
    lease_after_first = LEASE in s3.keys(s3.schedule_bucket)
    scheduler.schedule(clock.now, s3.target_bucket, "second", "2")
    report = scheduler.handle()

    assert lease_after_first
    assert [e.path for e in report.delivered] == ["second"]
    assert sorted(s3.keys(s3.target_bucket)) == ["first", "second"]


def test_lease_options_are_checked(s3: S3) -> None:
    """lease_ttl lies between 10 s and 2 min; dead_letter_after must be a timedelta; counts are whole numbers."""
    with pytest.raises(ValueError, match="lease_ttl"):
        s3.scheduler(lease_ttl=seconds(9))
    with pytest.raises(ValueError, match="lease_ttl"):
        s3.scheduler(lease_ttl=seconds(121))
    with pytest.raises(ValueError, match="dead_letter_attempts"):
        s3.scheduler(dead_letter_attempts=0)
    with pytest.raises(ValueError, match="max_workers"):
        s3.scheduler(max_workers=True)
    with pytest.raises(ValueError, match="dead_letter_after"):
        s3.scheduler(dead_letter_after=3600)


# allowed targets -----------------------------------------------------------------------


def test_schedule_refuses_targets_outside_the_allowlist_before_any_request(s3: S3) -> None:
    """A target outside allowed_targets raises TargetNotAllowedError naming both, sending nothing."""
    scheduler = s3.scheduler(allowed_targets=["target-bucket/in/", "other"])
    s3.counter.calls.clear()

    with pytest.raises(
        TargetNotAllowedError, match=r"s3://target-bucket/out/x is not in .*'target-bucket/in/', 'other'"
    ):
        scheduler.schedule(T0, "target-bucket", "out/x", "x")
    with pytest.raises(ValueError, match="not in allowed_targets"):
        scheduler.schedule(T0, "evil", "in/x", "x")

    assert s3.counter.total == 0
    assert scheduler.schedule(T0, "target-bucket", "/in/x", "x")
    assert scheduler.schedule(T0, "other", "anything/at/all", "x")


def test_handle_never_delivers_outside_the_allowlist(s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """An event injected for a bucket outside allowed_targets is never copied: rejected, warned, kept."""
    s3.client.create_bucket(Bucket="victim")
    injected = s3.scheduler().schedule(T0 - seconds(5), "victim", "payload", "evil")
    scheduler = s3.scheduler(clock=clock, allowed_targets=[s3.target_bucket])
    allowed = scheduler.schedule(T0 - seconds(1), s3.target_bucket, "ok", "fine")
    copies: list[str] = []
    s3.client.meta.events.register(
        "before-parameter-build.s3.CopyObject", lambda params, **_: copies.append(params["Bucket"])
    )

    with caplog.at_level(logging.WARNING, logger="s3_scheduler"):
        report = scheduler.handle()

    assert copies == [s3.target_bucket]
    assert [e.key for e in report.rejected] == [injected]
    assert [e.key for e in report.delivered] == [allowed]
    assert s3.keys("victim") == []
    assert s3.keys(s3.schedule_bucket) == [injected]
    assert "not an allowed target" in caplog.text


@pytest.mark.parametrize(
    ("entries", "error"),
    [("bucket", TypeError), ([""], ValueError), (["/prefix"], ValueError), ([3], TypeError)],
)
def test_bad_allowlists_are_refused(s3: S3, entries: Any, error: type) -> None:
    """allowed_targets is a list of 'bucket' or 'bucket/prefix' strings."""
    with pytest.raises(error, match="allowed_targets"):
        s3.scheduler(allowed_targets=entries)


def test_an_s3_url_is_an_allowed_entry(s3: S3) -> None:
    """'s3://bucket/prefix' means the same as 'bucket/prefix'."""
    scheduler = s3.scheduler(allowed_targets=["s3://target-bucket/in/"])

    assert scheduler.schedule(T0, "target-bucket", "in/x", "x")


# dead letters --------------------------------------------------------------------------


def test_an_event_failing_past_dead_letter_after_is_moved_aside(s3: S3, clock: Clock) -> None:
    """It keeps its name and body under .dead-letters/, is listed by dead_letters(), not pending()."""
    scheduler = s3.scheduler(clock=clock, dead_letter_after=timedelta(hours=1), dead_letter_attempts=2)
    old = scheduler.schedule(T0 - timedelta(hours=2), "no-such-bucket", "k", b"\x00body")
    young = scheduler.schedule(T0 - timedelta(minutes=5), "no-such-bucket", "k2", "y")

    first = scheduler.handle()
    report = scheduler.handle()

    name = old[len(scheduler.prefix) :]
    assert first.dead_lettered == []
    assert [e.key for e in report.dead_lettered] == [old]
    assert sorted(f.event.key for f in report.failed) == sorted([old, young])
    assert [e.key for e in scheduler.pending()] == [young]
    letters = list(scheduler.dead_letters())
    assert [(e.bucket, e.path, e.when) for e in letters] == [("no-such-bucket", "k", T0 - timedelta(hours=2))]
    assert re.fullmatch(re.escape(f"jobs/.dead-letters/{name}|") + "[0-9a-f]{8}", letters[0].key)
    assert s3.body(s3.schedule_bucket, letters[0].key) == b"\x00body"


def test_a_rejected_event_past_dead_letter_after_is_moved_aside(s3: S3, clock: Clock) -> None:
    """Rejected events are dead-lettered too, never delivered."""
    injected = s3.scheduler().schedule(T0 - timedelta(days=2), "victim", "x", "evil")
    scheduler = s3.scheduler(clock=clock, allowed_targets=[s3.target_bucket], dead_letter_after=timedelta(days=1))

    report = scheduler.handle()

    assert [e.key for e in report.dead_lettered] == [injected]
    assert [e.path for e in scheduler.dead_letters()] == ["x"]
    assert list(scheduler.pending()) == []


def test_without_dead_letter_after_a_failing_event_stays_forever(s3: S3, clock: Clock) -> None:
    """Off by default, as in 0.0.3: a failing event stays pending however old."""
    scheduler = s3.scheduler(clock=clock)
    key = scheduler.schedule(T0 - timedelta(days=365), "no-such-bucket", "k", "x")

    report = scheduler.handle()

    assert report.dead_lettered == []
    assert [e.key for e in scheduler.pending()] == [key]


def test_the_lease_and_dead_letters_are_outside_the_event_prefix() -> None:
    """Neither the lease nor the dead letters can be listed as events."""
    prefix = keys.listing_prefix("jobs/")

    assert keys.lease_key(prefix) == "jobs/.lease"
    assert keys.dead_letter_prefix(prefix) == "jobs/.dead-letters/"
    assert not keys.lease_key(prefix).startswith(prefix)
    assert not keys.dead_letter_prefix(prefix).startswith(prefix)


# fault injection -----------------------------------------------------------------------


class Faults:
    """Fails chosen S3 requests at random, before they reach S3 or after S3 did them."""

    OPERATIONS = ("CopyObject", "DeleteObjects", "DeleteObject", "ListObjectsV2", "PutObject", "GetObject")

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.rate = 0.0
        self.injected: Counter[str] = Counter()

    def attach(self, client: Any) -> None:
        for op in self.OPERATIONS:
            client.meta.events.register(f"before-call.s3.{op}", self.before)
            client.meta.events.register(f"after-call.s3.{op}", self.after)
        # Pages of three names, so a listing can fail mid-way.
        client.meta.events.register("before-parameter-build.s3.ListObjectsV2", self.small_pages)

    @staticmethod
    def small_pages(params: dict[str, Any], **_: Any) -> None:
        params["MaxKeys"] = 3

    def before(self, model: Any, **_: Any) -> None:
        self._maybe_fail(model.name, "before")

    def after(self, model: Any, **_: Any) -> None:
        self._maybe_fail(model.name, "after")

    def _maybe_fail(self, operation: str, when: str) -> None:
        if self.rate and self.rng.random() < self.rate:
            self.injected[f"{operation} {when}"] += 1
            raise EndpointConnectionError(endpoint_url=f"injected:{operation}")


def _keys_under(s3: S3, bucket: str, prefix: str) -> list[str]:
    pages = s3.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", ())]


def test_fault_injection_never_loses_or_delivers_early(s3: S3, capsys: pytest.CaptureFixture[str]) -> None:
    """Randomized rounds of faults (200 in CI): afterwards every event is delivered, pending or dead-lettered."""
    rng = random.Random(20261127)
    faults = Faults(rng)
    faults.attach(s3.client)
    copied_at: dict[str, list[datetime]] = {}
    outcome: Counter[str] = Counter()
    clock = Clock()

    def record_copy(params: dict[str, Any], **_: Any) -> None:
        copied_at.setdefault(params["Key"], []).append(clock.now)

    s3.client.meta.events.register("before-parameter-build.s3.CopyObject", record_copy)

    for round_ in range(ROUNDS):
        clock.now = T0 + timedelta(days=round_)
        scheduler = s3.scheduler(
            f"r{round_}",
            clock=clock,
            dead_letter_after=timedelta(minutes=rng.choice([5, 30, 120])),
            dead_letter_attempts=1,
        )
        events = {}
        for i in range(rng.randint(0, 8)):
            target = f"r{round_}/e{i}"
            bucket = s3.target_bucket if rng.random() < 0.85 else "missing-bucket"
            when = clock.now + seconds(rng.randint(-600, 600))
            content = f"{round_}-{i}-{rng.random()}"
            events[target] = (scheduler.schedule(when, bucket, target, content), when, bucket, content)

        faults.rate = rng.choice([0.05, 0.2, 0.5])
        for _ in range(rng.randint(1, 3)):
            clock.advance(rng.randint(0, 300))
            try:
                scheduler.handle()
            except Exception:  # noqa: BLE001 - a run may fail under faults; nothing may be lost
                outcome["runs raised"] += 1
        faults.rate = 0.0
        clock.advance(20 * 60)  # past any lease a failed run left, and past every event's time
        scheduler.handle()

        pending = set(_keys_under(s3, s3.schedule_bucket, f"r{round_}/"))  # the round's: listing every round's
        delivered = set(_keys_under(s3, s3.target_bucket, f"r{round_}/"))  # made each round slower than the last
        letters = {e.path: e.key for e in scheduler.dead_letters()}
        for target, (key, when, bucket, content) in events.items():
            assert all(at >= when for at in copied_at.get(target, [])), f"{target} delivered early"
            if bucket == s3.target_bucket and target in delivered:
                assert s3.body(s3.target_bucket, target) == content.encode()
                outcome["delivered"] += 1
            elif target in letters:
                assert s3.body(s3.schedule_bucket, letters[target]) == content.encode()
                outcome["dead-lettered"] += 1
            else:
                assert key in pending, f"{target} vanished"
                assert bucket != s3.target_bucket, f"{target} not delivered by the clean run"
                outcome["pending"] += 1

    with capsys.disabled():
        print(f"\nfault injection, {ROUNDS} rounds: {dict(outcome)}; faults injected: {sum(faults.injected.values())}")
        print(f"  by request: {dict(sorted(faults.injected.items()))}")
    assert outcome["delivered"] > 0
    assert outcome["dead-lettered"] > 0
    assert sum(faults.injected.values()) > ROUNDS
