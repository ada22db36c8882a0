"""Shards over HTTP: moto's server, and a real S3 server (Ceph radosgw) when one is set (#19).

What crosses the wire here is the listing that finds the shards (``Delimiter="/"``, the
folders coming back as CommonPrefixes, with the scheduler path's own special characters)
and the special characters of the targets, which decide the shard.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from s3_scheduler import keys

from ..conftest import S3, T0, Clock
from . import test_wire

TARGETS = [*test_wire.TARGETS, "0/looks/like/a/shard"]
"""test_wire's targets with any characters, and one that looks like a shard's path."""


@pytest.mark.parametrize("path", ["jobs", "team a/jobs+%", "ü/|odd|"])
def test_four_shards_round_trip_with_special_characters(wire: S3, clock: Clock, path: str) -> None:
    """Events for targets with any characters, written in 4 shards, are found by listing and
    delivered each to its exact key, with its content, by one handle()."""
    scheduler = wire.scheduler(path, clock=clock, shards=4)
    due = [
        (T0 - timedelta(seconds=i), wire.target_bucket, target, f"content of {target}")
        for i, target in enumerate(TARGETS)
    ]

    written = scheduler.schedule_many(due)
    pending = list(scheduler.pending())
    report = scheduler.handle()

    root = keys.normalize_path(path) + "/"
    for key, target in zip(written, TARGETS):
        assert key.startswith(f"{root}{keys.shard_of(wire.target_bucket, target, 4)}/|")
    assert sorted(event.key for event in pending) == sorted(written)
    assert [event.when for event in pending] == sorted(event.when for event in pending)
    assert sorted(event.key for event in report.delivered) == sorted(written)
    assert report.shards is not None
    assert set(report.shards) == {key[len(root) :].split("/", 1)[0] for key in written}
    delivered = [target[1:] if target.startswith("/") else target for target in TARGETS]
    assert sorted(wire.keys(wire.target_bucket)) == sorted(delivered)
    for target, stored in zip(TARGETS, delivered):
        assert wire.body(wire.target_bucket, stored) == f"content of {target}".encode()
    assert wire.keys(wire.schedule_bucket) == []


def test_a_sharded_handler_finds_the_unsharded_events_over_the_wire(wire: S3, clock: Clock) -> None:
    """Events written before sharding (shards=1) and with 8 shards are all delivered by a
    handler with 4 shards, each shard under its own lease, and one handle(shard=k) delivers
    shard k alone (the events of 8 shards' first four included: they are the same folders)."""
    before = wire.scheduler("jobs", clock=clock)
    wider = wire.scheduler("jobs", clock=clock, shards=8)
    handler = wire.scheduler("jobs", clock=clock, shards=4)
    old = [before.schedule(T0 - timedelta(minutes=1), wire.target_bucket, t, t) for t in TARGETS[:4]]
    wide = [wider.schedule(T0 - timedelta(minutes=1), wire.target_bucket, t, t) for t in TARGETS[4:]]
    mine = handler.schedule(T0 - timedelta(minutes=1), wire.target_bucket, "mine", "mine")
    number = int(mine.split("/")[1])

    alone = handler.handle(shard=number)
    found = handler.check()
    rest = handler.handle()

    in_shard = [k for k in [*wide, mine] if k.startswith(f"jobs/{number}/|")]
    assert sorted(event.key for event in alone.delivered) == sorted(in_shard)
    assert sorted(found.unsharded) == sorted(old)
    assert sorted(found.outside_shards) == sorted(k for k in wide if int(k.split("/")[1]) >= 4)
    assert sorted(event.key for event in rest.delivered) == sorted(k for k in old + wide if k not in in_shard)
    assert wire.keys(wire.schedule_bucket) == []
    assert len(wire.keys(wire.target_bucket)) == len(TARGETS) + 1
