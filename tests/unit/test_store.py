"""The store protocol's answers (s3_scheduler._s3): each conditional request and its rule for a lost reply,
against a scripted stand-in for a client, so every answer a store may give is shown."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3_scheduler import _s3

BODY = b'{"id": 7}'
BODY_ETAG = _s3.content_etag(BODY)


def refused(code: str, *, retried: bool = False, op: str = "PutObject") -> ClientError:
    """The error a store answers with ``code``; ``retried``: after botocore sent the request again."""
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"RetryAttempts": 1 if retried else 0}}, op)


class Client:
    """Answers each call of an operation with the next of its scripted answers (an exception is raised)."""

    def __init__(self, **answers: list[Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _answer(self, op: str, params: dict[str, Any]) -> Any:
        self.calls.append((op, params))
        answer = self.answers[op].pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def put_object(self, **params: Any) -> Any:
        return self._answer("put_object", params)

    def copy_object(self, **params: Any) -> Any:
        return self._answer("copy_object", params)

    def delete_object(self, **params: Any) -> Any:
        return self._answer("delete_object", params)

    def head_object(self, **params: Any) -> Any:
        return self._answer("head_object", params)

    def head_bucket(self, **params: Any) -> Any:
        return self._answer("head_bucket", params)


# put_new -------------------------------------------------------------------------------


def test_put_new_writes_only_where_no_object_is() -> None:
    """The write carries If-None-Match: * and answers WRITTEN with the ETag the store gave."""
    client = Client(put_object=[{"ETag": '"new"'}])

    put = _s3.put_new(client, "b", "k", BODY, ContentType="text/plain")

    assert put == _s3.Put(_s3.Written.WRITTEN, '"new"')
    assert client.calls == [
        ("put_object", {"Bucket": "b", "Key": "k", "Body": BODY, "IfNoneMatch": "*", "ContentType": "text/plain"})
    ]


def test_put_new_refused_at_once_found_an_event_there() -> None:
    """A first attempt refused means another object is there: EXISTS, and nothing written."""
    client = Client(put_object=[refused("PreconditionFailed")], head_object=[{"ETag": BODY_ETAG}])

    assert _s3.put_new(client, "b", "k", BODY) == _s3.Put(_s3.Written.EXISTS)


def test_put_new_refused_on_a_retry_by_its_own_body_was_written_by_the_lost_attempt() -> None:
    """A retry refused by an object holding this body's ETag is the earlier attempt's write: WRITTEN."""
    client = Client(put_object=[refused("PreconditionFailed", retried=True)], head_object=[{"ETag": BODY_ETAG}])

    assert _s3.put_new(client, "b", "k", BODY) == _s3.Put(_s3.Written.WRITTEN, BODY_ETAG)


def test_put_new_refused_on_a_retry_by_other_content_found_an_event_there() -> None:
    """A retry refused by other content (or by nothing any more) is another writer's: EXISTS."""
    client = Client(
        put_object=[refused("PreconditionFailed", retried=True), refused("409", retried=True)],
        head_object=[{"ETag": '"other"'}, refused("404")],
        head_bucket=[{}],
    )

    assert _s3.put_new(client, "b", "k", BODY).state is _s3.Written.EXISTS
    assert _s3.put_new(client, "b", "k", BODY).state is _s3.Written.EXISTS


def test_put_new_lets_other_errors_through() -> None:
    """Access denied is not an answer of the protocol: it propagates."""
    client = Client(put_object=[refused("AccessDenied")])

    with pytest.raises(ClientError, match="AccessDenied"):
        _s3.put_new(client, "b", "k", BODY)


# delete_if_match -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "deleted"),
    [
        ({}, _s3.Deleted.DELETED),
        (refused("NoSuchKey", op="DeleteObject"), _s3.Deleted.GONE),
        (refused("NoSuchKey", retried=True, op="DeleteObject"), _s3.Deleted.GONE_ON_RETRY),
        (refused("PreconditionFailed", op="DeleteObject"), _s3.Deleted.CHANGED),
    ],
)
def test_delete_if_match_answers_what_the_store_said_a_retry_told_apart(answer: Any, deleted: _s3.Deleted) -> None:
    """Each answer to a DELETE with If-Match is one Deleted; a retry's missing object is its own answer."""
    client = Client(delete_object=[answer])

    assert _s3.delete_if_match(client, "b", "k", '"e"') is deleted
    assert client.calls == [("delete_object", {"Bucket": "b", "Key": "k", "IfMatch": '"e"'})]


def test_a_refused_retry_of_an_object_still_there_is_changed() -> None:
    """A retry refused by its condition, the object there with another ETag: it changed since it was read."""
    client = Client(
        delete_object=[refused("PreconditionFailed", retried=True, op="DeleteObject")],
        head_object=[{"ETag": '"other"'}],
    )

    assert _s3.delete_if_match(client, "b", "k", '"e"') is _s3.Deleted.CHANGED_ON_RETRY
    assert [op for op, _ in client.calls] == ["delete_object", "head_object"]


def test_a_refused_retry_of_an_object_gone_is_an_earlier_attempt_that_deleted_it() -> None:
    """Where a store refuses If-Match on a missing object (rather than 404), a retry after a lost reply is refused
    though the first attempt deleted the object: the HEAD finds it gone, and the answer is GONE_ON_RETRY."""
    client = Client(
        delete_object=[refused("PreconditionFailed", retried=True, op="DeleteObject")],
        head_object=[refused("404", op="HeadObject")],
        head_bucket=[{}],
    )

    assert _s3.delete_if_match(client, "b", "k", '"e"') is _s3.Deleted.GONE_ON_RETRY


def test_delete_if_match_without_an_etag_deletes_unconditionally() -> None:
    """No ETag listed (a store that gives none): the delete carries no condition."""
    client = Client(delete_object=[{}])

    assert _s3.delete_if_match(client, "b", "k", None) is _s3.Deleted.DELETED
    assert client.calls == [("delete_object", {"Bucket": "b", "Key": "k"})]


def test_delete_if_match_unquoted_too_tries_the_etag_without_quotes() -> None:
    """For an ETag a radosgw reply gave, a refusal is tried again with the ETag unquoted."""
    client = Client(delete_object=[refused("PreconditionFailed", op="DeleteObject"), {}])

    assert _s3.delete_if_match(client, "b", "k", '"e"', unquoted_too=True) is _s3.Deleted.DELETED
    assert [params["IfMatch"] for _, params in client.calls] == ['"e"', "e"]


def test_delete_if_match_lets_other_errors_through() -> None:
    """Access denied propagates: the lease's release rewrites the lease instead."""
    client = Client(delete_object=[refused("AccessDenied", op="DeleteObject")])

    with pytest.raises(ClientError, match="AccessDenied"):
        _s3.delete_if_match(client, "b", "k", '"e"')


# copy_if_absent ------------------------------------------------------------------------


def test_copy_if_absent_names_the_source_etag_and_a_free_name() -> None:
    """The copy is conditional on the source's ETag and on the new name being free."""
    client = Client(copy_object=[{}])

    assert _s3.copy_if_absent(client, "b", "src", '"e"', "new") is _s3.Copied.COPIED
    (_, params), *_ = client.calls
    assert params["CopySourceIfMatch"] == '"e"'
    assert params["IfNoneMatch"] == "*"
    assert params["CopySource"] == {"Bucket": "b", "Key": "src"}


def test_copy_if_absent_refused_by_another_object_finds_the_name_taken() -> None:
    """Refused with another object at the new name: TAKEN."""
    client = Client(copy_object=[refused("PreconditionFailed", op="CopyObject")], head_object=[{"ETag": '"other"'}])

    assert _s3.copy_if_absent(client, "b", "src", '"e"', "new") is _s3.Copied.TAKEN


def test_copy_if_absent_refused_on_a_retry_by_its_own_copy_was_copied_by_the_lost_attempt() -> None:
    """A retry refused where the new name holds the source's content is the earlier attempt's copy: COPIED."""
    client = Client(
        copy_object=[refused("PreconditionFailed", retried=True, op="CopyObject")],
        head_object=[{"ETag": '"e"'}, {"ETag": '"e"'}],
    )

    assert _s3.copy_if_absent(client, "b", "src", '"e"', "new") is _s3.Copied.COPIED


def test_copy_if_absent_raises_when_the_source_changed() -> None:
    """Refused with nothing at the new name: the source is not the one listed; the store's refusal is raised."""
    client = Client(
        copy_object=[refused("PreconditionFailed", op="CopyObject")], head_object=[refused("404")], head_bucket=[{}]
    )

    with pytest.raises(ClientError, match="PreconditionFailed"):
        _s3.copy_if_absent(client, "b", "src", '"e"', "new")


def test_copy_to_new_name_gives_up_after_three_names_taken() -> None:
    """Three fresh names taken in a row is not chance: RuntimeError, nothing copied."""
    taken = refused("PreconditionFailed", op="CopyObject")
    client = Client(copy_object=[taken, taken, taken], head_object=[{"ETag": '"other"'}] * 3)
    names = iter(["n1", "n2", "n3"])

    with pytest.raises(RuntimeError, match="three names taken"):
        _s3.copy_to_new_name(client, "b", "src", '"e"', lambda: next(names))


def test_copy_to_new_name_tries_another_name_when_one_is_taken() -> None:
    """A name taken is given up for the next one."""
    client = Client(copy_object=[refused("PreconditionFailed", op="CopyObject"), {}], head_object=[{"ETag": '"x"'}])
    names = iter(["n1", "n2"])

    assert _s3.copy_to_new_name(client, "b", "src", '"e"', lambda: next(names)) == "n2"


def test_precondition_failed_reads_as_a_refused_condition() -> None:
    """The error built for a refused condition is one the package tells apart as such."""
    error = _s3.precondition_failed("DeleteObject")

    assert _s3.is_lost(error)
    assert "PreconditionFailed" in str(error)
