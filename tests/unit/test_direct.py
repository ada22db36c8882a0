"""The direct copies' parts with no S3 at all: SigV4 against botocore's signer, the reply
reader on a socket pair, and what a request botocore signed says about its bucket."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any
from unittest import mock
from xml.etree import ElementTree

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode
from hypothesis import given
from hypothesis import strategies as st

from s3_scheduler._direct import (
    _Connection,
    _delete_body,
    _delete_errors,
    _listing,
    _listing_target_of,
    _md5,
    _quote,
    _Signer,
    _Target,
    _target_of,
)

NOW = datetime(2026, 12, 7, 17, 5, 9, tzinfo=timezone.utc)


def _target(url: str, region: str = "eu-west-3") -> _Target:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port not in (None, 80, 443):
        host = f"{host}:{parts.port}"
    return _Target(url, region, parts.scheme, host, parts.netloc, parts.path)


@contextmanager
def _botocore_at(now: datetime) -> Iterator[None]:
    """botocore's signer with its clock at ``now``: `get_current_datetime` where botocore
    has it, ``datetime.datetime.utcnow()`` in its `auth` module before (1.35)."""
    import botocore.auth

    naive = now.replace(tzinfo=None)
    if hasattr(botocore.auth, "get_current_datetime"):
        with mock.patch("botocore.auth.get_current_datetime", return_value=naive):
            yield
        return

    with mock.patch("botocore.auth.datetime") as module:
        module.datetime.utcnow.return_value = naive
        module.datetime.strptime = datetime.strptime
        yield


def _botocore_authorization(credentials: Credentials, url: str, headers: dict[str, str], region: str) -> str:
    request = AWSRequest(method="PUT", url=url, headers=dict(headers), data=b"")
    with _botocore_at(NOW):
        S3SigV4Auth(credentials, "s3", region).add_auth(request)
    return str(request.headers["Authorization"])


@pytest.mark.parametrize(
    ("base", "key", "token", "extra"),
    [
        ("http://127.0.0.1:7480/target/", "out/1", None, {}),
        ("https://target.s3.eu-west-3.amazonaws.com/", "a b/é+%~|x", None, {"x-amz-copy-source-if-match": '"ab"'}),
        ("https://target.s3.eu-west-3.amazonaws.com/", "/lead//x", "TOKEN/=+", {"x-amz-tagging-directive": "REPLACE"}),
        ("http://localhost:80/target/", "k", None, {"x-amz-copy-source-if-match": '"a  b"'}),
        ("https://t.s3.eu-west-3.amazonaws.com/", "~*'!()%2F 𝄞 tab\there #?&=\\<&\"", None, {}),
        ("https://t.s3.eu-west-3.amazonaws.com/", "x" * 1024, "T", {}),
    ],
)
def test_the_signature_is_botocores(base: str, key: str, token: str | None, extra: dict[str, str]) -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    target = _target(base)
    path = target.path + percent_encode(key, safe="/~")
    headers = {"x-amz-copy-source": percent_encode("schedule/jobs/|2026|t|k", safe="-._~/"), **extra}
    ours = {**headers, "User-Agent": "s3-scheduler/test"}
    _Signer().sign(credentials.get_frozen_credentials(), ("PUT", target, path, ""), ours, NOW)
    theirs = dict(headers)
    if token:
        theirs["X-Amz-Security-Token"] = token  # botocore adds it while signing; set here to compare
    expected = _botocore_authorization(credentials, f"{target.scheme}://{target.netloc}{path}", theirs, "eu-west-3")
    assert ours["Authorization"] == expected
    assert ours["x-amz-date"] == "20261207T170509Z"


def test_the_signing_key_is_kept_per_day_and_region() -> None:
    signer = _Signer()
    first = signer._key("secret", "20261207", "us-east-1")
    assert signer._key("secret", "20261207", "us-east-1") is first
    assert signer._key("secret", "20261208", "us-east-1") != first
    assert signer._key("other", "20261207", "us-east-1") != first


def _serve(reply: bytes) -> tuple[_Connection, socket.socket, list[bytes]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    theirs.settimeout(5)
    received: list[bytes] = []

    def answer() -> None:
        received.append(theirs.recv(65536))
        theirs.sendall(reply)

    threading.Thread(target=answer, daemon=True).start()
    return _Connection(ours), theirs, received


HEAD = b"PUT /t/k HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
RESULT = b"<CopyObjectResult><ETag>x</ETag></CopyObjectResult>"


def test_a_reply_by_content_length_keeps_the_connection() -> None:
    connection, theirs, received = _serve(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(RESULT), RESULT))
    assert connection.exchange(HEAD) == (200, RESULT)
    assert connection.open
    assert received == [HEAD]
    theirs.close()


def test_a_chunked_reply_with_an_interim_100_and_trailers() -> None:
    reply = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\n<Copy\r\n" + b"%x\r\n%s\r\n" % (len(RESULT) - 5, RESULT[5:]) + b"0\r\nX-Trailer: y\r\n\r\n"
    )
    connection, theirs, _ = _serve(reply)
    assert connection.exchange(HEAD) == (200, RESULT)
    theirs.close()


def test_a_reply_to_the_close_and_connection_close() -> None:
    connection, theirs, _ = _serve(b"HTTP/1.0 200 OK\r\n\r\n" + RESULT)
    threading.Timer(0.2, theirs.close).start()  # the body ends at the close
    assert connection.exchange(HEAD) == (200, RESULT)
    assert not connection.open
    connection, theirs, _ = _serve(b"HTTP/1.1 412 x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno")
    assert connection.exchange(HEAD) == (412, b"no")
    assert not connection.open
    theirs.close()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1 status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP/1 status line"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "not a header field"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", "body of 99999999 bytes"),
    ],
)
def test_what_is_not_an_http_reply_raises(reply: bytes, message: str) -> None:
    connection, theirs, _ = _serve(reply)
    with pytest.raises(ValueError, match=message):
        connection.exchange(HEAD)
    theirs.close()


def test_a_connection_closed_before_the_reply_raises() -> None:
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    theirs.close()
    with pytest.raises(ConnectionError):  # closed before the reply, or a broken pipe while sending
        _Connection(ours).exchange(HEAD)


class _Signed:
    def __init__(self, url: str, authorization: Any) -> None:
        self.url = url
        self.headers = {"Authorization": authorization}


AUTH = "AWS4-HMAC-SHA256 Credential=AK/20261207/eu-west-3/s3/aws4_request, SignedHeaders=host, Signature=ab"


def test_a_bucket_url_and_region_from_the_request_botocore_signed() -> None:
    found = _target_of(_Signed("https://t.s3.eu-west-3.amazonaws.com/a%20b", AUTH.encode()), "t", "a%20b")
    host = "t.s3.eu-west-3.amazonaws.com"
    assert found == _Target(f"https://{host}/", "eu-west-3", "https", host, host, "/")
    found = _target_of(_Signed("http://[::1]:7480/t/k", AUTH), "t", "k")
    assert found is not None
    assert (found.host, found.path) == ("[::1]:7480", "/t/")
    found = _target_of(_Signed("https://h:443/t/k", AUTH), "t", "k")
    assert found is not None
    assert found.host == "h"


@pytest.mark.parametrize(
    ("url", "bucket", "authorization"),
    [
        ("https://h/t/k?x-id=CopyObject", "t", AUTH),
        ("https://h/t/other", "t", AUTH),
        ("https://h/k", "arn:aws:s3:us-east-1:123456789012:accesspoint/a", AUTH),
        ("https://h/k", "b--use1-az4--x-s3", AUTH),
        ("https://h/t/k", "t", AUTH.replace("/s3/", "/s3-outposts/")),
        ("https://h/t/k", "t", "AWS4-ECDSA-P256-SHA256 Credential=AK/20261207/s3/aws4_request, x"),
        ("https://h/t/k", "t", "AWS AK:signature"),
        ("https://h/t/k", "t", ""),
        ("ftp://h/t/k", "t", AUTH),
    ],
)
def test_buckets_whose_copies_keep_to_botocore(url: str, bucket: str, authorization: str) -> None:
    assert _target_of(_Signed(url, authorization), bucket, "k") is None


def test_a_listings_signature_is_botocores() -> None:
    from urllib.parse import quote

    credentials = Credentials("AKIDEXAMPLE", "secret/+=", "TOKEN")
    target = _target("http://127.0.0.1:7480/schedule")
    query = {"list-type": "2", "prefix": "jobs é/|", "encoding-type": "url", "start-after": "jobs/|2026 +x"}
    canonical = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
    ours = {"User-Agent": "s3-scheduler/test"}
    _Signer().sign(credentials.get_frozen_credentials(), ("GET", target, "/schedule", canonical), ours, NOW)
    request = AWSRequest(method="GET", url="http://127.0.0.1:7480/schedule", params=query, headers={})
    request.headers["X-Amz-Security-Token"] = "TOKEN"
    with _botocore_at(NOW):
        S3SigV4Auth(credentials, "s3", "eu-west-3").add_auth(request)
    assert ours["Authorization"] == request.headers["Authorization"]


NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def _page(items: str, *, encoded: bool = True, truncated: str = "false", token: str = "", ns: str = NS) -> bytes:
    xmlns = f' xmlns="{ns}"' if ns else ""
    encoding = "<EncodingType>url</EncodingType>" if encoded else ""
    next_token = f"<NextContinuationToken>{token}</NextContinuationToken>" if token else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult{xmlns}><Name>b</Name><Prefix>p</Prefix>'
        f"{encoding}<KeyCount>2</KeyCount><IsTruncated>{truncated}</IsTruncated>{next_token}{items}</ListBucketResult>"
    ).encode()


def test_a_listing_is_read_as_botocore_reads_it() -> None:
    items = (
        "<Contents><Key>jobs/%7C2026+x%2B%C3%A9</Key><LastModified>2026-12-07T20:01:02.345Z</LastModified>"
        "<ETag>&quot;ab&quot;</ETag><Size>1</Size></Contents>"
        "<Contents><Key>jobs/%25</Key></Contents>"
    )
    assert _listing(_page(items)) == (
        [("jobs/|2026 x+é", '"ab"', "2026-12-07T20:01:02.345Z"), ("jobs/%", None, None)],
        False,
        None,
    )
    plain = "<Contents><Key>jobs/a+b%7C</Key><ETag>e</ETag></Contents>"
    assert _listing(_page(plain, encoded=False, truncated="true", token="t/1==")) == (
        [("jobs/a+b%7C", "e", None)],
        True,
        "t/1==",
    )
    assert _listing(_page("", ns="")) == ([], False, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<Error><Code>AccessDenied</Code></Error>", "not a listing"),
        (_page("<Contents><ETag>e</ETag></Contents>"), "without a key"),
    ],
)
def test_what_is_not_a_listing_raises(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _listing(body)
    with pytest.raises(ElementTree.ParseError):
        _listing(b"<ListBucketResult")


def test_a_buckets_listing_url_from_the_request_botocore_signed() -> None:
    found = _listing_target_of(_Signed("http://127.0.0.1:7480/b?list-type=2&prefix=p&encoding-type=url", AUTH), "b")
    assert found == _Target("http://127.0.0.1:7480/b", "eu-west-3", "http", "127.0.0.1:7480", "127.0.0.1:7480", "/b")
    assert _listing_target_of(_Signed("https://b.s3.amazonaws.com/?list-type=2", AUTH), "b").path == "/"  # type: ignore[union-attr]
    assert _listing_target_of(_Signed("https://h/b?prefix=p", AUTH), "b") is None  # not ListObjectsV2
    assert _listing_target_of(_Signed("https://h/b?list-type=2", "AWS AK:x"), "b") is None


def test_bytes_left_after_a_reply_close_the_connection() -> None:
    """Nothing is pipelined: a reply followed by more bytes (a request split by a stray
    CR LF, a confused server) is not taken, and the connection is closed; bytes that come
    after a reply was read make the connection stale, and it is not used again."""
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(RESULT), RESULT)
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    theirs.sendall(reply + reply)  # both in ours' buffer before the request: one read takes both
    connection = _Connection(ours)
    with pytest.raises(ValueError, match="bytes after the reply"):
        connection.exchange(HEAD)
    assert not connection.open
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    theirs.sendall(reply)
    connection = _Connection(ours)
    assert connection.exchange(HEAD) == (200, RESULT)
    assert not connection.stale()
    theirs.sendall(b"HTTP/1.1 200 OK\r\n")  # what no request asked for
    assert connection.stale()
    theirs.close()
    ours, theirs = socket.socketpair()
    theirs.sendall(reply)
    connection = _Connection(ours)
    connection.exchange(HEAD)
    theirs.close()  # the server closes the idle connection
    assert connection.stale()


def test_a_listing_is_read_by_local_names_as_botocore_reads_it() -> None:
    prefixed = (
        b'<s3:ListBucketResult xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<IsTruncated>true</IsTruncated><NextContinuationToken>t</NextContinuationToken>"
        b'<Contents xmlns="urn:other"><Key>k1</Key><ETag>"e"</ETag></Contents></s3:ListBucketResult>'
    )
    assert _listing(prefixed) == ([("k1", '"e"', None)], True, "t")
    for odd in ("True", "true\n", "TRUE"):  # botocore takes "true" alone
        assert _listing(_page("", truncated=odd, token="t"))[1] is False


ODD_DELETES = [
    ("jobs/|2026-12-07T10:00:00.000000+00:00|t|k", '"0123456789abcdef0123456789abcdef"'),
    ("jobs/a&b<c>d\"e'f é 𝄞 tab\there", None),
    ("jobs/line\nfeed ]]> &amp;", '"x"'),
]


def _botocore_delete(objects: list[tuple[str, str | None]]) -> dict[str, Any]:
    """The request botocore's serializer makes of a quiet DeleteObjects of ``objects``."""
    import botocore.session
    from botocore.serialize import create_serializer

    model = botocore.session.get_session().get_service_model("s3").operation_model("DeleteObjects")
    delete = {"Objects": [{"Key": k, **({"ETag": e} if e else {})} for k, e in objects], "Quiet": True}
    serialized: dict[str, Any] = create_serializer("rest-xml").serialize_to_request(
        {"Bucket": "b", "Delete": delete}, model
    )
    return serialized


def _tree(body: bytes) -> list[tuple[str, str | None]]:
    return [(element.tag, element.text) for element in ElementTree.fromstring(body).iter()]


def test_a_batch_delete_body_says_what_botocores_says() -> None:
    """The same elements, names and texts as botocore's serializer writes (odd keys, ETag
    conditions, the quiet flag), and its Content-MD5 is the body's."""
    import base64
    import hashlib

    ours = _delete_body(ODD_DELETES)
    assert ours is not None
    assert _tree(ours) == _tree(_botocore_delete(ODD_DELETES)["body"])
    assert _md5(ours) == base64.b64encode(hashlib.md5(ours).digest()).decode()


@pytest.mark.parametrize("odd", ["carriage\rreturn", "bell\x07", "nul\x00", "\ud800", "\uffff"])
def test_a_batch_with_what_xml_cannot_carry_goes_to_botocore(odd: str) -> None:
    assert _delete_body([("jobs/fine", None), (f"jobs/{odd}", None)]) is None
    assert _delete_body([("jobs/fine", odd)]) is None


def test_a_batch_with_an_empty_key_or_etag_goes_to_botocore() -> None:
    """botocore refuses an empty key and writes an empty ETag as ``<ETag />``: such a batch is its."""
    assert _delete_body([("jobs/fine", None), ("", None)]) is None
    assert _delete_body([("jobs/fine", "")]) is None


def test_a_batch_deletes_signature_is_botocores() -> None:
    """A POST with a body: the payload's SHA-256 and the Content-MD5 signed as botocore signs them."""
    import hashlib

    credentials = Credentials("AKIDEXAMPLE", "secret/+=", None)
    target = _target("http://127.0.0.1:7480/schedule")
    body = _delete_body(ODD_DELETES)
    assert body is not None
    ours = {"content-md5": _md5(body), "User-Agent": "s3-scheduler/test"}
    payload = hashlib.sha256(body).hexdigest()
    _Signer().sign(credentials.get_frozen_credentials(), ("POST", target, "/schedule", "delete="), ours, NOW, payload)
    request = AWSRequest(
        method="POST", url="http://127.0.0.1:7480/schedule?delete", data=body, headers={"Content-MD5": _md5(body)}
    )
    with _botocore_at(NOW):
        S3SigV4Auth(credentials, "s3", "eu-west-3").add_auth(request)
    assert ours["x-amz-content-sha256"] == payload == request.headers["X-Amz-Content-SHA256"]
    assert ours["Authorization"] == request.headers["Authorization"]


def test_a_batch_deletes_reply_is_read_as_botocore_reads_it() -> None:
    reply = (
        f'<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="{NS}">'
        "<Deleted><Key>a</Key></Deleted>"
        "<Error><Key>b &amp; é</Key><Code>PreconditionFailed</Code><Message>At least one</Message></Error>"
        "<Error><Key>c</Key><Code>AccessDenied</Code><Message/><Foo>bar</Foo></Error></DeleteResult>"
    ).encode()
    assert _delete_errors(reply) == [
        {"Key": "b & é", "Code": "PreconditionFailed", "Message": "At least one"},
        {"Key": "c", "Code": "AccessDenied", "Message": ""},
    ]
    assert _delete_errors(f'<DeleteResult xmlns="{NS}"/>'.encode()) == []
    assert _delete_errors(b"<Error><Code>SlowDown</Code></Error>") is None  # a 200 with an error
    assert _delete_errors(b"<DeleteResult><Error>") is None  # cut off
    assert _delete_errors(b"") is None


@given(st.text())
@pytest.mark.parametrize("safe", ["/~", "-._~/"])
def test_keys_are_percent_encoded_as_botocore_encodes_them(safe: str, text: str) -> None:
    try:
        expected = percent_encode(text, safe=safe)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            _quote(text, safe)
        return
    assert _quote(text, safe) == expected


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, {(socket.IPPROTO_TCP, socket.TCP_NODELAY): 1, (socket.SOL_SOCKET, socket.SO_KEEPALIVE): 0}),
        (
            {"tcp_keepalive": True},
            {(socket.IPPROTO_TCP, socket.TCP_NODELAY): 1, (socket.SOL_SOCKET, socket.SO_KEEPALIVE): 1},
        ),
    ],
)
def test_direct_connections_take_the_clients_socket_options(config: dict[str, Any], expected: dict[Any, int]) -> None:
    """As botocore's own connections (urllib3 sets the options botocore computed for the
    client): TCP_NODELAY, and SO_KEEPALIVE with ``tcp_keepalive``."""
    import botocore.session
    from botocore.config import Config

    from s3_scheduler._direct import _Connections

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client = botocore.session.get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        config=Config(**config),
    )
    connection = _Connections(client)._open(_target(f"http://127.0.0.1:{port}/b/"))
    try:
        got = {(level, name): int(bool(connection.sock.getsockopt(level, name))) for level, name in expected}
        assert got == expected
    finally:
        connection.close()
        listener.close()


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's")
def test_each_read_of_a_reply_asks_for_quick_acks() -> None:
    """On a kept connection Linux delays its ACKs, and a server that writes a reply's head and
    body apart without TCP_NODELAY (radosgw 16) then holds the body up to 40 ms: TCP_QUICKACK
    is set before each read of a TCP connection; a socket that is not TCP reads all the same."""
    listener = socket.create_server(("127.0.0.1", 0))
    ours = socket.create_connection(listener.getsockname())
    theirs, _ = listener.accept()
    ours.settimeout(5)
    reads: list[str] = []

    class Watched:
        def setsockopt(self, level: int, name: int, value: int) -> None:
            reads.append(
                "quickack" if (level, name, value) == (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1) else "other"
            )
            ours.setsockopt(level, name, value)

        def recv(self, size: int) -> bytes:
            reads.append("recv")
            return ours.recv(size)

        def sendall(self, data: bytes) -> None:
            ours.sendall(data)

    reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(RESULT), RESULT)
    try:
        connection = _Connection(Watched())  # type: ignore[arg-type]
        for _ in range(2):
            theirs.sendall(reply)
            assert connection.exchange(HEAD) == (200, RESULT)
        assert reads.count("recv") >= 2
        assert reads[0::2] == ["quickack"] * (len(reads) // 2)  # before each read
        assert reads[1::2] == ["recv"] * (len(reads) // 2)
    finally:
        for sock in (ours, theirs, listener):
            sock.close()
    pair = _serve(reply)[0]  # a socket pair: not TCP, the option is refused once and not asked again
    assert pair.exchange(HEAD) == (200, RESULT)
