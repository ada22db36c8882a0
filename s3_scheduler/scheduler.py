"""The `Scheduler`: write one-time events to S3 and deliver them when they fall due.

An event is one object under ``{path}/|`` in the scheduler's bucket. Its name says when
it is due and where it goes (see `s3_scheduler.keys`); its body is what gets delivered.
`Scheduler.handle`, run every minute, copies each due event to its target and then
deletes it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Callable, Union

from .exceptions import InvalidKeyError
from .keys import decode_key, encode_key, listing_bound, listing_prefix, normalize_path, to_utc
from .utils import info, move_file, nowut, warn

Content = Union[str, bytes, bytearray, memoryview, BinaryIO]
"""What `Scheduler.schedule` delivers: text (sent as UTF-8), bytes, or a binary file."""

DEFAULT_MAX_WORKERS = 10
"""Delivery threads when the client does not tell its pool size (botocore's default)."""


@dataclass(frozen=True)
class ScheduledEvent:
    """A pending event, read from its name alone.

    ``key`` is the event's object key in the scheduler's bucket, ``when`` the aware UTC
    time it is due, ``bucket`` and ``path`` the bucket and key it is copied to.
    """

    key: str
    when: datetime
    bucket: str
    path: str


def _now() -> datetime:
    # Looked up at call time, so code that patches ``s3_scheduler.scheduler.nowut``
    # (as tests written for 0.0.3 may) still moves this package's clock.
    return nowut()


class Scheduler:
    """One-time events stored under ``path`` in ``bucket``.

    ``s3_resource`` and ``s3_client`` are boto3's S3 resource and client, as in 0.0.3.
    Either may be left out: the client then defaults to the resource's own client, and
    both to ``boto3.resource("s3")``. Given only a client, the scheduler lists with it.
    Clients are thread-safe and the deliveries share one; the resource is only used to
    list, from the calling thread.

    ``clock`` (keyword-only) returns the current time; it defaults to `nowut` and
    exists so tests can set the time. A naive time it returns is taken as UTC.
    """

    def __init__(
        self,
        bucket: str,
        path: str,
        s3_resource: Any = None,
        s3_client: Any = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not isinstance(bucket, str) or not bucket:
            msg = f"bucket must be the name of the scheduler's bucket, not {bucket!r}"
            raise ValueError(msg)
        if not isinstance(path, str):
            msg = f"path must be a str such as 'jobs', not {type(path).__name__}"
            raise TypeError(msg)
        if s3_resource is None and s3_client is None:
            import boto3

            s3_resource = boto3.resource("s3")
        if s3_client is None:
            s3_client = s3_resource.meta.client
        self._bucket = bucket
        self._path = normalize_path(path)
        self._prefix = listing_prefix(path)
        self._s3_resource = s3_resource
        self._s3_client = s3_client
        self._clock = clock if clock is not None else _now

    @property
    def bucket(self) -> str:
        """The bucket that holds the events."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The prefix every event's key starts with: ``{path}/|``."""
        return self._prefix

    def schedule(self, when: datetime, bucket: str, path: str, what: Content) -> str:
        """Schedule ``what`` to be copied to ``bucket``/``path`` at ``when``; return the
        event's key.

        ``when`` is a datetime; a naive one means UTC, an aware one is stored in UTC.
        A time already past is delivered by the next `handle`. ``path`` is the target
        key; one leading ``/`` is dropped. ``what`` is ``str`` (sent as UTF-8),
        bytes-like, or a binary file object (streamed, in parts when large).

        Bad input raises before any request to S3: `TypeError` for a ``when`` that is
        not a datetime or a ``what`` of another type, `ValueError` for an empty target
        bucket or key or a key over S3's 1,024 bytes. The content is never logged.
        """
        if not isinstance(when, datetime):
            msg = f"when must be a datetime (naive means UTC), not {type(when).__name__}"
            raise TypeError(msg)
        if not isinstance(bucket, str) or not isinstance(path, str):
            msg = "bucket and path must be str: the target bucket name and object key"
            raise TypeError(msg)
        body = _body(what)
        key = encode_key(self._prefix, when, bucket, path)
        if isinstance(body, bytes):
            self._s3_client.put_object(Bucket=self._bucket, Key=key, Body=body)
        else:
            self._s3_client.upload_fileobj(body, self._bucket, key)
        info("Scheduled %s to s3://%s/%s at %s", key, bucket, path, to_utc(when).isoformat())
        return key

    def stop(self, key: Any) -> bool:
        """Delete the event ``key``; return whether S3 accepted the delete.

        As in 0.0.3: ``True`` also when there was no such event (S3 deletes are
        idempotent), ``False`` on any error, which is warned. Never raises.
        """
        try:
            result = self._s3_client.delete_object(Bucket=self._bucket, Key=key)
            info("Deleted the scheduled event %s", key)
            return result["ResponseMetadata"]["HTTPStatusCode"] in (200, 204)
        except Exception as exc:  # noqa: BLE001 - 0.0.3's contract: never raises
            warn("Unable to delete the scheduled event %s: %s", key, exc)
            return False

    def handle(self) -> None:
        """Deliver every due event: copy it to its target, then delete it.

        The listing is read in key order and stops at the first name past
        ``now + 14 h`` (see `s3_scheduler.keys.LOOKAHEAD`), so a run costs one LIST
        request per 1,000 names in that window, however many events lie beyond it.
        The due events are delivered concurrently, on as many threads as the client's
        connection pool holds. An event whose copy or delete fails is warned once and
        stays for the next run; the others still go. A name under the prefix that is
        not an event is warned and left alone, never deleted. Delivery is
        at-least-once: a run that fails between copy and delete delivers again next time.
        """
        now = to_utc(self._clock())
        due = [event for event in self._events(listing_bound(self._prefix, now)) if event.when <= now]
        for event, error in zip(due, self._deliver(due)):
            if error is None:
                info("Delivered %s to s3://%s/%s", event.key, event.bucket, event.path)
            else:
                warn("Unable to deliver %s to s3://%s/%s: %s", event.key, event.bucket, event.path, error)

    def _keys(self) -> Iterator[str]:
        """Yield the names under the prefix in key order, page by page."""
        if self._s3_resource is not None:
            bucket = self._s3_resource.Bucket(self._bucket)
            for obj in bucket.objects.filter(Prefix=self._prefix):
                yield obj.key
        else:
            pages = self._s3_client.get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self._bucket, Prefix=self._prefix):
                for obj in page.get("Contents", ()):
                    yield obj["Key"]

    def _events(self, bound: str) -> Iterator[ScheduledEvent]:
        """Yield the events named up to ``bound`` in key order, warning of other names."""
        for key in self._keys():
            if key > bound:
                return
            try:
                when, bucket, target = decode_key(key, self._prefix)
            except InvalidKeyError as exc:
                warn("Ignoring %s: not a scheduled event (%s)", key, exc)
                continue
            yield ScheduledEvent(key, when, bucket, target)

    def _max_workers(self) -> int:
        size = getattr(getattr(getattr(self._s3_client, "meta", None), "config", None), "max_pool_connections", None)
        return size if isinstance(size, int) and size > 0 else DEFAULT_MAX_WORKERS

    def _deliver(self, events: list[ScheduledEvent]) -> list[Exception | None]:
        """Move each event to its target; return, in order, each one's error or None."""
        workers = min(len(events), self._max_workers())
        if workers <= 1:
            return [self._move(event) for event in events]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-scheduler") as pool:
            return list(pool.map(self._move, events))

    def _move(self, event: ScheduledEvent) -> Exception | None:
        try:
            move_file(self._bucket, event.bucket, event.key, self._s3_client, event.path)
        except Exception as exc:  # noqa: BLE001 - reported by handle(), the event stays
            return exc
        return None


def _body(what: Content) -> bytes | BinaryIO:
    """Return ``what`` as bytes, or the binary file object itself to be streamed."""
    if isinstance(what, str):
        return what.encode("utf-8")
    if isinstance(what, (bytes, bytearray, memoryview)):
        return bytes(what)
    if callable(getattr(what, "read", None)) and not isinstance(what, io.TextIOBase):
        return what
    msg = (
        "what must be str (sent as UTF-8), bytes-like, or a binary file object"
        f" (opened with 'rb'), not {type(what).__name__}"
    )
    raise TypeError(msg)
