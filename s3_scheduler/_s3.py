"""What S3 stores differ in, in one place: error codes, ETag forms, conditions, listing.

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
guarantee that rests on it weakens as README's Guarantees says, and nothing is lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

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
    import hashlib

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


def list_pages(resource: Any, client: Any, bucket: str, prefix: str) -> Iterator[list[Listed]]:
    """Yield the names under ``prefix`` in key order, one list per LIST page.

    A boto3 resource of boto3's own is listed through its client (ListObjectsV2, no
    resource objects made); any other resource (what 0.0.3's tests pass: a mock whose
    ``Bucket(...).objects.filter(...)`` returns the listing) through its collection.
    Without a resource, through ``client``.
    """
    if resource is not None and not _is_boto3_resource(resource):
        page: list[Listed] = []
        for obj in resource.Bucket(bucket).objects.filter(Prefix=prefix):
            etag = getattr(obj, "e_tag", None)
            page.append(Listed(obj.key, etag if isinstance(etag, str) else None))
            if len(page) == 1000:
                yield page
                page = []
        if page:
            yield page
        return
    if resource is not None:
        client = resource.meta.client
    for response in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield [Listed(obj["Key"], obj.get("ETag")) for obj in response.get("Contents", ())]


def _is_boto3_resource(resource: Any) -> bool:
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


def fast_client(max_workers: int) -> Any:
    """Return an S3 client of boto3's default session for a scheduler that builds its own.

    Its pool holds ``max_workers`` connections, and it does not parse the timestamps of
    responses (no request of the scheduler reads them; parsing them is about half of a
    listing's client CPU).
    """
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    factory = session._session.get_component("response_parser_factory")
    factory.set_parser_defaults(timestamp_parser=lambda value: value)
    return session.client("s3", config=Config(max_pool_connections=max_workers))
