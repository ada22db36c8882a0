"""The hot requests of the client this package builds, sent without botocore's per-call machinery.

A delivery is one CopyObject, a run reads its window in ListObjectsV2 pages of 1,000, and
deletes what it delivered in DeleteObjects of up to 1,000 keys.
Through botocore each request costs about 2 ms of client CPU (parameter validation, the
event handlers, endpoint rules, serialising, signing, urllib3, parsing the reply; a
page of 1,000 keys about 30 ms more to parse): the limit of a handler's events per
second, as the GIL runs one thread at a time. `Direct` sends the same requests for a
fraction of that:

- **Where to.** The URL of each bucket and its signing region are taken from a request
  botocore sent: the first copy to a target bucket, and a LIST of one key before the
  first listing of a bucket (its batch deletes then go to the same URL); botocore's
  endpoint rules (path or virtual-host style, the region, a custom endpoint) decide them.
- **What.** Each later request is that URL with the key (a copy) or the query (a
  listing, a batch delete), the headers botocore sends (a batch delete's body with its
  ``Content-MD5``), signed with SigV4 (`_Signer`, the signing key kept per day) with the
  client's credentials, refreshed as botocore refreshes them.
- **How.** The client's ``before-send`` handlers see the request first, as they would
  botocore's (moto's mock, a test's or a benchmark's hook): a reply from one is the
  reply, and a request one rewrites (its URL, method, headers or body) is sent as
  rewritten through the client's HTTP session, as botocore sends it. Otherwise it goes
  over a keep-alive connection (`_Connection`, kept for the client: HTTP/1.1, what these
  replies need), with the client's timeouts, its socket options (TCP_NODELAY, and
  SO_KEEPALIVE with ``tcp_keepalive``; TCP_QUICKACK before each read, see `_QUICK_ACK`)
  and its TLS verification (its CA bundle, or none where the client verifies none); a
  client with a proxy or a client certificate sends through its own HTTP session.
- **Only success is taken.** A copy is done only on a reply botocore takes as success:
  status 200 with a ``CopyObjectResult`` body (S3 can answer 200 with an error in the
  body); a listing on status 200 with a ``ListBucketResult``, read with ElementTree (keys
  url-decoded as botocore decodes them); a batch delete on status 200 with a
  ``DeleteResult``, whose ``Error`` elements are the keys not deleted. A batch with a key
  or ETag XML 1.0 cannot carry as it is (a control character, a CR) goes to botocore.
  Any other reply, and any error before one, hands
  the request to botocore: it sends it again, parses the error, retries as configured
  and raises what it always raises, so a copy answered with an error is sent once more,
  as botocore's own retry would send it. A redirect (301, 307), or a 400 saying the
  bucket is elsewhere, makes the bucket's requests go through botocore from then on; a
  reply of 500 or more, for `_COOL_DOWN` seconds (botocore's backoff and rate limiting
  in charge while S3 is busy), and the refused request waits as botocore's first retry
  would before botocore sends it. A header value with a control character goes to
  botocore (which refuses it) and is never written raw; a connection with bytes after a
  reply is closed, never read for the next request; a listing whose next token repeats
  raises botocore's ``PaginationError``, as its paginator does.
- **Only plain buckets.** A bucket name that is an ARN (access points, Outposts, Object
  Lambda), a directory bucket (``--x-s3``), a client that does not sign with SigV4 for
  service ``s3`` keep to botocore.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import random
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, NamedTuple, Optional, TypeVar
from urllib.parse import quote, unquote_plus, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape as xml_escape

logger = logging.getLogger(__name__)

DIRECT = "_s3_scheduler_direct"
"""The attribute of a client this package built that holds its `Direct`."""

_REDIRECTED = frozenset({301, 307})
"""Statuses after which a bucket's requests go through botocore (its region redirects)."""

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"

Item = tuple[str, Optional[str], Optional[str]]
"""A listed object: its key, the ETag and the LastModified (ISO 8601, as S3 wrote it) the listing gave."""
Page = tuple[list[Item], bool, Optional[str]]
"""A listing's page: its objects, whether it is truncated, its next continuation token."""

_Read = TypeVar("_Read")
"""What a direct request's reader makes of S3's success: a copy's True, a page, a batch delete's errors."""

_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Control characters (but tab): a header value with one goes to botocore, which refuses it."""

_BAD_REGION = frozenset({"AuthorizationHeaderMalformed", "IllegalLocationConstraintException"})
"""The codes of a 400 that mean the bucket is elsewhere: its requests keep to botocore from then on."""

_COOL_DOWN = 5.0
"""Seconds a bucket's requests go through botocore after S3 answered 500 or more (botocore's
backoff, retry quota and rate limiter in charge while S3 is busy)."""

_FAILED = object()
"""What a learning copy that failed learned: nothing, the next copy learns."""


class _Target(NamedTuple):
    base: str
    """The URL of the bucket's objects, up to the key."""
    region: str
    """The signing region."""
    scheme: str
    host: str
    """The ``Host`` header and the signed host: the default port dropped, as botocore does."""
    netloc: str
    path: str
    """The URL's path up to the key."""


class _Signer:
    """SigV4 for a request, the signing key kept per (secret, day, region)."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str, str], bytes] = {}
        self._lock = threading.Lock()

    def sign(
        self,
        credentials: Any,
        request: tuple[str, _Target, str, str],
        headers: dict[str, str],
        now: datetime,
        payload: str = EMPTY_SHA256,
    ) -> None:
        """Add ``x-amz-date``, ``x-amz-content-sha256`` (``payload``: the body's SHA-256, an
        empty body's by default), the session token
        where there is one, and ``Authorization`` to ``headers`` (all but ``User-Agent``
        and ``Host`` lower-case), for ``request``: the method, the target, the path
        (percent-encoded, as sent) and the query (canonical: sorted, encoded)."""
        method, target, path, query = request
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        headers["x-amz-date"] = stamp
        headers["x-amz-content-sha256"] = payload
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        signed = {name: " ".join(value.split()) for name, value in headers.items() if name != "User-Agent"}
        signed["host"] = target.host
        names = sorted(signed)
        canonical = "\n".join(
            [method, path, query, *(f"{name}:{signed[name]}" for name in names), "", ";".join(names), payload]
        )
        scope = f"{day}/{target.region}/s3/aws4_request"
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{digest}"
        signature = hmac.new(self._key(credentials.secret_key, day, target.region), to_sign.encode(), hashlib.sha256)
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature.hexdigest()}"
        )

    def _key(self, secret: str, day: str, region: str) -> bytes:
        with self._lock:
            found = self._keys.get((secret, day, region))
        if found is not None:
            return found
        key = f"AWS4{secret}".encode()
        for part in (day, region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        with self._lock:
            if len(self._keys) > 16:
                self._keys.clear()
            self._keys[(secret, day, region)] = key
        return key


_QUICK_ACK: int | None = getattr(socket, "TCP_QUICKACK", None)
"""Linux's option to acknowledge what came at once. On a kept connection Linux delays its
ACKs (up to 40 ms) where nothing goes back; a server that writes a reply's head and body
in two segments without TCP_NODELAY (radosgw 16) then holds the body until that ACK
comes: 45 ms a copy instead of 4.5 on radosgw, measured. Set before each read, it keeps
each reply's segments coming (where the platform has it; elsewhere nothing is set)."""


class _Connection:
    """One keep-alive HTTP/1.1 connection: a request, and its reply read.

    Only what the replies to CopyObject, ListObjectsV2 and DeleteObjects need: a status line, header
    fields, a body by ``Content-Length``, chunked, or up to the close; interim (1xx)
    replies skipped. Anything else raises, and the request goes to botocore.
    """

    LIMIT = 1 << 24
    """The most bytes of a reply's head or body read; a longer one raises."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        self.open = True
        self._quick_ack = _QUICK_ACK is not None

    def exchange(self, head: bytes) -> tuple[int, bytes]:
        """Send ``head`` (a request line, its fields and its body, if any); return the reply's
        status and body. Nothing is pipelined: bytes left from an earlier reply close the
        connection and raise, and so do bytes left after this one."""
        if self._buffer:
            self.close()
            msg = "bytes left on the connection from an earlier reply"
            raise ValueError(msg)
        self.sock.sendall(head)
        while True:
            version, status, fields = self._head()
            if not 100 <= status < 200:
                break
        if status in (204, 304):
            body = b""
        elif "chunked" in fields.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif "content-length" in fields:
            body = self._exactly(int(fields["content-length"]))
        else:
            body = self._to_the_end()
        if version != "HTTP/1.1" or "close" in fields.get("connection", "").lower():
            self.close()
        elif self._buffer:
            self.close()
            msg = "bytes after the reply"
            raise ValueError(msg)
        return status, body

    def stale(self) -> bool:
        """Whether bytes (or the end) came after the last reply: the server closed the idle
        connection, or sent what no request asked for. Either way it is not used again."""
        if self._buffer:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        self.open = False
        with contextlib.suppress(OSError):
            self.sock.close()

    def _head(self) -> tuple[str, int, dict[str, str]]:
        end = self._buffer.find(b"\r\n\r\n")
        while end < 0:
            self._receive()
            end = self._buffer.find(b"\r\n\r\n")
        lines = self._buffer[:end].decode("latin-1").split("\r\n")
        self._buffer = self._buffer[end + 4 :]
        version, status, _ = [*lines[0].split(" ", 2), "", ""][:3]
        if not version.startswith("HTTP/1.") or not status.isdigit() or len(status) != 3:
            msg = f"not an HTTP/1 status line: {lines[0][:80]!r}"
            raise ValueError(msg)
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                msg = f"not a header field: {line[:80]!r}"
                raise ValueError(msg)
            fields[name.strip().lower()] = value.strip()
        return version, int(status), fields

    def _exactly(self, size: int) -> bytes:
        if not 0 <= size <= self.LIMIT:
            msg = f"a reply's body of {size} bytes"
            raise ValueError(msg)
        while len(self._buffer) < size:
            self._receive()
        body, self._buffer = self._buffer[:size], self._buffer[size:]
        return body

    def _line(self) -> bytes:
        end = self._buffer.find(b"\r\n")
        while end < 0:
            self._receive()
            end = self._buffer.find(b"\r\n")
        line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
        return line

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self._line().split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self._line():  # trailer fields, to the empty line
                    pass
                return b"".join(parts)
            parts.append(self._exactly(size))
            if self._line():
                msg = "a chunk not followed by CRLF"
                raise ValueError(msg)
            if sum(map(len, parts)) > self.LIMIT:
                msg = "a chunked reply's body over the limit"
                raise ValueError(msg)

    def _to_the_end(self) -> bytes:
        while True:
            data = self.sock.recv(65536)
            if not data:
                body, self._buffer = self._buffer, b""
                self.close()
                return body
            self._buffer += data
            if len(self._buffer) > self.LIMIT:
                msg = "a reply's body over the limit"
                raise ValueError(msg)

    def _receive(self) -> None:
        if self._quick_ack and _QUICK_ACK is not None:  # each read: Linux goes back to delayed ACKs
            try:
                self.sock.setsockopt(socket.IPPROTO_TCP, _QUICK_ACK, 1)
            except OSError:  # not a TCP socket (a test's socket pair)
                self._quick_ack = False
        data = self.sock.recv(65536)
        if not data:
            msg = "the connection closed before the reply was read"
            raise ConnectionError(msg)
        self._buffer += data
        if len(self._buffer) > self.LIMIT:
            msg = "a reply's head over the limit"
            raise ValueError(msg)


_NO_DELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _connect(host: str, port: int, timeout: float, options: list[tuple[int, int, Any]]) -> socket.socket:
    """A TCP connection to ``host``:``port``, each of its addresses tried in turn, with
    ``options`` set before it connects, as urllib3 sets botocore's."""
    error: OSError | None = None
    for family, kind, protocol, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, protocol)
        try:
            for option in options:
                sock.setsockopt(*option)
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error if error is not None else OSError(f"no address found for {host}")


class _Connections:
    """Keep-alive `_Connection`s shared by the client's threads, per host: a thread takes an
    idle one (or opens one) for each request and gives it back after the reply, so that
    they outlive a run's threads (a warm Lambda's next run opens none), up to the client's
    ``max_pool_connections`` kept idle per host."""

    def __init__(self, client: Any) -> None:
        config = client.meta.config
        self._connect_timeout = float(config.connect_timeout)
        self.read_timeout = float(config.read_timeout)
        self._keep = int(getattr(config, "max_pool_connections", None) or 10)
        self._session = client._endpoint.http_session
        self._verify = getattr(self._session, "_verify", True)
        options = getattr(self._session, "_socket_options", None)
        self._options: list[tuple[int, int, Any]] = list(options) if options else [_NO_DELAY]
        """botocore's for the client (its HTTP session's): TCP_NODELAY, and SO_KEEPALIVE with ``tcp_keepalive``."""
        self._idle: dict[tuple[str, str], list[_Connection]] = {}
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self.opened = 0
        """Connections opened so far."""

    def usable_for(self, url: str) -> bool:
        """Whether this sends to ``url``: not where the client has a proxy for it or a client certificate."""
        proxies = getattr(self._session, "_proxy_config", None)
        if proxies is not None and proxies.proxy_url_for(url):
            return False
        return getattr(self._session, "_cert_file", None) is None

    def send(
        self, method: str, target: _Target, resource: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        """Send ``method`` on ``resource`` (path and query) with ``headers`` (its
        ``Content-Length`` among them, where it has a body) and ``body``; return the status
        and the body of the reply."""
        lines = [f"{method} {resource} HTTP/1.1", *(f"{name}: {value}" for name, value in headers.items())]
        head = "\r\n".join([*lines, "", ""]).encode("ascii") + body
        connection = self._take(target)
        try:
            reply = connection.exchange(head)
        except BaseException:
            connection.close()
            raise
        self._give_back(target, connection)
        return reply

    def _take(self, target: _Target) -> _Connection:
        """An idle connection to ``target``'s host that nothing came on since its last
        reply (the last given back first), else a new one."""
        while True:
            with self._lock:
                idle = self._idle.get((target.scheme, target.netloc))
                found = idle.pop() if idle else None
            if found is None:
                return self._open(target)
            if found.open and not found.stale():
                return found
            found.close()

    def _give_back(self, target: _Target, connection: _Connection) -> None:
        if connection.open:
            with self._lock:
                idle = self._idle.setdefault((target.scheme, target.netloc), [])
                if len(idle) < self._keep:
                    idle.append(connection)
                    return
            connection.close()

    def _open(self, target: _Target) -> _Connection:
        parts = urlsplit(f"{target.scheme}://{target.netloc}")
        host = parts.hostname or ""
        port = parts.port or (443 if target.scheme == "https" else 80)
        sock = _connect(host, port, self._connect_timeout, self._options)
        with self._lock:
            self.opened += 1
        try:
            if target.scheme == "https":
                sock = self._tls().wrap_socket(sock, server_hostname=host)
            sock.settimeout(self.read_timeout)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            if self._verify is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                from botocore.httpsession import get_cert_path

                bundle = get_cert_path(self._verify)
                if os.path.isdir(bundle):
                    context = ssl.create_default_context(capath=bundle)
                else:
                    context = ssl.create_default_context(cafile=bundle)
            self._context = context
        return self._context


class Direct:
    """Send the CopyObject and ListObjectsV2 requests of ``client`` without its per-call
    machinery (see the module); `of` finds it on a client `_s3.fast_client` built."""

    def __init__(self, client: Any) -> None:
        import botocore
        from botocore.awsrequest import AWSPreparedRequest, HeadersDict

        from . import __version__

        self._client = client
        self._prepared = AWSPreparedRequest
        self._headers = HeadersDict
        self._encode = _quote
        self._signer = _Signer()
        self._connections = _Connections(client)
        self._targets: dict[str, _Target | None] = {}
        self._learners: dict[str, threading.Event] = {}
        self._cooling: dict[str, float] = {}
        self.sleep: Callable[[float], None] = time.sleep
        """How a request refused by a busy S3 waits before botocore sends it again (a test's fake)."""
        self.clock: Callable[[], float] = time.monotonic
        """The clock of the cool-downs (a test's fake)."""
        self._lock = threading.Lock()
        self.sent = 0
        """Copies S3 answered as copied, sent this way."""
        self.handed_over = 0
        """Copies sent through botocore: the first to each bucket, and those not answered as copied."""
        self.listed = 0
        """LIST pages read this way."""
        self.batches = 0
        """Batch deletes S3 answered, sent this way."""
        self._learning = threading.local()
        self._agent = f"s3-scheduler/{__version__} botocore/{botocore.__version__}"
        self._listings: dict[str, _Target | None] = {}
        client.meta.events.register("before-send.s3.CopyObject", self._learn)
        client.meta.events.register("before-send.s3.ListObjectsV2", self._learn_listing)

    @classmethod
    def of(cls, client: Any) -> Direct | None:
        """The `Direct` of ``client``: only a client `_s3.fast_client` built has one."""
        found = client.__dict__.get(DIRECT) if hasattr(client, "__dict__") else None
        return found if isinstance(found, cls) else None

    def copy(
        self,
        bucket: str,
        key: str,
        source_bucket: str,
        source_key: str,
        *,
        if_match: str | None = None,
        replace_tags: bool = False,
    ) -> None:
        """Copy ``source_bucket``/``source_key`` to ``bucket``/``key``, directly where S3
        answers so, else through botocore; raise what botocore raises."""
        target, learn = self._target(bucket)
        if (
            target is not None
            and not _is_arn(source_bucket)
            and self._direct(target, bucket, key, source_bucket, source_key, if_match, replace_tags)
        ):
            with self._lock:
                self.sent += 1
            return
        with self._lock:
            self.handed_over += 1
        extra: dict[str, Any] = {}
        if if_match:
            extra["CopySourceIfMatch"] = if_match
        if replace_tags:
            extra["TaggingDirective"] = "REPLACE"
        if learn:
            self._learning.key = (bucket, key)
        copied = False
        try:
            self._client.copy_object(
                Bucket=bucket, Key=key, CopySource={"Bucket": source_bucket, "Key": source_key}, **extra
            )
            copied = True
        finally:
            learned = self._learning.__dict__.pop("learned", None)
            self._learning.__dict__.pop("key", None)
            if learn:
                self._learned(bucket, learned if copied else _FAILED)

    def pages(self, bucket: str, prefix: str, start_after: str | None) -> Iterator[tuple[list[Item], bool]]:
        """Yield the ListObjectsV2 pages of ``bucket`` under ``prefix`` (after ``start_after``)
        as (key, ETag, LastModified) items, each with whether S3 said more follow: each page directly
        where the bucket's URL is known and S3 answers it, else through botocore. The
        first listing of a bucket learns its URL from a LIST of one key through botocore
        (`_learn_bucket`), so that no page of 1,000 is read by botocore's parser. Raises
        what botocore raises."""
        if bucket not in self._listings:
            self._learn_bucket(bucket, prefix)
        token: str | None = None
        while True:
            page = None
            target = self._usable(self._listings, bucket)
            if target is not None:
                page = self._list_directly(target, bucket, prefix, start_after, token)
            if page is None:
                page = self._list_through_botocore(bucket, prefix, start_after, token)
            listed, truncated, next_token = page
            yield listed, truncated
            if not truncated or not next_token:
                return
            if next_token == token:  # as botocore's paginator: a listing that would never end
                from botocore.exceptions import PaginationError

                raise PaginationError(message=f"The same next token was received twice: {token!r}")
            token = next_token

    def _learn_bucket(self, bucket: str, prefix: str) -> None:
        """Learn ``bucket``'s URL and signing region from a ListObjectsV2 of at most one
        key under ``prefix`` sent through botocore (what botocore raises, it raises)."""
        self._learning.listing = bucket
        try:
            self._client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
            learned = self._learning.__dict__.pop("learned_listing", None)
            with self._lock:
                self._listings[bucket] = learned
        finally:
            self._learning.__dict__.pop("learned_listing", None)
            self._learning.__dict__.pop("listing", None)

    def _list_directly(
        self, target: _Target, bucket: str, prefix: str, start_after: str | None, token: str | None
    ) -> Page | None:
        query = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
        if start_after is not None:
            query["start-after"] = start_after
        if token is not None:
            query["continuation-token"] = token
        canonical = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
        page = self._attempt(
            f"listing of {bucket}",
            (self._listings, bucket),
            ("ListObjectsV2", ("GET", target, target.path, canonical), {"User-Agent": self._agent}),
            _listing,
        )
        if page is not None:
            with self._lock:
                self.listed += 1
        return page

    def _list_through_botocore(self, bucket: str, prefix: str, start_after: str | None, token: str | None) -> Page:
        params = {"Bucket": bucket, "Prefix": prefix}
        if start_after is not None:
            params["StartAfter"] = start_after
        if token is not None:
            params["ContinuationToken"] = token
        response = self._client.list_objects_v2(**params)
        listed = [(obj["Key"], obj.get("ETag"), _iso(obj.get("LastModified"))) for obj in response.get("Contents", ())]
        return listed, bool(response.get("IsTruncated", False)), response.get("NextContinuationToken")

    def delete(self, bucket: str, objects: list[tuple[str, str | None]]) -> list[dict[str, str]] | None:
        """Delete ``objects`` (each a key, and the ETag it must have or None) of ``bucket``
        in one quiet DeleteObjects sent directly; return the keys S3 did not delete, as
        botocore's ``Errors``. None where it was not sent so or not answered with a
        ``DeleteResult``: botocore is to send it (and raise what it raises)."""
        target = self._usable(self._listings, bucket)
        body = _delete_body(objects) if target is not None else None
        if target is None or body is None:
            return None
        headers = {"content-md5": _md5(body), "User-Agent": self._agent}
        errors = self._attempt(
            f"batch delete in {bucket}",
            (self._listings, bucket),
            ("DeleteObjects", ("POST", target, target.path, "delete="), headers),
            _delete_errors,
            body,
            query="delete",
        )
        if errors is not None:
            with self._lock:
                self.batches += 1
        return errors

    def _learn_listing(self, request: Any, **_: Any) -> None:
        """botocore's ``before-send`` of a ListObjectsV2: where this thread is learning a
        bucket's URL, take it and the signing region from the request botocore made."""
        bucket = getattr(self._learning, "listing", None)
        if bucket is not None:
            self._learning.learned_listing = _listing_target_of(request, bucket)

    def _record(self, seconds: float) -> None:
        latency = self._client.__dict__.get("_s3_scheduler_latency")
        if latency is not None:
            latency.record(seconds)

    def _direct(
        self,
        target: _Target,
        bucket: str,
        key: str,
        source_bucket: str,
        source_key: str,
        if_match: str | None,
        replace_tags: bool,
    ) -> bool:
        headers = {
            "x-amz-copy-source": self._encode(f"{source_bucket}/{source_key}", safe="-._~/"),
            "User-Agent": self._agent,
        }
        if if_match:
            headers["x-amz-copy-source-if-match"] = if_match
        if replace_tags:
            headers["x-amz-tagging-directive"] = "REPLACE"
        request = ("PUT", target, target.path + self._encode(key, safe="/~"), "")
        return (
            self._attempt(f"copy to {bucket}/{key}", (self._targets, bucket), ("CopyObject", request, headers), _copied)
            is not None
        )

    def _attempt(
        self,
        what: str,
        place: tuple[dict[str, _Target | None], str],
        request: tuple[str, tuple[str, _Target, str, str], dict[str, str]],
        read: Callable[[bytes], _Read | None],
        body: bytes = b"",
        *,
        query: str | None = None,
    ) -> _Read | None:
        """Send ``request`` (the operation, its method, target, path and canonical query, its
        headers) directly; return what ``read`` makes of a 200 reply's body (None, or a
        raise: not S3's success). None where it is not taken: botocore is to send it, after
        `_refused` learned what S3's answer means for the bucket in ``place`` (the dict of
        its targets, the bucket). Its time counts in the client's latency, which a run's
        deadline budget reads."""
        operation, signed, headers = request
        started = time.monotonic()
        try:
            status, reply = self._exchange(operation, signed, headers, body, query=query)
            result = read(reply) if status == 200 else None
        except Exception as exc:  # noqa: BLE001 - botocore sends it again and raises what it raises
            logger.debug("A direct %s failed (%r): sent through botocore", what, exc)
            return None
        if result is None:
            logger.debug("A direct %s was answered %d: sent through botocore", what, status)
            self._refused(*place, status, reply)
            return None
        self._record(time.monotonic() - started)
        return result

    def _refused(self, where: dict[str, _Target | None], bucket: str, status: int, body: bytes) -> None:
        """S3 answered a direct request to ``bucket`` with ``status`` (not a success): after a
        redirect, or a 400 saying the bucket is elsewhere, its requests keep to botocore;
        after 500 or more they go through botocore for `_COOL_DOWN` seconds, and this one
        waits as botocore's first retry would (up to half a second) before it is sent again."""
        if status in _REDIRECTED or (status == 400 and _error_code(body) in _BAD_REGION):
            with self._lock:
                where[bucket] = None
        elif status >= 500:
            with self._lock:
                self._cooling[bucket] = self.clock() + _COOL_DOWN
            self.sleep(random.uniform(0.0, 0.5))

    def _exchange(
        self,
        operation: str,
        request: tuple[str, _Target, str, str],
        headers: dict[str, str],
        body: bytes = b"",
        *,
        query: str | None = None,
    ) -> tuple[int, bytes]:
        """Sign and send ``request`` (method, target, path, canonical query) of ``operation``
        with ``body``, its query sent as ``query`` where given (``delete`` for the
        canonical ``delete=``); return the reply's status and body. The client's
        ``before-send`` handlers see it first, as they would botocore's; a reply from one
        is the reply, and a request one rewrote (its URL, method, headers or body) is sent as
        rewritten, through the client's HTTP session, as botocore would send it."""
        credentials = self._client._request_signer._credentials
        if credentials is None:
            return 0, b""
        method, target, path, canonical = request
        if any(_UNSAFE.search(value) for value in headers.values()):
            msg = "a header value with a control character: botocore refuses it"
            raise ValueError(msg)
        payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        self._signer.sign(credentials.get_frozen_credentials(), request, headers, datetime.now(timezone.utc), payload)
        headers["Host"] = target.host
        if method != "GET":
            headers["Content-Length"] = str(len(body))  # not signed, as botocore signs none
        query = canonical if query is None else query
        resource = f"{path}?{query}" if query else path
        url = f"{target.scheme}://{target.netloc}{resource}"
        prepared = self._prepared(
            method=method, url=url, headers=self._headers(headers), body=body, stream_output=False
        )
        for _, answer in self._client.meta.events.emit(f"before-send.s3.{operation}", request=prepared):
            if answer is not None:  # moto's mock, a test's or a benchmark's hook
                return int(answer.status_code), bytes(answer.content)
        rewritten = (
            prepared.url != url
            or prepared.method != method
            or prepared.body is not body
            or dict(prepared.headers.items()) != headers  # the headers the connection sends
        )
        if rewritten or not self._connections.usable_for(url):
            answer = self._client._endpoint.http_session.send(prepared)
            return int(answer.status_code), bytes(answer.content)
        return self._connections.send(method, target, resource, headers, body)

    def _usable(self, where: dict[str, _Target | None], bucket: str) -> _Target | None:
        """``bucket``'s target in ``where``, unless its requests cool down after an error of S3's."""
        with self._lock:
            return None if self._cooling_down(bucket) else where.get(bucket)

    def _cooling_down(self, bucket: str) -> bool:
        """Whether ``bucket``'s requests cool down after an error of S3's (the lock held)."""
        until = self._cooling.get(bucket)
        if until is None:
            return False
        if self.clock() < until:
            return True
        del self._cooling[bucket]
        return False

    def _target(self, bucket: str) -> tuple[_Target | None, bool]:
        """The bucket's target where it is known and usable (None while its requests cool
        down after an error of S3's), and whether this thread is to learn it: one thread
        learns a bucket at a time, by a copy through botocore, while the others wait for it
        (at most the client's read timeout), so a run's first copies do not all go through
        botocore."""
        with self._lock:
            if bucket in self._targets:
                return (None if self._cooling_down(bucket) else self._targets[bucket]), False
            learning = self._learners.get(bucket)
            if learning is None:
                self._learners[bucket] = threading.Event()
                return None, True
        learning.wait(self._connections.read_timeout)
        with self._lock:
            return (None if self._cooling_down(bucket) else self._targets.get(bucket)), False

    def _learned(self, bucket: str, target: _Target | object | None) -> None:
        """The learning copy to ``bucket`` ended: keep what it learned where it copied
        (None: the bucket's copies keep to botocore); where it failed (`_FAILED`), the
        next copy learns."""
        with self._lock:
            learning = self._learners.pop(bucket)
            if target is None or isinstance(target, _Target):
                self._targets[bucket] = target
            learning.set()

    def _learn(self, request: Any, **_: Any) -> None:
        """botocore's ``before-send`` of a CopyObject: where this thread is learning a
        bucket's URL, take it and the signing region from the request botocore made."""
        wanted = getattr(self._learning, "key", None)
        if wanted is None:
            return
        bucket, key = wanted
        self._learning.learned = _target_of(request, bucket, self._encode(key, safe="/~"))


def _target_of(request: Any, bucket: str, quoted_key: str) -> _Target | None:
    """The URL of ``bucket``'s objects and the signing region, from a CopyObject request
    botocore signed; None where copies to it must keep to botocore."""
    url = str(getattr(request, "url", ""))
    parts = urlsplit(url)
    if parts.query or not parts.path.endswith("/" + quoted_key):
        return None
    return _signed_target(request, bucket, parts.path[: -len(quoted_key)])


def _listing_target_of(request: Any, bucket: str) -> _Target | None:
    """The URL of ``bucket`` and the signing region, from a ListObjectsV2 request botocore
    signed; None where its listings must keep to botocore."""
    parts = urlsplit(str(getattr(request, "url", "")))
    if "list-type=2" not in parts.query.split("&"):
        return None
    return _signed_target(request, bucket, parts.path)


def _signed_target(request: Any, bucket: str, path: str) -> _Target | None:
    """The target at ``path`` of the URL of ``request`` (signed by botocore), with the
    region its SigV4 scope names; None for ARNs, directory buckets, another signature or
    service, or a URL with a fragment."""
    if _is_arn(bucket) or bucket.endswith("--x-s3"):
        return None
    parts = urlsplit(str(getattr(request, "url", "")))
    if parts.scheme not in ("http", "https") or parts.fragment or not parts.hostname:
        return None
    authorization = request.headers.get("Authorization", b"")
    if isinstance(authorization, bytes):
        authorization = authorization.decode("ascii", "replace")
    algorithm, _, rest = str(authorization).partition(" ")
    credential = rest.split(",")[0].strip()
    scope = credential[len("Credential=") :].split("/")
    if algorithm != "AWS4-HMAC-SHA256" or not credential.startswith("Credential=") or len(scope) != 5:
        return None
    if scope[3] != "s3" or scope[4] != "aws4_request":
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if parts.port is not None and parts.port != {"http": 80, "https": 443}[parts.scheme]:
        host = f"{host}:{parts.port}"
    return _Target(f"{parts.scheme}://{parts.netloc}{path}", scope[2], parts.scheme, host, parts.netloc, path)


def _parse(body: bytes) -> ElementTree.Element:
    """The XML of a reply, read as UTF-8 whatever it declares (as botocore reads it)."""
    parser = ElementTree.XMLParser(encoding="utf-8")
    parser.feed(body)
    return parser.close()


def _local(tag: str) -> str:
    """An element's name without its namespace (botocore's parser ignores namespaces)."""
    return tag.rsplit("}", 1)[-1]


def _copied(body: bytes) -> bool | None:
    """True where a 200 reply's body is a ``CopyObjectResult`` (S3 can answer 200 with an error)."""
    return True if _root(body) == "CopyObjectResult" else None


def _root(body: bytes) -> str | None:
    """The local name of a reply's root element; None where it is not XML."""
    try:
        return _local(_parse(body).tag)
    except ElementTree.ParseError:
        return None


def _error_code(body: bytes) -> str | None:
    """The ``Code`` of an S3 error reply; None where there is none."""
    try:
        root = _parse(body)
    except ElementTree.ParseError:
        return None
    return next((child.text for child in root if _local(child.tag) == "Code"), None)


def _listing(body: bytes) -> Page:
    """The (key, ETag, LastModified) items of a ListObjectsV2 reply, whether it is
    truncated, and its next continuation token, read as botocore reads them: by local
    names, keys url-decoded where the reply says it encoded them, truncated only on
    ``true``. Raises `ValueError` (or ElementTree's ``ParseError``) on what is not such a
    reply."""
    root = _parse(body)
    local = _LOCAL_NAMES
    if _local(root.tag) != "ListBucketResult":
        msg = f"not a listing: {root.tag!r}"
        raise ValueError(msg)
    fields: dict[str, str | None] = {}
    contents: list[ElementTree.Element] = []
    for child in root:
        name = local.get(child.tag) or _remember(child.tag)
        if name == "Contents":
            contents.append(child)
        else:
            fields[name] = child.text
    encoded = fields.get("EncodingType") == "url"
    listed: list[Item] = []
    for item in contents:
        key = etag = modified = None
        for part in item:
            name = local.get(part.tag) or _remember(part.tag)
            if name == "Key":
                key = part.text
            elif name == "ETag":
                etag = part.text
            elif name == "LastModified":
                modified = part.text
        if key is None:
            msg = "a listed object without a key"
            raise ValueError(msg)
        listed.append((unquote_plus(key) if encoded else key, etag, modified))
    return listed, fields.get("IsTruncated") == "true", fields.get("NextContinuationToken")


_XML_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\ud800-\udfff\ufffe\uffff]")
"""What XML 1.0 text cannot carry as it is: control characters (a CR is read as a LF),
surrogates and the two non-characters. A batch with one goes to botocore."""


def _delete_body(objects: list[tuple[str, str | None]]) -> bytes | None:
    """The body of a quiet DeleteObjects of ``objects`` (key, ETag or None), as botocore
    writes it; None where a key or ETag cannot be written as XML text."""
    parts = [f'<Delete xmlns="{S3_NAMESPACE}">']
    for key, etag in objects:
        if not key or etag == "" or _XML_UNSAFE.search(key) or (etag and _XML_UNSAFE.search(etag)):
            return None  # botocore refuses an empty key, and writes an empty ETag as <ETag />
        condition = f"<ETag>{xml_escape(etag)}</ETag>" if etag else ""
        parts.append(f"<Object><Key>{xml_escape(key)}</Key>{condition}</Object>")
    parts.append("<Quiet>true</Quiet></Delete>")
    return "".join(parts).encode("utf-8")


def _delete_errors(body: bytes) -> list[dict[str, str]] | None:
    """The ``Error`` elements of a DeleteObjects reply, as botocore gives them (``Key``,
    ``Code``, ``Message``, ``VersionId`` where present); None where the reply is not a
    ``DeleteResult`` (an error, or not XML)."""
    try:
        root = _parse(body)
    except ElementTree.ParseError:
        return None
    if _local(root.tag) != "DeleteResult":
        return None
    errors: list[dict[str, str]] = []
    for child in root:
        if _local(child.tag) == "Error":
            fields = ((_local(part.tag), part.text or "") for part in child)
            errors.append({name: text for name, text in fields if name in _ERROR_FIELDS})
    return errors


_ERROR_FIELDS = frozenset({"Key", "Code", "Message", "VersionId"})
"""The fields of a DeleteObjects ``Error`` botocore's model knows (it drops the others)."""


def _md5(body: bytes) -> str:
    """The ``Content-MD5`` of ``body``: its MD5, base64."""
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii")


_QUOTED: dict[str, list[str]] = {}
"""Per set of safe characters, what each byte is written as in a URL: itself, or ``%XX``."""


def _quote(text: str, safe: str) -> str:
    """``text`` percent-encoded as botocore's ``percent_encode`` writes it (urllib's
    ``quote`` of its UTF-8 bytes: letters, digits, ``_.-~`` and ``safe`` kept), by a table
    of the 256 bytes rather than a call per byte. Raises as it raises on a lone surrogate."""
    table = _QUOTED.get(safe)
    if table is None:
        kept = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~" + safe.encode("ascii"))
        table = [chr(byte) if byte in kept else f"%{byte:02X}" for byte in range(256)]
        _QUOTED[safe] = table
    return text.encode("utf-8").decode("latin-1").translate(table)


_LOCAL_NAMES: dict[str, str] = {}
"""The local name of each element name seen in a listing (a few dozen at most: S3's own)."""


def _remember(tag: str) -> str:
    name = _local(tag)
    if len(_LOCAL_NAMES) < 256:  # names a server makes up are not kept without end
        _LOCAL_NAMES[tag] = name
    return name


def _iso(moment: Any) -> str | None:
    """A LastModified botocore gave as ISO 8601 text, as a listing holds it: a datetime it
    parsed, or the text itself (the client `_s3.fast_client` builds parses no timestamps)."""
    if isinstance(moment, datetime):
        return moment.isoformat()
    return moment if isinstance(moment, str) else None


def _is_arn(bucket: str) -> bool:
    return bucket.startswith("arn:")


def enable(client: Any) -> Any:
    """Give ``client`` (one this package builds) a `Direct`; return it."""
    client.__dict__[DIRECT] = Direct(client)
    return client


__all__ = ["Direct", "enable"]
