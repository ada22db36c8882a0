"""The Guarantees hold per shard (issue 19): 4 shards, one process looping on each shard's
``handle(shard=k)`` and one looping on ``handle()`` over every shard, overlapping them,
SIGKILLed at seeded random points and started again, on moto's server and on a real S3
server when one is set (``S3_SCHEDULER_TEST_ENDPOINT``, see conftest). At the end every
event reached its target with its content, none before its time, and every duplicate is
one the Guarantees page (docs/reference/guarantees.md) allows.

How it runs. The events are written with ``schedule_many``: a quarter due at the start,
each of the others in the window (a few seconds) of a phase picked at random. The
processes (``tests/run_in_subprocess.py loop``) share a clock: the real UTC time plus an
offset each is given at its start. The shard processes use the client the package builds
(as the Lambda handler's shard invocations and ``run --shards`` do), which sends copies,
listings and batch deletes directly (``s3_scheduler._direct``); the process over every shard
is given a boto3 client, every request through botocore. The campaign runs in phases. In each, the five
processes start as the phase's window opens, so its events fall due while they run;
some are SIGKILLed, each once it has sent a random number of copies or after a random
time (a second or two at most), whichever comes first, and started again at once; once
the window is over and every process has finished a run since, all are stopped with
SIGTERM (a run stops, sends its deletes, releases its lease). Then, with no process
running, the shared clock moves on by more than the lease ttl, as waiting would, without
the wait: the leases the killed processes left have lapsed when the next phase starts. A
last phase, its clock past every event's time, runs one process over every shard until
nothing is pending.

How it counts. The target bucket is versioned, so the versions of a target key are the
copies that landed on it. Each process logs the target and the shared clock before each
copy leaves it, and the outcome of each copy and of each batch delete:

- lost: an event with no version at its target (nothing is pending at the end);
- early: a copy sent before its event's time by the shared clock (each target must
  have as many logged sends as versions at least, so no copy escapes the check);
- duplicates: versions past the first. the Guarantees page ("A run killed at any moment
  delivers at most ``max_workers`` + 200 events twice", per shard) and "What remains"
  name where they come from: a run killed between copy and delete, a batch delete
  that did not remove the event, a copy that failed after it may have landed, a copy
  botocore sent again. Each copy of an event after the first must be a retry of one
  call, or sent after the process of the copy before it left the event pending for one
  of these reasons (by the shared clock: killed, told the delete failed, told the copy
  failed); each killed process must have left at most ``max_workers`` + 200 events
  copied and not deleted per shard it ran; a process stopped by SIGTERM none; and the
  total is at most what the kills (and the failures logged) allow. Overlapping runs
  without the lease (``exclusive=False``) fail this: their duplicates have no such cause.

Sizes: 200 events, 1 phase of 3 kills; ``S3_SCHEDULER_FULL_CAMPAIGNS=1``: 2,000 events
on the real server and 1,000 on moto's (see `MOTO_EVENTS`),
2 phases of 3 kills. ``S3_SCHEDULER_CAMPAIGN_SEED`` sets the seed, printed with the figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

from s3_scheduler import Scheduler, keys
from s3_scheduler.delivery import UNDELETED_LIMIT
from s3_scheduler.lease import DEFAULT_LEASE_TTL

from ..conftest import FULL_SIZE, S3, T0, Endpoint

SHARDS = 4
EVENTS = 2000 if FULL_SIZE else 200
MOTO_EVENTS = 1000 if FULL_SIZE else 200
"""The events on moto's server, which takes about twice radosgw's time per event here: in CI's
15 minutes, the full campaign runs 2,000 events on radosgw and 1,000 on moto's server."""
PHASES = 2 if FULL_SIZE else 1
KILLS_PER_PHASE = 3
SEED = int(os.environ.get("S3_SCHEDULER_CAMPAIGN_SEED", "20261207"))

PATH = "jobs"
MAX_WORKERS = 8
"""Copies in flight at once in each process (the process over every shard shares them out)."""
LEASE_TTL = DEFAULT_LEASE_TTL.total_seconds()
"""The lease ttl of every process: the default. It costs no real time (a killed run's lease
lapses while the clock jumps between phases), and a process starved of CPU on a loaded
machine keeps its lease (Guarantees page, "What remains": a run frozen for longer than the ttl may
be overtaken)."""
JUMP = LEASE_TTL + 5.0
"""How far (seconds) the shared clock moves on between phases at least, no process running."""
WINDOW = 6.0 if FULL_SIZE else 4.0
"""Each phase runs until its window (seconds of the shared clock) is over: the events of
the phase fall due in it, while the processes run."""
PAUSE = 0.1
"""Real seconds each process waits between its runs."""

CHILD = (sys.executable, str(Path(__file__).parents[1] / "run_in_subprocess.py"), "loop")
"""The command of a handler process; its spec follows as JSON."""
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
KILL_TIMEOUT = 10.0
DRAIN_TIMEOUT = 300.0 if FULL_SIZE else 120.0

Record = dict[str, Any]


# the processes ---------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float, poll: float = 0.01) -> bool:
    """Wait (at most ``timeout`` real seconds, looking every ``poll``) for what the processes must do;
    return whether it happened."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


@dataclass
class Worker:
    """One handler process: its shard (None: ``handle()`` over every shard), its log, how it ended."""

    shard: int | None
    log: Path
    errors: Path
    process: subprocess.Popen[bytes]
    ending: str = "running"
    """"running", "killed" (SIGKILL) or "stopped" (SIGTERM)."""
    killed: datetime | None = None
    """When it was dead after its SIGKILL, by the shared clock."""

    @property
    def role(self) -> str:
        return "all shards" if self.shard is None else f"shard {self.shard}"

    def text(self) -> bytes:
        return self.log.read_bytes() if self.log.exists() else b""

    def count(self, what: str) -> int:
        """How many records of kind ``what`` ("send", "run", "ready", ...) the log holds."""
        text = self.text()
        return text.count(f'{{"{what}":'.encode()) + text.count(f', "{what}":'.encode())

    def runs(self) -> int:
        """How many runs it finished (returned or raised)."""
        return self.count("run") + self.count("raised")

    def finished(self, runs: int) -> Callable[[], bool]:
        """A condition: it has finished ``runs`` runs, or it ended."""
        return lambda: self.runs() >= runs or self.process.poll() is not None

    def records(self) -> list[Record]:
        """The log's records, in order (every line is whole: each was one write)."""
        return [json.loads(line) for line in self.text().decode().splitlines()]

    def stderr(self) -> str:
        return self.errors.read_text(errors="replace")[-3000:] if self.errors.exists() else ""


class Fleet:
    """The handler processes: one per shard and one over every shard, sharing a clock
    (real time plus `offset`), each logging to a file of its own in ``folder``."""

    def __init__(self, endpoint: Endpoint, bucket: str, folder: Path) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.folder = folder
        self.offset = 0.0
        """Seconds from real UTC time to the shared clock, for the processes started from now on."""
        self.running: list[Worker] = []
        self.ended: list[Worker] = []
        self.started = 0

    def now(self) -> datetime:
        """The processes' shared clock."""
        return datetime.now(timezone.utc) + timedelta(seconds=self.offset)

    def start(self, shard: int | None) -> Worker:
        number = self.started = self.started + 1
        log, errors = self.folder / f"{number:03d}.log", self.folder / f"{number:03d}.err"
        spec = {
            "endpoint": self.endpoint.url,
            "bucket": self.bucket,
            "path": PATH,
            "shards": SHARDS,
            "shard": shard,
            "offset": self.offset,
            "max_workers": MAX_WORKERS,
            "lease_ttl": LEASE_TTL,
            "pause": PAUSE,
            "log": str(log),
            "client": "boto3" if shard is None else "own",
        }
        with errors.open("wb") as sink:
            process = subprocess.Popen(
                [*CHILD, json.dumps(spec)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                env={
                    **os.environ,
                    "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                    "AWS_ACCESS_KEY_ID": self.endpoint.access_key,
                    "AWS_SECRET_ACCESS_KEY": self.endpoint.secret_key,
                },
            )
        return Worker(shard, log, errors, process)

    def start_all(self) -> None:
        """Start a process for each shard and one over every shard."""
        self.running = [self.start(shard) for shard in (*range(SHARDS), None)]

    def ready(self, worker: Worker) -> None:
        """Wait for ``worker`` to have made its scheduler (and set its SIGTERM handler)."""
        if not wait_until(lambda: worker.count("ready") > 0 or worker.process.poll() is not None, READY_TIMEOUT):
            pytest.fail(f"{worker.role} not ready within {READY_TIMEOUT} s: {worker.stderr()}")
        self.alive(worker)

    def alive(self, worker: Worker) -> None:
        if worker.process.poll() is not None:
            pytest.fail(f"{worker.role} ended by itself ({worker.process.returncode}): {worker.stderr()}")

    def kill(self, worker: Worker) -> Worker:
        """SIGKILL ``worker`` and start another in its place; return the new one."""
        self.alive(worker)
        worker.process.kill()
        assert worker.process.wait(timeout=KILL_TIMEOUT) == -signal.SIGKILL
        worker.killed = self.now()
        worker.ending = "killed"
        self.ended.append(worker)
        fresh = self.start(worker.shard)
        self.running[self.running.index(worker)] = fresh
        return fresh

    def stop_all(self) -> None:
        """SIGTERM every process once it is ready, and wait for each to end its run and exit 0."""
        for worker in self.running:
            self.ready(worker)
            worker.process.terminate()
        for worker in self.running:
            try:
                code = worker.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{worker.role} did not stop within {STOP_TIMEOUT} s of SIGTERM")
            assert code == 0, f"{worker.role} exited {code} on SIGTERM: {worker.stderr()}"
            assert worker.records()[-1].get("stopped") is True
            worker.ending = "stopped"
            self.ended.append(worker)
        self.running = []

    def close(self) -> None:
        """Kill whatever still runs (a test that failed half-way)."""
        for worker in self.running:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait(timeout=KILL_TIMEOUT)


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: whom, and how many copies it had sent since it was picked."""

    role: str
    sent: int


def kill_at_a_random_point(fleet: Fleet, rng: random.Random) -> Kill:
    """Pick a process and SIGKILL it once it has sent a random number of copies, or after a
    random time (up to its share of the phase's window), whichever comes first; start
    another in its place."""
    victim = rng.choice(fleet.running)
    copies = rng.randint(1, 2 * MAX_WORKERS)
    patience = rng.uniform(0.05, WINDOW / KILLS_PER_PHASE)
    fleet.ready(victim)
    before = victim.count("send")
    wait_until(lambda: victim.count("send") >= before + copies or victim.process.poll() is not None, patience)
    sent = victim.count("send") - before
    fleet.kill(victim)
    return Kill(victim.role, sent)


def one_more_run_each(fleet: Fleet) -> None:
    """Wait for every running process to finish a run it starts from now on."""
    for worker in fleet.running:
        fleet.ready(worker)
    # the run in progress now may end first: the second to end started after now
    wanted = [(worker, worker.runs() + 2) for worker in fleet.running]
    for worker, runs in wanted:
        if not wait_until(worker.finished(runs), READY_TIMEOUT):
            pytest.fail(f"{worker.role} finished no run within {READY_TIMEOUT} s")
        fleet.alive(worker)


# what the logs and the store say ---------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """An event of the campaign: its name, its time, its content's MD5 (the ETag of each copy)."""

    key: str
    when: datetime
    md5: str


@dataclass
class Copy:
    """One CopyObject call of a process, as its log tells it."""

    target: str
    sent: datetime
    """The shared clock when its first attempt left."""
    attempts: int = 0
    result: str = "unknown"
    """"copied"; "refused" (404 or 412: it did not land); "failed" (any other error: it may
    have landed); "unknown" (the process was killed before the answer)."""
    answered: datetime | None = None


@dataclass
class Log:
    """What one process's log says of its copies and deletes."""

    worker: Worker
    copies: list[Copy] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)
    """Targets whose event a batch delete of it removed."""
    undeleted: dict[str, list[datetime]] = field(default_factory=dict)
    """Targets whose event a batch delete of it did not remove (refused, or the request
    failed), with when it learnt so."""
    raised: int = 0
    """Runs that raised."""

    @property
    def left(self) -> set[str]:
        """Targets it copied (or may have) whose event it neither deleted nor knew undeleted:
        what a SIGKILL left delivered and still pending."""
        copied = {copy.target for copy in self.copies if copy.result in ("copied", "unknown")}
        return copied - self.deleted - set(self.undeleted)

    def released(self, copy: Copy, before: datetime) -> str | None:
        """Why the event of ``copy`` (made by this process) was still pending for a copy sent
        at ``before``, by what this process logged before then; None: nothing says so."""
        killed = self.worker.killed
        if killed is not None and killed < before and copy.target in self.left:
            return "killed between copy and delete"
        if any(at < before for at in self.undeleted.get(copy.target, ())):
            return "batch delete did not remove it"
        if copy.result == "failed" and copy.answered is not None and copy.answered < before:
            return "copy failed, may have landed"
        return None


def read_log(worker: Worker, target_of: dict[str, str]) -> Log:
    """Read ``worker``'s log (``target_of`` maps event names to targets)."""
    log = Log(worker)
    calls: dict[int, Copy] = {}
    for record in worker.records():
        at = datetime.fromisoformat(record["at"])
        if "send" in record:
            copy = calls.setdefault(record["call"], Copy(record["send"], at))
            copy.attempts += 1
            if copy.attempts == 1:
                log.copies.append(copy)
        elif "copied" in record or "failed" in record:
            copy = calls[record["call"]]
            copy.answered = at
            copy.result = "copied" if "copied" in record else "failed"
            if record.get("error") in (404, 412):
                copy.result = "refused"
        elif "deleted" in record:
            log.deleted.update(target_of.get(key, key) for key in record["deleted"])
        elif "undeleted" in record:
            for key in record["undeleted"]:
                log.undeleted.setdefault(target_of.get(key, key), []).append(at)
        elif "raised" in record:
            log.raised += 1
    return log


def run_bound(worker: Worker) -> int:
    """The Guarantees page: a run killed at any moment leaves at most ``max_workers`` + 200 events delivered
    and still pending, per shard; the process over every shard shares ``max_workers`` out
    between the shards it runs at once, each run with its own 200."""
    if worker.shard is not None:
        return MAX_WORKERS + UNDELETED_LIMIT
    return max(places * (max(1, MAX_WORKERS // places) + UNDELETED_LIMIT) for places in range(1, SHARDS + 1))


def target_versions(client: Any, bucket: str) -> dict[str, list[str]]:
    """The ETags (unquoted) of every version of every key in ``bucket``."""
    found: dict[str, list[str]] = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", ()):
            found.setdefault(version["Key"], []).append(version["ETag"].strip('"'))
    return found


def pending_events(wire: S3) -> list[str]:
    """The event names left in the schedule bucket (leases aside)."""
    return [key for key in wire.keys(wire.schedule_bucket) if keys.SEPARATOR in key]


# the campaign ----------------------------------------------------------------------------


@dataclass
class Verdict:
    """What the store and the logs say of a campaign."""

    lost: list[str]
    early: list[str]
    strays: list[str]
    """Targets written that are no event's."""
    wrong: list[str]
    """Targets with a version holding other content than their event's."""
    unlogged: list[str]
    """Targets with more versions than logged sends."""
    duplicates: int
    causes: Counter[str]
    unexplained: list[str]
    allowed: int
    """The most duplicates the Guarantees page allows for these kills and the failures logged."""
    left: list[int]
    """Events each killed process left copied and not deleted."""
    over_bound: list[str]
    left_by_stopped: dict[str, list[str]]
    raised: int
    sent_by: Counter[str]


def explain(landed: int, made: list[tuple[Log, Copy]], causes: Counter[str]) -> bool:
    """Whether the copies of one event ``made`` (in the order sent) explain ``landed``
    copies of it, counting the causes: each copy after the first is a retry of one call by
    botocore, or was sent after the process of the copy before it had left the event
    pending (killed between copy and delete, its delete refused, its copy failed after it
    may have landed)."""
    reasons = [("copy sent again by botocore", copy.attempts - 1) for _, copy in made if copy.attempts > 1]
    maybe = [(log, copy) for log, copy in made if copy.result != "refused"]
    for (log, copy), (_, later) in zip(maybe, maybe[1:]):
        reason = log.released(copy, later.sent)
        if reason is not None:
            reasons.append((reason, 1))
    extra = landed - 1
    for cause, count in reasons:
        causes[cause] += min(extra, count)
        extra -= min(extra, count)
    return extra <= 0


def judge(events: dict[str, Event], versions: dict[str, list[str]], ended: list[Worker]) -> Verdict:
    """Judge the campaign from the versions at the targets and the processes' logs."""
    target_of = {event.key: target for target, event in events.items()}
    logs = [read_log(worker, target_of) for worker in ended]
    made: dict[str, list[tuple[Log, Copy]]] = {}
    for log in logs:
        for copy in log.copies:
            made.setdefault(copy.target, []).append((log, copy))
    for copies in made.values():
        copies.sort(key=lambda pair: pair[1].sent)
    sends = Counter({target: sum(copy.attempts for _, copy in copies) for target, copies in made.items()})
    early = sorted(t for t, copies in made.items() for _, copy in copies if t in events and copy.sent < events[t].when)
    killed = [log for log in logs if log.worker.ending == "killed"]
    causes: Counter[str] = Counter()
    unexplained = [
        f"{target}: {len(etags)} copies: {[(str(c.sent), g.worker.role, c.result) for g, c in made[target]]}"
        for target, etags in versions.items()
        if not explain(len(etags), made.get(target, []), causes)
    ]
    failures = sum(len(at) for log in logs for at in log.undeleted.values()) + sum(
        copy.result == "failed" for log in logs for copy in log.copies
    )
    retries = sum(copy.attempts - 1 for log in logs for copy in log.copies)
    return Verdict(
        lost=sorted(target for target in events if not versions.get(target)),
        early=early,
        strays=sorted(set(versions) - set(events)),
        wrong=sorted(t for t, etags in versions.items() if t in events and any(e != events[t].md5 for e in etags)),
        unlogged=sorted(t for t, etags in versions.items() if len(etags) > sends[t]),
        duplicates=sum(len(etags) - 1 for etags in versions.values() if etags),
        causes=causes,
        unexplained=unexplained,
        allowed=sum(run_bound(log.worker) for log in killed) + failures + retries,
        left=[len(log.left) for log in killed],
        over_bound=[
            f"{log.worker.role}: {len(log.left)} > {run_bound(log.worker)}"
            for log in killed
            if len(log.left) > run_bound(log.worker)
        ],
        left_by_stopped={
            log.worker.role: sorted(log.left) for log in logs if log.worker.ending == "stopped" and log.left
        },
        raised=sum(log.raised for log in logs),
        sent_by=Counter(log.worker.role for log in logs for copy in log.copies),
    )


def schedule(wire: S3, rng: random.Random, count: int) -> dict[str, Event]:
    """Write the campaign's events, a quarter due at the start (``T0``), the others each in
    the window of a phase picked at random; return them by target."""
    planned = []
    for i in range(count):
        if rng.random() < 0.25:
            when = T0 - timedelta(seconds=rng.uniform(0, 30))
        else:
            when = phase_start(rng.randrange(PHASES)) + timedelta(seconds=rng.uniform(0, WINDOW))
        when = when.replace(microsecond=when.microsecond // 1000 * 1000)
        planned.append((when, wire.target_bucket, f"t/{i:05d}", f"{SEED}/{i}/{uuid.uuid4().hex}"))
    names = Scheduler(wire.schedule_bucket, PATH, wire.resource, wire.client, shards=SHARDS).schedule_many(planned)
    return {
        target: Event(name, when, hashlib.md5(content.encode()).hexdigest())
        for name, (when, _, target, content) in zip(names, planned)
    }


def phase_start(phase: int) -> datetime:
    """When (by the shared clock) phase ``phase`` starts, if the phases before it kept to their windows."""
    return T0 + timedelta(seconds=phase * (WINDOW + JUMP))


def sent_directly(workers: list[Worker]) -> Counter[str]:
    """The copies, batch deletes and pages the processes sent directly, summed over the
    processes (each log's last count: a process's counts only grow)."""
    total: Counter[str] = Counter()
    for worker in workers:
        counts = [record["direct"] for record in worker.records() if "direct" in record]
        if counts:
            total.update(counts[-1])
    return total


def campaign(fleet: Fleet, wire: S3, rng: random.Random, last: datetime) -> tuple[list[Kill], bool]:
    """Run the phases, each with its kills until its window is over, then the last phase,
    its clock past every event's time, one process over every shard, until nothing is
    pending; return the kills and whether everything was delivered within `DRAIN_TIMEOUT`.
    Between phases no process runs, and the shared clock moves on by `JUMP` at least."""
    kills = []
    ended = T0 - timedelta(seconds=JUMP)
    try:
        for phase in range(PHASES):
            start = max(phase_start(phase), ended + timedelta(seconds=JUMP))
            fleet.offset = (start - datetime.now(timezone.utc)).total_seconds()
            fleet.start_all()
            for _ in range(KILLS_PER_PHASE):
                kills.append(kill_at_a_random_point(fleet, rng))
            wait_until(lambda: fleet.now() >= start + timedelta(seconds=WINDOW), WINDOW)  # noqa: B023
            one_more_run_each(fleet)
            fleet.stop_all()
            ended = fleet.now()
        start = max(ended + timedelta(seconds=JUMP), last + timedelta(seconds=1))
        fleet.offset = (start - datetime.now(timezone.utc)).total_seconds()
        fleet.running = [fleet.start(None)]
        drained = wait_until(lambda: not pending_events(wire), DRAIN_TIMEOUT, poll=0.2)
        fleet.stop_all()
    finally:
        fleet.close()
    return kills, drained


def test_shards_killed_at_random_points_lose_nothing_deliver_nothing_early_and_duplicate_within_the_bound(
    endpoint: Endpoint, make_wire: Callable[..., S3], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Four shards, a process per shard and one over every shard overlapping them, SIGKILLed at seeded random
    points and restarted while events fall due: every event reaches its target with its content, no copy is
    sent before its event's time by the processes' shared clock, and every duplicate is explained by a kill
    between copy and delete (within the Guarantees page's max_workers + 200 per shard run), a failed delete or a
    retried copy."""
    context = f"seed {SEED} (S3_SCHEDULER_CAMPAIGN_SEED to replay) on {endpoint.name}"
    rng = random.Random(SEED)
    wire = make_wire(endpoint)
    wire.client.put_bucket_versioning(Bucket=wire.target_bucket, VersioningConfiguration={"Status": "Enabled"})
    count = EVENTS if endpoint.name == "real" else MOTO_EVENTS
    events = schedule(wire, rng, count)
    spread = Counter(keys.shard_of(wire.target_bucket, target, SHARDS) for target in events)
    started = time.monotonic()
    fleet = Fleet(endpoint, wire.schedule_bucket, tmp_path)

    kills, drained = campaign(fleet, wire, rng, max(event.when for event in events.values()))

    elapsed = time.monotonic() - started
    verdict = judge(events, target_versions(wire.client, wire.target_bucket), fleet.ended)
    direct = sent_directly(fleet.ended)
    with capsys.disabled():
        print(
            f"\nshards kill campaign: {context}, {elapsed:.1f} s\n"
            f"  {count} events in shards {dict(sorted(spread.items()))}, {PHASES} phase(s) of {KILLS_PER_PHASE} kills"
            f" and a last one; copies sent by {dict(sorted(verdict.sent_by.items()))}; runs raised {verdict.raised}\n"
            f"  {len(kills)} SIGKILLs: {[f'{k.role} after {k.sent} copies' for k in kills]};"
            f" events each left copied and not deleted {verdict.left}\n"
            f"  sent directly by the shard processes: {direct}\n"
            f"  lost={len(verdict.lost)} early={len(verdict.early)} duplicates={verdict.duplicates}"
            f" (the Guarantees page allows {verdict.allowed}) by cause {dict(verdict.causes)}"
        )
    assert sorted(spread) == list(range(SHARDS)), context
    assert direct["copies"] > 0, f"{context}: the shard processes sent no copy directly"
    assert direct["deletes"] > 0, f"{context}: the shard processes sent no batch delete directly"
    assert drained, f"{context}: events still pending after {DRAIN_TIMEOUT} s: {pending_events(wire)[:10]}"
    assert verdict.lost == [], f"{context}: lost {verdict.lost[:20]}"
    assert verdict.early == [], f"{context}: copied before their time {verdict.early[:20]}"
    assert verdict.strays == [], f"{context}: targets written that are no event's {verdict.strays[:20]}"
    assert verdict.wrong == [], f"{context}: targets with other content than their event's {verdict.wrong[:20]}"
    assert verdict.unlogged == [], f"{context}: more copies landed than were sent {verdict.unlogged[:20]}"
    assert verdict.unexplained == [], f"{context}: duplicates nothing logged explains {verdict.unexplained[:10]}"
    bound = verdict.over_bound
    assert bound == [], f"{context}: killed runs left more than the Guarantees page's bound {bound}"
    assert verdict.left_by_stopped == {}, (
        f"{context}: stopped by SIGTERM, left copies undeleted {verdict.left_by_stopped}"
    )
    assert verdict.duplicates <= verdict.allowed, context
