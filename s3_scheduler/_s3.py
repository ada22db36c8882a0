"""The store protocol in one place: conditional writes, lost replies, error codes, listing.

Each conditional request the package makes has one function here, which answers an enum
and owns the rule for a reply lost after the store did the work (botocore then sends the
request again, and the retry meets the earlier attempt's result):

- `put_new`: PutObject with ``If-None-Match: *``; a retry refused by an object holding
  the body's ETag is this call's own write (`Written`).
- `copy_if_absent`: CopyObject conditional on the source's ETag and on a free name; a
  retry refused by a copy of the source is this call's own copy (`Copied`).
- `delete_if_match`: DeleteObject with ``If-Match``; a retry's answer is told apart
  (`Deleted`), for each caller to read as its guarantee needs.

The public modules read as the algorithm; every quirk of a store they meet is named here,
with the test that shows it:

=========================  =================================================================
store                      differs from AWS S3
=========================  =================================================================
Ceph radosgw 16            ``If-Match`` on PUT wants the ETag without quotes
                           (`etag_forms`); ignores ``If-Match`` on DELETE, ``CopySourceIfMatch``
                           and a per-key ``ETag`` in DeleteObjects.
moto 5.2                   ``If-Match: *`` on DELETE answers 412 even when the object exists;
                           a missing key with ``If-Match`` on DELETE answers NoSuchKey; ignores
                           ``CopySourceIfMatch`` and a per-key ``ETag`` in DeleteObjects.
moto 5.1 (Python 3.9)      ignores ``If-Match`` on DELETE.
AWS S3                     honours every condition this package sends.
=========================  =================================================================

Where a condition is ignored, the request still does what it does unconditionally: the
guarantee that rests on it weakens as the manual's Guarantees (docs/reference/guarantees.md) says, and nothing is lost.
"""

from __future__ import annotations

import collections
import enum
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from . import _direct
from .keys import MAX_KEY_BYTES, Window

MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
"""Codes with which a store says the object does not exist (a HEAD says only ``404``)."""

NO_BUCKET = frozenset({"NoSuchBucket"})
"""Codes with which a store says the bucket does not exist."""

LOST = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
"""Codes with which a store refuses a conditional request: the object is not the one named."""

UNSUPPORTED = frozenset({"NotImplemented", "InvalidArgument", "InvalidRequest", "NotSupported", "501"})
"""Codes with which a store says it does not do what was asked (conditional writes, tags)."""

DENIED = frozenset({"AccessDenied", "403", "AllAccessDisabled"})
"""Codes with which a store refuses these credentials the request."""

THROTTLED = frozenset(
    {"SlowDown", "503", "ServiceUnavailable", "Throttling", "ThrottlingException", "RequestLimitExceeded"}
)
"""Codes with which a store asks the client to slow down."""


def error_code(error: BaseException) -> str:
    """Return the S3 error code of a botocore ``ClientError`` (``"NoSuchKey"``, ``"404"``...), else ``""``."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def is_missing(error: BaseException) -> bool:
    """Whether S3 answered that the object does not exist."""
    return error_code(error) in MISSING


def is_lost(error: BaseException) -> bool:
    """Whether S3 refused a conditional request because the object is not the one named."""
    return error_code(error) in LOST


def is_denied(error: BaseException) -> bool:
    """Whether S3 refused these credentials the request."""
    return error_code(error) in DENIED


def is_unsupported(error: BaseException) -> bool:
    """Whether the store does not do what was asked."""
    return error_code(error) in UNSUPPORTED


def is_throttled(error: BaseException) -> bool:
    """Whether S3 asked the client to slow down (after botocore's own retries)."""
    return error_code(error) in THROTTLED


def was_retried(error: BaseException) -> bool:
    """Whether botocore retried the request before this answer: an earlier attempt may
    have done the work, its reply lost."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    attempts = response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
    return isinstance(attempts, int) and attempts > 0


def content_etag(body: bytes) -> str:
    """Return the ETag S3 gives a single-part upload of ``body`` (its MD5, quoted)."""
    return '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'


def etag_forms(etag: str) -> tuple[str, ...]:
    """Return the forms of ``etag`` to try in ``If-Match``: as given, then without quotes.

    Ceph radosgw 16 compares ``If-Match`` on PUT against the unquoted ETag.
    """
    return tuple(dict.fromkeys((etag, etag.strip('"'))))


def same_etag(a: str | None, b: str | None) -> bool:
    """Whether two ETags name the same content, quoted or not (radosgw drops the quotes in places)."""
    return a is not None and b is not None and a.strip('"') == b.strip('"')


class Listed(NamedTuple):
    """A name found by a listing, with the ETag the listing gave (None when it gave none)."""

    key: str
    etag: str | None


def list_pages(
    resource: Any, client: Any, bucket: str, prefix: str, *, start_after: str | None = None
) -> Iterator[list[Listed]]:
    """Yield the names under ``prefix`` (after ``start_after``, if given) in key order,
    one list per LIST page.

    A boto3 resource of boto3's own is listed through its client (ListObjectsV2, no
    resource objects made); any other resource (what 0.0.3's tests pass: a mock whose
    ``Bucket(...).objects.filter(...)`` returns the listing) through its collection,
    read from its start. Without a resource, through ``client``.
    """
    for page, _ in _pages(resource, client, bucket, prefix, start_after):
        yield page


def _pages(
    resource: Any, client: Any, bucket: str, prefix: str, start_after: str | None
) -> Iterator[tuple[list[Listed], bool]]:
    """Yield each LIST page with whether a further page may follow."""
    if resource is not None and not is_boto3_resource(resource):
        page: list[Listed] = []
        for obj in resource.Bucket(bucket).objects.filter(Prefix=prefix):
            if start_after is not None and obj.key <= start_after:
                continue
            etag = getattr(obj, "e_tag", None)
            page.append(Listed(obj.key, etag if isinstance(etag, str) else None))
            if len(page) == 1000:
                yield page, True
                page = []
        yield page, False
        return
    if resource is not None:
        client = resource.meta.client
    direct = _direct.Direct.of(client)
    if direct is not None:  # the client this package built: the same listing, for less client CPU
        for items, more in direct.pages(bucket, prefix, start_after):
            yield [Listed(key, etag) for key, etag, _ in items], more
        return
    after = {} if start_after is None else {"StartAfter": start_after}
    for response in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, **after):
        listed = [Listed(obj["Key"], obj.get("ETag")) for obj in response.get("Contents", ())]
        yield listed, bool(response.get("IsTruncated", True))


def list_modified(client: Any, bucket: str, prefix: str, start_after: str | None) -> Iterator[list[Modified]]:
    """Yield the names under ``prefix`` (after ``start_after``, if given) in key order with
    when each was last modified (None where the listing gave no time it could read), one
    list per LIST page: directly for the client this package built (`_direct`), else
    through botocore's paginator."""
    direct = _direct.Direct.of(client)
    if direct is not None:
        for items, _ in direct.pages(bucket, prefix, start_after):
            yield [Modified(key, _moment(modified)) for key, _, modified in items]
        return
    after = {} if start_after is None else {"StartAfter": start_after}
    for response in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, **after):
        yield [Modified(obj["Key"], _moment(obj.get("LastModified"))) for obj in response.get("Contents", ())]


class Modified(NamedTuple):
    """A name found by a listing, with when it was last modified (None: not known)."""

    key: str
    modified: datetime | None


def _moment(text: Any) -> datetime | None:
    """A listing's LastModified as an aware datetime: one botocore parsed, or its text
    (ISO 8601: ``2026-12-07T20:00:00.000Z``; `fast_client`'s botocore parses no
    timestamps); None where there is none or it is unreadable."""
    if isinstance(text, datetime):
        return text if text.tzinfo is not None else text.replace(tzinfo=timezone.utc)
    if not text or not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        from dateutil.parser import isoparse  # not at import: a Lambda's cold start does without it

        try:
            moment = isoparse(text)
        except (ValueError, OverflowError):
            return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def delete_batch(client: Any, bucket: str, objects: list[dict[str, str]]) -> dict[str, Any]:
    """Delete ``objects`` (each ``{"Key": ..., "ETag": ...}``, the ETag optional) of
    ``bucket`` in one quiet DeleteObjects; return botocore's answer (its ``Errors``, the
    keys not deleted). Directly for the client this package built (`_direct`), where S3
    answers so; else (objects with other fields, such as a ``VersionId``, too), and for
    every other client, through botocore, which raises what it raises."""
    direct = _direct.Direct.of(client)
    if direct is not None and all(set(o) <= {"Key", "ETag"} for o in objects):  # no VersionId: botocore's
        errors = direct.delete(bucket, [(o["Key"], o.get("ETag")) for o in objects])
        if errors is not None:
            return {"Errors": errors} if errors else {}
    answer: dict[str, Any] = client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    return answer


def list_window(resource: Any, client: Any, bucket: str, prefix: str, window: Window) -> Iterator[Listed]:
    """Yield the names under ``prefix`` that lie in ``window``, in key order (`list_window_pages`, flat)."""
    for page in list_window_pages(resource, client, bucket, prefix, window):
        yield from page


def list_window_pages(resource: Any, client: Any, bucket: str, prefix: str, window: Window) -> Iterator[list[Listed]]:
    """Yield the names under ``prefix`` that lie in ``window``, in key order, one list per
    LIST page read (an empty list for a page with none of them).

    The names up to the window's bound come first, page by page. The pages already read
    also give the names of the window's extra ranges up to where they reach; a range
    that lies past the last page read, while more pages follow, is listed on its own
    (``StartAfter``), so the names between the bound and the range are never read.
    """
    last_read: str | None = None
    for page, more in _pages(resource, client, bucket, prefix, None):
        if page:
            last_read = page[-1].key
        yield [listed for listed in page if window.reads(listed.key)]
        if not more:
            return
        if window.bound is not None and last_read is not None and last_read > window.bound:
            break
    else:
        return  # read to the end
    for extra in window.extra:
        if last_read is not None and extra.last <= last_read:
            continue
        start = extra.after if last_read is None else max(extra.after, last_read)
        yield from _range(_pages(resource, client, bucket, prefix, start), extra.last)


def _range(pages: Iterator[tuple[list[Listed], bool]], last: str) -> Iterator[list[Listed]]:
    """Yield the names of ``pages`` up to and including ``last``, a list per page."""
    for page, _ in pages:
        within = [listed for listed in page if listed.key <= last]
        yield within
        if len(within) < len(page):
            return


def is_boto3_resource(resource: Any) -> bool:
    try:
        from boto3.resources.base import ServiceResource
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return False
    return isinstance(resource, ServiceResource)


def head_etag(client: Any, bucket: str, key: str) -> str | None:
    """Return the ETag of ``key``, or None when there is no such object.

    A HEAD answers a bare 404 for a missing bucket too: that case is told apart by a
    HEAD of the bucket, which raises (``NoSuchBucket``, or botocore's ``404``).
    """
    try:
        etag: str = client.head_object(Bucket=bucket, Key=key)["ETag"]
    except ClientError as exc:
        if not is_missing(exc):
            raise
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError as bucket_error:
            if error_code(bucket_error) in MISSING | NO_BUCKET:
                bucket_error.response.setdefault("Error", {})["Code"] = "NoSuchBucket"
            raise
        return None
    return etag


POOL_EXTRA = 3
"""Connections a run uses beside its copies: the listing, the batch delete and the lease's
renewal. A scheduler runs at most its client's pool less these copies at once."""


def fast_client(max_workers: int, *, timeout: float | None = None) -> Any:
    """Return an S3 client of boto3's default session for a scheduler that builds its own.

    Its pool holds ``max_workers`` + `POOL_EXTRA` connections, and it does not parse the timestamps of
    responses (no request of the scheduler reads them; parsing them is about half of a
    listing's client CPU). ``timeout`` (seconds) sets its connect and read timeouts.
    """
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    factory = session._session.get_component("response_parser_factory")
    factory.set_parser_defaults(timestamp_parser=lambda value: value)
    timeouts = {} if timeout is None else {"connect_timeout": timeout, "read_timeout": timeout}
    client = session.client("s3", config=Config(max_pool_connections=max_workers + POOL_EXTRA, **timeouts))
    client._s3_scheduler_session = session  # for bounded(): siblings with other timeouts
    return _direct.enable(client)


class Written(enum.Enum):
    """What `put_new` did."""

    WRITTEN = "written"
    """The object is written: by this call, or by an earlier attempt of it whose reply was lost."""
    EXISTS = "exists"
    """An object was there already: nothing was written."""


class Put(NamedTuple):
    """What `put_new` answers: what it did, and the ETag written where the store gave one."""

    state: Written
    etag: str | None = None


class Copied(enum.Enum):
    """What `copy_if_absent` did."""

    COPIED = "copied"
    """The copy is made: by this call, or by an earlier attempt of it whose reply was lost."""
    TAKEN = "taken"
    """Another object holds the name: nothing was copied."""


class Deleted(enum.Enum):
    """What `delete_if_match` found.

    A request botocore sent again after a reply was lost (a timeout, a dropped
    connection) finds the work of its own earlier attempt: the ``ON_RETRY`` answers say
    so, and each caller decides what it may take them for.
    """

    DELETED = "deleted"
    """This request deleted the object."""
    GONE = "gone"
    """There was no such object: nothing was deleted."""
    CHANGED = "changed"
    """The object no longer has the ETag named: nothing was deleted."""
    GONE_ON_RETRY = "gone on retry"
    """A retry found no object: most likely an earlier attempt deleted it, its reply lost."""
    CHANGED_ON_RETRY = "changed on retry"
    """A retry was refused and the object is still there, with another ETag: it changed.
    (A store may refuse the condition on a missing object: a refused retry is followed by
    a HEAD, and answers `GONE_ON_RETRY` when the object is gone.)"""


def put_new(client: Any, bucket: str, key: str, body: bytes, **extra: Any) -> Put:
    """Write ``body`` to ``key`` unless an object is there (``If-None-Match: *``).

    A refusal after botocore retried, where the object found has the ETag of ``body``
    (its MD5), was this call's own earlier attempt, its reply lost: `Written.WRITTEN`.
    Any other refusal answers `Written.EXISTS`. Other errors propagate.
    """
    try:
        reply = client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", **extra)
    except ClientError as exc:
        if not is_lost(exc):
            raise
        found = head_etag(client, bucket, key)
        if was_retried(exc) and same_etag(found, content_etag(body)):
            return Put(Written.WRITTEN, found)
        return Put(Written.EXISTS)
    return Put(Written.WRITTEN, reply_etag(reply))


def reply_etag(reply: Any) -> str | None:
    """Return the ETag of a PutObject reply, or None where it gives none (a test's stand-in)."""
    etag = reply.get("ETag") if isinstance(reply, Mapping) else None
    return etag if isinstance(etag, str) else None


def copy_if_absent(client: Any, bucket: str, key: str, etag: str | None, new: str) -> Copied:
    """Copy ``key`` (as it was at ``etag``, where given) to ``new`` unless an object is there.

    The copy is conditional on the source's ETag (``CopySourceIfMatch``) and on ``new``
    being free (``If-None-Match: *``) where the store honours that on CopyObject (AWS;
    moto and radosgw 16 ignore it). A refusal where ``new`` holds the source's content
    after botocore retried was this call's own earlier attempt, its reply lost:
    `Copied.COPIED`; any other object there answers `Copied.TAKEN`. A refusal with
    nothing at ``new`` means the source changed since ``etag``: the store's error is
    raised, as are all other errors.
    """
    condition = {"CopySourceIfMatch": etag} if etag else {}
    try:
        client.copy_object(
            Bucket=bucket, Key=new, CopySource={"Bucket": bucket, "Key": key}, **condition, **copy_if_new(client)
        )
    except ClientError as exc:
        if not is_lost(exc):
            raise
        found = head_etag(client, bucket, new)
        if found is None:
            raise  # the source changed since it was listed: its condition failed
        if was_retried(exc) and same_etag(found, head_etag(client, bucket, key)):
            return Copied.COPIED
        return Copied.TAKEN
    return Copied.COPIED


def copy_to_new_name(client: Any, bucket: str, key: str, etag: str | None, name: Callable[[], str]) -> str:
    """Copy ``key`` (as it was at ``etag``, where given) to a name no object holds; return it.

    ``name`` makes a fresh name at each call (a random part makes two alike unlikely);
    each copy is `copy_if_absent`, so where the store ignores ``If-None-Match`` on
    CopyObject the name's own randomness is what keeps an older object there from being
    replaced. A name found taken is given up for another, three times at most
    (`RuntimeError` then). Raises the store's error otherwise, and `ValueError` for a
    name over S3's 1,024 bytes.
    """
    for _ in range(3):
        new = name()
        size = len(new.encode("utf-8"))
        if size > MAX_KEY_BYTES:
            msg = f"{key!r} cannot be copied to {new!r}: {size} bytes, over S3's {MAX_KEY_BYTES}-byte limit on keys"
            raise ValueError(msg)
        if copy_if_absent(client, bucket, key, etag, new) is Copied.COPIED:
            return new
    msg = f"{key!r} found three names taken in a row: not copied"
    raise RuntimeError(msg)


def copy_if_new(client: Any) -> dict[str, str]:
    """Return ``{"IfNoneMatch": "*"}`` for a CopyObject of ``client`` where its botocore
    knows that parameter (1.41 and later), else nothing."""
    try:
        members = client.meta.service_model.operation_model("CopyObject").input_shape.members
    except AttributeError:  # not a botocore client (a test's stand-in): send it
        return {"IfNoneMatch": "*"}
    return {"IfNoneMatch": "*"} if "IfNoneMatch" in members else {}


def delete_if_match(client: Any, bucket: str, key: str, etag: str | None, *, unquoted_too: bool = False) -> Deleted:
    """Delete ``key`` if it still holds ``etag`` (``If-Match``; unconditionally for None).

    With ``unquoted_too`` a refusal is tried again with the ETag unquoted (`etag_forms`,
    for an ETag a radosgw reply gave). Answers what the store said, a retry's answer
    told apart (`Deleted`); errors other than a missing object or a refused condition
    propagate. A refused retry is checked with a HEAD: where an earlier attempt deleted
    the object (its reply lost) and the store refuses the condition on a missing object,
    the answer is `GONE_ON_RETRY`, not `CHANGED_ON_RETRY`.
    """
    state = Deleted.CHANGED
    for form in etag_forms(etag) if unquoted_too and etag else (etag,):
        condition = {"IfMatch": form} if form else {}
        try:
            client.delete_object(Bucket=bucket, Key=key, **condition)
        except ClientError as exc:
            if is_missing(exc):
                return Deleted.GONE_ON_RETRY if was_retried(exc) else Deleted.GONE
            if not is_lost(exc):
                raise
            state = Deleted.CHANGED_ON_RETRY if was_retried(exc) else Deleted.CHANGED
            continue
        return Deleted.DELETED
    if state is Deleted.CHANGED_ON_RETRY and head_etag(client, bucket, key) is None:
        return Deleted.GONE_ON_RETRY
    return state


def precondition_failed(operation: str) -> ClientError:
    """Return the error S3 answers a request whose condition (``If-Match``...) did not hold."""
    error = {"Code": "PreconditionFailed", "Message": "At least one of the pre-conditions you specified did not hold"}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 412}}, operation)


def describe(error: BaseException) -> str:
    """Return ``error`` as one line for a log message: its type and its text."""
    return f"{type(error).__name__}: {error}"


_BOUNDS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""The request timeouts (seconds) `bounded` chooses from, so its clients can be kept."""


def bounded(client: Any, seconds: float) -> Any:
    """Return a client like ``client`` whose requests give up within about ``seconds``.

    Its connect and read timeouts are the greatest of `_BOUNDS` not over ``seconds`` (at
    least the smallest) and it makes one attempt, no retry. Only for a client this
    package built (`fast_client`): a client passed in keeps its own timeouts, and is
    returned as it is.
    """
    session = getattr(client, "_s3_scheduler_session", None)
    if session is None:
        return client
    from botocore.config import Config

    limit = max([b for b in _BOUNDS if b <= seconds] or [_BOUNDS[0]])
    siblings: dict[float, Any] = client.__dict__.setdefault("_s3_scheduler_bounded", {})
    if limit not in siblings:
        config = client.meta.config.merge(
            Config(connect_timeout=limit, read_timeout=limit, retries={"mode": "standard", "total_max_attempts": 1})
        )
        siblings[limit] = session.client("s3", config=config)
    return siblings[limit]


class Latency:
    """The slowest of the last requests a client sent, in real seconds, once it is watching them.

    `watch` hooks it on a client's botocore events: the time from each request's
    ``before-call`` to its ``after-call`` (retries included) is recorded.
    """

    RECENT = 64
    """How many of the last requests count."""

    def __init__(self) -> None:
        self._recent: collections.deque[float] = collections.deque(maxlen=self.RECENT)
        self._lock = threading.Lock()

    @classmethod
    def watch(cls, client: Any) -> Latency:
        """Return the `Latency` of ``client``, hooking it on the client's events the first time."""
        found = client.__dict__.get("_s3_scheduler_latency") if hasattr(client, "__dict__") else None
        if isinstance(found, cls):
            return found
        latency = cls()
        events = getattr(getattr(client, "meta", None), "events", None)
        if events is not None:
            events.register("before-call.s3", latency._start)
            events.register("after-call.s3", latency._end)
            events.register("after-call-error.s3", latency._end)
            client.__dict__["_s3_scheduler_latency"] = latency
        return latency

    def record(self, seconds: float) -> None:
        """Count a request that took ``seconds`` (real seconds)."""
        with self._lock:
            self._recent.append(seconds)

    @property
    def worst(self) -> float:
        """The slowest recent request (0.0 before any)."""
        with self._lock:
            return max(self._recent, default=0.0)

    def _start(self, context: dict[str, Any] | None = None, **_: Any) -> None:
        if context is not None:
            context["s3_scheduler_started"] = time.monotonic()

    def _end(self, context: dict[str, Any] | None = None, **_: Any) -> None:
        started = None if context is None else context.get("s3_scheduler_started")
        if isinstance(started, float):
            self.record(time.monotonic() - started)
