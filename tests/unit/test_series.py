"""What a series' rule means: occurrences in their zone, daylight-saving gaps and overlaps, COUNT, UNTIL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from dateutil import tz as dateutil_tz
from dateutil.rrule import DAILY, rrule, rrulestr

from s3_scheduler import keys
from s3_scheduler.series import MISSED_COUNTED, Series, from_metadata, new_series, resolve_zone, to_instant, zone_of

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def occurrences(repeat: str, when: datetime, count: int) -> list[datetime]:
    series, first = new_series(repeat, when)
    found: list[datetime] = []
    at: datetime | None = first
    while at is not None and len(found) < count:
        found.append(at)
        at = series.next_after(at)
    return found


def test_daily_0230_berlin_across_the_spring_gap_fires_at_the_end_of_the_gap() -> None:
    """02:30 does not exist in Berlin on 2027-03-28 (02:00 -> 03:00): that day fires at 03:00
    CEST (01:00 UTC), the days around at 02:30 local."""
    found = occurrences("FREQ=DAILY", datetime(2027, 3, 27, 2, 30, tzinfo=BERLIN), 3)
    assert found == [
        datetime(2027, 3, 27, 1, 30, tzinfo=UTC),  # 02:30 CET
        datetime(2027, 3, 28, 1, 0, tzinfo=UTC),  # 03:00 CEST, the first instant after the gap
        datetime(2027, 3, 29, 0, 30, tzinfo=UTC),  # 02:30 CEST
    ]


def test_daily_0230_new_york_across_the_spring_gap() -> None:
    """New York skips 02:00-03:00 on 2027-03-14: that day fires at 03:00 EDT (07:00 UTC)."""
    found = occurrences("FREQ=DAILY", datetime(2027, 3, 13, 2, 30, tzinfo=NEW_YORK), 3)
    assert found == [
        datetime(2027, 3, 13, 7, 30, tzinfo=UTC),
        datetime(2027, 3, 14, 7, 0, tzinfo=UTC),
        datetime(2027, 3, 15, 6, 30, tzinfo=UTC),
    ]


def test_daily_0130_new_york_across_the_autumn_overlap_fires_once_at_the_first() -> None:
    """01:30 happens twice in New York on 2027-11-07 (EDT, then EST): it fires once, at the first (05:30 UTC)."""
    found = occurrences("FREQ=DAILY", datetime(2027, 11, 6, 1, 30, tzinfo=NEW_YORK), 3)
    assert found == [
        datetime(2027, 11, 6, 5, 30, tzinfo=UTC),
        datetime(2027, 11, 7, 5, 30, tzinfo=UTC),  # 01:30 EDT; not 06:30 UTC (01:30 EST) too
        datetime(2027, 11, 8, 6, 30, tzinfo=UTC),
    ]


def test_daily_0130_berlin_across_the_autumn_overlap() -> None:
    """Berlin 2027-10-31: 02:30 happens twice; an hourly rule fires at it once."""
    series, first = new_series("FREQ=HOURLY", datetime(2027, 10, 31, 1, 30, tzinfo=BERLIN))
    found = [first]
    while len(found) < 4:
        at = series.next_after(found[-1])
        assert at is not None
        found.append(at)
    assert [at.astimezone(BERLIN).strftime("%H:%M %Z") for at in found] == [
        "01:30 CEST",
        "02:30 CEST",
        "03:30 CET",
        "04:30 CET",
    ]


def test_weekdays_at_nine_skip_the_weekend_and_keep_local_time() -> None:
    """Weekdays at 09:00 Berlin from Friday 2027-03-26: Fri 08:00 UTC, Mon 07:00 UTC (summer time)."""
    found = occurrences(
        "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0", datetime(2027, 3, 26, 8, 0, tzinfo=BERLIN), 3
    )
    assert found == [
        datetime(2027, 3, 26, 8, 0, tzinfo=UTC),
        datetime(2027, 3, 29, 7, 0, tzinfo=UTC),
        datetime(2027, 3, 30, 7, 0, tzinfo=UTC),
    ]


def test_count_and_until_end_the_series() -> None:
    """COUNT=3 gives three occurrences; UNTIL (in UTC) the ones up to it."""
    start = datetime(2030, 1, 1, 9, 0)
    assert len(occurrences("FREQ=DAILY;COUNT=3", start, 10)) == 3
    assert occurrences("FREQ=DAILY;UNTIL=20300103T090000Z", start, 10)[-1] == datetime(2030, 1, 3, 9, tzinfo=UTC)
    berlin = occurrences("FREQ=DAILY;UNTIL=20300103T080000Z", datetime(2030, 1, 1, 9, tzinfo=BERLIN), 10)
    assert berlin[-1] == datetime(2030, 1, 3, 8, tzinfo=UTC)


def test_the_first_occurrence_is_the_first_instance_at_or_after_when() -> None:
    """From 10:00, a 09:00 daily rule starts the next day; from 09:00 exactly, that day."""
    rule = "FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0"
    assert new_series(rule, datetime(2030, 1, 1, 10))[1] == datetime(2030, 1, 2, 9, tzinfo=UTC)
    assert new_series(rule, datetime(2030, 1, 1, 9))[1] == datetime(2030, 1, 1, 9, tzinfo=UTC)


def test_an_rrule_object_gives_its_rule_not_its_start() -> None:
    """A dateutil rrule is taken for its RRULE; the series starts at when."""
    series, first = new_series(rrule(DAILY, count=2, dtstart=datetime(2000, 1, 1)), datetime(2030, 1, 1, 9))
    assert series.rule == "FREQ=DAILY;COUNT=2"
    assert first == datetime(2030, 1, 1, 9, tzinfo=UTC)


@pytest.mark.parametrize("bad", [42, None, b"FREQ=DAILY"])
def test_a_rule_of_another_type_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError):
        new_series(bad, datetime(2030, 1, 1))


def test_zones_are_named_and_fixed_offsets_refused() -> None:
    """zoneinfo and dateutil zones give their IANA name; UTC is UTC; a fixed offset is refused."""
    assert zone_of(datetime(2030, 1, 1)) == "UTC"
    assert zone_of(datetime(2030, 1, 1, tzinfo=UTC)) == "UTC"
    assert zone_of(datetime(2030, 1, 1, tzinfo=BERLIN)) == "Europe/Berlin"
    assert zone_of(datetime(2030, 1, 1, tzinfo=dateutil_tz.gettz("America/New_York"))) == "America/New_York"
    with pytest.raises(ValueError, match="named zone"):
        zone_of(datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=2))))
    with pytest.raises(ValueError, match="unknown time zone"):
        resolve_zone("Nowhere/Atall")


def test_dateutils_own_zone_files_serve_when_the_system_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without zoneinfo's data (as on a Lambda image without tzdata) Berlin still resolves, through
    the copy python-dateutil carries, and gives the same instants."""
    import zoneinfo

    def missing(name: str) -> None:
        raise zoneinfo.ZoneInfoNotFoundError(name)

    from dateutil.tz import tz as dateutil_tz_module

    monkeypatch.setattr(zoneinfo, "ZoneInfo", missing)
    monkeypatch.setattr(dateutil_tz_module, "TZPATHS", [])  # no system zone files
    dateutil_tz.gettz.cache_clear()
    zone = resolve_zone("Europe/Berlin")
    dateutil_tz.gettz.cache_clear()
    assert "/usr/share/zoneinfo" not in repr(zone)
    assert to_instant(datetime(2027, 3, 28, 2, 30), zone) == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    assert to_instant(datetime(2027, 7, 1, 9, 0), zone) == datetime(2027, 7, 1, 7, 0, tzinfo=UTC)


def test_metadata_round_trips_and_bad_metadata_is_no_series() -> None:
    """A series' metadata reads back as the series; metadata that does not make one is None."""
    series, _ = new_series("FREQ=DAILY", datetime(2030, 1, 1, 9, tzinfo=BERLIN))
    assert from_metadata(series.metadata()) == series
    assert from_metadata({}) is None
    broken = {**series.metadata(), keys.REPEAT_META: "FREQ=NOPE"}
    assert from_metadata(broken) is None
    assert from_metadata({**series.metadata(), keys.ZONE_META: "Nowhere/X"}) is None
    assert isinstance(series, Series)


LATER = datetime(2027, 3, 27, 23, 0, tzinfo=UTC)
"""Over a year after the start, just before Berlin's spring change."""


@pytest.mark.parametrize(
    ("rule", "after"),
    [
        ("FREQ=MINUTELY;INTERVAL=7", LATER),
        ("FREQ=HOURLY;INTERVAL=5;BYMINUTE=10,40", LATER),
        ("FREQ=DAILY;INTERVAL=3;BYHOUR=2,14", LATER),
        ("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,FR;BYHOUR=9;BYMINUTE=0", LATER),
        ("FREQ=DAILY;BYHOUR=9,17;BYSETPOS=-1", LATER),
        ("FREQ=SECONDLY;INTERVAL=97", datetime(2026, 1, 14, 8, tzinfo=UTC)),
    ],
)
def test_a_moved_anchor_gives_the_instances_the_start_gives(rule: str, after: datetime) -> None:
    """Long after the start, the instances read from the moved anchor are those read from the start
    (dateutil from DTSTART, mapped to UTC the same way), in Berlin across its daylight-saving changes."""
    series, _ = new_series(rule, datetime(2026, 1, 5, 8, 20, 11, tzinfo=BERLIN))
    assert series.anchor(after.replace(tzinfo=None)) > series.start  # it moved
    expected: list[datetime] = []
    reference = rrulestr(rule, dtstart=series.start)
    for wall in reference.xafter(after.astimezone(BERLIN).replace(tzinfo=None) - timedelta(days=1)):
        at = to_instant(wall, BERLIN)
        if at > after and (not expected or at != expected[-1]):
            expected.append(at)
        if len(expected) == 12:
            break
    found: list[datetime] = []
    at2: datetime | None = after
    while len(found) < 12:
        assert at2 is not None
        at2 = series.next_after(at2)
        assert at2 is not None
        found.append(at2)
    assert found == expected


def test_a_series_started_decades_ago_is_followed_at_once() -> None:
    """Every five minutes since 2000: the next instance after 2026 and the count missed (capped) come
    from the moved anchor, not from 2.8 million instances."""
    series, first = new_series("FREQ=MINUTELY;INTERVAL=5", datetime(2000, 1, 1))
    now = datetime(2026, 12, 7, 14, 3, 20, tzinfo=UTC)
    assert first == datetime(2000, 1, 1, tzinfo=UTC)
    assert series.next_after(now) == datetime(2026, 12, 7, 14, 5, tzinfo=UTC)
    assert series.missed_between(first, now) == MISSED_COUNTED


def test_a_start_in_the_spring_gap_keeps_its_wall_time_whatever_the_zone_object() -> None:
    """02:30 on Berlin's spring-forward day, given with dateutil's zone or zoneinfo's: the series
    starts at 02:30 wall time, fires at 03:00 that day (01:00 UTC), then 02:30 (00:30 UTC)."""
    for zone in (dateutil_tz.gettz("Europe/Berlin"), BERLIN):
        series, first = new_series("FREQ=DAILY", datetime(2026, 3, 29, 2, 30, tzinfo=zone))
        assert series.start == datetime(2026, 3, 29, 2, 30)
        assert (first, series.next_after(first)) == (
            datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
            datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
        )


def test_a_start_in_the_second_of_an_hour_lived_twice_is_not_moved_before_it() -> None:
    """01:30 EST (fold=1) on New York's fall-back day is 06:30 UTC: the first occurrence is at or
    after it (the next day's 01:30), never the day's first 01:30 (EDT, an hour earlier)."""
    when = datetime(2027, 11, 7, 1, 30, fold=1, tzinfo=NEW_YORK)
    _, first = new_series("FREQ=DAILY", when)
    assert first >= when
    assert first == datetime(2027, 11, 8, 6, 30, tzinfo=UTC)


def test_an_rrule_with_an_aware_until_keeps_it_in_utc() -> None:
    """rrule(until=09:00 UTC) in a New York series ends at 04:00 New York time (09:00 UTC): three
    daily occurrences, as dateutil gives them, not four."""
    rule = rrule(DAILY, dtstart=datetime(2030, 1, 1, 9, tzinfo=UTC), until=datetime(2030, 1, 3, 9, tzinfo=UTC))
    found = occurrences(rule, datetime(2030, 1, 1, 4, tzinfo=NEW_YORK), 10)  # type: ignore[arg-type]
    assert found == [datetime(2030, 1, d, 9, tzinfo=UTC) for d in (1, 2, 3)]


def test_a_series_with_no_time_s3_can_name_is_a_value_error() -> None:
    """A start at the very first instant Python knows cannot be read in UTC: ValueError, not OverflowError."""
    with pytest.raises(ValueError, match="no time"):
        new_series("FREQ=DAILY", datetime(1, 1, 1, tzinfo=NEW_YORK))
