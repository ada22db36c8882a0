"""Fault injection for moto in-process: fail S3 requests before S3 sees them, lose S3's
replies after it did the work, and abandon ("kill") a run.

An `Injector` attached to a boto3 client (created under ``mock_aws``) takes the place of
moto's own ``before-send`` stubber on that client: every HTTP attempt goes through
`Injector`, which hands it to moto itself (``botocore_stubber``), so it knows for each
attempt whether it reached S3 and what S3 answered, and it can drop the answer after S3
did the work. Each API call is recorded as a `Call` with its attempts, in order.

What a `Fault` does to one API call:

- ``BEFORE``: the call fails before any attempt is sent (a connection error after
  botocore's retries, in effect); S3 never sees it.
- ``TRANSIENT``: the first attempt fails before it is sent; botocore retries and the
  second attempt goes through.
- ``LOST``: S3 does the first attempt, its reply is lost (``ReadTimeoutError``); botocore
  retries, and S3 answers the retry as it finds things then (412, 404, ...).
- ``LOST_FINAL``: S3 does the work, and the caller gets an error all the same (the reply
  lost after botocore's last retry).
- ``KILL_BEFORE`` / ``KILL_AFTER``: the run dies just before this request is sent, or just
  after S3 did it; from then on nothing of that run reaches S3 (every later request
  fails before it is sent) until the run's `Injector.running` block ends. The Python
  code of the run goes on to its end, but S3 sees no more of it: what S3 is left with
  is what a killed process leaves.

botocore's retry delay is set to zero on the client (`no_backoff`), so no test sleeps.
"""

from __future__ import annotations

import enum
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable
from xml.sax.saxutils import escape

from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from moto.core.botocore_stubber import MockRawResponse
from moto.core.models import botocore_stubber

_CALL = "s3-scheduler-tests-fault-call"


class Fault(enum.Enum):
    """What happens to one API call."""

    BEFORE = "fails before S3"
    TRANSIENT = "fails before S3 once, retried"
    LOST = "reply lost after S3 did it, retried"
    LOST_FINAL = "reply lost after S3 did it, not retried"
    KILL_BEFORE = "run killed before this request"
    KILL_AFTER = "run killed after S3 did this request"


class Injected(EndpointConnectionError):  # type: ignore[misc]
    """The connection error a fault raises before a request reaches S3."""


@dataclass
class Attempt:
    """One HTTP attempt of a call: what S3 answered (None: it never reached S3)."""

    status: int | None
    dropped: bool = False
    """S3 did the work but its reply never reached the caller."""
    at: datetime | None = None
    """The injected clock when the attempt was sent."""


@dataclass
class Call:
    """One API call of the client, with the fault chosen for it and its attempts."""

    id: int
    op: str
    params: dict[str, Any]
    run: int
    fault: Fault | None = None
    attempts: list[Attempt] = field(default_factory=list)
    error: str | None = None
    """What the caller got instead of a reply (a ClientError's code, or the exception's name)."""
    killed: bool = False
    """The call failed because its run had been killed."""

    @property
    def landed(self) -> list[Attempt]:
        """The attempts S3 did (2xx)."""
        return [a for a in self.attempts if a.status is not None and 200 <= a.status < 300]

    @property
    def key(self) -> str:
        """The object key the call names ("" for a bucket-level call)."""
        return str(self.params.get("Key", ""))

    @property
    def source(self) -> str:
        """The source key of a CopyObject ("" for other calls)."""
        source = self.params.get("CopySource")
        return str(source.get("Key", "")) if isinstance(source, dict) else ""

    @property
    def delete_keys(self) -> list[str]:
        """The keys of a DeleteObjects call."""
        objects = self.params.get("Delete", {}).get("Objects", [])
        return [str(o["Key"]) for o in objects]


Decide = Callable[[Call], "Fault | None"]
"""Chooses the fault of a call (None: none), called once per call under the injector's lock."""

Answer = Callable[[Call, Any], "AWSResponse | None"]
"""Answers an attempt in S3's place (None: let S3 answer): for a store's answers moto does not give."""


def no_backoff(client: Any) -> None:
    """Make botocore retry ``client``'s requests at once (its retry modes sleep up to seconds).

    botocore's legacy mode (the default before 1.44) keeps its delay in the handler's
    ``_action``; its standard mode (the default since) in the handler's retry policy.
    """
    handlers = client.meta.events._emitter._unique_id_handlers
    service = client.meta.service_model.service_id.hyphenize()
    handler = handlers.get(f"retry-config-{service}", {}).get("handler")
    if handler is not None and hasattr(handler, "_action"):  # legacy
        handler._action = lambda **_: 0
        return
    policy = getattr(getattr(handler, "__self__", None), "_retry_policy", None)
    if policy is not None and hasattr(policy, "compute_retry_delay"):  # standard
        policy.compute_retry_delay = lambda context: 0
        return
    msg = "this botocore's retry handler is neither the legacy nor the standard one: no_backoff cannot zero its delay"
    raise AssertionError(msg)


class Injector:
    """Sends every request of ``client`` to moto itself, recording it and injecting faults.

    ``clock`` (optional) is read when each attempt is sent. Set `decide` to choose faults,
    `answer` to answer attempts in S3's place. Thread-safe: a run's copier, deleter,
    lister and heartbeat threads all go through it.
    """

    def __init__(self, client: Any, *, clock: Callable[[], datetime] | None = None) -> None:
        self.client = client
        self.clock = clock
        self.decide: Decide | None = None
        self.answer: Answer | None = None
        self.calls: list[Call] = []
        self.run = 0
        self.killed = False
        self._lock = threading.Lock()
        self._local = threading.local()
        no_backoff(client)
        events = client.meta.events
        events.unregister("before-send", botocore_stubber)
        events.register_first("before-parameter-build.s3", self._build)
        events.register_first("before-call.s3", self._before_call)
        events.register("before-send.s3", self._send)
        events.register_first("after-call.s3", self._after_call)
        events.register_first("after-call-error.s3", self._after_error)

    # runs ------------------------------------------------------------------------------

    @contextmanager
    def running(self) -> Iterator[int]:
        """Mark the block as one run (one process, in effect); yield its number.

        A kill applies to the requests of its own run only: the calls made after the
        block (a fresh run, the test's own checks) reach S3 again.
        """
        with self._lock:
            self.run += 1
            self.killed = False
            number = self.run
        try:
            yield number
        finally:
            with self._lock:
                self.run += 1
                self.killed = False

    @contextmanager
    def faults(self, decide: Decide | None) -> Iterator[None]:
        """Inject the faults ``decide`` chooses while the block runs."""
        self.decide = decide
        try:
            yield
        finally:
            self.decide = None

    def of(self, op: str, *, run: int | None = None) -> list[Call]:
        """The calls of operation ``op`` (of run ``run``, if given), in order."""
        with self._lock:
            return [c for c in self.calls if c.op == op and (run is None or c.run == run)]

    # hooks -----------------------------------------------------------------------------

    def _build(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        with self._lock:
            call = Call(len(self.calls), model.name, _summary(params), self.run)
            self.calls.append(call)
        context[_CALL] = call

    def _before_call(self, context: dict[str, Any], **_: Any) -> None:
        call: Call = context[_CALL]
        with self._lock:
            if self.killed and call.run == self.run:
                call.killed = True
            elif self.decide is not None:
                call.fault = self.decide(call)
                if call.fault is Fault.KILL_BEFORE:
                    self.killed = True
                    call.killed = True
        self._local.call = call
        if call.fault is Fault.BEFORE or call.killed:
            call.error = "Injected"
            raise Injected(endpoint_url=f"injected:{call.op}")

    def _send(self, request: Any, event_name: str, **_: Any) -> AWSResponse:
        call: Call = self._local.call
        at = self.clock() if self.clock is not None else None
        with self._lock:
            dead = self.killed and call.run == self.run
            first = not call.attempts
        if dead or (call.fault is Fault.TRANSIENT and first):
            call.attempts.append(Attempt(None, at=at))
            call.killed = call.killed or dead
            raise Injected(endpoint_url=request.url)
        response = self.answer(call, request) if self.answer is not None else None
        if response is None:
            response = botocore_stubber(event_name=event_name, request=request)
            if response is None:
                msg = f"moto did not answer {request.method} {request.url}: is mock_aws active?"
                raise AssertionError(msg)
        attempt = Attempt(response.status_code, at=at)
        call.attempts.append(attempt)
        if call.fault is Fault.KILL_AFTER and first:
            with self._lock:
                self.killed = True
            call.killed = True
            attempt.dropped = True
            raise Injected(endpoint_url=request.url)
        if call.fault is Fault.LOST and first:
            attempt.dropped = True
            raise ReadTimeoutError(endpoint_url=request.url)
        if call.fault is Fault.LOST_FINAL:
            attempt.dropped = True
        return response

    def _after_call(self, http_response: Any, parsed: Any, context: dict[str, Any], **_: Any) -> None:
        call: Call | None = context.get(_CALL)
        if call is None:
            return
        if http_response.status_code >= 300:
            call.error = str(parsed.get("Error", {}).get("Code", http_response.status_code))
        if call.fault is Fault.LOST_FINAL:
            call.error = "ReadTimeoutError"
            raise ReadTimeoutError(endpoint_url=f"lost:{call.op}")

    def _after_error(self, exception: BaseException, context: dict[str, Any], **_: Any) -> None:
        call: Call | None = context.get(_CALL)
        if call is not None:
            call.error = type(exception).__name__


def _summary(params: dict[str, Any]) -> dict[str, Any]:
    """What of a call's parameters the tests read (not bodies)."""
    kept = ("Bucket", "Key", "CopySource", "CopySourceIfMatch", "IfMatch", "IfNoneMatch", "Delete", "ContinuationToken")
    return {name: params[name] for name in kept if name in params}


def delete_result(request: Any, code: str) -> AWSResponse:
    """S3's answer to the DeleteObjects ``request`` with every key refused with ``code``.

    AWS answers so a conditional batch delete whose keys are already gone (``NoSuchKey``)
    or changed (``PreconditionFailed``); moto answers every key as deleted.
    """
    body = request.body
    if hasattr(body, "read"):
        body = body.read()
    root = ET.fromstring(body)
    keys = [el.text or "" for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Key"]
    errors = "".join(
        f"<Error><Key>{escape(key)}</Key><Code>{code}</Code><Message>injected</Message></Error>" for key in keys
    )
    xml = f'<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{errors}</DeleteResult>'
    return AWSResponse(request.url, 200, {"Content-Type": "application/xml"}, MockRawResponse(xml.encode()))
