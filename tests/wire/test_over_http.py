"""Behaviour that depends on the store, checked over HTTP on moto's server and on a real S3
server (`wire` runs each test on both): content type and metadata reach the target,
reschedule never replaces, two dead letters of one name both stay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from s3_scheduler import EventExistsError, keys

from ..conftest import S3, T0, Clock

HOUR = timedelta(hours=1)


def _write_meanwhile(s3: S3, taken: str, body: str) -> Any:
    """A handler that writes ``taken`` (as another writer would) just before the move writes it."""
    done: list[bool] = []

    def handler(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == taken and not done:
            done.append(True)
            s3.client.put_object(Bucket=s3.schedule_bucket, Key=taken, Body=body.encode())

    return handler


def test_content_type_and_metadata_reach_the_target(wire: S3, clock: Clock) -> None:
    """The event's content type and metadata are carried by the copy, on moto and a real S3 server."""
    scheduler = wire.scheduler(clock=clock)
    scheduler.schedule(
        T0 - timedelta(seconds=1),
        wire.target_bucket,
        "order.json",
        '{"id": 42}',
        content_type="application/json",
        metadata={"order-id": "42"},
    )
    scheduler.schedule_many(
        [(T0 - timedelta(seconds=1), wire.target_bucket, "batch.csv", "a,b\n")],
        content_type="text/csv",
        metadata={"source": "batch"},
    )

    scheduler.handle()

    head = wire.client.head_object(Bucket=wire.target_bucket, Key="order.json")
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"order-id": "42"}
    batch = wire.client.head_object(Bucket=wire.target_bucket, Key="batch.csv")
    assert (batch["ContentType"], batch["Metadata"]) == ("text/csv", {"source": "batch"})


def test_reschedule_never_replaces_over_http(wire: S3, clock: Clock) -> None:
    """On moto's server and on the real server: an event written at the new name as the move writes it stays;
    the move raises and changes nothing."""
    scheduler = wire.scheduler(clock=clock)
    old = scheduler.schedule(T0 + HOUR, wire.target_bucket, "k", "moving")
    taken = keys.encode_key(scheduler.prefix, T0 + 2 * HOUR, wire.target_bucket, "k")
    wire.client.meta.events.register("before-parameter-build.s3.PutObject", _write_meanwhile(wire, taken, "other"))

    with pytest.raises(EventExistsError):
        scheduler.reschedule(old, T0 + 2 * HOUR)

    assert wire.body(wire.schedule_bucket, taken) == b"other"
    assert wire.body(wire.schedule_bucket, old) == b"moving"


def test_dead_letters_of_one_name_over_http(wire: S3, clock: Clock) -> None:
    """On moto's server and on the real server: two dead letters of one time and target both stay."""
    scheduler = wire.scheduler(clock=clock, dead_letter_after=timedelta(0), dead_letter_attempts=1)
    for body in ("first", "second"):
        scheduler.schedule(T0 - HOUR, "no-such-bucket-x", "k", body)
        scheduler.handle()

    letters = list(scheduler.dead_letters())

    assert sorted(wire.body(wire.schedule_bucket, e.key) for e in letters) == [b"first", b"second"]
