"""max_lateness never removes an event that was not late: every name form a run accepts is
read by the first run after it falls due, whatever ``legacy_offsets`` says, and a
lateness under a minute is refused (issue 17, item 3)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable
from urllib.parse import quote

import pytest

from s3_scheduler import InvalidKeyError, Scheduler, keys

from ..conftest import S3, Clock

MINUTE = timedelta(minutes=1)
PLUS5 = timezone(timedelta(hours=5))
MINUS8 = timezone(timedelta(hours=-8))
PLUS14 = timezone(timedelta(hours=14))

# Each spells the UTC instant ``t`` in one of the forms a run accepts.
FORMS: dict[str, Callable[[datetime], str]] = {
    "canonical": lambda t: quote(str(t)),
    "iso-T-offset": lambda t: t.isoformat(),
    "iso-T-quoted": lambda t: quote(t.isoformat()),
    "iso-T-Z": lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"),
    "iso-T-plus5": lambda t: t.astimezone(PLUS5).isoformat(),
    "iso-T-minus8": lambda t: t.astimezone(MINUS8).isoformat(),
    "iso-T-plus14": lambda t: t.astimezone(PLUS14).isoformat(),
    "iso-T-minutes": lambda t: t.strftime("%Y-%m-%dT%H:%M"),
    "space-unquoted": lambda t: str(t),
    "minutes-quoted": lambda t: quote(t.strftime("%Y-%m-%d %H:%M")),
    "minutes-Z": lambda t: quote(t.strftime("%Y-%m-%d %H:%MZ")),
    "seconds-fraction": lambda t: quote(str(t.replace(microsecond=250000)).replace("+00:00", "Z")),
}
TIMES = [
    datetime(2030, 1, 7, 0, 0, tzinfo=timezone.utc),
    datetime(2030, 1, 7, 14, 5, tzinfo=timezone.utc),
    datetime(2030, 1, 7, 23, 59, tzinfo=timezone.utc),
]


def put(s3: S3, key: str) -> None:
    s3.client.put_object(Bucket=s3.schedule_bucket, Key=key, Body=b"x")


@pytest.mark.parametrize("legacy_offsets", [True, False])
@pytest.mark.parametrize("when", TIMES, ids=lambda t: t.strftime("%H%M"))
def test_every_name_form_is_read_by_the_first_run_after_it_falls_due(
    s3: S3, when: datetime, legacy_offsets: bool
) -> None:
    """A name in any accepted form is delivered by a run in the minute it falls due, never expired: the run at
    its time delivers every form but the one with a fraction of a second, and the run 59 s later that one."""
    clock = Clock(when)
    scheduler = s3.scheduler(clock=clock, max_lateness=MINUTE, legacy_offsets=legacy_offsets)
    names = {form: f"jobs/|{make(when)}|{s3.target_bucket}|{form}" for form, make in FORMS.items()}
    for form, name in names.items():
        put(s3, name)
        due = when.replace(microsecond=250000) if form.endswith("fraction") else when
        assert keys.decode_key(name, scheduler.prefix).when == due, form

    first = scheduler.handle()
    clock.advance(59)
    second = scheduler.handle()

    assert sorted(e.key for e in first.delivered) == sorted(n for f, n in names.items() if not f.endswith("fraction"))
    assert [e.key for e in second.delivered] == [names["seconds-fraction"]]
    assert first.expired == second.expired == []
    assert sorted(s3.keys(s3.target_bucket)) == sorted(FORMS)


@pytest.mark.parametrize("legacy_offsets", [True, False])
def test_a_date_alone_is_read_at_midnight(s3: S3, legacy_offsets: bool) -> None:
    """A name that spells a date alone, due at midnight UTC, is delivered by the run at midnight."""
    midnight = datetime(2030, 1, 7, tzinfo=timezone.utc)
    scheduler = s3.scheduler(clock=Clock(midnight), max_lateness=MINUTE, legacy_offsets=legacy_offsets)
    name = f"jobs/|2030-01-07|{s3.target_bucket}|day"
    put(s3, name)

    report = scheduler.handle()

    assert [e.key for e in report.delivered] == [name]


@pytest.mark.parametrize("legacy_offsets", [True, False])
def test_pending_until_finds_every_form(s3: S3, legacy_offsets: bool) -> None:
    """pending(until=...) lists what a run at that time would read, in every form."""
    when = TIMES[1]
    scheduler = s3.scheduler(clock=Clock(when - timedelta(hours=1)), legacy_offsets=legacy_offsets)
    names = [f"jobs/|{make(when)}|{s3.target_bucket}|{form}" for form, make in FORMS.items()]
    for name in names:
        put(s3, name)

    found = [e.key for e in scheduler.pending(until=when + timedelta(seconds=1))]

    assert sorted(found) == sorted(names)


def test_an_offset_name_read_late_by_its_configuration_is_delivered_not_expired(s3: S3) -> None:
    """A 0.0.3 name with +05:00 is read 5 h late under legacy_offsets=False: it is delivered, not expired."""
    when = TIMES[1]
    name = f"jobs/|{quote(str(when.astimezone(PLUS5)))}|{s3.target_bucket}|offset"
    put(s3, name)
    clock = Clock(when)
    scheduler = s3.scheduler(clock=clock, max_lateness=MINUTE, legacy_offsets=False)
    assert scheduler.handle().delivered == []

    clock.now = when + timedelta(hours=5)
    report = scheduler.handle()

    assert [e.key for e in report.delivered] == [name]
    assert report.expired == []
    assert s3.keys(s3.target_bucket) == ["offset"]


def test_an_event_past_max_lateness_is_still_expired(s3: S3) -> None:
    """An event in a form read on time, found later than max_lateness, is expired as before."""
    when = TIMES[1]
    scheduler = s3.scheduler(clock=Clock(when + timedelta(minutes=2)), max_lateness=MINUTE)
    name = f"jobs/|{when.isoformat()}|{s3.target_bucket}|late"
    put(s3, name)

    report = scheduler.handle()

    assert [e.key for e in report.expired] == [name]
    assert s3.keys(s3.target_bucket) == []


@pytest.mark.parametrize("lateness", [timedelta(0), timedelta(seconds=59), timedelta(seconds=-1)])
def test_max_lateness_under_a_minute_is_refused(s3: S3, lateness: timedelta) -> None:
    """max_lateness under 60 s would expire events delivered on time by the next run: refused, naming the minimum."""
    with pytest.raises(ValueError, match="at least 60 s"):
        Scheduler(s3.schedule_bucket, "jobs", s3.resource, s3.client, max_lateness=lateness)


def test_max_lateness_of_a_minute_is_accepted(s3: S3) -> None:
    """60 s, the minimum, is accepted."""
    Scheduler(s3.schedule_bucket, "jobs", s3.resource, s3.client, max_lateness=MINUTE)


@pytest.mark.parametrize(
    "time",
    ["2030-01-07%2014:05:00+00:00", "2030-01-07%2014%3a05%3a00%2b00%3a00", "2030-01-07T14%3A05:00Z"],
)
def test_a_time_quoted_in_part_is_not_an_event(time: str) -> None:
    """A time quoted in part (or in lower case) would sort where no window looks: not an event, with the fix named."""
    with pytest.raises(InvalidKeyError, match="write it"):
        keys.parse_time(time)


def test_a_backlog_between_the_bound_and_the_late_forms_is_not_read(s3: S3) -> None:
    """With thousands of names later in the day, the T names due now cost one more LIST (and
    one of the series markers of what is due), not the backlog's pages."""
    when = datetime(2030, 1, 7, 5, 0, tzinfo=timezone.utc)  # now + 14 h is the same day: one range
    scheduler = s3.scheduler(clock=Clock(when), legacy_offsets=False)
    s3.seed(scheduler, [(when + timedelta(seconds=i + 60), s3.target_bucket, f"later/{i}", "x") for i in range(5000)])
    name = f"jobs/|{when.isoformat()}|{s3.target_bucket}|now"
    put(s3, name)
    before = s3.counter.lists

    report = scheduler.handle()

    assert [e.key for e in report.delivered] == [name]
    assert s3.counter.lists - before == 3


def test_an_idle_run_costs_one_list(s3: S3, clock: Clock) -> None:
    """With nothing past the first page, the late forms' ranges cost no further LIST."""
    scheduler = s3.scheduler(clock=clock, legacy_offsets=False)
    before = s3.counter.lists

    scheduler.handle()

    assert s3.counter.lists - before == 1


def test_the_reports_worst_lateness_no_longer_reads_as_the_option(s3: S3, clock: Clock) -> None:
    """HandleReport.worst_lateness is the largest lateness of the run; max_lateness, its old name, still reads it."""
    scheduler = s3.scheduler(clock=clock)
    scheduler.schedule(clock.now - timedelta(seconds=90), s3.target_bucket, "k", "x")

    report = scheduler.handle()

    assert report.worst_lateness == 90.0
    assert report.max_lateness == report.worst_lateness


@pytest.mark.parametrize("offset", ["+14:01", "+16:00", "-12:01", "+23:59"])
def test_an_offset_past_any_real_time_zone_is_not_a_time(offset: str) -> None:
    """An offset outside -12:00..+14:00 would sort where no window looks (or be a guess): not an event."""
    with pytest.raises(InvalidKeyError, match="past any real time zone"):
        keys.parse_time(f"2026-11-28T01:30:00{offset}")


def test_dead_letters_under_a_path_with_a_bar_are_listed(s3: S3, clock: Clock) -> None:
    """A '|' in the scheduler path is harmless for dead letters too."""
    scheduler = s3.scheduler("team|a/jobs", clock=clock, dead_letter_after=timedelta(0), dead_letter_attempts=1)
    scheduler.schedule(clock.now - timedelta(hours=1), "no-such-bucket", "k", "x")

    scheduler.handle()

    assert [e.path for e in scheduler.dead_letters()] == ["k"]
