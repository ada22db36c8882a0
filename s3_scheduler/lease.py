"""The run lease: one object beside the events that makes overlapping runs take turns.

A run that has due work takes the lease with a conditional write (``If-None-Match: *``),
takes over one that has expired with ``If-Match`` on the ETag it read, and releases it
with a delete conditional on its own ETag. Every lease body holds a fresh owner token,
so no two holders ever share an ETag.
"""

from __future__ import annotations

import enum
import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.exceptions import ClientError

from .exceptions import is_missing_object, s3_error_code
from .utils import info, warn

UNSUPPORTED_CODES = frozenset({"NotImplemented", "InvalidArgument", "InvalidRequest", "NotSupported"})
"""Error codes with which a store says it does not do conditional writes."""

DENIED_CODES = frozenset({"AccessDenied", "403"})
"""Error codes with which a store refuses these credentials the lease object."""

_LOST = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


class Acquired(enum.Enum):
    """What `Lease.acquire` found."""

    TAKEN = "taken"
    """This run holds the lease."""
    HELD = "held"
    """Another run holds a lease that has not expired (or won the race for it)."""
    UNSUPPORTED = "unsupported"
    """The store rejects conditional writes: there is no lease to be had."""
    DENIED = "denied"
    """The credentials may not write the lease object (an IAM policy made for 0.0.3)."""


class Lease:
    """The lease object ``key`` in ``bucket``, reached through ``client``."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self._client = client
        self._bucket = bucket
        self.key = key
        self._etag: str | None = None
        self._expires: datetime | None = None

    def acquire(self, now: datetime, expires: datetime) -> Acquired:
        """Try to hold the lease until ``expires``; ``now`` decides whether a found one expired.

        Errors other than a lost race or an unsupported condition propagate.
        """
        body = json.dumps({"owner": uuid.uuid4().hex, "expires": expires.isoformat()}).encode()
        self._expires = expires
        try:
            self._etag = self._client.put_object(Bucket=self._bucket, Key=self.key, Body=body, IfNoneMatch="*")["ETag"]
        except ClientError as exc:
            code = s3_error_code(exc)
            if code in UNSUPPORTED_CODES:
                return Acquired.UNSUPPORTED
            if code in DENIED_CODES:
                return Acquired.DENIED
            if code == "ConditionalRequestConflict":
                return Acquired.HELD
            if code != "PreconditionFailed":
                raise
        else:
            return Acquired.TAKEN
        try:
            found = self._client.get_object(Bucket=self._bucket, Key=self.key)
        except ClientError as exc:
            if is_missing_object(exc):  # released in between: let the next run have it
                return Acquired.HELD
            raise
        if _expires(found["Body"].read()) > now:
            return Acquired.HELD
        # Some stores (Ceph radosgw 16) want the ETag without its quotes in If-Match.
        etag = found["ETag"]
        for candidate in dict.fromkeys((etag, etag.strip('"'))):
            try:
                self._etag = self._client.put_object(Bucket=self._bucket, Key=self.key, Body=body, IfMatch=candidate)[
                    "ETag"
                ]
            except ClientError as exc:
                if s3_error_code(exc) in _LOST or is_missing_object(exc):
                    continue
                raise
            return Acquired.TAKEN
        return Acquired.HELD

    def release(self, now: datetime, margin: timedelta) -> None:
        """Delete the lease if this run still holds it. Never raises: an unreleased lease expires.

        A lease within ``margin`` of its end, or past it, is left to expire: another run
        may have taken it over, and a store that ignores ``If-Match`` on deletes (Ceph
        radosgw 16) would otherwise delete that run's lease.
        """
        if self._etag is None:
            return
        etag, self._etag = self._etag, None
        if self._expires is None or now >= self._expires - margin:
            info("The lease %s has run out; leaving it to expire", self.key)
            return
        try:
            self._client.delete_object(Bucket=self._bucket, Key=self.key, IfMatch=etag)
        except ClientError as exc:
            if s3_error_code(exc) in _LOST:
                warn("The lease %s was taken over before this run released it", self.key)
            elif not is_missing_object(exc):
                warn("Unable to release the lease %s (it expires by itself): %s", self.key, exc)
        except Exception as exc:  # noqa: BLE001 - a release never fails a run
            warn("Unable to release the lease %s (it expires by itself): %s", self.key, exc)


def _expires(body: bytes) -> datetime:
    """Return when a lease body says it expires; a body that does not say is expired."""
    try:
        expires = datetime.fromisoformat(json.loads(body)["expires"])
    except (ValueError, KeyError, TypeError):
        return _EPOCH
    return expires if expires.tzinfo else _EPOCH


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
