"""Mixed fleets during an upgrade (issue 17): 0.0.3's handler and this package's handler
on one prefix at once, every simulated minute, over events written by both versions.

0.0.3 runs in a process of its own, as the other cross-version tests run it (a
``PYTHONPATH`` holding only its sdist, fetched from the package index at test time: see
``original_source`` and `OriginalProcess` in conftest.py), so both handlers meet on
moto's server on 127.0.0.1 (and a real S3 server when one is set). 0.0.3 could be
imported in this process instead, under another package name (its imports are
relative), but two runners in one interpreter would share the GIL and the
``s3_scheduler`` logger, and 0.0.3 would no longer run as it is installed: two
processes, each with its own client, are what two Lambda functions are.

*Early* is made detectable with one simulated clock for both: this package's
``clock=`` and 0.0.3's ``nowut``, patched in its process, read the same tick, and
between ticks no handler runs, so an event whose target exists after the tick at ``T``
was delivered at ``T``. The ticks lie in 2021, years behind the real clock: a handler
that read the real clock would find every event due at the first tick and deliver most
of them early. Each event falls due between two ticks; some exactly at a tick (ours
delivers them then, 0.0.3, which wants the time strictly past, a tick later) and some a
microsecond after the tick before. A fifth are written by 0.0.3, most with a UTC offset
in the name: ``-07:00`` and ``-10:00`` names sort hours before their time, so a handler
that compared names instead of times would deliver them early; ``+14:00`` names sort
hours after it, so they are found only through the 14-hour look-ahead.

The target bucket is versioned: the number of versions of a target is the number of
times its event was delivered. Duplicates are counted and printed, not asserted: 0.0.3
takes no lease, so overlapping it duplicates. 200 events over 4 ticks by default, 300
where CI asks for the full campaigns (``S3_SCHEDULER_FULL_CAMPAIGNS``): under
1,000 pending names, as 0.0.3's ListObjects (v1) pagination stalls on Ceph radosgw 16
past 1,000 names with a literal ``+`` ("the same next token was received twice").
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from s3_scheduler import HandleReport, Scheduler

from ..conftest import S3, Clock, Endpoint, OriginalProcess

FULL = os.environ.get("S3_SCHEDULER_FULL_CAMPAIGNS", "") not in ("", "0")
EVENTS = 300 if FULL else 200
TICKS = 4
SEED = 20260917
PATH = "jobs"
START = datetime(2021, 3, 1, 12, 0, tzinfo=timezone.utc)
"""The first tick: years behind the real clock, so a handler reading it would deliver early."""
MINUTE = timedelta(minutes=1)
ZONES = (
    timezone(timedelta(hours=-7)),
    timezone(timedelta(hours=14)),
    timezone(timedelta(hours=-10)),
    timezone(timedelta(hours=5, minutes=30)),
    timezone.utc,
)
"""The zones 0.0.3 writes its events in, in turn (it keeps the offset in the name)."""


@dataclass(frozen=True)
class Event:
    """One event of the campaign: when it is due, where it goes, and who writes it: 0.0.3
    with its time in ``zone``, or this package (``zone`` None)."""

    when: datetime
    target: str
    content: str
    zone: timezone | None

    def original_order(self, bucket: str) -> list[Any]:
        """0.0.3's order to write it."""
        assert self.zone is not None
        return ["schedule", self.when.astimezone(self.zone).isoformat(), bucket, self.target, self.content]

    @property
    def etag(self) -> str:
        """The ETag of its content, which every delivered copy keeps."""
        return hashlib.md5(self.content.encode()).hexdigest()


def campaign(events: int, ticks: int, seed: int) -> list[Event]:
    """``events`` events, each due in the minute before one of ``ticks`` ticks, the last one
    at the tick itself: all are due by the last tick. Every fifth is written by 0.0.3."""
    rng = random.Random(seed)
    made = []
    for i in range(events):
        tick = START + (i % ticks) * MINUTE
        kind = (i // ticks) % 5
        if kind == 0:
            when = tick  # due at the tick for this package (<=), a tick later for 0.0.3 (>)
        elif kind == 1:
            when = tick - MINUTE + timedelta(microseconds=1)  # a microsecond after the tick before
        else:
            when = tick - timedelta(microseconds=rng.randrange(60_000_000))
        zone = ZONES[(i // 5) % len(ZONES)] if i % 5 == 2 else None
        made.append(Event(when, f"fleet/{i:05d}.json", f'{{"event": {i}}}', zone))
    return made


def deliveries(s3: S3) -> dict[str, list[str]]:
    """The ETag of each time each target was written: its versions in the versioned target bucket."""
    found: dict[str, list[str]] = {}
    for page in s3.client.get_paginator("list_object_versions").paginate(Bucket=s3.target_bucket):
        for version in page.get("Versions", ()):
            found.setdefault(version["Key"], []).append(version["ETag"].strip('"'))
    return found


@dataclass
class Tick:
    """What happened at one tick: both runs' wall-clock spans, our report, 0.0.3's warnings."""

    ours: tuple[float, float]
    theirs: tuple[float, float]
    report: HandleReport
    warnings: list[str]

    @property
    def overlapped(self) -> bool:
        return max(self.ours[0], self.theirs[0]) < min(self.ours[1], self.theirs[1])


def run_tick(ours: Scheduler, theirs: OriginalProcess, now: datetime) -> Tick:
    """Start 0.0.3's handle() and ours at once, both at simulated time ``now``; wait for both."""
    theirs.send([["handle", now.isoformat()]])
    started = time.time()
    report = ours.handle()
    ended = time.time()
    [run] = theirs.receive()
    return Tick((started, ended), (run["started"], run["ended"]), report, run["warnings"])


@pytest.mark.slow
def test_both_handlers_on_one_prefix_lose_nothing_and_deliver_nothing_early(
    original_source: Path, endpoint: Endpoint, wire: S3, capsys: pytest.CaptureFixture[str]
) -> None:
    """0.0.3's handle() and ours, overlapping at every tick on one prefix, deliver every event, none early."""
    wire.client.put_bucket_versioning(Bucket=wire.target_bucket, VersioningConfiguration={"Status": "Enabled"})
    events = campaign(EVENTS, TICKS, SEED)
    clock = Clock(START)
    ours = Scheduler(wire.schedule_bucket, PATH, wire.resource, wire.client, clock=clock)
    ticks: list[Tick] = []
    with OriginalProcess(original_source, endpoint, wire, PATH) as theirs:
        theirs.send([e.original_order(wire.target_bucket) for e in events if e.zone is not None])
        ours.schedule_many((e.when, wire.target_bucket, e.target, e.content) for e in events if e.zone is None)
        theirs.receive()

        for tick in range(TICKS):
            clock.now = START + tick * MINUTE
            ticks.append(run_tick(ours, theirs, clock.now))

            delivered = deliveries(wire)
            early = [(e.target, e.when.isoformat()) for e in events if e.target in delivered and e.when > clock.now]
            assert early == [], f"delivered before their time at tick {clock.now.isoformat()}"

    copies = sum(len(etags) for etags in delivered.values())
    twice = sum(1 for etags in delivered.values() if len(etags) > 1)
    with capsys.disabled():
        print(
            f"\nmixed fleet, {EVENTS} events over {TICKS} ticks: {copies} copies, {copies - EVENTS} duplicates"
            f" ({100 * (copies - EVENTS) / EVENTS:.1f} %), {twice} events delivered more than once;"
            f" ours delivered {sum(len(t.report.delivered) for t in ticks)}"
            f" (vanished {sum(len(t.report.vanished) for t in ticks)},"
            f" failed {sum(len(t.report.failed) for t in ticks)}); 0.0.3 warned of the lease in"
            f" {sum(1 for t in ticks if any('.lease' in w for w in t.warnings))} of {TICKS} runs,"
            f" {sum(len(t.warnings) for t in ticks)} warnings in all"
        )
    assert all(t.overlapped for t in ticks), [(t.ours, t.theirs) for t in ticks]
    assert {e.target: {e.etag} for e in events} == {target: set(etags) for target, etags in delivered.items()}
    assert [key for key in wire.keys(wire.schedule_bucket) if key.startswith(ours.prefix)] == []
    # 0.0.3 reads every name of ours: it warns only of the lease object and of events gone before its copy.
    for warning in (w for t in ticks for w in t.warnings):
        assert f"{PATH}/.lease has invalid structure" in warning or "NoSuchKey" in warning, warning
