"""Shards against moto in-process: the layout, handling every shard or one, a change of the
number of shards, and every operation across shards (#19)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import s3_scheduler.scheduler as scheduler_module
from s3_scheduler import InvalidKeyError, RunInProgressError, keys

from ..conftest import S3, T0, Clock

UTC = timezone.utc
TARGETS = [f"in/{i}/report.json" for i in range(40)]


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def shard_key(path: str, shards: int, when: datetime, bucket: str, target: str) -> str:
    """The name an event takes in a scheduler at ``path`` with ``shards`` shards, by the issue's rule."""
    number = keys.shard_of(bucket, target, shards)
    prefix = keys.listing_prefix(path) if shards == 1 else keys.listing_prefix(f"{path}/{number}")
    return keys.encode_key(prefix, when, bucket, target)


def seed(s3: S3, shards: int, events: Iterable[tuple[datetime, str, str]], *, path: str = "jobs") -> list[str]:
    """Write events as a scheduler with ``shards`` shards names them, straight into moto's store (no request)."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    names = []
    for when, bucket, target in events:
        names.append(shard_key(path, shards, when, bucket, target))
        backend.put_object(s3.schedule_bucket, names[-1], f"content of {target}".encode())
    return names


def label(key: str) -> str:
    """The shard of the event ``key`` of the scheduler at 'jobs', or 'unsharded'."""
    return key.split("/|", 1)[0][len("jobs/") :] or "unsharded"


class Requests:
    """Records the parameters of each request of some operations a client sends."""

    def __init__(self, client: Any, *operations: str) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        for operation in operations:
            client.meta.events.register(f"before-parameter-build.s3.{operation}", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.sent.append((model.name, dict(params)))

    def keys(self, operation: str) -> list[str]:
        return [params["Key"] for name, params in self.sent if name == operation]

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.sent if name == operation]


# The layout -----------------------------------------------------------------------------


def test_four_shards_put_each_event_under_its_targets_shard(s3: S3, clock: Clock) -> None:
    """With shards=4 each event is '{path}/{shard_of}/|' and then the very name shards=1 gives."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    unsharded = s3.scheduler(clock=clock)

    written = [scheduler.schedule(T0 + seconds(i), s3.target_bucket, target, "x") for i, target in enumerate(TARGETS)]

    for i, (key, target) in enumerate(zip(written, TARGETS)):
        number = keys.shard_of(s3.target_bucket, target, 4)
        plain = keys.encode_key(unsharded.prefix, T0 + seconds(i), s3.target_bucket, target)
        assert key == f"jobs/{number}/|" + plain[len("jobs/|") :]
    assert {key.split("/")[1] for key in written} == {"0", "1", "2", "3"}
    assert sorted(s3.keys(s3.schedule_bucket)) == sorted(written)
    assert scheduler.shards == 4
    assert unsharded.shards == 1


def test_every_event_of_one_target_is_in_one_shard(s3: S3, clock: Clock) -> None:
    """Events of one target at different times, with or without a leading '/', share a shard."""
    scheduler = s3.scheduler(clock=clock, shards=8)

    written = [scheduler.schedule(T0 + seconds(i), s3.target_bucket, "/a/b" if i % 2 else "a/b", "x") for i in range(6)]

    assert len({key.split("/|")[0] for key in written}) == 1


def test_a_shard_is_delivered_by_a_scheduler_at_its_path_unchanged(s3: S3, clock: Clock) -> None:
    """Scheduler(bucket, '{path}/{s}') (as 0.0.3's would) sees and delivers exactly shard s."""
    sharded = s3.scheduler(clock=clock, shards=4)
    written = sharded.schedule_many([(T0 - seconds(5), s3.target_bucket, target, target) for target in TARGETS])
    in_two = sorted(key for key in written if key.startswith("jobs/2/|"))

    shard_two = s3.scheduler("jobs/2", clock=clock)
    pending = [event.key for event in shard_two.pending()]
    report = shard_two.handle()

    assert pending == in_two
    assert sorted(event.key for event in report.delivered) == in_two
    assert len(s3.keys(s3.target_bucket)) == len(in_two)
    assert all(not key.startswith("jobs/2/") for key in s3.keys(s3.schedule_bucket))


def test_one_shard_never_looks_for_shards(s3: S3, clock: Clock) -> None:
    """shards=1 lists '{path}/|' alone, never with a Delimiter: another scheduler's '{path}/0/' is left alone,
    and an idle run costs one LIST as before."""
    other = s3.scheduler("jobs/0", clock=clock)
    other.schedule(T0 - seconds(5), s3.target_bucket, "theirs", "x")
    scheduler = s3.scheduler(clock=clock)
    listings = Requests(s3.client, "ListObjectsV2")
    s3.counter.calls.clear()

    idle = scheduler.handle()
    pending = list(scheduler.pending())
    found = scheduler.check()

    assert idle.delivered == []
    assert idle.shards is None
    assert pending == []
    assert found.events == 0
    assert "unsharded" not in found.to_dict()
    assert dict(s3.counter.calls) == {"ListObjectsV2": 3}
    assert all("Delimiter" not in params and params["Prefix"] == "jobs/|" for params in listings.of("ListObjectsV2"))


def test_one_shard_schedules_and_delivers_with_the_same_requests(s3: S3, clock: Clock) -> None:
    """shards=1 given explicitly writes the same names with the same requests as leaving it out."""
    runs = []
    for path, options in (("a", {}), ("b", {"shards": 1})):
        scheduler = s3.scheduler(path, clock=clock, **options)
        s3.counter.calls.clear()
        names = scheduler.schedule_many([(T0 + timedelta(hours=1), s3.target_bucket, t, "x") for t in TARGETS[:5]])
        names.append(scheduler.schedule(T0 - seconds(2), s3.target_bucket, "one", "x"))
        report = scheduler.handle()
        list(scheduler.pending())
        scheduler.check()
        runs.append((dict(s3.counter.calls), [name[len(path) :] for name in names], report.summary()))

    assert runs[0] == runs[1]


# Handling --------------------------------------------------------------------------------


def test_handle_delivers_every_shard_and_the_unsharded_prefix(s3: S3, clock: Clock) -> None:
    """handle() over 4 shards delivers every due event of every shard and of '{path}/|',
    reporting the totals and each shard's own report; future events stay."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    due = seed(s3, 4, [(T0 - seconds(i), s3.target_bucket, target) for i, target in enumerate(TARGETS)])
    old = seed(s3, 1, [(T0 - seconds(60), s3.target_bucket, "legacy/one")])
    later = seed(s3, 4, [(T0 + timedelta(hours=1), s3.target_bucket, "later")])

    report = scheduler.handle()

    assert sorted(event.key for event in report.delivered) == sorted(due + old)
    assert sorted(s3.keys(s3.target_bucket)) == sorted([*TARGETS, "legacy/one"])
    assert s3.body(s3.target_bucket, TARGETS[3]) == f"content of {TARGETS[3]}".encode()
    assert s3.keys(s3.schedule_bucket) == later
    assert report.ok
    assert report.shards is not None
    assert list(report.shards) == ["unsharded", "0", "1", "2", "3"]
    for label, shard in report.shards.items():
        prefix = "jobs/|" if label == "unsharded" else f"jobs/{label}/|"
        assert shard.delivered
        assert all(event.key.startswith(prefix) for event in shard.delivered)
    assert sum(len(shard.delivered) for shard in report.shards.values()) == len(report.delivered) == 41
    assert report.worst_lateness == 60.0
    assert report.summary().startswith("delivered=41 failed=0 skipped=0")
    assert " shards=5 (unsharded: delivered=1; 0: delivered=" in report.summary()
    assert set(report.to_dict()["shards"]) == {"unsharded", "0", "1", "2", "3"}


def test_handle_shard_k_delivers_shard_k_alone_under_its_lease(s3: S3, clock: Clock) -> None:
    """handle(shard=k) lists and delivers shard k only, holding '{path}/{k}/.lease'."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    written = seed(s3, 4, [(T0 - seconds(1), s3.target_bucket, target) for target in TARGETS])
    seed(s3, 1, [(T0 - seconds(60), s3.target_bucket, "legacy/one")])
    requests = Requests(s3.client, "PutObject", "ListObjectsV2")

    report = scheduler.handle(shard=1)

    in_one = sorted(key for key in written if key.startswith("jobs/1/|"))
    assert sorted(event.key for event in report.delivered) == in_one
    assert report.shards is None
    assert set(requests.keys("PutObject")) == {"jobs/1/.lease"}
    assert [params["Prefix"] for params in requests.of("ListObjectsV2")] == ["jobs/1/|", "jobs/1/.series/"]
    assert len(s3.keys(s3.schedule_bucket)) == len(written) + 1 - len(in_one)


def test_no_shard_delivers_to_another_shards_lease_dead_letters_or_markers(s3: S3, clock: Clock) -> None:
    """Names forged in the unsharded prefix and in shard 0 (as a 0.0.3 writer or a scheduler
    of one prefix could write them), aimed at shard 1's lease, shard 2's dead letters and
    shard 3's series markers: a sharded handler rejects them all, every shard at once or
    one shard alone, and writes none of those names."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    aims = ["jobs/1/.lease", "jobs/2/.dead-letters/x", "jobs/3/.series/y"]
    forged = [
        keys.encode_key(keys.listing_prefix(path), T0 - seconds(1), s3.schedule_bucket, aim)
        for path in ("jobs", "jobs/0")
        for aim in aims
    ]
    for name in forged:
        s3.client.put_object(Bucket=s3.schedule_bucket, Key=name, Body=b"x")

    alone = scheduler.handle(shard=0)
    every = scheduler.handle()

    assert sorted(event.key for event in alone.rejected) == sorted(n for n in forged if n.startswith("jobs/0/"))
    assert sorted(event.key for event in every.rejected) == sorted(forged)
    assert every.delivered == []
    assert alone.delivered == []
    assert not set(aims) & set(s3.keys(s3.schedule_bucket))


def test_each_shard_is_delivered_under_its_own_lease(s3: S3, clock: Clock) -> None:
    """handle() takes one lease per place with due events: '{path}/.lease' and '{path}/{s}/.lease'."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    seed(s3, 4, [(T0 - seconds(1), s3.target_bucket, target) for target in TARGETS])
    seed(s3, 1, [(T0 - seconds(1), s3.target_bucket, "legacy/one")])
    requests = Requests(s3.client, "PutObject")

    scheduler.handle()

    assert sorted(set(requests.keys("PutObject"))) == [
        "jobs/.lease",
        "jobs/0/.lease",
        "jobs/1/.lease",
        "jobs/2/.lease",
        "jobs/3/.lease",
    ]
    assert s3.keys(s3.schedule_bucket) == []


def test_a_shard_whose_lease_is_held_waits_and_the_others_go(s3: S3, clock: Clock) -> None:
    """A lease held in one shard holds up that shard alone: its events are deferred, the others delivered."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    written = seed(s3, 4, [(T0 - seconds(1), s3.target_bucket, target) for target in TARGETS])
    holder = s3.scheduler("jobs/2", clock=clock)
    held = holder._lease.acquire(T0 + timedelta(minutes=1))
    assert held.run is not None

    report = scheduler.handle()

    in_two = sorted(key for key in written if key.startswith("jobs/2/|"))
    assert sorted(event.key for event in report.deferred) == in_two
    assert len(report.delivered) == len(written) - len(in_two)
    assert report.shards is not None
    assert report.shards["2"].delivered == []
    held.run.release()


def test_on_delivery_across_shards_is_called_in_the_calling_thread(s3: S3, clock: Clock) -> None:
    """on_delivery sees each delivery of every shard, in the thread that called handle."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    seed(s3, 4, [(T0 - seconds(1), s3.target_bucket, target) for target in TARGETS])
    seen: list[tuple[str, bool]] = []
    caller = threading.current_thread()

    report = scheduler.handle(on_delivery=lambda e, late: seen.append((e.path, threading.current_thread() is caller)))

    assert sorted(path for path, _ in seen) == sorted(TARGETS)
    assert all(in_caller for _, in_caller in seen)
    assert len(report.delivered) == len(TARGETS)


def test_until_holds_for_every_shard_at_once(s3: S3) -> None:
    """handle(until=) waits for the events of every shard side by side: an event of shard 3
    is delivered on its time while shard 0's run waits 2 s for its own later event (run one
    after the other, shard 3's would be 1.9 s late; this test waits 2.2 s for real)."""
    scheduler = s3.scheduler(shards=4)
    now = scheduler.now()
    zero = [t for t in TARGETS if keys.shard_of(s3.target_bucket, t, 4) == 0][:2]
    three = next(t for t in TARGETS if keys.shard_of(s3.target_bucket, t, 4) == 3)
    seed(
        s3,
        4,
        [
            (now + seconds(0.2), s3.target_bucket, zero[0]),
            (now + seconds(2.2), s3.target_bucket, zero[1]),
            (now + seconds(0.3), s3.target_bucket, three),
        ],
    )

    report = scheduler.handle(until=now + seconds(2.5))

    assert sorted(event.path for event in report.delivered) == sorted([*zero, three])
    assert report.shards is not None
    assert [event.path for event in report.shards["3"].delivered] == [three]
    assert report.shards["3"].worst_lateness < 1.5


def test_the_timeout_bounds_the_whole_call(s3: S3, clock: Clock) -> None:
    """timeout=0 over shards starts no delivery: every due event is deferred, none delivered."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    written = seed(s3, 4, [(T0 - seconds(1), s3.target_bucket, target) for target in TARGETS[:8]])

    report = scheduler.handle(timeout=0)

    assert report.delivered == []
    assert sorted(s3.keys(s3.schedule_bucket)) == sorted(written)


def test_a_stop_already_set_delivers_nothing_in_any_shard(s3: S3, clock: Clock) -> None:
    """A set stop event stops every shard before its first copy."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    written = seed(s3, 4, [(T0 - seconds(1), s3.target_bucket, target) for target in TARGETS[:8]])
    stop = threading.Event()
    stop.set()

    report = scheduler.handle(stop=stop)

    assert report.delivered == []
    assert sorted(s3.keys(s3.schedule_bucket)) == sorted(written)


# Changing the number of shards -----------------------------------------------------------


def test_from_1_to_8_shards_a_handler_with_8_delivers_the_events_written_before(s3: S3, clock: Clock) -> None:
    """Events pending under '{path}/|' when the writers move to 8 shards are delivered by the
    8-shard handler, beside the new ones, each at its time."""
    before = {
        s3.scheduler(clock=clock).schedule(T0 + seconds(i), s3.target_bucket, t, t) for i, t in enumerate(TARGETS[:20])
    }
    writer = s3.scheduler(clock=clock, shards=8)
    after = {writer.schedule(T0 + seconds(i), s3.target_bucket, t, t) for i, t in enumerate(TARGETS[20:])}

    clock.advance(9.5)
    first = writer.handle()
    clock.advance(30)
    second = writer.handle()

    assert sorted(e.key for e in first.delivered) == sorted(k for k in before | after if decoded(k) <= T0 + seconds(9))
    assert sorted(e.key for e in [*first.delivered, *second.delivered]) == sorted(before | after)
    assert s3.keys(s3.schedule_bucket) == []


def decoded(key: str) -> datetime:
    return keys.decode_key(key, key.split("/|", 1)[0] + "/|").when


def test_from_1_to_8_then_8_to_3_shards_strands_and_loses_nothing(s3: S3, clock: Clock) -> None:
    """Events written with 1 shard, then 8, then 3, due and not yet due, are all delivered by a
    handler with 3 shards: it finds the unsharded prefix and shards 3 to 7 by listing."""
    written = {}
    for shards, targets in ((1, TARGETS[:10]), (8, TARGETS[10:25]), (3, TARGETS[25:])):
        writer = s3.scheduler(clock=clock, shards=shards)
        for i, target in enumerate(targets):
            written[writer.schedule(T0 + seconds(10 * (i % 3)), s3.target_bucket, target, target)] = target
    handler = s3.scheduler(clock=clock, shards=3)

    before = list(handler.pending())
    checked = handler.check()
    first = handler.handle()
    clock.advance(30)
    second = handler.handle()

    assert sorted(event.key for event in before) == sorted(written)
    assert len(checked.unsharded) == 10
    assert sorted(checked.outside_shards) == sorted(k for k in written if label(k) in {"3", "4", "5", "6", "7"})
    assert not checked.ok
    assert sorted(e.key for e in [*first.delivered, *second.delivered]) == sorted(written)
    assert s3.keys(s3.schedule_bucket) == []
    assert sorted(s3.keys(s3.target_bucket)) == sorted(TARGETS)
    assert all(s3.body(s3.target_bucket, target) == target.encode() for target in TARGETS)
    assert handler.check().ok


def test_back_from_8_shards_to_1_by_a_sharded_handler(s3: S3, clock: Clock) -> None:
    """Going back to one shard: a handler with any N > 1 delivers the shards until empty,
    while a handler with shards=1 never touches them."""
    seed(s3, 8, [(T0 - seconds(1), s3.target_bucket, target) for target in TARGETS])
    unsharded = s3.scheduler(clock=clock)

    assert unsharded.handle().delivered == []
    report = s3.scheduler(clock=clock, shards=2).handle()

    assert len(report.delivered) == len(TARGETS)
    assert s3.keys(s3.schedule_bucket) == []


# Inspecting ------------------------------------------------------------------------------


def test_pending_merges_every_shard_in_time_order(s3: S3, clock: Clock) -> None:
    """pending() yields the events of every shard and of the unsharded prefix in time order."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    times = [T0 + seconds(7 * i % 41) for i in range(len(TARGETS))]
    seed(s3, 4, [(when, s3.target_bucket, target) for when, target in zip(times, TARGETS)])
    seed(s3, 1, [(T0 + seconds(20.5), s3.target_bucket, "legacy/one")])

    events = list(scheduler.pending())
    soon = list(scheduler.pending(until=T0 + seconds(10)))

    assert [event.when for event in events] == sorted([*times, T0 + seconds(20.5)])
    assert len(events) == len(TARGETS) + 1
    assert {event.key.split("|")[0] for event in events} == {"jobs/", "jobs/0/", "jobs/1/", "jobs/2/", "jobs/3/"}
    assert [event.when for event in soon] == sorted(t for t in times if t <= T0 + seconds(10))


def test_pending_reads_one_page_per_shard_at_a_time(s3: S3, clock: Clock) -> None:
    """pending() over 3 shards of 1,500 events each reads the first page of each shard, and
    one listing of '{path}/', for its first events; the rest page by page as it goes."""
    scheduler = s3.scheduler(clock=clock, shards=3)
    targets = [f"bulk/{i}" for i in range(4500)]
    seed(s3, 3, [(T0 + seconds(i), s3.target_bucket, target) for i, target in enumerate(targets)])
    counts = {n: sum(keys.shard_of(s3.target_bucket, t, 3) == n for t in targets) for n in range(3)}
    s3.counter.calls.clear()

    events = scheduler.pending()
    assert s3.counter.lists == 0
    first = list(itertools.islice(events, 10))
    assert s3.counter.lists == 1 + 3
    rest = list(events)

    assert [event.when for event in [*first, *rest]] == [T0 + seconds(i) for i in range(4500)]
    assert s3.counter.lists == 1 + sum((n + 999) // 1000 for n in counts.values())


def test_dead_letters_of_every_shard(s3: S3, clock: Clock) -> None:
    """dead_letters() yields the dead letters of every shard and of the unsharded scheduler, in time order."""
    scheduler = s3.scheduler(clock=clock, shards=4, dead_letter_after=timedelta(0), dead_letter_attempts=1)
    seed(s3, 4, [(T0 - seconds(i), "no-such-bucket", target) for i, target in enumerate(TARGETS[:12])])
    seed(s3, 1, [(T0 - seconds(100), "no-such-bucket", "legacy/one")])

    report = scheduler.handle()
    letters = list(scheduler.dead_letters())

    assert len(report.dead_lettered) == 13
    assert [letter.path for letter in letters] == ["legacy/one", *reversed(TARGETS[:12])]
    places = {letter.key.split(".dead-letters/")[0] for letter in letters}
    assert places == {"jobs/", "jobs/0/", "jobs/1/", "jobs/2/", "jobs/3/"}
    assert list(scheduler.pending()) == []


def test_check_reports_unsharded_and_outside_events_by_key(s3: S3, clock: Clock) -> None:
    """check() of 4 shards lists the events under '{path}/|' and in shards 4 and up, by key,
    beside what it always reports; ok, summary and to_dict say them."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    inside = seed(s3, 4, [(T0, s3.target_bucket, target) for target in TARGETS[:8]])
    unsharded = seed(s3, 1, [(T0, s3.target_bucket, "legacy/one")])
    outside = [key for key in seed(s3, 8, [(T0, s3.target_bucket, t) for t in TARGETS[8:30]]) if int(label(key)) >= 4]
    s3.client.put_object(Bucket=s3.schedule_bucket, Key="jobs/2/|not-a-time|b|k", Body=b"")

    found = scheduler.check()

    assert found.unsharded == unsharded
    assert sorted(found.outside_shards) == sorted(outside)
    assert found.events == len(inside) + 1 + 22
    assert [key for key, _ in found.not_events] == ["jobs/2/|not-a-time|b|k"]
    assert not found.ok
    assert found.summary().endswith(f" unsharded=1 outside_shards={len(outside)}")
    assert found.to_dict()["outside_shards"] == found.outside_shards


# Changing events -------------------------------------------------------------------------


def test_stop_and_cancel_take_a_key_of_any_shard(s3: S3, clock: Clock) -> None:
    """stop and cancel remove an event of any shard, of a shard outside 0..N-1, or of the unsharded prefix."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    mine = scheduler.schedule(T0 + timedelta(hours=1), s3.target_bucket, TARGETS[0], "x")
    outside = next(k for k in seed(s3, 8, [(T0, s3.target_bucket, t) for t in TARGETS]) if int(label(k)) >= 4)
    legacy = seed(s3, 1, [(T0, s3.target_bucket, "legacy/one")])[0]
    other = s3.scheduler("elsewhere", clock=clock).schedule(T0, s3.target_bucket, "x", "x")

    assert scheduler.stop(mine) is True
    assert scheduler.cancel(outside) is True
    assert scheduler.cancel(legacy) is True
    assert scheduler.cancel(legacy) is False
    with pytest.raises(InvalidKeyError):
        scheduler.cancel(other)
    remaining = set(s3.keys(s3.schedule_bucket))
    assert not remaining & {mine, outside, legacy}
    assert other in remaining


def test_reschedule_moves_an_event_into_the_shard_its_target_hashes_to(s3: S3, clock: Clock) -> None:
    """reschedule takes a key of the unsharded prefix or of any shard and writes the new event in
    the target's shard under the scheduler's N; content and content type kept."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    legacy = s3.scheduler(clock=clock).schedule(
        T0 + timedelta(hours=2), s3.target_bucket, "legacy/one", "old", content_type="text/plain"
    )
    wider = s3.scheduler(clock=clock, shards=8)
    outside_target = next(t for t in TARGETS if keys.shard_of(s3.target_bucket, t, 8) >= 4)
    outside = wider.schedule(T0 + timedelta(hours=2), s3.target_bucket, outside_target, "wide")

    moved = scheduler.reschedule(legacy, T0 + timedelta(hours=3))
    moved_too = scheduler.reschedule(outside, timedelta(hours=4))

    assert moved == shard_key("jobs", 4, T0 + timedelta(hours=3), s3.target_bucket, "legacy/one")
    assert moved_too == shard_key("jobs", 4, T0 + timedelta(hours=4), s3.target_bucket, outside_target)
    assert sorted(s3.keys(s3.schedule_bucket)) == sorted([moved, moved_too])
    assert s3.body(s3.schedule_bucket, moved) == b"old"
    assert s3.client.head_object(Bucket=s3.schedule_bucket, Key=moved)["ContentType"] == "text/plain"


def test_reschedule_of_a_due_event_holds_the_lease_of_its_shard(s3: S3, clock: Clock) -> None:
    """Moving an event a run may be delivering holds the lease of the shard it is moved from."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    key = scheduler.schedule(T0 + seconds(30), s3.target_bucket, TARGETS[0], "x")
    number = keys.shard_of(s3.target_bucket, TARGETS[0], 4)
    requests = Requests(s3.client, "PutObject")

    scheduler.reschedule(key, T0 + seconds(60))

    assert requests.keys("PutObject")[0] == f"jobs/{number}/.lease"


def test_a_reschedule_while_a_shards_run_holds_its_lease_changes_nothing(s3: S3, clock: Clock) -> None:
    """While a run holds a shard's lease, an event of that shard due soon cannot be moved."""
    scheduler = s3.scheduler(clock=clock, shards=4, sleep=clock.advance, lease_ttl=timedelta(seconds=10))
    key = scheduler.schedule(T0 + seconds(30), s3.target_bucket, TARGETS[0], "x")
    number = keys.shard_of(s3.target_bucket, TARGETS[0], 4)
    held = s3.scheduler(f"jobs/{number}", clock=clock)._lease.acquire(T0 + timedelta(minutes=1))
    assert held.run is not None

    with pytest.raises(RunInProgressError):
        scheduler.reschedule(key, T0 + seconds(60))

    assert s3.keys(s3.schedule_bucket) == sorted([key, f"jobs/{number}/.lease"])


# Scheduling many -------------------------------------------------------------------------


def test_schedule_many_writes_each_shard_together_through_one_pool(
    s3: S3, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """schedule_many over 4 shards returns the keys in order, each in its target's shard, and
    writes them through one pool, one shard's writes after the other's."""
    pools: list[int] = []
    original = ThreadPoolExecutor

    def pool(*args: Any, **kwargs: Any) -> Any:
        pools.append(kwargs.get("max_workers", 0))
        return original(*args, **kwargs)

    monkeypatch.setattr(scheduler_module, "ThreadPoolExecutor", pool)
    scheduler = s3.scheduler(clock=clock, shards=4, max_workers=1)
    requests = Requests(s3.client, "PutObject")

    written = scheduler.schedule_many([(T0 + seconds(i), s3.target_bucket, t, t) for i, t in enumerate(TARGETS)])

    assert written == [shard_key("jobs", 4, T0 + seconds(i), s3.target_bucket, t) for i, t in enumerate(TARGETS)]
    assert pools == [1]
    order = [key.split("/")[1] for key in requests.keys("PutObject")]
    assert order == sorted(order)
    assert len(set(order)) == 4


def test_schedule_many_refuses_a_bad_event_before_any_request(s3: S3, clock: Clock) -> None:
    """A sharded batch is checked whole before any write, as an unsharded one is."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    s3.counter.calls.clear()

    with pytest.raises(ValueError, match="event 1 of the batch"):
        scheduler.schedule_many([(T0, s3.target_bucket, "a", "x"), (T0, "Bad Bucket", "b", "x")])

    assert s3.counter.total == 0


def test_handle_over_shards_reads_each_shard_once_when_idle(s3: S3, clock: Clock) -> None:
    """An idle sharded run costs one listing of '{path}/' and one LIST per shard holding anything."""
    scheduler = s3.scheduler(clock=clock, shards=4)
    seed(s3, 4, [(T0 + timedelta(days=2), s3.target_bucket, t) for t in TARGETS[:2]])
    shards_holding = {keys.shard_of(s3.target_bucket, t, 4) for t in TARGETS[:2]}
    s3.counter.calls.clear()

    report = scheduler.handle()

    assert report.delivered == []
    assert dict(s3.counter.calls) == {"ListObjectsV2": 1 + len(shards_holding)}
