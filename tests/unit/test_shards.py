"""Shards without S3: the shard function, the shard names, the reports of a run over shards,
and how a `ShardSet` finds shards and runs them, against a fake client and fake shards (#19)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3_scheduler import CheckReport, HandleReport, InvalidKeyError, ScheduledEvent, Scheduler, keys
from s3_scheduler.report import FailedDelivery
from s3_scheduler.shards import SHARDS_AT_ONCE, Found, ShardSet

UTC = timezone.utc
T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)

key_text = st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=100)

# The shard function -------------------------------------------------------------------

VECTORS = [
    # (bucket, key, shards, shard): the numbers are hard-coded, so that any change of the
    # function fails here; test_vectors_follow_the_definition shows where they come from.
    ("target-bucket", "in/report.json", 8, 6),
    ("target-bucket", "/in/report.json", 8, 6),
    ("work", "a", 2, 0),
    ("work", "a", 1000, 932),
    ("my.bucket", "ünïcødé/日本語/файл", 16, 14),
    ("b-1", "pipe|in|key", 3, 2),
    ("b-1", "with space/and  two.txt", 7, 3),
    ("logs", "2026/11/27/x.csv", 1000, 81),
    ("work", "~~tilde~", 5, 0),
    ("work", "//double", 10, 7),
    ("UPPER_legacy", "k", 997, 199),
    ("work", "anything", 1, 0),
]


def by_definition(bucket: str, key: str, shards: int) -> int:
    """The issue's words: the first 8 bytes of SHA-256 of "bucket/key" (UTF-8, one leading '/'
    of the key dropped), big-endian, modulo N."""
    stored = key[1:] if key.startswith("/") else key
    digest = hashlib.sha256(f"{bucket}/{stored}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


@pytest.mark.parametrize(("bucket", "key", "shards", "expected"), VECTORS)
def test_shard_of_gives_the_fixed_vectors(bucket: str, key: str, shards: int, expected: int) -> None:
    """shard_of gives the hard-coded shard of each vector."""
    assert keys.shard_of(bucket, key, shards) == expected


@pytest.mark.parametrize(("bucket", "key", "shards", "expected"), VECTORS)
def test_vectors_follow_the_definition(bucket: str, key: str, shards: int, expected: int) -> None:
    """Each hard-coded vector is what the definition, computed here with hashlib, gives."""
    assert by_definition(bucket, key, shards) == expected


@given(bucket=st.from_regex(r"[a-z0-9][a-z0-9.-]{1,20}", fullmatch=True), key=key_text, shards=st.integers(1, 1000))
def test_shard_of_is_the_definition_for_any_target(bucket: str, key: str, shards: int) -> None:
    """For any target and any number of shards, shard_of is the definition."""
    assert keys.shard_of(bucket, key, shards) == by_definition(bucket, key, shards)


def test_shard_of_is_the_same_in_processes_with_other_hash_seeds() -> None:
    """Another process, with another PYTHONHASHSEED, gives every vector the same shard."""
    script = (
        "import json, sys\n"
        "from s3_scheduler.keys import shard_of\n"
        "print(json.dumps([shard_of(b, k, n) for b, k, n in json.loads(sys.stdin.read())]))\n"
    )
    table = [[bucket, key, shards] for bucket, key, shards, _ in VECTORS]
    answers = []

    for seed in ("0", "12345", "random"):
        done = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(table),
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
            timeout=60,
        )
        answers.append(json.loads(done.stdout))

    assert answers == [[expected for *_, expected in VECTORS]] * 3


def test_every_shard_is_used_evenly_over_10000_targets() -> None:
    """Over 10,000 random targets and 8 shards, every shard holds within 10 % of 1,250."""
    rng = random.Random(19)
    targets = [(f"bucket-{rng.randrange(50)}", f"in/{rng.getrandbits(64):x}/{i}.json") for i in range(10_000)]

    counts = Counter(keys.shard_of(bucket, key, 8) for bucket, key in targets)

    assert sorted(counts) == list(range(8))
    assert all(1125 <= n <= 1375 for n in counts.values()), counts


@given(
    bucket=st.from_regex(r"[a-z0-9]{3,10}", fullmatch=True),
    key=key_text.filter(lambda k: not k.startswith("/")),
    shards=st.integers(1, 1000),
)
def test_one_leading_slash_is_dropped_as_the_event_name_drops_it(bucket: str, key: str, shards: int) -> None:
    """A key and the same key after one '/' go to one shard: the event's name stores both
    alike (and both as 'bucket/key' hashed)."""
    assert keys.shard_of(bucket, "/" + key, shards) == keys.shard_of(bucket, key, shards)
    assert keys.encode_target("/" + key) == keys.encode_target(key)


def test_only_one_leading_slash_is_dropped() -> None:
    """'/double' is stored as 'double' and '//double' as '/double': the second '/' counts."""
    assert keys.shard_of("work", "/double", 1000) == keys.shard_of("work", "double", 1000) == 679
    assert keys.shard_of("work", "//double", 1000) == 527
    assert keys.encode_target("//double") == "~~double"


@given(bucket=st.text(max_size=30), key=key_text)
def test_one_shard_is_always_shard_0(bucket: str, key: str) -> None:
    """With one shard, every target is in shard 0."""
    assert keys.shard_of(bucket, key, 1) == 0


@pytest.mark.parametrize(
    ("shards", "error"),
    [(0, ValueError), (1001, ValueError), (-3, ValueError), (True, TypeError), (2.0, TypeError), ("8", TypeError)],
)
def test_a_number_of_shards_out_of_range_is_refused(shards: Any, error: type[Exception]) -> None:
    """shard_of and Scheduler(shards=) take an int from 1 to 1,000 and say so."""
    with pytest.raises(error, match=r"shards must be an int from 1 to 1,000"):
        keys.shard_of("b", "k", shards)
    with pytest.raises(error, match=r"shards must be an int from 1 to 1,000"):
        Scheduler("bucket", "jobs", s3_client=NoRequests(), shards=shards)


def test_a_target_that_is_not_text_is_refused() -> None:
    """shard_of wants the bucket and the key as str."""
    with pytest.raises(TypeError, match="bucket and key must be str"):
        keys.shard_of("b", b"k", 8)  # type: ignore[arg-type]


# Shard names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "shard", "expected"),
    [("jobs", 3, "jobs/3"), ("jobs/", 0, "jobs/0"), ("/jobs", 12, "/jobs/12"), ("", 5, "/5")],
)
def test_a_shard_is_the_scheduler_at_path_slash_number(path: str, shard: int, expected: str) -> None:
    """Shard s of the scheduler at path is the path '{path}/{s}', s in decimal without padding."""
    assert keys.shard_path(path, shard) == expected
    assert keys.listing_prefix(expected) == expected + "/|"
    assert keys.lease_key(keys.listing_prefix(expected)) == expected + "/.lease"
    assert keys.dead_letter_prefix(keys.listing_prefix(expected)) == expected + "/.dead-letters/"


@pytest.mark.parametrize(
    ("label", "number"),
    [
        ("0", 0),
        ("7", 7),
        ("999", 999),
        ("12345", 12345),
        ("07", None),
        ("00", None),
        ("+7", None),
        ("", None),
        ("\u0667", None),  # ARABIC-INDIC DIGIT SEVEN: a digit to str.isdigit, not a shard
        ("7a", None),
        ("-1", None),
        (".lease", None),
        ("|", None),
    ],
)
def test_only_unpadded_decimal_numbers_are_shards(label: str, number: int | None) -> None:
    """A folder is a shard when it is named by a decimal number written without padding."""
    assert keys.shard_number(label) == number


@pytest.mark.parametrize(
    ("key", "prefix"),
    [
        ("jobs/|2030-01-07%2014%3A05%3A00%2B00%3A00|b|k", "jobs/|"),
        ("jobs/3/|2030-01-07%2014%3A05%3A00%2B00%3A00|b|k", "jobs/3/|"),
        ("jobs/250/|x", "jobs/250/|"),
    ],
)
def test_an_event_key_names_its_shard_or_the_unsharded_prefix(key: str, prefix: str) -> None:
    """event_prefix finds which of a sharded scheduler's prefixes holds a key."""
    assert keys.event_prefix(key, "jobs") == prefix


@pytest.mark.parametrize(
    "key", ["other/|x", "jobs/07/|x", "jobs/3/x", "jobs/3|x", "jobs/.lease", "jobs/a/|x", "jobs/3/4/|x", 7]
)
def test_a_key_outside_every_shard_is_refused(key: Any) -> None:
    """A key under none of the prefixes raises InvalidKeyError naming the forms."""
    with pytest.raises(InvalidKeyError, match=r"jobs/\{shard\}/\|"):
        keys.event_prefix(key, "jobs")


@pytest.mark.parametrize(
    ("target", "reserved"),
    [
        ("jobs/.lease", True),
        ("jobs/.dead-letters/x", True),
        ("jobs/3/.lease", True),
        ("/jobs/999/.dead-letters/a|b", True),
        ("jobs/3/other", False),
        ("jobs/03/.lease", False),
        ("jobs/x/.lease", False),
        ("jobs/3/.lease2", False),
    ],
)
def test_no_shard_lease_or_dead_letter_is_a_target(target: str, reserved: bool) -> None:
    """The lease and the dead letters of the scheduler and of any of its shards are reserved."""
    assert keys.is_reserved_in_shards("jobs", "sched", "sched", target) is reserved
    assert keys.is_reserved_in_shards("jobs", "sched", "elsewhere", target) is False


# Reports -----------------------------------------------------------------------------


def event(key: str, prefix: str) -> ScheduledEvent:
    return ScheduledEvent.from_key(key, prefix)


def name(prefix: str, minute: int, target: str) -> str:
    return keys.encode_key(prefix, T0 + timedelta(minutes=minute), "target", target)


def shard_report(prefix: str, delivered: list[str], *, lateness: float = 0.0) -> HandleReport:
    report = HandleReport.under(prefix)
    for key in delivered:
        report.delivered.append_key(key)
    report.worst_lateness = lateness
    return report


def test_a_run_over_shards_reports_totals_and_each_shard() -> None:
    """The totals add the shards' lists up (bare keys decoded under their own prefix), and
    shards keeps each shard's report."""
    a = shard_report("jobs/0/|", [name("jobs/0/|", 1, "a")], lateness=2.0)
    b = shard_report("jobs/|", [name("jobs/|", 0, "b"), name("jobs/|", 2, "c")], lateness=5.0)
    b.failed.append(FailedDelivery(event(name("jobs/|", 3, "d"), "jobs/|"), RuntimeError("boom")))
    b.skipped.append("jobs/|junk")

    total = HandleReport.merged({"0": a, "unsharded": b})

    assert [e.path for e in total.delivered] == ["a", "b", "c"]
    assert [e.key for e in total.delivered] == [
        name("jobs/0/|", 1, "a"),
        name("jobs/|", 0, "b"),
        name("jobs/|", 2, "c"),
    ]
    assert len(total.failed) == 1
    assert total.skipped == ["jobs/|junk"]
    assert not total.ok
    assert total.worst_lateness == 5.0
    assert total.shards == {"0": a, "unsharded": b}
    assert total.summary() == (
        "delivered=3 failed=1 skipped=1 deferred=0 vanished=0 rejected=0 dead_lettered=0 expired=0"
        " shards=2 (0: delivered=1; unsharded: delivered=2 failed=1 skipped=1)"
    )
    data = total.to_dict()
    assert data["shards"]["0"] == a.to_dict()
    assert [e["path"] for e in data["delivered"]] == ["a", "b", "c"]
    assert repr(total).endswith(", expired=0, shards=2)")


def test_a_single_prefix_report_says_exactly_what_it_always_said() -> None:
    """A report of one prefix has no shards: summary, to_dict and repr are those of before."""
    report = shard_report("jobs/|", [name("jobs/|", 0, "b")])

    assert report.shards is None
    assert report.summary() == (
        "delivered=1 failed=0 skipped=0 deferred=0 vanished=0 rejected=0 dead_lettered=0 expired=0"
    )
    assert list(report.to_dict()) == [
        "delivered",
        "failed",
        "skipped",
        "deferred",
        "vanished",
        "rejected",
        "dead_lettered",
        "expired",
    ]
    assert repr(report) == (
        "HandleReport(delivered=1, failed=0, skipped=0, deferred=0, vanished=0, rejected=0, dead_lettered=0, expired=0)"
    )


def test_a_run_over_no_shard_says_so() -> None:
    """A run over shards that found none reports zero shards, and nothing done."""
    total = HandleReport.merged({})

    assert total.summary().endswith("expired=0 shards=0")
    assert total.to_dict()["shards"] == {}


def test_a_sharded_check_says_the_unsharded_and_outside_events() -> None:
    """A sharded check's ok, summary and to_dict say the events outside the shards."""
    clean = CheckReport(sharded=True, events=3)
    stray = CheckReport(sharded=True, events=2, unsharded=["jobs/|x"], outside_shards=["jobs/9/|y"])

    assert clean.ok
    assert not stray.ok
    assert clean.summary() == "events=3 not_events=0 late=0 offset_keys=0 unsharded=0 outside_shards=0"
    assert stray.to_dict()["unsharded"] == ["jobs/|x"]
    assert stray.to_dict()["outside_shards"] == ["jobs/9/|y"]
    assert CheckReport(events=3).summary() == "events=3 not_events=0 late=0 offset_keys=0"
    assert list(CheckReport().to_dict()) == ["events", "not_events", "late", "offset_keys"]


# Finding shards ----------------------------------------------------------------------


class NoRequests:
    """A client that fails the test on any request (its pool size is not known)."""

    meta = None

    def __getattr__(self, name: str) -> Any:
        pytest.fail(f"a request was made: {name}")


class FakeClient:
    """A client whose delimiter listing answers the given pages, recording the pages read."""

    meta = None

    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages
        self.read = 0
        self.asked: list[dict[str, Any]] = []

    def get_paginator(self, operation: str) -> FakeClient:
        assert operation == "list_objects_v2"
        return self

    def paginate(self, **params: Any) -> Iterator[dict[str, Any]]:
        self.asked.append(params)
        for page in self.pages:
            self.read += 1
            yield page


def page(*names: str) -> dict[str, Any]:
    return {
        "CommonPrefixes": [{"Prefix": n} for n in names if n.endswith("/")],
        "Contents": [{"Key": n} for n in names if not n.endswith("/")],
    }


class FakeShard:
    """A shard whose run is a function of the arguments it is given."""

    def __init__(self, path: str, workers: int, act: Callable[..., HandleReport]) -> None:
        self.path = path
        self.workers = workers
        self.act = act
        self.calls: list[dict[str, Any]] = []

    @property
    def prefix(self) -> str:
        return keys.listing_prefix(self.path)

    def handle(self, **kwargs: Any) -> HandleReport:
        self.calls.append(kwargs)
        return self.act(self, **kwargs)

    def pending(self, *, until: datetime | None = None) -> Iterator[ScheduledEvent]:
        return iter(())

    def dead_letters(self) -> Iterator[ScheduledEvent]:
        return iter(())


def idle(shard: FakeShard, **_: Any) -> HandleReport:
    return HandleReport.under(shard.prefix)


def shard_set(
    client: Any,
    act: Callable[..., HandleReport] = idle,
    *,
    max_workers: int = 32,
    clock: Callable[[], datetime] = lambda: T0,
) -> ShardSet:
    made: dict[str, FakeShard] = {}

    def make(path: str, workers: int) -> FakeShard:
        made[path] = FakeShard(path, workers, act)
        return made[path]

    shards = ShardSet(
        path="jobs",
        count=4,
        bucket="sched",
        client=client,
        resource=None,
        make=make,
        max_workers=max_workers,
        clock=clock,
    )
    shards.made = made  # type: ignore[attr-defined]
    return shards


def test_shards_are_found_by_one_delimiter_listing_whatever_their_number() -> None:
    """One LIST with Delimiter='/' under '{path}/' finds every numbered folder (not only
    0..N-1), passes over the others, and sees the unsharded events."""
    names = ["jobs/.dead-letters/", "jobs/.lease", "jobs/0/", "jobs/007/", "jobs/12/", "jobs/3/", "jobs/x/", "jobs/|a"]
    client = FakeClient([page(*names)])

    found = shard_set(client).find()

    assert found == Found(shards=(0, 3, 12), unsharded=True, dead_letters=True)
    assert client.asked == [{"Bucket": "sched", "Prefix": "jobs/", "Delimiter": "/"}]


def test_finding_stops_at_the_first_name_past_the_shards() -> None:
    """The listing is not read past the first name at or after '{path}/|': a backlog of
    unsharded events costs no further page."""
    client = FakeClient([page("jobs/0/", "jobs/1/"), page("jobs/2/", "jobs/|a"), page("jobs/|b", "jobs/|c")])

    found = shard_set(client).find()

    assert found == Found(shards=(0, 1, 2), unsharded=True, dead_letters=False)
    assert client.read == 2


def test_an_unsharded_name_rolled_up_by_the_delimiter_is_seen() -> None:
    """A name under '{path}/|' holding '/' (hand-written) comes back as a folder: still unsharded."""
    found = shard_set(FakeClient([page("jobs/|2030-01-01|b|dir/")])).find()

    assert found.unsharded


def test_nothing_unsharded_when_the_listing_ends_before_it() -> None:
    """No unsharded event, and the unsharded prefix is not run."""
    shards = shard_set(FakeClient([page("jobs/.lease", "jobs/1/", "jobs/~other")]))

    report = shards.handle(until=None, deadline=None, on_delivery=None, stop=None)

    assert list(report.shards or ()) == ["1"]


# Running shards ----------------------------------------------------------------------


def test_every_place_runs_with_its_share_of_the_copies() -> None:
    """The unsharded prefix and each shard found run, their copies in flight sharing
    max_workers out, and the report keeps each place's own report."""
    shards = shard_set(FakeClient([page("jobs/0/", "jobs/2/", "jobs/5/", "jobs/|a")]), max_workers=32)

    report = shards.handle(until=None, deadline=None, on_delivery=None, stop=None)

    made = shards.made  # type: ignore[attr-defined]
    assert sorted(made) == ["jobs", "jobs/0", "jobs/2", "jobs/5"]
    assert {shard.workers for shard in made.values()} == {8}
    assert list(report.shards or ()) == ["unsharded", "0", "2", "5"]


def test_at_most_shards_at_once_run_at_once() -> None:
    """Past SHARDS_AT_ONCE places, the others wait for a run to end; each has one copy at least."""
    names = [f"jobs/{n}/" for n in range(SHARDS_AT_ONCE + 8)]
    running: list[int] = []
    most = [0]
    lock = threading.Lock()

    def act(shard: FakeShard, **_: Any) -> HandleReport:
        with lock:
            running.append(1)
            most[0] = max(most[0], len(running))
        time.sleep(0.02)
        with lock:
            running.pop()
        return idle(shard)

    shards = shard_set(FakeClient([page(*sorted(names))]), act, max_workers=4)

    report = shards.handle(until=None, deadline=None, on_delivery=None, stop=None)

    assert len(report.shards or ()) == SHARDS_AT_ONCE + 8
    assert 1 < most[0] <= SHARDS_AT_ONCE
    assert {shard.workers for shard in shards.made.values()} == {1}  # type: ignore[attr-defined]


def test_on_delivery_is_called_in_the_calling_thread_one_call_at_a_time() -> None:
    """Each shard's deliveries reach on_delivery in the thread that called handle."""
    seen: list[tuple[str, bool]] = []

    def act(shard: FakeShard, *, on_delivery: Any, **_: Any) -> HandleReport:
        for i in range(5):
            on_delivery(event(name(shard.prefix, i, f"t{i}"), shard.prefix), 0.5)
        return idle(shard)

    shards = shard_set(FakeClient([page("jobs/0/", "jobs/1/", "jobs/2/")]), act)
    caller = threading.current_thread()

    shards.handle(
        until=None,
        deadline=None,
        on_delivery=lambda e, late: seen.append((e.key, threading.current_thread() is caller)),
        stop=None,
    )

    assert len(seen) == 15
    assert all(in_caller for _, in_caller in seen)


def test_an_on_delivery_that_raises_stops_every_shard_and_is_raised() -> None:
    """The callback's error stops the run that called it and the others, then handle raises it."""
    stopped: list[bool] = []

    def act(shard: FakeShard, *, on_delivery: Any, stop: threading.Event, **_: Any) -> HandleReport:
        if shard.path == "jobs/0":
            on_delivery(event(name(shard.prefix, 0, "t"), shard.prefix), 0.0)
        else:
            stopped.append(stop.wait(10))
        return idle(shard)

    def callback(e: ScheduledEvent, lateness: float) -> None:
        raise KeyError("no room")

    shards = shard_set(FakeClient([page("jobs/0/", "jobs/1/", "jobs/2/")]), act)

    with pytest.raises(KeyError, match="no room"):
        shards.handle(until=None, deadline=None, on_delivery=callback, stop=None)
    assert stopped == [True, True]


def test_the_callers_stop_stops_every_shard() -> None:
    """Setting the stop event handed to handle ends every shard's run."""
    stop = threading.Event()
    waited: list[bool] = []

    def act(shard: FakeShard, *, stop: threading.Event, **_: Any) -> HandleReport:
        waited.append(stop.wait(10))
        return idle(shard)

    shards = shard_set(FakeClient([page("jobs/0/", "jobs/1/")]), act)
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()

    shards.handle(until=None, deadline=None, on_delivery=None, stop=stop)

    assert waited == [True, True]
    assert time.monotonic() - started < 5


def test_a_stop_set_before_the_call_is_seen_by_every_run_at_once() -> None:
    """A stop already set is set for every run from its start: no copy may start."""
    stop = threading.Event()
    stop.set()
    seen: list[bool] = []

    def act(shard: FakeShard, *, stop: threading.Event, **_: Any) -> HandleReport:
        seen.append(stop.is_set())
        return idle(shard)

    shard_set(FakeClient([page("jobs/0/", "jobs/1/", "jobs/|a")]), act).handle(
        until=None, deadline=None, on_delivery=None, stop=stop
    )

    assert seen == [True, True, True]


def test_a_shard_that_raises_leaves_the_others_to_finish_then_is_raised() -> None:
    """A run's error (a listing refused) is raised once every other shard has run."""
    finished: list[str] = []

    def act(shard: FakeShard, **_: Any) -> HandleReport:
        if shard.path == "jobs/0":
            raise PermissionError("listing refused")
        time.sleep(0.05)
        finished.append(shard.path)
        return idle(shard)

    shards = shard_set(FakeClient([page("jobs/0/", "jobs/1/", "jobs/2/")]), act)

    with pytest.raises(PermissionError, match="listing refused"):
        shards.handle(until=None, deadline=None, on_delivery=None, stop=None)
    assert sorted(finished) == ["jobs/1", "jobs/2"]


def test_each_shard_gets_what_is_left_of_the_deadline() -> None:
    """The timeout is the whole call's: each run gets the time left by the scheduler's clock
    (none once it has passed), and the same until."""
    until = T0 + timedelta(minutes=1)
    timeouts: list[float | None] = []

    def act(shard: FakeShard, *, timeout: float | None, until: datetime | None, **_: Any) -> HandleReport:
        timeouts.append(timeout)
        assert until == T0 + timedelta(minutes=1)
        return idle(shard)

    shards = shard_set(FakeClient([page("jobs/0/")]), act, clock=lambda: T0 + timedelta(seconds=10))

    for deadline in (T0 + timedelta(seconds=25), T0, None):
        shards.handle(until=until, deadline=deadline, on_delivery=None, stop=None)

    assert timeouts == [15.0, 0.0, None]


def test_handle_shard_is_checked_before_any_request() -> None:
    """handle(shard=) takes a shard's number, 0 to shards - 1, and says so before any request."""
    scheduler = Scheduler("sched", "jobs", s3_client=NoRequests(), shards=4)
    unsharded = Scheduler("sched", "jobs", s3_client=NoRequests())

    with pytest.raises(ValueError, match=r"shard must be an int from 0 to 3 .* not 4"):
        scheduler.handle(shard=4)
    with pytest.raises(ValueError, match=r"shard must be an int from 0 to 3"):
        scheduler.handle(shard=-1)
    with pytest.raises(TypeError, match=r"shard must be an int from 0 to 3"):
        scheduler.handle(shard="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"shard must be an int"):
        scheduler.handle(shard=True)
    with pytest.raises(ValueError, match=r"shard must be an int from 0 to 0"):
        unsharded.handle(shard=1)
    with pytest.raises(ValueError, match="until must be at most"):
        scheduler.handle(until=datetime.now(UTC) + timedelta(hours=1))


def test_a_sharded_schedule_refuses_any_shards_lease_before_any_request() -> None:
    """A sharded scheduler refuses as a target the lease or dead letters of any shard."""
    scheduler = Scheduler("sched", "jobs", s3_client=NoRequests(), shards=4)

    with pytest.raises(ValueError, match="lease, a dead letter"):
        scheduler.schedule(T0, "sched", "jobs/7/.lease", "x")
    with pytest.raises(InvalidKeyError):
        scheduler.cancel("jobs/x/|2030-01-01|b|k")
