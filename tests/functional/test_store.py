"""The store protocol against moto: each conditional request of s3_scheduler._s3, its reply lost after moto
did the work, is recognised by its own rule (the unit tests script every answer; these show moto's)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config

from s3_scheduler import _s3

from ..conftest import S3, honours_if_match_on_delete
from ..faults import Call, Decide, Fault, Injector


def new_client() -> Any:
    """A client of its own under the active mock_aws (the fixture's client stays clean for checks)."""
    return boto3.client("s3", region_name="us-east-1", config=Config(max_pool_connections=4))


def lost(op: str) -> Decide:
    """Lose the reply to the first call of ``op``, after moto did it; botocore retries."""
    chosen: list[Call] = []

    def decide(call: Call) -> Fault | None:
        if not chosen and call.op == op:
            chosen.append(call)
            return Fault.LOST
        return None

    return decide


def statuses(call: Call) -> list[tuple[int | None, bool]]:
    return [(a.status, a.dropped) for a in call.attempts]


def test_put_new_recognises_its_own_write_after_a_lost_reply(s3: S3) -> None:
    """The retry of a conditional PUT is refused by the first attempt's object: by its ETag, it is ours."""
    client = new_client()
    injector = Injector(client)

    with injector.faults(lost("PutObject")):
        put = _s3.put_new(client, s3.schedule_bucket, "k", b"body")

    (call,) = injector.of("PutObject")
    assert statuses(call) == [(200, True), (412, False)]
    assert put.state is _s3.Written.WRITTEN
    assert _s3.same_etag(put.etag, _s3.content_etag(b"body"))
    assert s3.body(s3.schedule_bucket, "k") == b"body"


def test_put_new_never_replaces_an_object_there(s3: S3) -> None:
    """An object already at the name: EXISTS, and its content stays."""
    s3.client.put_object(Bucket=s3.schedule_bucket, Key="k", Body=b"first")

    put = _s3.put_new(s3.client, s3.schedule_bucket, "k", b"second")

    assert put == _s3.Put(_s3.Written.EXISTS)
    assert s3.body(s3.schedule_bucket, "k") == b"first"


def test_delete_if_match_after_a_lost_reply_finds_it_gone_on_the_retry(s3: S3) -> None:
    """The retry of a conditional DELETE finds no object: the first attempt deleted it (GONE_ON_RETRY)."""
    etag = s3.client.put_object(Bucket=s3.schedule_bucket, Key="k", Body=b"x")["ETag"]
    client = new_client()
    injector = Injector(client)

    with injector.faults(lost("DeleteObject")):
        gone = _s3.delete_if_match(client, s3.schedule_bucket, "k", etag)

    (call,) = injector.of("DeleteObject")
    assert statuses(call) == [(204, True), (404, False)]
    assert gone is _s3.Deleted.GONE_ON_RETRY
    assert s3.keys(s3.schedule_bucket) == []


def test_delete_if_match_spares_a_rewritten_object(s3: S3) -> None:
    """The object no longer has the ETag named: CHANGED, and it stays (where the store honours If-Match)."""
    if not honours_if_match_on_delete(s3.client, s3.schedule_bucket):
        pytest.skip("this moto ignores If-Match on DELETE: the condition's effect shows only where it is honoured")
    old = s3.client.put_object(Bucket=s3.schedule_bucket, Key="k", Body=b"old")["ETag"]
    s3.client.put_object(Bucket=s3.schedule_bucket, Key="k", Body=b"new")

    gone = _s3.delete_if_match(s3.client, s3.schedule_bucket, "k", old)

    assert gone is _s3.Deleted.CHANGED
    assert s3.body(s3.schedule_bucket, "k") == b"new"


def test_delete_if_match_of_a_missing_object_is_gone(s3: S3) -> None:
    """Nothing there, first attempt: GONE, nothing deleted by this call."""
    assert _s3.delete_if_match(s3.client, s3.schedule_bucket, "missing", '"0"') is _s3.Deleted.GONE


def test_copy_to_new_name_after_a_lost_reply_copies_once_under_one_name(s3: S3) -> None:
    """A copy whose reply was lost is answered by the retry (moto ignores If-None-Match on CopyObject): one name."""
    etag = s3.client.put_object(Bucket=s3.schedule_bucket, Key="src", Body=b"body")["ETag"]
    client = new_client()
    injector = Injector(client)
    names = iter(["new-1", "new-2"])

    with injector.faults(lost("CopyObject")):
        new = _s3.copy_to_new_name(client, s3.schedule_bucket, "src", etag, lambda: next(names))

    (call,) = injector.of("CopyObject")
    assert call.attempts[0].dropped
    assert new == "new-1"
    assert sorted(s3.keys(s3.schedule_bucket)) == ["new-1", "src"]
    assert s3.body(s3.schedule_bucket, "new-1") == b"body"
