"""Direct copies (`s3_scheduler._direct`) in-process: the client this package builds sends
its deliveries without botocore's per-call machinery, and hands every copy S3 did not
answer as copied to botocore, which sends it again."""

from __future__ import annotations

import contextlib
import itertools
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import quote

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError
from moto.core.botocore_stubber import BotocoreStubber

from s3_scheduler import Scheduler, _s3, delivery, keys, occurrences
from s3_scheduler._direct import Direct
from tests.conftest import S3, T0, Clock

KEYS = ["plain", "a b/é+%~|x", "/lead//x", "emoji 🎉", "dots/../x"]


def _own(s3: S3, clock: Clock, **options: Any) -> tuple[Scheduler, Any, Direct]:
    client = _s3.fast_client(8)
    direct = Direct.of(client)
    assert direct is not None
    options.setdefault("max_workers", 1)
    return Scheduler(s3.schedule_bucket, "jobs", s3_client=client, clock=clock, **options), client, direct


def _is_direct(request: Any) -> bool:
    agent = request.headers.get("User-Agent", b"")
    return (agent.decode() if isinstance(agent, bytes) else str(agent)).startswith("s3-scheduler/")


def _hook(client: Any, answer: Callable[[Any], Any], operation: str = "CopyObject") -> list[Any]:
    """Put ``answer`` before moto's stub for the direct requests of ``operation``; return the requests it saw."""
    seen: list[Any] = []

    def handler(request: Any, **_: Any) -> Any:
        if not _is_direct(request):
            return None
        seen.append(request)
        return answer(request)

    client.meta.events.register_first(f"before-send.s3.{operation}", handler)
    return seen


def _moto(request: Any, operation: str = "CopyObject") -> Any:
    """What moto's in-process stub answers (it does the copy, or the delete)."""
    from moto.core.models import botocore_stubber

    stub: BotocoreStubber = botocore_stubber
    return stub(request=request, event_name=f"before-send.s3.{operation}")


def _reply(request: Any, status: int, body: bytes) -> AWSResponse:
    class Raw:
        def stream(self) -> Any:
            yield body

    return AWSResponse(request.url, status, {"Content-Length": str(len(body))}, Raw())


def test_the_own_client_delivers_directly_what_botocore_would(s3: S3, clock: Clock) -> None:
    scheduler, _, direct = _own(s3, clock)
    for key in KEYS:
        s3.client.put_object(Bucket=s3.schedule_bucket, Key="seed", Body=b"")  # the bucket exists
        scheduler.schedule(T0, s3.target_bucket, key, f"body of {key}")
    s3.client.create_bucket(Bucket="second-target")
    scheduler.schedule(T0, "second-target", "k", "second")
    report = scheduler.handle()
    assert len(report.delivered) == len(KEYS) + 1
    for key in KEYS:
        assert s3.body(s3.target_bucket, key.removeprefix("/")) == f"body of {key}".encode()
    assert s3.body("second-target", "k") == b"second"
    assert (direct.handed_over, direct.sent) == (2, len(KEYS) - 1)  # botocore's first copy to each bucket
    assert [k for k in s3.keys(s3.schedule_bucket) if k.startswith("jobs/|")] == []


@pytest.mark.parametrize("dead_letters", [False, True])
def test_tags_are_copied_or_left_behind_as_through_botocore(s3: S3, clock: Clock, dead_letters: bool) -> None:
    options = {"dead_letter_after": timedelta(hours=1)} if dead_letters else {}
    scheduler, _, direct = _own(s3, clock, **options)
    names = [scheduler.schedule(T0, s3.target_bucket, f"k{i}", "x") for i in range(2)]
    for name in names:
        s3.client.put_object_tagging(
            Bucket=s3.schedule_bucket, Key=name, Tagging={"TagSet": [{"Key": "team", "Value": "a"}]}
        )
    scheduler.handle()
    assert direct.sent == 1
    for i in range(2):  # k0 through botocore, k1 directly: alike
        tags = s3.client.get_object_tagging(Bucket=s3.target_bucket, Key=f"k{i}")["TagSet"]
        assert tags == ([] if dead_letters else [{"Key": "team", "Value": "a"}])


def test_an_event_changed_after_it_was_listed_is_not_delivered(s3: S3, clock: Clock) -> None:
    """The copy is conditional on the listed ETag; AWS refuses it (412) once the event
    changed (moto and Ceph ignore the condition: the refusal is made here, to both the
    direct copy and botocore's)."""
    scheduler, client, direct = _own(s3, clock)
    names = [scheduler.schedule(T0, s3.target_bucket, f"k{i}", "old") for i in range(2)]
    listed = s3.client.head_object(Bucket=s3.schedule_bucket, Key=names[1])["ETag"]
    conditions: list[str] = []

    def refuse(request: Any, **_: Any) -> Any:
        if not request.url.endswith("/k1"):
            return None
        conditions.append(request.headers["x-amz-copy-source-if-match"])
        s3.client.put_object(Bucket=s3.schedule_bucket, Key=names[1], Body=b"new")  # a writer, meanwhile
        return _reply(request, 412, b"<Error><Code>PreconditionFailed</Code></Error>")

    client.meta.events.register_first("before-send.s3.CopyObject", refuse)
    report = scheduler.handle()
    assert [e.path for e in report.delivered] == ["k0"]
    assert [e.key for e in report.deferred] == [names[1]]  # moto's stub copies all the same: not asserted
    assert [c.decode() if isinstance(c, bytes) else c for c in conditions] == [listed, listed]  # direct, then botocore
    assert s3.body(s3.schedule_bucket, names[1]) == b"new"  # pending, for the next run
    assert (direct.sent, direct.handed_over) == (0, 2)


@pytest.mark.parametrize(
    ("fault", "copies"),
    [
        ("500", 1),
        ("200 with an error", 1),
        ("reply lost after the copy", 2),
        ("connection refused", 1),
    ],
)
def test_a_copy_not_answered_as_copied_goes_to_botocore(s3: S3, clock: Clock, fault: str, copies: int) -> None:
    scheduler, client, direct = _own(s3, clock)
    scheduler.schedule(T0, s3.target_bucket, "first", "1")
    scheduler.schedule(T0, s3.target_bucket, "second", "2")
    done: list[str] = []

    def answer(request: Any) -> Any:
        if fault == "500":
            return _reply(request, 500, b"<Error><Code>InternalError</Code></Error>")
        if fault == "200 with an error":
            return _reply(request, 200, b"<?xml?><Error><Code>InternalError</Code></Error>")
        if fault == "connection refused":
            raise ConnectionRefusedError(111, "refused")
        done.append(str(_moto(request).status_code))
        raise ConnectionClosedError(endpoint_url=request.url)

    botocore_copies: list[str] = []
    client.meta.events.register(
        "provide-client-params.s3.CopyObject", lambda params, **_: botocore_copies.append(params["Key"])
    )
    seen = _hook(client, answer)
    report = scheduler.handle()
    assert sorted(e.path for e in report.delivered) == ["first", "second"]
    assert (s3.body(s3.target_bucket, "first"), s3.body(s3.target_bucket, "second")) == (b"1", b"2")
    assert len(seen) == 1
    assert botocore_copies == ["first", "second"]  # the first learns the bucket; the second is the handed-over one
    assert len(done) == copies - 1  # a lost reply: S3 did the copy, and botocore does it again
    assert (direct.sent, direct.handed_over) == (0, 2)


@pytest.mark.parametrize(
    ("status", "code", "refused"),
    [
        (301, "PermanentRedirect", 1),  # the bucket is elsewhere: its copies keep to botocore
        (400, "AuthorizationHeaderMalformed", 1),
        (400, "InvalidArgument", 3),  # one key's fault: the next copies are sent directly again
        (503, "SlowDown", 1),  # S3 is busy: botocore's copies for a while (the clock stands still here)
    ],
)
def test_what_a_refusal_means_for_the_buckets_next_copies(
    s3: S3, clock: Clock, status: int, code: str, refused: int
) -> None:
    scheduler, client, direct = _own(s3, clock)
    waits: list[float] = []
    direct.sleep = waits.append
    direct.clock = lambda: 0.0  # stands still: a cool-down lasts the whole run
    for i in range(4):
        scheduler.schedule(T0, s3.target_bucket, f"k{i}", "x")
    seen = _hook(client, lambda request: _reply(request, status, f"<Error><Code>{code}</Code></Error>".encode()))
    assert len(scheduler.handle().delivered) == 4
    assert len(seen) == refused
    assert (direct.sent, direct.handed_over) == (0, 4)
    assert len(waits) == (1 if status == 503 else 0)  # as botocore's first retry waits
    assert all(0 <= w <= 0.5 for w in waits)


def test_a_cut_off_copy_reply_is_not_taken_as_copied(s3: S3, clock: Clock) -> None:
    scheduler, client, direct = _own(s3, clock)
    for i in range(2):
        scheduler.schedule(T0, s3.target_bucket, f"k{i}", "x")
    _hook(client, lambda request: _reply(request, 200, b"<CopyObjectResult><ETag>&quot;ab"))
    assert len(scheduler.handle().delivered) == 2
    assert (direct.sent, direct.handed_over) == (0, 2)


def test_a_control_character_in_a_header_goes_to_botocore(s3: S3, clock: Clock) -> None:
    """An ETag with CR LF (a broken or hostile store's listing) is never written raw into
    a request: botocore gets the copy, and refuses it as it refuses such a header."""
    _, client, direct = _own(s3, clock)
    client.put_object(Bucket=s3.schedule_bucket, Key="src", Body=b"x")
    direct.copy(s3.target_bucket, "learned", s3.schedule_bucket, "src")
    with contextlib.suppress(ValueError):  # botocore refuses it where its HTTP layer checks headers
        direct.copy(s3.target_bucket, "k", s3.schedule_bucket, "src", if_match='"a"\r\nX-Evil: 1')
    assert (direct.sent, direct.handed_over) == (0, 2)  # not sent directly


def _listing_reply(token: str) -> bytes:
    return (
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>true</IsTruncated>'
        f"<NextContinuationToken>{token}</NextContinuationToken>"
        "<Contents><Key>jobs/x</Key><ETag>e</ETag></Contents></ListBucketResult>"
    ).encode()


def test_a_listing_that_repeats_its_token_raises_as_botocores_paginator(s3: S3, clock: Clock) -> None:
    from botocore.exceptions import PaginationError

    scheduler, client, _ = _own(s3, clock)
    list(scheduler.pending())  # learns the URL
    client.meta.events.register_first(
        "before-send.s3.ListObjectsV2",
        lambda request, **_: _reply(request, 200, _listing_reply("SAME")) if _is_direct(request) else None,
    )
    with pytest.raises(PaginationError, match="same next token"):
        list(scheduler.pending())


def test_a_truncated_listing_with_an_empty_token_ends(s3: S3, clock: Clock) -> None:
    scheduler, client, direct = _own(s3, clock)
    list(scheduler.pending())
    client.meta.events.register_first(
        "before-send.s3.ListObjectsV2",
        lambda request, **_: _reply(request, 200, _listing_reply("")) if _is_direct(request) else None,
    )
    listed = direct.listed
    assert [k for k, _, _ in next(iter(direct.pages(s3.schedule_bucket, "jobs/", None)))[0]] == ["jobs/x"]
    assert list(direct.pages(s3.schedule_bucket, "jobs/", None)) == [([("jobs/x", "e", None)], True)]
    assert direct.listed == listed + 2


def test_a_client_passed_in_sends_every_copy_through_botocore(s3: S3, clock: Clock) -> None:
    scheduler = s3.scheduler(clock=clock)
    for i in range(3):
        scheduler.schedule(T0, s3.target_bucket, f"k{i}", "x")
    assert Direct.of(s3.client) is None
    assert len(scheduler.handle().delivered) == 3
    assert s3.counter.calls["CopyObject"] == 3


def _direct_lists(client: Any) -> list[str]:
    """The direct ListObjectsV2 requests of ``client``, as the URLs they were sent to."""
    seen: list[str] = []

    def count(request: Any, **_: Any) -> None:
        if _is_direct(request):
            seen.append(request.url)

    client.meta.events.register("before-send.s3.ListObjectsV2", count)
    return seen


def test_the_own_client_lists_directly_what_botocore_lists(s3: S3, clock: Clock) -> None:
    scheduler, client, _ = _own(s3, clock)
    reference = s3.scheduler(clock=clock)
    later = T0 + timedelta(days=2)
    s3.seed(reference, [(later + timedelta(seconds=i), s3.target_bucket, f"k{i} é+%|", "x") for i in range(2500)])
    lists = _direct_lists(client)
    assert [e.key for e in scheduler.pending()] == [e.key for e in reference.pending()]
    assert len(lists) == 3  # every page directly, after a LIST of one key through botocore gave the URL
    assert "continuation-token=" in lists[-1]
    assert [e.key for e in scheduler.pending(until=later + timedelta(seconds=1500))] == [
        e.key for e in reference.pending(until=later + timedelta(seconds=1500))
    ]


@pytest.mark.parametrize("status", [500, 403, 301])
def test_a_listing_not_answered_is_listed_through_botocore(s3: S3, clock: Clock, status: int) -> None:
    scheduler, client, direct = _own(s3, clock)
    direct.sleep = lambda _: None
    direct.clock = lambda: 0.0  # stands still: a cool-down lasts the whole test
    s3.seed(scheduler, [(T0 + timedelta(days=1, seconds=i), s3.target_bucket, f"k{i}", "x") for i in range(1200)])
    list(scheduler.pending())  # learns the URL
    refused: list[str] = []

    def refuse(request: Any, **_: Any) -> Any:
        if _is_direct(request):
            refused.append(request.url)
            return _reply(request, status, b"<Error><Code>X</Code></Error>")
        return None

    client.meta.events.register_first("before-send.s3.ListObjectsV2", refuse)
    assert len(list(scheduler.pending())) == 1200
    assert len(list(scheduler.pending())) == 1200
    # after a redirect the bucket's listings keep to botocore; after a 500, for a while (the clock stands still)
    assert len(refused) == (4 if status == 403 else 1)


@pytest.mark.parametrize("refused", [False, True], ids=["direct", "refused-to-botocore"])
def test_markers_are_listed_directly_and_old_orphans_still_go(s3: S3, clock: Clock, refused: bool) -> None:
    """The series markers' LIST of a run goes directly too, with the times S3 gave: a
    marker of no event is kept while younger than ORPHAN_AGE and deleted once older; the
    marker of a pending occurrence stays. botocore sends one LIST of one key (to learn
    the bucket's URL) and no page. Where S3 refuses the direct pages, botocore lists them,
    its times unparsed (this client's botocore parses none): the same outcome."""
    scheduler, client, direct = _own(s3, clock)
    direct.sleep = lambda _: None
    real = datetime.now(timezone.utc).replace(microsecond=0)  # moto's clock gives the markers' LastModified
    series = scheduler.schedule(real + timedelta(hours=3), s3.target_bucket, "daily", "x", repeat="FREQ=DAILY")
    orphan = keys.series_marker(scheduler.prefix, keys.encode_key(scheduler.prefix, real, s3.target_bucket, "gone"))
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=orphan, Body=b"")
    through_botocore: list[str] = []
    client.meta.events.register(
        "before-send.s3.ListObjectsV2",
        lambda request, **_: None if _is_direct(request) else through_botocore.append(request.url),
    )
    if refused:
        _hook(client, lambda request: _reply(request, 403, b"<Error><Code>X</Code></Error>"), "ListObjectsV2")

    def markers() -> list[str]:
        return [k for k in s3.keys(s3.schedule_bucket) if "/.series/" in k]

    for minutes, name in [(1, "young"), (70, "old")]:
        clock.now = real + timedelta(minutes=minutes)
        due = scheduler.schedule(clock.now - timedelta(seconds=1), s3.target_bucket, name, "x")
        assert [e.key for e in scheduler.handle().delivered] == [due]
        expected = [orphan] if minutes < occurrences.ORPHAN_AGE.total_seconds() / 60 else []
        assert sorted(markers()) == sorted([*expected, keys.series_marker(scheduler.prefix, series)])
    assert "max-keys=1" in through_botocore[0]
    if refused:
        assert direct.listed == 0
        assert len(through_botocore) == 5  # the learning LIST, and each run's two pages
    else:
        assert len(through_botocore) == 1
        assert direct.listed >= 4  # each run: a page of events and a page of markers


@pytest.fixture
def one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's deletes go in one batch, sent at its end, however slow the machine (none is
    sent early for having waited `delivery.DELETE_FLUSH_SECONDS`)."""
    monkeypatch.setattr(delivery, "DELETE_FLUSH_SECONDS", 600.0)


def _botocore_deletes(client: Any) -> list[list[str]]:
    """The keys of each DeleteObjects botocore is asked to send from now on."""
    batches: list[list[str]] = []
    client.meta.events.register(
        "provide-client-params.s3.DeleteObjects",
        lambda params, **_: batches.append([o["Key"] for o in params["Delete"]["Objects"]]),
    )
    return batches


def test_a_runs_batch_delete_goes_directly(s3: S3, clock: Clock, one_batch: None) -> None:
    """The delivered events (odd names) and the marker of a delivered occurrence go in one
    DeleteObjects sent directly; botocore sends none, and none of them is left."""
    scheduler, client, direct = _own(s3, clock)
    names = [scheduler.schedule(T0, s3.target_bucket, key, "x") for key in [*KEYS, "x<y>&\"z'&amp;"]]
    occurrence = scheduler.schedule(T0, s3.target_bucket, "daily", "x", repeat="FREQ=DAILY")
    through_botocore = _botocore_deletes(client)
    clock.now = T0 + timedelta(seconds=1)
    report = scheduler.handle()
    assert sorted(e.key for e in report.delivered) == sorted([*names, occurrence])
    assert report.failed == []
    left = s3.keys(s3.schedule_bucket)
    assert not {*names, occurrence, keys.series_marker(scheduler.prefix, occurrence)} & set(left)
    assert [e.when for e in scheduler.pending()] == [T0 + timedelta(days=1)]  # the series goes on
    assert (direct.batches, through_botocore) == (1, [])


@pytest.mark.parametrize(
    ("fault", "deletes"),
    [
        ("500", 1),
        ("403", 1),
        ("200 with an error", 1),
        ("cut off", 1),
        ("reply lost after the delete", 2),
        ("connection refused", 1),
    ],
)
def test_a_batch_delete_not_answered_goes_to_botocore(
    s3: S3, clock: Clock, one_batch: None, fault: str, deletes: int
) -> None:
    """A direct DeleteObjects not answered with a DeleteResult is sent again by botocore:
    every event delivered once and removed, the report clean."""
    scheduler, client, direct = _own(s3, clock)
    waits: list[float] = []
    direct.sleep = waits.append
    names = [scheduler.schedule(T0, s3.target_bucket, f"k{i}", "x") for i in range(3)]
    done: list[int] = []

    def answer(request: Any) -> Any:
        if fault in ("500", "403"):
            return _reply(request, int(fault), b"<Error><Code>X</Code></Error>")
        if fault == "200 with an error":
            return _reply(request, 200, b"<?xml?><Error><Code>InternalError</Code></Error>")
        if fault == "cut off":
            return _reply(request, 200, b"<DeleteResult><Error><Key>k0")
        if fault == "connection refused":
            raise ConnectionRefusedError(111, "refused")
        done.append(_moto(request, "DeleteObjects").status_code)
        raise ConnectionClosedError(endpoint_url=request.url)

    seen = _hook(client, answer, "DeleteObjects")
    through_botocore = _botocore_deletes(client)
    clock.now = T0 + timedelta(seconds=1)
    report = scheduler.handle()
    assert sorted(e.key for e in report.delivered) == sorted(names)
    assert report.failed == []
    assert not set(names) & set(s3.keys(s3.schedule_bucket))
    assert len(seen) == 1
    assert through_botocore == [sorted(names)]
    assert len(done) == deletes - 1  # a lost reply: S3 deleted them, and botocore deletes again
    assert direct.batches == 0
    assert len(waits) == (1 if fault == "500" else 0)


def test_the_keys_a_direct_batch_delete_did_not_delete_stay_pending(s3: S3, clock: Clock, one_batch: None) -> None:
    """S3 answers a DeleteResult with an Error for one key: that event is reported as
    delivered but not removed (failed), and it stays pending; the others go."""
    scheduler, client, direct = _own(s3, clock)
    names = [scheduler.schedule(T0, s3.target_bucket, f"k{i}", "x") for i in range(3)]

    def answer(request: Any) -> Any:
        body = request.body if isinstance(request.body, bytes) else b""
        kept = names[1].encode()
        assert body.count(b"<Object>") == 3
        request.body = body.replace(b"<Key>" + kept + b"</Key>", b"<Key>elsewhere</Key>")  # moto's stub runs next
        error = b"<Error><Key>" + kept + b"</Key><Code>AccessDenied</Code><Message>m</Message></Error>"
        return _reply(request, 200, b'<DeleteResult xmlns="urn:x">' + error + b"</DeleteResult>")

    _hook(client, answer, "DeleteObjects")
    through_botocore = _botocore_deletes(client)
    clock.now = T0 + timedelta(seconds=1)
    report = scheduler.handle()
    assert sorted(e.key for e in report.delivered) == sorted(names)
    assert [f.event.key for f in report.failed] == [names[1]]
    assert [k for k in s3.keys(s3.schedule_bucket) if "|" in k] == [names[1]]
    assert (direct.batches, through_botocore) == (1, [])


def test_a_batch_with_a_key_xml_cannot_carry_goes_to_botocore(s3: S3, clock: Clock, one_batch: None) -> None:
    """This package writes a CR in a name as %0D; a 0.0.3 name holds it raw, which XML would
    read as a LF: that batch goes to botocore."""
    scheduler, client, direct = _own(s3, clock)
    scheduler.schedule(T0, s3.target_bucket, "plain", "x")
    legacy = f"{scheduler.prefix}{quote(str(T0))}|{s3.target_bucket}|carriage\rreturn"
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=legacy, Body=b"x")
    through_botocore = _botocore_deletes(client)
    clock.now = T0 + timedelta(seconds=1)
    assert len(scheduler.handle().delivered) == 2
    assert direct.batches == 0
    assert len(through_botocore) == 1
    assert legacy in through_botocore[0]


def test_a_direct_batch_delete_counts_in_the_clients_latency(
    s3: S3, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's deadline budget reads the slowest request the client sent: a batch delete
    sent directly is one of them, as it was through botocore."""
    scheduler, client, direct = _own(s3, clock)
    name = scheduler.schedule(T0, s3.target_bucket, "k", "x")
    list(direct.pages(s3.schedule_bucket, "jobs/", None))  # the bucket's URL
    latency = _s3.Latency.watch(client)
    ticks = itertools.chain([100.0, 102.5], itertools.repeat(102.5))
    monkeypatch.setattr("s3_scheduler._direct.time.monotonic", lambda: next(ticks))  # the delete's start, end
    assert direct.delete(s3.schedule_bucket, [(name, None)]) == []
    monkeypatch.undo()
    assert latency.worst == 2.5
    assert not [k for k in s3.keys(s3.schedule_bucket) if "|" in k]


def test_a_batch_naming_a_version_goes_to_botocore(s3: S3, clock: Clock) -> None:
    """The direct body names keys and ETags only: a batch with any other field (a version)
    is botocore's, which writes it."""
    _, client, direct = _own(s3, clock)
    s3.client.put_bucket_versioning(Bucket=s3.schedule_bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.client.put_object(Bucket=s3.schedule_bucket, Key="jobs/v", Body=b"1")["VersionId"]
    s3.client.put_object(Bucket=s3.schedule_bucket, Key="jobs/v", Body=b"2")
    list(direct.pages(s3.schedule_bucket, "jobs/", None))
    through_botocore = _botocore_deletes(client)
    _s3.delete_batch(client, s3.schedule_bucket, [{"Key": "jobs/v", "VersionId": first}])
    assert through_botocore == [["jobs/v"]]
    assert direct.batches == 0
    assert s3.body(s3.schedule_bucket, "jobs/v") == b"2"  # the version named went, the current one stays
    versions = s3.client.list_object_versions(Bucket=s3.schedule_bucket, Prefix="jobs/v")["Versions"]
    assert first not in [v["VersionId"] for v in versions]
