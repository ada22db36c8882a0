"""Faults: replies lost after S3 did the work, requests failed before it, runs killed
mid-delivery, a copy slower than the lease, names that could stop a run, and a seeded
randomized campaign of all of these (issue 9).

Against moto: in-process (``mock_aws``, through `tests.faults.Injector`, which sends each
request to moto itself and can drop S3's reply after S3 did the work) and, for the kill
test, moto's server with a run in a process of its own (`tests/run_in_subprocess.py`).
No test sleeps: clocks are injected, botocore retries at once, and the only real waits
are bounded waits for something that must happen.

``S3_SCHEDULER_FULL_CAMPAIGNS=1`` runs the campaign at full size (60 rounds, 120
hypothesis examples: each round lists a bucket that holds every earlier round's objects,
so rounds grow slower); ``S3_SCHEDULER_CAMPAIGN_SEED`` sets its seed.
"""

from __future__ import annotations

import functools
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import quote

import boto3
import pytest
from botocore.config import Config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from s3_scheduler import EventExistsError, InvalidKeyError, Scheduler, keys
from s3_scheduler.lease import Lease

from ..conftest import S3, T0, Clock, RequestCounter, pooled_client
from ..faults import Call, Decide, Fault, Injector, delete_result

LEASE = "jobs/.lease"
FULL = os.environ.get("S3_SCHEDULER_FULL_CAMPAIGNS", "") not in ("", "0")
ROUNDS = 60 if FULL else 20
SEED = int(os.environ.get("S3_SCHEDULER_CAMPAIGN_SEED", "20261127"))
EXAMPLES = 120 if FULL else 50
MISSING_BUCKET = "missing-bucket"


# helpers --------------------------------------------------------------------------------


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def new_client(pool: int = 10) -> Any:
    """A client of its own under the active mock_aws (the fixture's client stays clean for checks)."""
    return boto3.client("s3", region_name="us-east-1", config=Config(max_pool_connections=pool))


def once(op: str, fault: Fault, match: Callable[[Call], bool] | None = None) -> Decide:
    """Inject ``fault`` into the first call of ``op`` that ``match`` accepts, and no other."""
    chosen: list[Call] = []

    def decide(call: Call) -> Fault | None:
        if not chosen and call.op == op and (match is None or match(call)):
            chosen.append(call)
            return fault
        return None

    return decide


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait (bounded) for something a background thread must do."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.01)


def lease_body(s3: S3, key: str = LEASE) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(s3.body(s3.schedule_bucket, key))
    return data


def version_counts(client: Any, bucket: str, prefix: str = "") -> Counter[str]:
    """How many versions each key under ``prefix`` has: in a versioned target, how many copies landed on it."""
    counts: Counter[str] = Counter()
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for version in page.get("Versions", ()):
            counts[version["Key"]] += 1
    return counts


def versioned(s3: S3) -> None:
    s3.client.put_bucket_versioning(Bucket=s3.target_bucket, VersioningConfiguration={"Status": "Enabled"})


def statuses(call: Call) -> list[tuple[int | None, bool]]:
    """Each attempt of ``call``: what S3 answered, and whether the reply was dropped."""
    return [(a.status, a.dropped) for a in call.attempts]


def copy_times(injector: Injector, bucket: str) -> dict[str, list[datetime]]:
    """When (by the injected clock) each copy into ``bucket`` landed, by target key."""
    landed: dict[str, list[datetime]] = {}
    for call in injector.of("CopyObject"):
        if call.params.get("Bucket") == bucket:
            for attempt in call.landed:
                assert attempt.at is not None
                landed.setdefault(call.key, []).append(attempt.at)
    return landed


# 1. a lost reply on the lease's requests --------------------------------------------------


@pytest.mark.parametrize("found", ["no lease", "an expired lease"])
def test_a_lost_reply_to_the_lease_put_is_recognised_and_the_run_delivers(s3: S3, clock: Clock, found: str) -> None:
    """S3 stores the lease, its reply is lost, botocore's retry gets 412: the run reads its own token and delivers."""
    if found == "an expired lease":
        expired = {"owner": "a dead run", "expires": (T0 - seconds(1)).isoformat()}
        s3.client.put_object(Bucket=s3.schedule_bucket, Key=LEASE, Body=json.dumps(expired).encode())
    client = new_client()
    injector = Injector(client, clock=clock)
    scheduler = Scheduler(s3.schedule_bucket, "jobs", s3_client=client, clock=clock)
    key = scheduler.schedule(T0 - seconds(1), s3.target_bucket, "in/report.json", '{"report": 7}')

    condition = "IfNoneMatch" if found == "no lease" else "IfMatch"  # taking it, or taking it over
    with injector.faults(once("PutObject", Fault.LOST, lambda c: c.key == LEASE and condition in c.params)):
        report = scheduler.handle()

    lease_puts = [c for c in injector.of("PutObject") if c.key == LEASE and condition in c.params]
    assert [statuses(c) for c in lease_puts] == [[(200, True), (412, False)]]  # it reached S3 twice
    assert [e.key for e in report.delivered] == [key]
    assert report.deferred == []
    assert s3.body(s3.target_bucket, "in/report.json") == b'{"report": 7}'
    assert s3.keys(s3.schedule_bucket) == []  # the event is gone and no orphan lease is left


def test_a_lost_reply_to_a_renewal_and_to_the_release_keeps_then_frees_the_lease(
    s3: S3, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """renew() recognises its own write after a lost reply; release() takes the retried delete's 404 as done."""
    client = new_client()
    injector = Injector(client, clock=clock)
    lease = Lease(client, s3.schedule_bucket, LEASE, ttl=seconds(60), clock=clock)
    acquired = lease.acquire(clock.now)
    run = acquired.run
    assert run is not None
    clock.advance(20)

    with injector.faults(once("PutObject", Fault.LOST)):
        renewed = run.renew()

    renewal, *others = injector.of("PutObject")[1:]
    assert statuses(renewal) == [(200, True), (412, False)]  # it landed; the retry found it changed
    assert all(not call.landed for call in others)  # (a retry with the ETag unquoted, for radosgw)
    assert renewed
    assert run.expires == T0 + seconds(80)
    stored = lease_body(s3)
    assert (stored["owner"], stored["expires"]) == (run.token, (T0 + seconds(80)).isoformat())
    assert run.may_start(clock.now)

    with caplog.at_level("WARNING", logger="s3_scheduler"), injector.faults(once("DeleteObject", Fault.LOST)):
        run.release()

    (release,) = injector.of("DeleteObject")
    assert release.attempts[0].status == 204
    assert release.attempts[0].dropped
    assert len(release.attempts) == 2
    assert s3.keys(s3.schedule_bucket) == []
    assert caplog.records == []


def test_a_lost_reply_to_a_heartbeat_renewal_keeps_the_lease(s3: S3, clock: Clock) -> None:
    """The heartbeat (every ttl/4 real seconds) renews through a lost reply, by the run's clock, and keeps the lease."""
    client = new_client()
    injector = Injector(client, clock=clock)
    lease = Lease(client, s3.schedule_bucket, LEASE, ttl=seconds(10), clock=clock)
    run = lease.acquire(clock.now).run
    assert run is not None
    clock.advance(20)  # the lease has lapsed by the run's clock: only a renewal gives it back

    with injector.faults(once("PutObject", Fault.LOST)):
        run.start_heartbeat()
        wait_until(lambda: run.expires > T0 + seconds(10), "the heartbeat renews the lease (2.5 real s)")
        stored = lease_body(s3)
        run.release()

    renewal = injector.of("PutObject")[1]
    assert statuses(renewal) == [(200, True), (412, False)]
    assert not run.lost
    assert run.expires == T0 + seconds(30)
    assert (stored["owner"], stored["expires"]) == (run.token, (T0 + seconds(30)).isoformat())
    assert s3.keys(s3.schedule_bucket) == []


# 2. lost replies on every request type of a run -------------------------------------------


@dataclass
class Lost:
    """Where a reply is lost in test 2, and how S3 answers botocore's retry."""

    op: str
    answer: str = "moto"
    """"moto", or the code AWS gives each key of a retried conditional DeleteObjects."""


LOST_CASES = [
    Lost("CopyObject"),
    Lost("DeleteObjects"),
    Lost("DeleteObjects", "NoSuchKey"),
    Lost("DeleteObjects", "PreconditionFailed"),
    Lost("PutObject"),
    Lost("ListObjectsV2"),
]


@pytest.mark.parametrize("lost", LOST_CASES, ids=lambda lost: f"{lost.op}-{lost.answer}")
def test_a_lost_reply_on_any_request_of_a_run_loses_nothing_and_delivers_nothing_early(
    s3: S3, clock: Clock, lost: Lost
) -> None:
    """S3 did the request, the reply was lost, botocore retried: no failure, and after a clean run every event is
    delivered with its content, none before its time, and only the retried copy landed twice."""
    versioned(s3)
    client = new_client()
    injector = Injector(client, clock=clock)
    client.meta.events.register("before-parameter-build.s3.ListObjectsV2", _pages_of_two)
    scheduler = Scheduler(s3.schedule_bucket, "jobs", s3_client=client, clock=clock)
    events = {
        f"t/{i}": (T0 + seconds(s), f"content {i} \u00e9".encode()) for i, s in enumerate([-30, -20, -10, 60, 300])
    }
    scheduled: dict[str, str] = {}

    def lose(call: Call) -> Fault | None:
        if call.op != lost.op or (lost.op == "PutObject" and call.key == LEASE):
            return None
        if lost.op == "ListObjectsV2" and not call.params.get("ContinuationToken"):
            return None  # the second page: the listing is mid-way
        return Fault.LOST

    chosen: list[Call] = []

    def first(call: Call) -> Fault | None:
        fault = lose(call)
        if fault is None or chosen:
            return None
        chosen.append(call)
        return fault

    if lost.answer != "moto":
        injector.answer = lambda call, request: (
            delete_result(request, lost.answer) if chosen and call is chosen[0] and call.attempts else None
        )
    if lost.op == "PutObject":  # schedule()'s write
        with injector.faults(first):
            for target, (when, content) in events.items():
                scheduled[target] = scheduler.schedule(when, s3.target_bucket, target, content)
    else:
        for target, (when, content) in events.items():
            scheduled[target] = scheduler.schedule(when, s3.target_bucket, target, content)

    with injector.faults(first if lost.op != "PutObject" else None):
        report = scheduler.handle()
    clock.advance(600)
    clean = scheduler.handle()

    assert len(chosen) == 1
    assert [a.dropped for a in chosen[0].attempts] == [True, False]
    assert chosen[0].attempts[0].status == 200  # S3 did it before the reply was lost
    assert chosen[0].error is None  # the retry answered the caller
    if lost.op == "CopyObject":
        assert chosen[0].params.get("CopySourceIfMatch")  # conditional on the listed ETag (moto ignores it)
    if lost.op == "DeleteObjects":
        assert all(o.get("ETag") for o in chosen[0].params["Delete"]["Objects"])  # each key conditional too
    due = sorted(scheduled[t] for t, (when, _) in events.items() if when <= T0)
    assert sorted(e.key for e in report.delivered) == due
    assert report.failed == []
    assert report.deferred == []
    assert sorted(e.key for e in clean.delivered) == sorted(set(scheduled.values()) - set(due))
    assert s3.keys(s3.schedule_bucket) == []
    for target, (_, content) in events.items():
        assert s3.body(s3.target_bucket, target) == content
    landed = copy_times(injector, s3.target_bucket)
    for target, (when, _) in events.items():
        assert all(at >= when for at in landed[target]), f"{target} delivered early"
    copies = version_counts(s3.client, s3.target_bucket)
    duplicated = {t for t, n in copies.items() if n > 1}
    assert duplicated == ({chosen[0].key} if lost.op == "CopyObject" else set())  # only the retried copy


def _pages_of_two(params: dict[str, Any], **_: Any) -> None:
    params["MaxKeys"] = 2


# lost replies to cancel, reschedule and schedule(replace=False) (defects found here, fixed in a8986ef) -----


@pytest.mark.parametrize("operation", ["cancel", "reschedule"])
def test_a_lost_reply_to_the_delete_of_cancel_never_loses_an_event_silently(
    s3: S3, clock: Clock, operation: str
) -> None:
    """cancel() whose DELETE landed but whose reply was lost must say True (and reschedule must keep the event)."""
    client = new_client()
    injector = Injector(client, clock=clock)
    scheduler = Scheduler(s3.schedule_bucket, "jobs", s3_client=client, clock=clock)
    key = scheduler.schedule(T0 + timedelta(hours=1), s3.target_bucket, "k", "x")

    with injector.faults(once("DeleteObject", Fault.LOST, lambda c: c.key == key)):
        if operation == "cancel":
            outcome: Any = scheduler.cancel(key)
        else:
            try:
                outcome = scheduler.reschedule(key, T0 + timedelta(hours=2))
            except LookupError as exc:
                outcome = exc

    (delete,) = [c for c in injector.of("DeleteObject") if c.key == key]
    assert statuses(delete)[0] == (204, True)  # the event was removed by this call
    if operation == "cancel":
        assert key not in s3.keys(s3.schedule_bucket)
        assert outcome is True, "cancel removed the event and answered False: it is lost silently"
    else:
        assert s3.keys(s3.schedule_bucket) != [], f"the event is at neither name; reschedule raised {outcome!r}"


def test_a_lost_reply_to_schedule_without_replace_returns_the_key(s3: S3, clock: Clock) -> None:
    """schedule(replace=False) whose write landed (reply lost, retry 412) must return its key, not EventExistsError."""
    client = new_client()
    injector = Injector(client, clock=clock)
    scheduler = Scheduler(s3.schedule_bucket, "jobs", s3_client=client, clock=clock)

    with injector.faults(once("PutObject", Fault.LOST)):
        try:
            key: str | None = scheduler.schedule(T0, s3.target_bucket, "k", "mine", replace=False)
        except EventExistsError:
            key = None

    (put,) = injector.of("PutObject")
    assert statuses(put) == [(200, True), (412, False)]
    assert len(s3.keys(s3.schedule_bucket)) == 1  # no other writer: the event is this call's own
    assert key is not None, "the event this call wrote was reported as someone else's (EventExistsError)"


def test_a_retried_schedule_without_replace_still_refuses_another_writers_event(s3: S3, clock: Clock) -> None:
    """schedule(replace=False) whose first attempt failed before S3 and whose retry gets 412 from another writer's
    event raises EventExistsError and leaves that event's content."""
    client = new_client()
    injector = Injector(client, clock=clock)
    scheduler = Scheduler(s3.schedule_bucket, "jobs", s3_client=client, clock=clock)
    key = scheduler.schedule(T0, s3.target_bucket, "k", "theirs")

    with injector.faults(once("PutObject", Fault.TRANSIENT)), pytest.raises(EventExistsError):
        scheduler.schedule(T0, s3.target_bucket, "k", "mine", replace=False)

    put = injector.of("PutObject")[-1]
    assert statuses(put) == [(None, False), (412, False)]  # retried by botocore, refused by S3
    assert s3.body(s3.schedule_bucket, key) == b"theirs"


def test_a_lost_reply_to_the_delete_of_a_dead_letter_move_still_reports_it(s3: S3, clock: Clock) -> None:
    """A dead-letter move whose delete landed (reply lost, retry 404) is reported as dead-lettered, not as unmoved."""
    client = new_client()
    injector = Injector(client, clock=clock)
    scheduler = Scheduler(
        s3.schedule_bucket, "jobs", s3_client=client, clock=clock, dead_letter_after=seconds(0), dead_letter_attempts=1
    )
    key = scheduler.schedule(T0 - timedelta(hours=1), MISSING_BUCKET, "k", "x")

    with injector.faults(once("DeleteObject", Fault.LOST, lambda c: c.key == key)):
        report = scheduler.handle()

    (delete,) = [c for c in injector.of("DeleteObject") if c.key == key]
    first, retry = statuses(delete)
    assert first == (204, True)
    assert retry in ((404, False), (204, False))  # 204 where the store ignores If-Match on DELETE (moto 5.1)
    assert [e.path for e in scheduler.dead_letters()] == ["k"]  # moved: nothing is lost
    assert list(scheduler.pending()) == []
    assert [e.key for e in report.dead_lettered] == [key]


# 3. a run killed with SIGKILL mid-delivery --------------------------------------------------


# 4. a copy slower than the lease -------------------------------------------------------------


def test_a_copy_slower_than_the_lease_keeps_it_and_no_event_is_copied_twice(s3: S3, clock: Clock) -> None:
    """Run A hangs in one copy for 3 ttls of the clock; its heartbeat keeps the lease, so run B copies nothing, and
    each target key ends with exactly one version."""
    versioned(s3)
    client_a, client_b = new_client(), new_client()
    counter_b = RequestCounter().attach(client_b)
    a = Scheduler(s3.schedule_bucket, "jobs", s3_client=client_a, clock=clock, lease_ttl=seconds(10))
    b = Scheduler(s3.schedule_bucket, "jobs", s3_client=client_b, clock=clock, lease_ttl=seconds(10))
    contents = {f"slow/{i}": f"content {i}".encode() for i in range(5)}
    scheduled = [a.schedule(T0 - seconds(10 - i), s3.target_bucket, t, c) for i, (t, c) in enumerate(contents.items())]
    last_target = list(contents)[-1]  # copied last: every other copy has started when it hangs
    entered, release = threading.Event(), threading.Event()

    def hang(request: Any, **_: Any) -> None:
        if request.url.endswith("/" + quote(last_target)) and not entered.is_set():
            entered.set()
            release.wait(30)

    client_a.meta.events.register_first("before-send.s3.CopyObject", hang)
    reports: list[Any] = []
    run_a = threading.Thread(target=lambda: reports.append(a.handle()), daemon=True)
    run_a.start()
    try:
        assert entered.wait(10), "run A never reached its last copy"
        clock.advance(30)  # three ttls
        wait_until(
            lambda: datetime.fromisoformat(lease_body(s3)["expires"]) > clock.now,
            "run A's heartbeat renews the lease past the advanced clock",
        )
        report_b = b.handle()
    finally:
        release.set()
        run_a.join(30)
    assert not run_a.is_alive()

    assert report_b.delivered == []
    assert scheduled[-1] in [e.key for e in report_b.deferred]
    assert counter_b.calls["CopyObject"] == 0
    (report_a,) = reports
    assert sorted(e.key for e in report_a.delivered) == sorted(scheduled)
    assert report_a.failed == []

    again = b.handle()
    assert again.delivered == []
    assert counter_b.calls["CopyObject"] == 0
    assert version_counts(s3.client, s3.target_bucket) == dict.fromkeys(contents, 1)
    for target, content in contents.items():
        assert s3.body(s3.target_bucket, target) == content
    assert s3.keys(s3.schedule_bucket) == []


# 6. names that could stop a run ----------------------------------------------------------------

ODD_TIMES = [
    "0001-01-01 00:00:00+01:00",
    "2020-01-01 00:00 +2400",
    "2020-01-01 00:00+2400",
    "-23:599999999999999999600000190024",
    "9999-12-31 23:59:59-01:00",
    "2020-02-30 00:00:00",
    "2020-01-01 24:00:00",
    "2020-01-01T25:00",
    "2020-01-01 00:00:00+23:99",
    "GMT-3",
    "\u0661\u0662\u0663\u0664-\u0660\u0661-\u0660\u0661",  # Arabic-Indic digits
]
_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=24)  # no surrogates, no NUL
_PART = st.one_of(st.sampled_from(ODD_TIMES), st.sampled_from(ODD_TIMES).map(quote), _TEXT)
_PREFIX = keys.listing_prefix("jobs")


def _is_event(name: str) -> bool:
    try:
        keys.decode_key(_PREFIX + name, _PREFIX)
    except InvalidKeyError:
        return False
    return True


@functools.cache
def _shared_client() -> Any:
    """One client for every example: building one costs ~0.2 s, and moto serves whichever mock_aws is active."""
    return boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(max_pool_connections=4),
    )


@contextmanager
def fresh_buckets() -> Iterator[Any]:
    """A fresh moto (in-process) for one hypothesis example, with buckets 'sched' and 'target'."""
    with mock_aws():
        client = _shared_client()
        for bucket in ("sched", "target"):
            client.create_bucket(Bucket=bucket)
        yield client


ODD_NAMES = st.one_of(
    _PART,
    st.lists(_PART, min_size=2, max_size=4).map("|".join),
    st.tuples(_PART, st.sampled_from(["target", "b|c", ""]), _TEXT).map("|".join),
).filter(lambda name: not _is_event(name))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ODD_NAMES, min_size=1, max_size=3, unique=True))
@example(["0001-01-01 00:00:00+01:00|target|x", "2020-01-01 00:00 +2400", "-23:599999999999999999600000190024"])
@example(["a|b|c|d", "", "|||", "\U0010ffff"])
def test_names_that_are_not_events_never_stop_a_run(names: list[str]) -> None:
    """Beside one due event, odd names are skipped (never deleted), and pending(), check() and cancel() never raise
    anything but cancel's InvalidKeyError."""
    clock = Clock()
    with fresh_buckets() as client:
        scheduler = Scheduler("sched", "jobs", s3_client=client, clock=clock)
        valid = scheduler.schedule(T0 - seconds(60), "target", "valid", "ok")
        odd = sorted(_PREFIX + name for name in names)
        for key in odd:
            client.put_object(Bucket="sched", Key=key, Body=b"odd")

        report = scheduler.handle()
        pending = list(scheduler.pending())
        pending_due = list(scheduler.pending(until=T0))
        check = scheduler.check()
        for key in odd:
            with pytest.raises(InvalidKeyError):
                scheduler.cancel(key)
        for name in names:
            if not name.startswith(_PREFIX):
                with pytest.raises(InvalidKeyError):
                    scheduler.cancel(name)

        bound = keys.listing_bound(_PREFIX, T0)
        assert bound is not None
        assert [e.key for e in report.delivered] == [valid]
        assert sorted(report.skipped) == [key for key in odd if key <= bound]  # names past the window are not read
        assert report.failed == []
        assert pending == []
        assert pending_due == []
        assert sorted(key for key, _ in check.not_events) == odd
        assert check.events == 0
        remaining = [o["Key"] for o in client.list_objects_v2(Bucket="sched").get("Contents", [])]
        assert sorted(remaining) == odd  # every odd name left alone
        assert client.get_object(Bucket="target", Key="valid")["Body"].read() == b"ok"


@pytest.mark.parametrize(  # check() raised ValueError on these until a8986ef
    "name",
    [
        "2020-01-01|a|k",  # bucket name too short
        "2020-01-01|a%20b|k",  # bucket name with a space
        "2020-01-01|target|" + "\u00e9" * 400,  # re-quoted, the name passes 1,024 bytes
    ],
)
def test_check_never_raises_on_a_hand_written_event(name: str) -> None:
    """check() reports a hand-written name that decodes but cannot be written canonically, instead of raising."""
    with pooled_client(2) as client:
        scheduler = Scheduler("sched", "jobs", s3_client=client, clock=Clock())
        client.put_object(Bucket="sched", Key=_PREFIX + name, Body=b"x")

        report = scheduler.check()

        assert report.events + len(report.not_events) == 1


# 5. the fault campaign -------------------------------------------------------------------------

ODD_FIXED = [
    "not an event",
    "2026-11-27 12:00:00|",
    "0001-01-01 00:00:00+01:00|target-bucket|x",
    "|||",
    "2026-13-01|b|k",
]
RUN_OPS = (
    "ListObjectsV2",
    "CopyObject",
    "DeleteObjects",
    "DeleteObject",
    "PutObject",
    "GetObject",
    "HeadObject",
    "GetObjectTagging",
    "PutObjectTagging",
)


@dataclass
class Planned:
    """An event of a round, and what became of the calls that wrote or cancelled it."""

    key: str
    when: datetime
    bucket: str
    target: str
    content: bytes
    written: str = "scheduled"
    """"scheduled", "unknown" (schedule raised: it may or may not have been written), "legacy" (a 0.0.3 name)."""
    cancelled: bool | None = None
    """What cancel() answered (None: not cancelled, or cancel raised: see cancel_raised)."""
    cancel_raised: bool = False
    cancel_after: int = -1
    """The id of the last call made before cancel() was called."""
    cancel_run: int = -1
    """The injector's run number of the cancel() call."""


@dataclass
class Campaign:
    """Counts over the whole campaign."""

    counts: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


class RoundFaults:
    """Chooses the faults of one round: each call draws from a generator seeded by the campaign seed, the round,
    the run, the operation, the object and how many such calls came before (so a seed gives the same draws whatever
    order threads send in); a run may be killed at its n-th request."""

    KINDS = (Fault.BEFORE, Fault.TRANSIENT, Fault.LOST, Fault.LOST_FINAL)
    WEIGHTS = (3, 2, 3, 2)

    def __init__(self, seed: int, round_: int, rate: float, focus: str) -> None:
        self.seed = seed
        self.round = round_
        self.rate = rate
        self.focus = focus
        """An operation that gets a fault on its first call of the round, so each kind of request gets some."""
        self.focused = False
        self.seen: Counter[tuple[int, str, str]] = Counter()
        self.kill_at: int | None = None
        self.requests = 0

    def decide(self, call: Call) -> Fault | None:
        ident = call.key or (call.delete_keys[:1] or [""])[0]
        self.seen[(call.run, call.op, ident)] += 1
        draw = random.Random(
            f"{self.seed}:{self.round}:{call.run}:{call.op}:{ident}:{self.seen[(call.run, call.op, ident)]}"
        )
        self.requests += 1
        if self.kill_at is not None and self.requests == self.kill_at:
            return draw.choice((Fault.KILL_BEFORE, Fault.KILL_AFTER))
        if call.op == self.focus and not self.focused:
            self.focused = True
        elif draw.random() >= self.rate:
            return None
        return draw.choices(self.KINDS, self.WEIGHTS)[0]


def _campaign_round(s3: S3, client: Any, injector: Injector, round_: int, seed: int, totals: Campaign) -> None:
    rng = random.Random(f"{seed}:{round_}")
    clock = Clock(T0 + timedelta(days=round_))
    injector.clock = clock
    path = f"r{round_}"
    focus = RUN_OPS[round_ % len(RUN_OPS)]
    dead_letters = rng.random() < 0.4 or focus.endswith("Tagging")
    scheduler = Scheduler(
        s3.schedule_bucket,
        path,
        s3_client=client,
        clock=clock,
        sleep=clock.advance,
        lease_ttl=seconds(rng.choice([10, 30, 60, 120])),
        max_workers=rng.choice([1, 3, 10]),
        dead_letter_after=timedelta(minutes=rng.choice([0, 5])) if dead_letters else None,
        dead_letter_attempts=rng.choice([1, 2]),
    )
    prefix = scheduler.prefix
    faults = RoundFaults(seed, round_, rng.choice([0.05, 0.15, 0.3]), focus)
    first_call = len(injector.calls)

    # events: due, in the future, to a bucket that does not exist, 0.0.3 names with an offset
    planned: list[Planned] = []
    for i in range(rng.randint(1, 8)):
        target = f"{path}/e{i}"
        bucket = s3.target_bucket if rng.random() < 0.9 else MISSING_BUCKET
        when = clock.now + seconds(rng.randint(-900, 900))
        if i == 0:  # every round has due work; one whose copies fail when the failed runs are counted in tags
            bucket = MISSING_BUCKET if focus.endswith("Tagging") else bucket
            when = clock.now - seconds(rng.randint(1, 900))
        content = rng.randbytes(rng.randint(0, 48)) if rng.random() < 0.5 else f"{round_}/{i} \u00e9\u00e8".encode()
        if rng.random() < 0.2:
            offset = timezone(timedelta(minutes=15 * rng.randint(-12 * 4, 14 * 4)))
            key = f"{prefix}{quote(str(when.astimezone(offset)))}|{quote(bucket)}|{keys.encode_target(target)}"
            s3.client.put_object(Bucket=s3.schedule_bucket, Key=key, Body=content)
            planned.append(Planned(key, when, bucket, target, content, "legacy"))
            continue
        event = Planned(keys.encode_key(prefix, when, bucket, target), when, bucket, target, content)
        with injector.running(), injector.faults(faults.decide):
            try:
                scheduler.schedule(when, bucket, target, content)
            except Exception:  # noqa: BLE001 - a write under faults may fail; it may still have landed
                event.written = "unknown"
        planned.append(event)
    odd = [prefix + name for name in rng.sample(ODD_FIXED, rng.randint(0, 2))]
    for key in odd:
        s3.client.put_object(Bucket=s3.schedule_bucket, Key=key, Body=b"odd")
    if focus == "GetObject" or rng.random() < 0.2:  # a lease a dead run left: read, then taken over
        left = {"owner": "a dead run", "expires": (clock.now - seconds(rng.randint(1, 60))).isoformat()}
        s3.client.put_object(Bucket=s3.schedule_bucket, Key=keys.lease_key(prefix), Body=json.dumps(left).encode())

    # runs under faults, some killed, with cancels in between
    for _ in range(rng.randint(1, 3)):
        clock.advance(rng.randint(0, 300))
        until = clock.now + seconds(rng.randint(0, 300)) if rng.random() < 0.3 else None
        faults.kill_at = rng.randint(1, 12) if rng.random() < 0.3 else None
        faults.requests = 0
        with injector.running() as run, injector.faults(faults.decide):
            try:
                scheduler.handle(until=until)
            except Exception:  # noqa: BLE001 - a run may fail under faults; nothing may be lost
                totals.counts["runs raised"] += 1
        totals.counts["runs"] += 1
        if any(c.killed for c in injector.calls[first_call:] if c.run == run):
            totals.counts["runs killed"] += 1
        candidates = [e for e in planned if e.cancelled is None and not e.cancel_raised]  # each cancelled once
        if candidates and (rng.random() < 0.3 or focus == "HeadObject"):
            event = rng.choice(candidates)
            event.cancel_after = len(injector.calls) - 1
            faults.kill_at = None
            with injector.running() as cancel_run, injector.faults(faults.decide):
                event.cancel_run = cancel_run
                try:
                    event.cancelled = scheduler.cancel(event.key)
                except Exception:  # noqa: BLE001 - the caller knows the outcome is unknown
                    event.cancel_raised = True

    # one clean run, past any lease a failed or killed run left (ttl <= 2 min past a window <= 5 min)
    clock.advance(600)
    with injector.running():
        clean = scheduler.handle()
    totals.counts["rounds"] += 1
    _check_round(s3, injector, scheduler, planned, odd, clean, first_call, totals)


@dataclass
class _Round:
    """What one round left behind, for judging each of its events."""

    s3: S3
    calls: list[Call]
    pending: set[str]
    letters: dict[str, str]
    now: datetime
    totals: Campaign

    def problem(self, text: str) -> None:
        self.totals.problems.append(text)

    def count(self, what: str) -> None:
        self.totals.counts[what] += 1


def _check_round(
    s3: S3,
    injector: Injector,
    scheduler: Scheduler,
    planned: list[Planned],
    odd: list[str],
    clean: Any,
    first_call: int,
    totals: Campaign,
) -> None:
    calls = injector.calls[first_call:]
    for call in calls:
        if call.fault is not None:
            totals.faults[f"{call.op}: {call.fault.value}"] += 1
            totals.counts["faults injected"] += 1
    pages = s3.client.get_paginator("list_objects_v2").paginate(Bucket=s3.schedule_bucket, Prefix=scheduler.prefix)
    pending = {obj["Key"] for page in pages for obj in page.get("Contents", ())}
    letters = {e.path: e.key for e in scheduler.dead_letters()}
    state = _Round(s3, calls, pending, letters, scheduler.now(), totals)
    if clean.deferred:
        state.problem(f"the clean run deferred {[e.key for e in clean.deferred]}")
    copies: dict[str, list[tuple[Call, int]]] = {}
    for call in calls:
        if call.op == "CopyObject" and call.params.get("Bucket") == s3.target_bucket:
            for attempt in call.landed:
                copies.setdefault(call.key, []).append((call, call.attempts.index(attempt)))
    for event in planned:
        _judge(state, event, copies.get(event.target, []))
    for key in odd:
        if key not in pending:
            state.problem(f"the odd name {key!r} was deleted")
        if any(c.source == key for c in calls if c.op == "CopyObject"):
            state.problem(f"the odd name {key!r} was copied")
        state.count("odd names left alone")
    versions = version_counts(s3.client, s3.target_bucket, scheduler.prefix.split("/")[0] + "/")
    for event in planned:
        stored, seen = versions.get(event.target, 0), len(copies.get(event.target, []))
        if event.bucket == s3.target_bucket and stored != seen:
            state.problem(f"{event.target}: {stored} versions in S3, {seen} copies seen landing")


def _judge(state: _Round, event: Planned, landed: list[tuple[Call, int]]) -> None:
    """Count what became of one planned event, and note each broken promise."""
    state.totals.counts["deliveries (copies landed)"] += len(landed)
    for call, index in landed:
        at = call.attempts[index].at
        assert at is not None
        if at < event.when:
            state.count("early")
            state.problem(f"{event.key} copied at {at}, before its time {event.when}")
    delivered = bool(landed)
    if delivered and state.s3.body(state.s3.target_bucket, event.target) != event.content:
        state.problem(f"{event.target} holds other content than {event.key}'s")
    is_pending = event.key in state.pending
    if event.cancelled is True:
        if is_pending or any(c.id > event.cancel_after for c, _ in landed):
            state.problem(f"{event.key}: cancel said True, yet it is pending or was copied after")
        state.count("cancelled")
    elif _removed_by_a_failed_cancel(state, event, delivered, is_pending):
        state.count("removed by a cancel that raised")
    elif event.bucket == MISSING_BUCKET:
        _judge_undeliverable(state, event, is_pending)
    elif event.when > state.now:
        _judge_not_due(state, event, delivered, is_pending)
    elif delivered and not is_pending:
        state.count("events delivered")
        _count_duplicates(event, landed, state.calls, state.totals)
    elif event.target in state.letters:
        state.count("dead-lettered")
    elif event.written == "unknown" and not is_pending:
        state.count("never written (schedule failed)")
    else:
        state.count("lost")
        state.problem(f"{event.key} due at {event.when} is {'pending' if is_pending else 'gone'} after the clean run")


def _removed_by_a_failed_cancel(state: _Round, event: Planned, delivered: bool, is_pending: bool) -> bool:
    """Whether a cancel that said False or raised removed the event (noting it when it said False)."""
    if event.cancelled is not False and not event.cancel_raised:
        return False
    removed = any(
        c.landed for c in state.calls if c.op == "DeleteObject" and c.key == event.key and c.run == event.cancel_run
    )
    if not removed or delivered or is_pending or event.target in state.letters:
        return False
    if event.cancelled is False:
        state.problem(f"{event.key}: cancel removed it and said False: it is lost silently")
    return True


def _judge_undeliverable(state: _Round, event: Planned, is_pending: bool) -> None:
    """An event to a missing bucket: dead-lettered with its content, or still pending, never gone."""
    if event.target in state.letters:
        if state.s3.body(state.s3.schedule_bucket, state.letters[event.target]) != event.content:
            state.problem(f"{event.key}: dead letter with other content")
        state.count("dead-lettered")
    elif is_pending:
        state.count("pending (target bucket missing)")
    elif event.written == "unknown":
        state.count("never written (schedule failed)")
    else:
        state.count("lost")
        state.problem(f"{event.key} (to a missing bucket) is gone and not dead-lettered")


def _judge_not_due(state: _Round, event: Planned, delivered: bool, is_pending: bool) -> None:
    """An event not yet due: never delivered, still pending unless its write failed."""
    if delivered:
        state.problem(f"{event.key} delivered before its time")
    elif is_pending:
        state.count("pending (not yet due)")
    elif event.written == "unknown":
        state.count("never written (schedule failed)")
    else:
        state.count("lost")
        state.problem(f"{event.key} (not yet due) is gone")


def _count_duplicates(event: Planned, landed: list[tuple[Call, int]], calls: list[Call], totals: Campaign) -> None:
    """Attribute each copy after the first to a fault that explains it, or count it as unexplained."""
    for (previous, _), (current, _) in zip(landed, landed[1:]):
        totals.counts["copied twice or more"] += 1
        if previous is current:
            cause = "copy reply lost, botocore retried the copy"
        elif previous.fault is Fault.LOST_FINAL:
            cause = "copy reply lost, not retried"
        elif previous.killed:
            cause = "run killed between copy and delete"
        elif previous.error is not None:
            cause = f"copy answered {previous.error} after it landed"
        else:
            deletes = [
                c for c in calls if c.op == "DeleteObjects" and c.run == previous.run and event.key in c.delete_keys
            ]
            if any(c.landed for c in deletes):
                cause = "unexplained: the batch delete landed, yet the event was copied again"
            elif any(c.killed for c in calls if c.run == previous.run):
                cause = "run killed between copy and delete"
            elif deletes and all(c.error is not None for c in deletes):
                cause = "batch delete failed before S3"
            else:
                cause = "unexplained: no fault kept the event after its copy"
        totals.duplicates[cause] += 1
        if cause.startswith("unexplained"):
            totals.problems.append(f"{event.key}: {cause}")


def test_a_seeded_fault_campaign_never_loses_or_delivers_early(s3: S3, capsys: pytest.CaptureFixture[str]) -> None:
    """Randomized rounds of faults on every request type (before S3, lost replies, killed runs): after a clean run
    nothing is lost, nothing was early, and every duplicate copy is explained by an injected fault."""
    versioned(s3)
    client = new_client()
    injector = Injector(client)
    totals = Campaign()
    started = time.monotonic()

    for round_ in range(ROUNDS):
        _campaign_round(s3, client, injector, round_, SEED, totals)

    elapsed = time.monotonic() - started
    ops = Counter(c.op for c in injector.calls if c.fault is not None)
    with capsys.disabled():
        print(
            f"\nfault campaign: seed {SEED}, {ROUNDS} rounds in {elapsed:.1f} s (S3_SCHEDULER_CAMPAIGN_SEED to replay)"
        )
        print(f"  counts: {dict(sorted(totals.counts.items()))}")
        print(f"  faults by request: {dict(sorted(ops.items()))}")
        print(f"  faults by kind: {dict(Counter(c.fault.value for c in injector.calls if c.fault is not None))}")
        print(f"  duplicates by cause: {dict(totals.duplicates)}")
        print(f"  lost={totals.counts['lost']} early={totals.counts['early']}")
    assert totals.problems == []
    assert totals.counts["lost"] == 0
    assert totals.counts["early"] == 0
    assert totals.counts["events delivered"] > 0
    assert set(RUN_OPS) <= set(ops)
    assert {Fault.BEFORE, Fault.LOST, Fault.LOST_FINAL} <= {c.fault for c in injector.calls}
