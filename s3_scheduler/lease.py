"""The run lease: one object beside the events that makes overlapping runs take turns.

A run with due work takes the lease (`Lease.acquire`) and gets a `RunLease`, its own for
that run. The lease object's body names the run (a fresh owner token), when it took the
lease, the end of its window and when the lease expires::

    {"owner": "5f0c...", "since": "...", "until": "...", "expires": "...", "ttl": 60.0}

- **Taking it**: a write with ``If-None-Match: *``; a lease found expired is taken over
  with ``If-Match`` on the ETag read. When a write is refused because the object changed,
  the run reads it back: if it names the run's own token, the write had landed and only
  its reply was lost (botocore retried it), and the run holds the lease.
- **Keeping it**: while the run lasts, a heartbeat thread rewrites the lease with
  ``If-Match`` every quarter of ``ttl`` (in real seconds) to expire ``ttl`` after now
  by the run's clock, or after the run's window if that is later. A live run keeps its lease however
  slow one of its requests is; a run that dies lets it lapse within ``ttl``.
- **Waiting for it**: `Lease.hold` takes the lease and starts its heartbeat; while
  another run holds it, it tries again every second for as long as the caller is
  patient (a run is not: it defers; a move of an event waits one ``ttl``).
- **Starting work**: a run starts a delivery only while its lease has at least half of
  ``ttl`` left (`RunLease.may_start`), so a run whose renewals fail stops in time.
- **Releasing it**: a delete conditional on the run's ETag. Credentials that may write
  the lease but not delete it rewrite it as expired instead (warned once, naming
  ``s3:DeleteObject``), so the next run need not wait.
- **Credentials short of a permission**: a take whose write or read of the lease is
  denied answers `Outcome.DENIED`, and the caller goes on without the lease (a run
  warns once, in one line naming the actions and the key). A role that may write the
  lease but not read it is denied as soon as a lease is there (one left to expire, or
  another run's): it cannot tell whether that lease is live. A renewal refused because
  the lease changed, which may not read the lease back, takes it as lost (one WARNING
  naming ``s3:GetObject``): no further delivery starts.
- **A stale lease**, whose expiry lies further ahead than any run could ask for (hand
  edited, or written by a runner whose clock was wrong), is taken over with a WARNING.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, NamedTuple

from botocore.exceptions import ClientError

from ._s3 import Deleted, delete_if_match, etag_forms, is_denied, is_lost, is_missing, is_unsupported, same_etag

logger = logging.getLogger(__name__)

MIN_LEASE_TTL = timedelta(seconds=10)
"""The shortest ``lease_ttl`` a scheduler accepts."""

MAX_LEASE_TTL = timedelta(minutes=2)
"""The longest ``lease_ttl``: a run that dies holds the others up at most this long."""

DEFAULT_LEASE_TTL = timedelta(seconds=60)
"""How long a lease lasts past its last renewal (or past the run's window) by default."""

MAX_UNTIL = timedelta(minutes=15)
"""How far ahead a run may deliver events at their own time (Lambda's longest run)."""

CLOCK_SKEW = timedelta(seconds=30)
"""How far apart the clocks of the runners may be."""

STALE_AFTER = MAX_UNTIL + MAX_LEASE_TTL + CLOCK_SKEW
"""A lease expiring further ahead than this was asked by no run: it is stale."""


class Outcome(enum.Enum):
    """What `Lease.acquire` found."""

    TAKEN = "taken"
    """This run holds the lease."""
    HELD = "held"
    """Another run holds a lease that has not expired (or won the race for it)."""
    UNSUPPORTED = "unsupported"
    """The store rejects conditional writes: there is no lease to be had."""
    DENIED = "denied"
    """The credentials may not write the lease object (an IAM policy made for 0.0.3), or
    may not read the one that is there (a policy granting s3:PutObject on it, not s3:GetObject)."""


@dataclass(frozen=True)
class Holder:
    """What a lease object says of the run holding it (None where it does not say)."""

    owner: str | None
    since: datetime | None
    until: datetime | None
    expires: datetime
    ttl: float | None

    @classmethod
    def parse(cls, body: bytes) -> Holder:
        """Read a lease body; one that does not say when it expires has expired long ago.

        Nothing in a body makes this raise: a body this package did not write (too long,
        not a JSON object, odd numbers) is read as expired, or without what it does not
        say right.
        """
        expired = cls(None, None, None, _EPOCH, None)
        if len(body) > _MAX_BODY:
            return expired
        try:
            data = json.loads(body)
            expires = _time(data["expires"]) if isinstance(data, dict) else None
        except Exception:  # noqa: BLE001 - anything unreadable is an expired lease
            return expired
        if expires is None:
            return expired
        ttl = data.get("ttl")
        fine = isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and 0 < ttl <= _MAX_TTL_SECONDS
        return cls(
            str(data.get("owner")),
            _time(data.get("since")),
            _time(data.get("until")),
            expires,
            float(ttl) if fine else None,
        )

    def overstayed(self, now: datetime) -> timedelta | None:
        """How long the holder has kept the lease past its first term, or None if it has not."""
        if self.since is None or self.until is None or self.ttl is None:
            return None
        try:
            term_end = max(self.since, self.until) + timedelta(seconds=self.ttl)
        except OverflowError:
            return None
        return now - term_end if now > term_end else None


class Acquisition(NamedTuple):
    """The outcome of `Lease.acquire`: the run's lease when taken, the holder when held."""

    outcome: Outcome
    run: RunLease | None = None
    holder: Holder | None = None
    action: str | None = None
    """The S3 action the credentials were denied, when denied (``s3:GetObject``...)."""


class Lease:
    """The lease object ``key`` in ``bucket`` of one scheduler, reached through ``client``.

    It keeps no per-run state: each `acquire` returns a `RunLease`, so two threads may
    run `Scheduler.handle` on one scheduler.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        *,
        ttl: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self._client = client
        self._bucket = bucket
        self.key = key
        self.ttl = ttl
        self._clock = clock
        self._warned_delete = False

    @property
    def client(self) -> Any:
        """The S3 client the lease is written through."""
        return self._client

    @property
    def bucket(self) -> str:
        """The bucket the lease object is in."""
        return self._bucket

    def now(self) -> datetime:
        """Return the time by the scheduler's clock."""
        return self._clock()

    def hold(
        self, window_end: datetime, *, patience: float = 0.0, sleep: Callable[[float], None] = time.sleep
    ) -> Acquisition:
        """Take the lease for a run whose window ends at ``window_end`` and start its heartbeat.

        While another run holds it, try again every second (``sleep(1.0)``) until
        ``patience`` seconds have been waited; then answer `Outcome.HELD`. Every other
        answer of `acquire` is returned at once: the caller says what it means to it.
        """
        waited = 0.0
        while True:
            acquired = self.acquire(window_end)
            if acquired.outcome is Outcome.TAKEN:
                assert acquired.run is not None
                acquired.run.start_heartbeat()
                return acquired
            if acquired.outcome is not Outcome.HELD or waited >= patience:
                return acquired
            sleep(1.0)
            waited += 1.0

    def acquire(self, window_end: datetime) -> Acquisition:
        """Try to hold the lease for a run whose window ends at ``window_end``.

        A write or a read of the lease that the credentials may not make answers
        `Outcome.DENIED`, wherever it comes in the take. Errors other than a lost race,
        a refused condition or denied credentials propagate.
        """
        try:
            return self._acquire(window_end)
        except ClientError as exc:
            if is_denied(exc):
                return Acquisition(Outcome.DENIED, action=f"s3:{exc.operation_name}")
            raise

    def _acquire(self, window_end: datetime) -> Acquisition:
        now = self._clock()
        run = RunLease(self, uuid.uuid4().hex, now, max(now, window_end))
        body = run.body(run.until + self.ttl)
        try:
            etag = self._client.put_object(Bucket=self._bucket, Key=self.key, Body=body, IfNoneMatch="*")["ETag"]
        except ClientError as exc:
            if is_unsupported(exc):
                return Acquisition(Outcome.UNSUPPORTED)
            if not is_lost(exc):
                raise
        else:
            run.confirm(etag, run.until + self.ttl)
            return Acquisition(Outcome.TAKEN, run)
        found = self.read()
        if found is None:  # released in between: the next run will have it
            return Acquisition(Outcome.HELD, holder=None)
        etag, holder = found
        if holder.owner == run.token:  # our write landed; its reply was lost
            run.confirm(etag, holder.expires)
            return Acquisition(Outcome.TAKEN, run)
        if holder.expires > now and holder.expires - now <= STALE_AFTER:
            return Acquisition(Outcome.HELD, holder=holder)
        if holder.expires > now:
            logger.warning(
                "Taking over the stale lease %r: it expires at %s, further ahead than any run asks for"
                " (a hand edit or a runner's wrong clock)",
                self.key,
                holder.expires.isoformat(),
            )
        for form in etag_forms(etag):
            try:
                new_etag = self._client.put_object(Bucket=self._bucket, Key=self.key, Body=body, IfMatch=form)["ETag"]
            except ClientError as exc:
                if not (is_lost(exc) or is_missing(exc)):
                    raise
                again = self.read()
                if again is not None and again[1].owner == run.token:  # landed, reply lost
                    run.confirm(again[0], again[1].expires)
                    return Acquisition(Outcome.TAKEN, run)
                if again is None or not same_etag(again[0], etag):  # another run took it first
                    return Acquisition(Outcome.HELD, holder=None if again is None else again[1])
                continue
            run.confirm(new_etag, run.until + self.ttl)
            return Acquisition(Outcome.TAKEN, run)
        return Acquisition(Outcome.HELD, holder=holder)

    def delete_denied(self) -> bool:
        """Note that these credentials may not delete the lease; return whether that is news."""
        first, self._warned_delete = not self._warned_delete, True
        return first

    def read(self) -> tuple[str, Holder] | None:
        """Return the lease object's ETag and what it says, or None when there is none."""
        try:
            found = self._client.get_object(Bucket=self._bucket, Key=self.key)
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        return found["ETag"], Holder.parse(found["Body"].read())

    def rewrite(self, body: bytes, etag: str) -> str:
        """Rewrite the lease if it still has ``etag``; return the new ETag. Refusals raise."""
        last: ClientError | None = None
        for form in etag_forms(etag):
            try:
                new: str = self._client.put_object(Bucket=self._bucket, Key=self.key, Body=body, IfMatch=form)["ETag"]
            except ClientError as exc:
                if not is_lost(exc):
                    raise
                last = exc
                continue
            return new
        assert last is not None
        raise last


class RunLease:
    """The lease as held by one run: its token, its ETag, when it expires, its heartbeat."""

    def __init__(self, lease: Lease, token: str, since: datetime, until: datetime) -> None:
        self._lease = lease
        self.token = token
        self.since = since
        self.until = until
        self._lock = threading.Lock()
        self._etag: str | None = None
        self._expires = since
        self._lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def key(self) -> str:
        """The lease object's key."""
        return self._lease.key

    @property
    def ttl(self) -> timedelta:
        """How long the lease outlives its last renewal."""
        return self._lease.ttl

    @property
    def expires(self) -> datetime:
        """When the lease expires, as last confirmed by S3."""
        with self._lock:
            return self._expires

    @property
    def lost(self) -> bool:
        """Whether another run took the lease over."""
        with self._lock:
            return self._lost

    def body(self, expires: datetime) -> bytes:
        """Return the lease body naming this run, expiring at ``expires``."""
        data = {
            "owner": self.token,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "expires": expires.isoformat(),
            "ttl": self.ttl.total_seconds(),
        }
        return json.dumps(data).encode()

    def confirm(self, etag: str, expires: datetime) -> None:
        """Record that S3 holds this run's lease with ``etag`` until ``expires``."""
        with self._lock:
            self._etag = etag
            self._expires = expires

    def may_start(self, now: datetime) -> bool:
        """Whether a delivery may start: the lease is this run's for at least half its ttl more."""
        with self._lock:
            return not self._lost and now + self.ttl / 2 <= self._expires

    def renew(self) -> bool:
        """Extend the lease to ``ttl`` past now (or past the window); return whether it held.

        A refusal after a lost reply is recognised by the token. A lease taken over is
        marked lost (WARNING), and so is one refused that cannot be read back (WARNING:
        it may be another run's); other errors leave the lease as it was, to be tried again.
        """
        now = self._lease.now()
        expires = max(now, self.until) + self.ttl
        body = self.body(expires)
        with self._lock:
            etag = self._etag
            if self._lost or etag is None:
                return False
        try:
            new_etag = self._lease.rewrite(body, etag)
        except ClientError as exc:
            if not (is_lost(exc) or is_missing(exc)):
                logger.warning("Unable to renew the lease %r (tried again shortly): %s", self.key, exc)
                return False
            try:
                found = self._lease.read()
            except Exception as read_error:  # noqa: BLE001 - whose lease it is cannot be told
                self._lose_unread(read_error)
                return False
            if found is not None and found[1].owner == self.token:
                self.confirm(found[0], found[1].expires)
                return True
            with self._lock:
                self._lost = True
            logger.warning("The lease %r was taken over by another run: no further delivery starts", self.key)
            return False
        except Exception as exc:  # noqa: BLE001 - a network error: the lease stands as it was
            logger.warning("Unable to renew the lease %r (tried again shortly): %s", self.key, exc)
            return False
        self.confirm(new_etag, expires)
        return True

    def _lose_unread(self, error: BaseException) -> None:
        """A renewal was refused and the lease could not be read back: it may be another
        run's by now, so it is taken as lost."""
        with self._lock:
            self._lost = True
        if is_denied(error):
            logger.warning(
                "Access denied reading the lease %r back after a refused renewal: grant s3:GetObject on it;"
                " taking it as lost, no further delivery starts",
                self.key,
            )
        else:
            logger.warning(
                "Unable to read the lease %r back after a refused renewal (%s): taking it as lost,"
                " no further delivery starts",
                self.key,
                error,
            )

    def start_heartbeat(self) -> None:
        """Renew the lease every quarter of its ttl, in real seconds, until released."""
        period = self.ttl.total_seconds() / 4

        def beat() -> None:
            while not self._stop.wait(period):
                self.renew()

        self._thread = threading.Thread(target=beat, name="s3-scheduler-lease", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        """Stop renewing and leave the lease to lapse (a request of the run may still land)."""
        self._stop.set()

    def release(self, client: Any = None, *, wait: float = 60.0) -> None:
        """Stop the heartbeat and give the lease up. Never raises: an unreleased lease expires.

        A lease taken over, or within half its ttl of its end, is left alone: it may be
        another run's by then, and a store that ignores ``If-Match`` on deletes (Ceph
        radosgw 16) would delete that run's lease. ``client`` (default: the lease's own)
        sends the release; a renewal on its way is waited for ``wait`` seconds at most.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=wait)
        with self._lock:
            etag, lost, expires = self._etag, self._lost, self._expires
        if lost or etag is None:
            return
        now = self._lease.now()
        if now + self.ttl / 2 > expires:
            logger.info("The lease %r is near its end; leaving it to expire", self.key)
            return
        try:
            gone = delete_if_match(client or self._lease.client, self._lease.bucket, self.key, etag)
        except ClientError as exc:
            if is_denied(exc):
                self._release_by_rewrite(etag, now)
            else:
                logger.warning("Unable to release the lease %r (it expires by itself): %s", self.key, exc)
        except Exception as exc:  # noqa: BLE001 - a release never fails a run
            logger.warning("Unable to release the lease %r (it expires by itself): %s", self.key, exc)
        else:
            if gone in (Deleted.CHANGED, Deleted.CHANGED_ON_RETRY):
                logger.warning("The lease %r was taken over before this run released it", self.key)

    def _release_by_rewrite(self, etag: str, now: datetime) -> None:
        """Credentials that may not delete the lease rewrite it as expired, so the next run need not wait."""
        if self._lease.delete_denied():
            logger.warning(
                "Access denied deleting the lease %r: grant s3:DeleteObject on it; until then each run"
                " rewrites it as expired instead",
                self.key,
            )
        try:
            self._lease.rewrite(self.body(now), etag)
        except Exception as exc:  # noqa: BLE001 - the lease expires by itself
            logger.warning("Unable to release the lease %r (it expires by itself): %s", self.key, exc)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MAX_BODY = 4096
"""A lease body this package writes is about 200 bytes; a longer one is not its own."""
_MAX_TTL_SECONDS = MAX_LEASE_TTL.total_seconds()
