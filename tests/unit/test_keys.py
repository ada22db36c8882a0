"""The key format: byte-identical to 0.0.3 where 0.0.3 is right, and round-trips."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from unittest import mock
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3_scheduler import keys
from s3_scheduler.exceptions import InvalidKeyError
from s3_scheduler.report import ScheduledEvent

UTC = timezone.utc
PREFIX = keys.listing_prefix("jobs")

# Key text as S3 takes it: any unicode but lone surrogates, which UTF-8 cannot carry.
key_text = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=200)
bucket_names = st.from_regex(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", fullmatch=True)
utc_times = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC))


def test_utc_key_is_the_one_0_0_3_wrote() -> None:
    """A UTC time and a plain target give the literal name 0.0.3 gave."""
    key = keys.encode_key("/path/|", datetime(2018, 8, 5, 10, 0, tzinfo=UTC), "s3-bucket", "s3_files-important+")

    assert key == "/path/|2018-08-05%2010%3A00%3A00%2B00%3A00|s3-bucket|s3_files-important%2B"


def test_naive_time_means_utc_and_keeps_microseconds() -> None:
    """A naive time is written as UTC, microseconds kept as str() gives them."""
    key = keys.encode_key(PREFIX, datetime(2018, 8, 5, 10, 0, 0, 1500), "bkt", "k")

    assert key == "jobs/|2018-08-05%2010%3A00%3A00.001500%2B00%3A00|bkt|k"


def test_aware_time_is_written_in_utc() -> None:
    """An aware time with an offset is converted to UTC, so key order is time order."""
    plus_two = timezone(timedelta(hours=2))

    key = keys.encode_key(PREFIX, datetime(2018, 8, 5, 12, 0, tzinfo=plus_two), "bkt", "k")

    assert key == "jobs/|2018-08-05%2010%3A00%3A00%2B00%3A00|bkt|k"


@pytest.mark.parametrize(
    ("target", "part"),
    [
        ("a/b/c.txt", "a~~b~~c.txt"),
        ("/leading", "leading"),
        ("a b+c", "a%20b%2Bc"),
        ("pipe|hash#q?", "pipe%7Chash%23q%3F"),
        ("tilde~x", "tilde%7Ex"),
        ("a~~b", "a%7E%7Eb"),
    ],
)
def test_target_part(target: str, part: str) -> None:
    """Targets are quoted, '/' becomes '~~', and '~' is escaped so it cannot clash."""
    assert keys.encode_target(target) == part
    assert keys.decode_target(part) == target.lstrip("/")


def test_legacy_tilde_keys_read_as_0_0_3_meant() -> None:
    """A 0.0.3 name whose target held no '~' decodes exactly as 0.0.3 decoded it."""
    legacy = "jobs/|2018-08-05%2010%3A00%3A00%2B00%3A00|b|dir~~sub~~file%20name.txt"

    assert keys.decode_key(legacy, PREFIX).path == "dir/sub/file name.txt"


@given(target=key_text)
def test_every_text_target_round_trips(target: str) -> None:
    """Any target key that does not start with '/' decodes to itself."""
    if target.startswith("/"):
        target = "x" + target
    key = keys.encode_key(PREFIX, datetime(2020, 1, 1), "bucket", target)

    assert keys.decode_key(key, PREFIX).path == target


@given(bucket=bucket_names, target=key_text.filter(lambda t: t != "/"))
def test_every_bucket_name_round_trips(bucket: str, target: str) -> None:
    """Every valid bucket name decodes to itself, whatever the target."""
    key = keys.encode_key(PREFIX, datetime(2020, 1, 1), bucket, target)

    assert keys.decode_key(key, PREFIX).bucket == bucket


@given(a=utc_times, b=utc_times, micro=st.booleans())
def test_encoded_utc_times_sort_like_the_times(a: datetime, b: datetime, micro: bool) -> None:
    """Key order is time order, with and without microseconds."""
    if not micro:
        a, b = a.replace(microsecond=0), b.replace(microsecond=0)
    key_a = keys.encode_key(PREFIX, a, "bucket", "zzz")
    key_b = keys.encode_key(PREFIX, b, "bucket", "aaa")

    assert (key_a < key_b) == (a < b)
    assert keys.decode_key(key_a, PREFIX).when == a


@given(t=utc_times)
def test_microsecond_and_whole_second_order(t: datetime) -> None:
    """A whole second sorts before the same second with a fraction."""
    whole = t.replace(microsecond=0)
    fraction = whole + timedelta(microseconds=1)

    assert keys.encode_time(whole) < keys.encode_time(fraction)


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        ("2018-08-05", datetime(2018, 8, 5, tzinfo=UTC)),
        ("2018-08-05%2010%3A00%3A00", datetime(2018, 8, 5, 10, tzinfo=UTC)),
        ("2018-08-05%2012%3A00%3A00%2B02%3A00", datetime(2018, 8, 5, 10, tzinfo=UTC)),
        ("2018-08-05T10%3A00%3A00Z", datetime(2018, 8, 5, 10, tzinfo=UTC)),
        ("2018-08-05%2000%3A00%3A00-05%3A00", datetime(2018, 8, 5, 5, tzinfo=UTC)),
    ],
)
def test_times_are_read_with_any_offset_and_none_means_utc(part: str, expected: datetime) -> None:
    """A hand-written time without offset is UTC; any offset is honoured (#2)."""
    decoded = keys.decode_key(f"jobs/|{part}|bucket|key", PREFIX)

    assert decoded.when == expected
    assert decoded.when.tzinfo is UTC


@pytest.mark.parametrize(
    "key",
    [
        "jobs/|2018-08-05|bucket|key|extra",
        "jobs/|2018-08-05|bucket",
        "jobs/|Hello-08-05|bucket|key",
        "jobs/|2018-13-45|bucket|key",
        "jobs/|2018-08-05||key",
        "jobs/|2018-08-05|bucket|",
        "other/|2018-08-05|bucket|key",
    ],
)
def test_names_that_are_not_events_raise_invalid_key(key: str) -> None:
    """A name that is not {prefix}{when}|{bucket}|{target} raises InvalidKeyError."""
    with pytest.raises(InvalidKeyError):
        keys.decode_key(key, PREFIX)


def test_a_pipe_in_the_scheduler_path_is_harmless() -> None:
    """The prefix is stripped, not split, so '|' may appear in the scheduler path."""
    prefix = keys.listing_prefix("a|b/")
    key = keys.encode_key(prefix, datetime(2020, 1, 1), "bucket", "t")

    assert prefix == "a|b/|"
    assert keys.decode_key(key, prefix).path == "t"


def test_listing_prefix_keeps_a_leading_slash_and_drops_one_trailing() -> None:
    """The path is stored as 0.0.3 stored it."""
    assert keys.listing_prefix("/path") == "/path/|"
    assert keys.listing_prefix("jobs/") == "jobs/|"
    assert keys.listing_prefix("jobs//") == "jobs//|"
    assert keys.listing_prefix("") == "/|"


@pytest.mark.parametrize(
    ("bucket", "target", "message"),
    [
        ("", "k", "non-empty bucket name"),
        ("a/b", "k", "without '/'"),
        ("bkt", "", "non-empty S3 key"),
        ("bkt", "/", "non-empty S3 key"),
    ],
)
def test_bad_targets_raise_value_error(bucket: str, target: str, message: str) -> None:
    """Empty or malformed targets are refused with a message naming the allowed form."""
    with pytest.raises(ValueError, match=message):
        keys.encode_key(PREFIX, datetime(2020, 1, 1), bucket, target)


def test_key_length_limit_is_s3s_1024_bytes() -> None:
    """A name of exactly 1,024 UTF-8 bytes is allowed; one more byte is refused."""
    base = keys.encode_key(PREFIX, datetime(2020, 1, 1), "bkt", "x")
    fits = "x" * (keys.MAX_KEY_BYTES - len(base) + 1)

    assert len(keys.encode_key(PREFIX, datetime(2020, 1, 1), "bkt", fits).encode()) == 1024
    with pytest.raises(ValueError, match="1024-byte limit"):
        keys.encode_key(PREFIX, datetime(2020, 1, 1), "bkt", fits + "x")


def test_key_length_counts_utf8_bytes_of_the_path() -> None:
    """A unicode scheduler path counts in bytes, not characters."""
    prefix = keys.listing_prefix("é" * 500)

    with pytest.raises(ValueError, match="1024-byte limit"):
        keys.encode_key(prefix, datetime(2020, 1, 1), "bkt", "k")


def test_bound_covers_a_legacy_plus_14_key_due_now() -> None:
    """A 0.0.3 key written with +14:00 that is due now sorts before the bound."""
    now = datetime(2026, 11, 27, 10, 0, 0, 500, tzinfo=UTC)
    kiribati = timezone(timedelta(hours=14))
    legacy_due = PREFIX + "|".join([quote(str(datetime(2026, 11, 28, 0, 0, tzinfo=kiribati))), "b", "k"])

    assert keys.decode_key(legacy_due, PREFIX).when <= now
    bound = keys.listing_bound(PREFIX, now)
    assert bound is not None
    assert legacy_due <= bound


def test_bound_excludes_events_past_the_lookahead() -> None:
    """An event due in a minute after the one 14 hours ahead sorts after the bound; the bound takes the whole
    minute, so a name that spells no seconds is read in its minute."""
    now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    later = keys.encode_key(PREFIX, now + timedelta(hours=14, minutes=1), "bkt", "k")
    same_minute = keys.encode_key(PREFIX, now + timedelta(hours=14, seconds=59), "bkt", "k")
    sooner = keys.encode_key(PREFIX, now + timedelta(hours=13, minutes=59), "bkt", "k")

    bound = keys.listing_bound(PREFIX, now)

    assert bound is not None
    assert later > bound
    assert sooner <= bound
    assert same_minute <= bound


# what check() makes of a name ------------------------------------------------------------


@given(utc_times, bucket_names, key_text.filter(lambda t: t != "/"))
def test_every_name_this_package_writes_is_read_in_time(when: datetime, bucket: str, target: str) -> None:
    """A name encode_key writes is an event, read in time, with no offset, whatever legacy_offsets says."""
    key = keys.encode_key(PREFIX, when, bucket, target)

    assert keys.check_name(key, PREFIX) == keys.NameCheck(None)
    assert keys.check_name(key, PREFIX, legacy_offsets=False) == keys.NameCheck(None)


def test_a_name_that_is_not_an_event_says_why() -> None:
    """A name that does not decode is not an event, with decode_key's own reason."""
    key = PREFIX + "tomorrow|bkt|k"

    found = keys.check_name(key, PREFIX)

    with pytest.raises(InvalidKeyError) as raised:
        keys.decode_key(key, PREFIX)
    assert found == keys.NameCheck(str(raised.value))


def test_an_offset_name_needs_legacy_offsets_and_is_late_without_them() -> None:
    """0.0.3's name with +02:00 is read in time only with legacy_offsets; without, it is late, named its rename."""
    key = PREFIX + quote("2030-01-07 16:05:00+02:00") + "|bkt|in~~k"
    canonical = keys.encode_key(PREFIX, datetime(2030, 1, 7, 14, 5, tzinfo=UTC), "bkt", "in/k")

    legacy = keys.check_name(key, PREFIX)
    strict = keys.check_name(key, PREFIX, legacy_offsets=False)

    assert legacy == keys.NameCheck(None, offset=True)
    assert strict.not_event is None
    assert strict.offset
    assert strict.late == f"its time sorts after the names due then; handle() reads it late: rename it {canonical!r}"


def test_a_t_separated_or_date_only_name_is_read_in_time_without_an_offset() -> None:
    """ISO 8601 with T, or a date alone, sorts after its date's names but inside the window: not late, no offset."""
    for part in ("2030-01-07T14:05:00Z", "2030-01-07"):
        assert keys.check_name(PREFIX + part + "|bkt|k", PREFIX, legacy_offsets=False) == keys.NameCheck(None)


def test_a_negative_offset_sorts_early_and_needs_no_legacy_offsets() -> None:
    """A name west of UTC spells an earlier wall time than it is due: it has an offset but is read in time."""
    key = PREFIX + quote("2030-01-07 09:05:00-05:00") + "|bkt|k"

    assert keys.check_name(key, PREFIX, legacy_offsets=False) == keys.NameCheck(None, offset=True)


def test_a_dead_letter_decodes_to_its_events_time_and_target() -> None:
    """A dead letter's name, token or not, gives back when and where its event went; keys builds no event."""
    event = keys.encode_key(PREFIX, datetime(2030, 1, 7, 14, 5), "bkt", "in/k")
    letter = keys.dead_letter_key(PREFIX, event, "0badcafe")
    old_letter = keys.dead_letter_prefix(PREFIX) + event[len(PREFIX) :]

    decoded = keys.decode_dead_letter(letter, PREFIX)

    assert decoded == keys.DecodedKey(datetime(2030, 1, 7, 14, 5, tzinfo=UTC), "bkt", "in/k")
    assert keys.decode_dead_letter(old_letter, PREFIX) == decoded
    with pytest.raises(InvalidKeyError):
        keys.decode_dead_letter(event, PREFIX)


def test_an_event_and_a_dead_letter_are_built_from_their_names() -> None:
    """ScheduledEvent.from_key and from_dead_letter keep the name as the key and take time and target from keys."""
    key = keys.encode_key(PREFIX, datetime(2030, 1, 7, 14, 5), "bkt", "in/k")
    letter = keys.dead_letter_key(PREFIX, key, "0badcafe")
    when = datetime(2030, 1, 7, 14, 5, tzinfo=UTC)

    assert ScheduledEvent.from_key(key, PREFIX) == ScheduledEvent(key, when, "bkt", "in/k")
    assert ScheduledEvent.from_dead_letter(letter, PREFIX) == ScheduledEvent(letter, when, "bkt", "in/k")
    with pytest.raises(InvalidKeyError):
        ScheduledEvent.from_key(letter, PREFIX)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(timezone.utc)))
def test_a_written_time_is_read_as_the_general_form_reads_it(when: datetime) -> None:
    """The time part this package writes is read on a short path (`keys._WRITTEN`): the
    same time as the general form's steps give."""
    part = keys.encode_time(when)
    assert keys._WRITTEN.fullmatch(part)
    fast = keys.parse_time(part)
    with mock.patch.object(keys, "_WRITTEN", re.compile("(?!)")):
        assert keys.parse_time(part) == fast == when


@pytest.mark.parametrize(
    "part",
    [
        "2026-02-30%2010%3A00%3A00%2B00%3A00",  # no such day: the general form says so
        "2026-13-01%2010%3A00%3A00%2B00%3A00",
        "2026-12-07%2025%3A00%3A00%2B00%3A00",
    ],
)
def test_a_written_form_of_no_time_is_refused(part: str) -> None:
    with pytest.raises(InvalidKeyError, match="is not a time"):
        keys.parse_time(part)


def test_a_written_form_with_a_zero_fraction_is_the_same_time() -> None:
    ten = datetime(2026, 12, 7, 10, tzinfo=timezone.utc)
    assert keys.parse_time("2026-12-07%2010%3A00%3A00.000000%2B00%3A00") == ten
    assert keys.parse_time("2026-12-07%2010%3A00%3A00.000001%2B00%3A00").microsecond == 1
