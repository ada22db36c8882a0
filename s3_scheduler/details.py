"""Looking at one event: `EventDetails`, what `Scheduler.show` answers, and `show_details`, which reads it.

One HEAD of the object gives everything but the count of failed runs, which lives in the
object's tags (`keys.ATTEMPTS_TAG`, see `s3_scheduler.deadletters`). The HEAD reply says
how many tags the object has (``x-amz-tagging-count``: AWS, moto and Ceph radosgw 16 send
it), so the tags are read (GetObjectTagging) only when it has some: an event that never
failed costs one request. AWS leaves the count out where the credentials may not read
tags; the failed runs then read 0.

A key of a dead letter is shown too (``dead_letter=True``): its time and target are those of
the event it was, and its tags are the event's as they were when it was put aside.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, BinaryIO

from botocore.exceptions import ClientError

from . import _s3, deadletters
from .exceptions import EventNotPendingError, InvalidKeyError
from .keys import ATTEMPTS_TAG, REPEAT_META, SERIES_META, START_META, ZONE_META, event_prefix, listing_prefix, to_utc
from .report import ScheduledEvent

__all__ = ["EventDetails", "locate", "show_details"]

_CHUNK = 1024 * 1024
"""How much of a body `show_details` writes at a time."""


@dataclass(frozen=True)
class EventDetails:
    """One event (or dead letter) as `Scheduler.show` found it.

    ``key`` is the object's key in the scheduler's bucket; ``when`` (aware, UTC), ``bucket``
    and ``path`` are read from it: when the event is due and where it goes. The rest comes
    from the object: ``size`` (bytes), ``content_type`` (None where the store gave none),
    ``metadata`` (the user metadata that travels to the target, names in lower case, as S3
    returns them), ``etag``, ``last_modified`` (when the object was written, aware UTC;
    None where the store gave no time) and ``failed_runs``: how many runs failed to deliver
    it (0: none, or not counted; None: its tags could not be read).

    ``repeat``, ``zone``, ``series`` and ``start`` are the rule, zone, series id and start of
    the series the event is an occurrence of (read from the metadata names `keys.REPEAT_META`,
    `keys.ZONE_META`, `keys.SERIES_META`, `keys.START_META`), each None for a one-time event.
    ``dead_letter`` says whether the key is a dead letter's rather than a pending event's.
    """

    key: str
    when: datetime
    bucket: str
    path: str
    size: int
    content_type: str | None
    metadata: Mapping[str, str] = field(hash=False)
    etag: str
    last_modified: datetime | None
    failed_runs: int | None
    repeat: str | None = None
    zone: str | None = None
    series: str | None = None
    start: str | None = None
    dead_letter: bool = False

    @property
    def recurring(self) -> bool:
        """Whether the event is an occurrence of a series (it has a rule)."""
        return self.repeat is not None

    def to_dict(self) -> dict[str, Any]:
        """Return the details as JSON-ready data, times in ISO 8601."""
        return {
            "key": self.key,
            "when": self.when.isoformat(),
            "bucket": self.bucket,
            "path": self.path,
            "size": self.size,
            "content_type": self.content_type,
            "metadata": dict(self.metadata),
            "etag": self.etag,
            "last_modified": None if self.last_modified is None else self.last_modified.isoformat(),
            "failed_runs": self.failed_runs,
            "repeat": self.repeat,
            "zone": self.zone,
            "series": self.series,
            "start": self.start,
            "dead_letter": self.dead_letter,
        }


def show_details(
    client: Any, bucket: str, key: Any, *, path: str, shards: int, into: BinaryIO | None = None
) -> EventDetails:
    """Return the details of ``key``, a pending event or a dead letter of the scheduler at
    ``path`` in ``bucket`` (with ``shards`` > 1: of any shard, or of the unsharded prefix).

    One HEAD, and GetObjectTagging only when the object has tags. With ``into`` one GET
    instead of the HEAD, and the body is written to ``into`` as it comes.

    Raises `InvalidKeyError` before any request for a key that is neither, and
    `EventNotPendingError` when there is no such object.
    """
    event, dead_letter = locate(key, path, shards=shards)
    reply = _read(client, bucket, key, into)
    metadata = {str(name).lower(): str(value) for name, value in (reply.get("Metadata") or {}).items()}
    return EventDetails(
        key=key,
        when=event.when,
        bucket=event.bucket,
        path=event.path,
        size=int(reply.get("ContentLength") or 0),
        content_type=reply.get("ContentType") or None,
        metadata=MappingProxyType(metadata),
        etag=str(reply.get("ETag", "")),
        last_modified=_time(reply.get("LastModified")),
        failed_runs=_failed_runs(client, bucket, key, reply),
        repeat=metadata.get(REPEAT_META),
        zone=metadata.get(ZONE_META),
        series=metadata.get(SERIES_META),
        start=metadata.get(START_META),
        dead_letter=dead_letter,
    )


def locate(key: Any, path: str, *, shards: int) -> tuple[ScheduledEvent, bool]:
    """Return what the name ``key`` says of the event of the scheduler at ``path`` (with
    ``shards``), and whether it is a dead letter's name; `InvalidKeyError` when it is neither
    an event's nor a dead letter's."""
    try:
        prefix = listing_prefix(path) if shards == 1 else event_prefix(key, path)
        return ScheduledEvent.from_key(key, prefix), False
    except InvalidKeyError as exc:
        problem = exc
    try:
        return deadletters.letter(key, path, shards=shards), True
    except InvalidKeyError:
        pass
    msg = f"{key!r} is neither an event nor a dead letter of the scheduler at {path!r}: {problem}"
    raise InvalidKeyError(msg) from None


def _read(client: Any, bucket: str, key: str, into: BinaryIO | None) -> dict[str, Any]:
    """HEAD ``key`` (GET it into ``into``, when given) and return the reply; `EventNotPendingError`
    when there is no such object (a missing bucket raises the store's error)."""
    try:
        if into is None:
            reply: dict[str, Any] = client.head_object(Bucket=bucket, Key=key)
            return reply
        reply = client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if not _s3.is_missing(exc):
            raise
        client.head_bucket(Bucket=bucket)  # a missing bucket answers a bare 404 too: raise that instead
        msg = f"{key} is not there: delivered, cancelled, requeued, purged or never scheduled"
        raise EventNotPendingError(msg) from None
    with reply["Body"] as body:
        for chunk in iter(lambda: body.read(_CHUNK), b""):
            into.write(chunk)
    return reply


def _failed_runs(client: Any, bucket: str, key: str, reply: Mapping[str, Any]) -> int | None:
    """Return the failed runs counted in the tags of ``key`` (0 when the reply says it has
    none); None when its tags may not be read.

    The count of tags is the reply's ``TagCount``, or its ``x-amz-tagging-count`` header
    where the client's botocore does not parse it for a HEAD; S3 sends none for an object
    without tags.
    """
    count = reply.get("TagCount")
    if count is None:
        header = reply.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-tagging-count")
        count = int(header) if isinstance(header, str) and header.isdigit() else None
    if not isinstance(count, int) or count < 1:
        return 0
    try:
        tags = client.get_object_tagging(Bucket=bucket, Key=key).get("TagSet", [])
    except ClientError as exc:
        if _s3.is_denied(exc) or _s3.is_unsupported(exc):
            return None
        if _s3.is_missing(exc):
            msg = f"{key} is not there: delivered, cancelled, requeued, purged or never scheduled"
            raise EventNotPendingError(msg) from None
        raise
    values = [str(tag.get("Value", "")) for tag in tags if tag.get("Key") == ATTEMPTS_TAG]
    return int(values[0]) if values and values[0].isascii() and values[0].isdigit() else 0


def _time(value: Any) -> datetime | None:
    """Return a reply's LastModified as an aware UTC datetime: botocore parses it, unless the
    client leaves timestamps as text (`_s3.fast_client`: an HTTP date)."""
    if isinstance(value, datetime):
        return to_utc(value)
    if isinstance(value, str):
        try:
            return to_utc(parsedate_to_datetime(value))
        except (TypeError, ValueError):
            try:
                return to_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
            except ValueError:
                return None
    return None
