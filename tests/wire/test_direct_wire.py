"""Direct copies over HTTP, on moto's server and on a real server when set: a real server
checks the signature, so a copy it answers as copied was signed right. Each test counts
the copies sent directly and those handed to botocore."""

from __future__ import annotations

import contextlib
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from s3_scheduler import Scheduler, _s3, delivery
from s3_scheduler._direct import Direct
from tests.conftest import S3, T0, Clock, Endpoint

ODD = ["plain", "a b/é+%~|x=y&z", "/lead//x", "emoji 🎉", "dots/../x", "semi;colon,comma*star"]


def _own(monkeypatch: pytest.MonkeyPatch, endpoint: Endpoint, **config: Any) -> tuple[Any, Direct]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", endpoint.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", endpoint.secret_key)
    client = _s3.fast_client(8, **config)
    direct = Direct.of(client)
    assert direct is not None
    return client, direct


@pytest.mark.parametrize("dead_letters", [False, True])
def test_odd_keys_are_delivered_directly(
    wire: S3, endpoint: Endpoint, clock: Clock, monkeypatch: pytest.MonkeyPatch, dead_letters: bool
) -> None:
    client, direct = _own(monkeypatch, endpoint)
    options: dict[str, Any] = {"dead_letter_after": timedelta(hours=1)} if dead_letters else {}
    scheduler = Scheduler(wire.schedule_bucket, "odd path/é", s3_client=client, clock=clock, max_workers=1, **options)
    odd = [*ODD, "x<y>&\"z'&amp;"]
    names = [
        scheduler.schedule(T0 + timedelta(seconds=i), wire.target_bucket, key, f"body {i}")
        for i, key in enumerate(odd * 3)
    ]
    clock.advance(len(names))
    through_botocore: list[Any] = []
    client.meta.events.register("provide-client-params.s3.DeleteObjects", lambda **_: through_botocore.append(1))
    report = scheduler.handle()
    assert len(report.delivered) == len(names)
    assert report.failed == []
    for i, key in enumerate(odd * 3):
        if i >= len(odd) * 2:  # the last writes of each target
            assert wire.body(wire.target_bucket, key.removeprefix("/")) == f"body {i}".encode()
    assert (direct.handed_over, direct.sent) == (1, len(names) - 1)
    assert not [k for k in wire.keys(wire.schedule_bucket) if "|" in k]
    assert direct.batches >= 1  # the server checked their signatures and their Content-MD5
    assert through_botocore == []


def test_many_copier_threads_keep_their_connections(
    wire: S3, endpoint: Endpoint, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, direct = _own(monkeypatch, endpoint)
    scheduler = Scheduler(wire.schedule_bucket, "jobs", s3_client=client, clock=clock, max_workers=8)
    wire.seed(scheduler, [(T0, wire.target_bucket, f"k{i}", "x") for i in range(200)])
    assert len(scheduler.handle().delivered) == 200
    assert len(wire.keys(wire.target_bucket)) == 200
    assert direct.sent >= 200 - 8  # at most one botocore copy per copier thread, learning the bucket
    assert direct.sent + direct.handed_over == 200
    opened = direct._connections.opened
    assert opened <= 8 + 1 or endpoint.name == "moto"  # a copier's each and the lister's (moto's closes each)
    wire.seed(scheduler, [(T0, wire.target_bucket, f"again{i}", "x") for i in range(20)])
    assert len(scheduler.handle().delivered) == 20  # a next run's new threads take the kept connections
    assert direct._connections.opened == opened or endpoint.name == "moto"


def test_a_copy_signed_wrong_is_refused_and_botocore_delivers_it(
    wire: S3, endpoint: Endpoint, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real server refuses a bad signature (moto's does not check it): each direct copy
    signed with a wrong key is refused, handed to botocore, and delivered."""
    if endpoint.name == "moto":
        pytest.skip("moto's server does not check signatures")
    client, direct = _own(monkeypatch, endpoint)
    scheduler = Scheduler(wire.schedule_bucket, "jobs", s3_client=client, clock=clock, max_workers=1)
    for i in range(3):
        scheduler.schedule(T0, wire.target_bucket, f"k{i}", "x")
    monkeypatch.setattr(direct._signer, "_key", lambda *_: b"wrong")
    report = scheduler.handle()
    assert len(report.delivered) == 3
    assert report.failed == []
    assert sorted(wire.keys(wire.target_bucket)) == ["k0", "k1", "k2"]
    assert (direct.sent, direct.handed_over) == (0, 3)
    assert direct.batches == 0  # refused too: botocore deleted them
    assert not [k for k in wire.keys(wire.schedule_bucket) if "|" in k]


def test_a_server_that_closes_each_connection_and_one_that_drops_the_reply(
    wire: S3, endpoint: Endpoint, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a proxy that closes the connection after each reply, and once, after the
    server did the copy, before its reply, and after the server did the batch delete,
    before its reply: every event is delivered and removed; the lost reply's copy goes to
    botocore, which copies again (the bound on duplicates), and so does the batch delete."""
    monkeypatch.setattr(delivery, "DELETE_FLUSH_SECONDS", 600.0)  # one batch delete, at the run's end
    upstream = endpoint.url.split("//", 1)[1]
    proxy = _Proxy(upstream)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", endpoint.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", endpoint.secret_key)
    client = _s3.fast_client(4)
    direct = Direct.of(client)
    assert direct is not None
    scheduler = Scheduler(wire.schedule_bucket, "jobs", s3_client=client, clock=clock, max_workers=1)
    for i in range(6):
        scheduler.schedule(T0, wire.target_bucket, f"k{i}", f"{i}")
    proxy.drop_reply_of = 3  # the 3rd direct copy: done by the server, its reply lost
    proxy.drop_post_reply_of = 1  # the batch delete: done by the server, its reply lost
    try:
        report = scheduler.handle()
    finally:
        proxy.close()
    assert sorted(e.path for e in report.delivered) == [f"k{i}" for i in range(6)]
    assert report.failed == []  # the deletes botocore sent again found nothing left to refuse
    assert [wire.body(wire.target_bucket, f"k{i}") for i in range(6)] == [f"{i}".encode() for i in range(6)]
    assert not [k for k in wire.keys(wire.schedule_bucket) if "|" in k]
    assert (direct.sent, direct.handed_over, direct.batches) == (4, 2, 0)
    assert proxy.dropped == 2


@pytest.mark.parametrize("part", ["url", "headers"])
def test_a_request_a_before_send_handler_rewrites_is_sent_as_rewritten(
    moto_endpoint: Endpoint, make_wire: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch, part: str
) -> None:
    """A ``before-send`` handler that points each copy at another key, or changes its headers
    in place (moto's server checks no signature): every copy is what the handler made of it,
    the direct ones too, as botocore sends a rewritten request."""
    wire = make_wire(moto_endpoint)
    client, direct = _own(monkeypatch, moto_endpoint)

    def rewrite(request: Any, **_: Any) -> None:
        if part == "url":
            request.url = request.url.replace("/in/", "/rewritten/")
        else:
            request.headers["x-amz-metadata-directive"] = "REPLACE"
            request.headers["x-amz-meta-note"] = "rewritten"

    client.meta.events.register("before-send.s3.CopyObject", rewrite)
    scheduler = Scheduler(wire.schedule_bucket, "jobs", s3_client=client, clock=clock, max_workers=1)
    for i in range(5):
        scheduler.schedule(T0, wire.target_bucket, f"in/k{i}", f"{i}")

    report = scheduler.handle()

    assert len(report.delivered) == 5
    landed = sorted(wire.keys(wire.target_bucket))
    if part == "url":
        assert landed == [f"rewritten/k{i}" for i in range(5)]
    else:
        assert [wire.client.head_object(Bucket=wire.target_bucket, Key=k)["Metadata"] for k in landed] == [
            {"note": "rewritten"}
        ] * 5
    assert (direct.sent, direct.handed_over) == (4, 1)  # the first copy learns the bucket through botocore


class _Listener:
    """A server on an ephemeral port of 127.0.0.1 that hands each connection to `_one` in a
    thread of its own, and counts them."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        raise NotImplementedError


class _Proxy(_Listener):
    """A TCP proxy on 127.0.0.1 that serves one request per connection (it closes after
    each reply), and can drop the reply to the n-th direct copy, or the n-th direct batch
    delete, after the server did it."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.partition(":")
        self._upstream = (host, int(port or 80))
        self.drop_reply_of = 0
        self.drop_post_reply_of = 0
        self.dropped = 0
        self._direct = 0
        self._posts = 0
        self._lock = threading.Lock()
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn, socket.create_connection(self._upstream, timeout=10) as up:
            request = _read_message(conn)
            head = request.split(b"\r\n\r\n", 1)[0]
            drop = False
            if b"s3-scheduler/" in head and head.startswith(b"PUT "):
                with self._lock:
                    self._direct += 1
                    drop = self._direct == self.drop_reply_of
            elif b"s3-scheduler/" in head and head.startswith(b"POST "):
                with self._lock:
                    self._posts += 1
                    drop = self._posts == self.drop_post_reply_of
            head, _, body = request.partition(b"\r\n\r\n")
            lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
            up.sendall(b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body)
            reply = _read_to_close(up)
            if drop:
                with self._lock:
                    self.dropped += 1
                return
            conn.sendall(reply)


def _read_message(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def _read_to_close(up: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = up.recv(65536)
        if not chunk:
            return data
        data += chunk


ODD_NAMES = ["a b", "é+%~|x=y&z", "semi;colon,comma*star", "plus+sign", "tab\there", "amp&lt;"]


def test_a_direct_listing_is_botocores_listing(wire: S3, endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """1,100 odd names (two pages), from the start and after a name, with and without a
    prefix: the same keys, ETags and times as botocore's paginator gives, every page sent
    directly (the server checks their signatures)."""
    client, direct = _own(monkeypatch, endpoint)
    names = [f"odd é/{i:04d} {ODD_NAMES[i % len(ODD_NAMES)]}" for i in range(1100)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: wire.client.put_object(Bucket=wire.schedule_bucket, Key=n, Body=n.encode()), names))
    wire.client.put_object(Bucket=wire.schedule_bucket, Key="other", Body=b"")
    sent: list[str] = []
    client.meta.events.register(
        "before-send.s3.ListObjectsV2",
        lambda request, **_: sent.append(request.url) if b"s3-scheduler/" in _agent(request) else None,
    )
    for prefix, after in [("odd é/", None), ("", None), ("odd é/", names[499]), ("odd é/0", "odd é/05")]:
        expected = [
            [(o["Key"], o.get("ETag"), o["LastModified"]) for o in page.get("Contents", ())]
            for page in wire.client.get_paginator("list_objects_v2").paginate(
                Bucket=wire.schedule_bucket, Prefix=prefix, **({"StartAfter": after} if after else {})
            )
        ]
        got = [
            [(key, etag, _s3._moment(modified)) for key, etag, modified in items]
            for items, _ in direct.pages(wire.schedule_bucket, prefix, after)
        ]
        assert got == expected
    assert direct.listed == len(sent) == 6  # every page (a LIST of one key through botocore gave the URL)


def _agent(request: Any) -> bytes:
    agent = request.headers.get("User-Agent", b"")
    return agent if isinstance(agent, bytes) else str(agent).encode()


def test_over_tls_with_the_clients_ca_bundle(
    wire: S3, endpoint: Endpoint, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Through a TLS front (a certificate for localhost that the client's CA bundle,
    AWS_CA_BUNDLE, trusts): the copies and the listing are sent directly over TLS. With
    other CAs, the direct copy's TLS check refuses the front, and botocore delivers it."""
    monkeypatch.setattr(delivery, "DELETE_FLUSH_SECONDS", 600.0)  # one batch delete, at the run's end
    certificate = _self_signed(tmp_path)
    front = _TlsFront(endpoint.url.split("//", 1)[1], certificate)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"https://localhost:{front.port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", endpoint.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", endpoint.secret_key)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(certificate[0]))
    # Over HTTPS, botocore 1.36+ sends a PutObject's checksum in an aws-chunked trailer,
    # without Content-Length, which Ceph 16 refuses (MissingContentLength): the lease's PUT
    # goes the way it goes over HTTP.
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    writer = Scheduler(wire.schedule_bucket, "jobs", s3_client=wire.client, clock=clock)
    try:
        client = _s3.fast_client(4)
        direct = Direct.of(client)
        assert direct is not None
        scheduler = Scheduler(wire.schedule_bucket, "jobs", s3_client=client, clock=clock, max_workers=2)
        for i in range(6):
            writer.schedule(T0, wire.target_bucket, f"k{i}", f"{i}")
        assert len(scheduler.handle().delivered) == 6
        assert [wire.body(wire.target_bucket, f"k{i}") for i in range(6)] == [f"{i}".encode() for i in range(6)]
        assert direct.sent >= 4
        assert (direct.listed, direct.batches) == (2, 1)  # the events' and the markers' pages; the delete
        assert front.connections >= 2
        import ssl

        direct._connections._context = ssl.create_default_context()  # the machine's CAs: not the front's
        direct._connections._idle.clear()  # new connections, verified against those
        handed_over = direct.handed_over
        writer.schedule(T0, wire.target_bucket, "untrusted", "u")
        assert len(scheduler.handle().delivered) == 1  # refused by our TLS check; botocore trusts the bundle
        assert direct.handed_over == handed_over + 1
    finally:
        front.close()


def _self_signed(folder: Any) -> tuple[Any, Any]:
    """A certificate for localhost (and 127.0.0.1) and its key, as PEM files in ``folder``."""
    import ipaddress
    from datetime import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.now(tz=T0.tzinfo)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class _TlsFront(_Listener):
    """TLS on 127.0.0.1 in front of ``upstream`` (plain HTTP): bytes pumped both ways."""

    def __init__(self, upstream: str, certificate: tuple[Any, Any]) -> None:
        import ssl

        host, _, port = upstream.partition(":")
        self._upstream = (host, int(port or 80))
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(certificate[0]), str(certificate[1]))
        super().__init__()

    def _one(self, conn: socket.socket) -> None:
        """Relay one connection in one thread: an SSL socket is not read and written from
        two threads at once."""
        import select
        import ssl

        conn.settimeout(10)
        try:
            secure = self._context.wrap_socket(conn, server_side=True)
        except OSError:
            conn.close()
            return
        up = socket.create_connection(self._upstream, timeout=10)
        with contextlib.suppress(OSError), secure, up:
            while True:
                if not secure.pending():
                    readable, _, _ = select.select([secure, up], [], [], 10)
                    if not readable:
                        return
                else:
                    readable = [secure]
                if secure in readable:
                    try:
                        data = secure.recv(65536)
                    except ssl.SSLWantReadError:
                        continue
                    if not data:
                        return
                    up.sendall(data)
                if up in readable:
                    data = up.recv(65536)
                    if not data:
                        return
                    secure.sendall(data)
