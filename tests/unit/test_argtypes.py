"""The command line's argument types, without S3: each option's text becomes a value, or a `UsageError` naming
the option and the forms it takes (issue 18: pure, so they are tested here and not through the command)."""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3_scheduler.cli.argtypes import (
    check_bucket,
    check_endpoint,
    check_region,
    check_text,
    join_negative_times,
    parse_content_type,
    parse_duration,
    parse_limit,
    parse_max_lateness,
    parse_max_workers,
    parse_metadata,
    parse_shard,
    parse_shards,
    parse_target,
    parse_when,
)
from s3_scheduler.cli.errors import UsageError
from s3_scheduler.exceptions import ConfigurationError
from s3_scheduler.settings import Environment, duration_seconds

UTC = timezone.utc
T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
"""The tests' now (the functional tests' clock starts there too)."""


# times -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+90s", T0 + timedelta(seconds=90)),
        ("+10m", T0 + timedelta(minutes=10)),
        ("+2h", T0 + timedelta(hours=2)),
        ("+1d", T0 + timedelta(days=1)),
        ("+1.5m", T0 + timedelta(seconds=90)),
        ("-5m", T0 - timedelta(minutes=5)),
        ("2030-01-07T14:05:00", datetime(2030, 1, 7, 14, 5, tzinfo=UTC)),
        ("2030-01-07 14:05", datetime(2030, 1, 7, 14, 5, tzinfo=UTC)),
        ("2030-01-07T16:05:00+02:00", datetime(2030, 1, 7, 14, 5, tzinfo=UTC)),
        ("2030-01-07T14:05:00Z", datetime(2030, 1, 7, 14, 5, tzinfo=UTC)),
        ("2030-01-07 15:05 Europe/Paris", datetime(2030, 1, 7, 14, 5, tzinfo=UTC)),
        ("2030-07-07T16:05 Europe/Paris", datetime(2030, 7, 7, 14, 5, tzinfo=UTC)),
        ("2030-01-07 09:05 America/New_York", datetime(2030, 1, 7, 14, 5, tzinfo=UTC)),
        ("2030-10-27T02:30+02:00", datetime(2030, 10, 27, 0, 30, tzinfo=UTC)),
    ],
)
def test_when_is_iso_8601_a_zone_or_relative(text: str, expected: datetime) -> None:
    """WHEN takes ISO 8601 (no offset = UTC), a wall time and an IANA zone, or +/-N s/m/h/d from now."""
    assert parse_when(text, T0) == expected


@pytest.mark.parametrize("text", ["tomorrow", "+5y", "2030-13-01", "+", "", "5m"])
def test_a_bad_when_is_a_usage_error_naming_its_option(text: str) -> None:
    """A time that is not one names its own option and the allowed forms."""
    with pytest.raises(UsageError, match=f"^--until {re.escape(repr(text))} is not a time: use ISO 8601.*Europe/Paris"):
        parse_when(text, T0, "--until")


@pytest.mark.parametrize("text", ["+99999999999d", "-99999999999d", "+" + "9" * 400 + "s", "9999-12-31T23:59:59"])
def test_a_time_out_of_range_is_a_usage_error(text: str) -> None:
    """Times datetime cannot hold, or the listing could not reach, are refused in one line (issue 9)."""
    with pytest.raises(UsageError, match=r"is out of range: use a time from 0001-01-02 to 9999-12-30"):
        parse_when(text, T0)


def test_a_wall_time_the_clocks_skip_is_refused_naming_the_gap() -> None:
    """2:30 on the last Sunday of March 2030 does not exist in Paris: the error names the jump."""
    with pytest.raises(UsageError) as raised:
        parse_when("2030-03-31 02:30 Europe/Paris", T0)

    assert str(raised.value) == (
        "--at '2030-03-31 02:30 Europe/Paris' does not exist: in Europe/Paris the clocks jump from 02:00"
        " to 03:00 on 2030-03-31; pick a time outside that gap"
    )


def test_a_wall_time_that_happens_twice_is_refused_asking_for_an_offset() -> None:
    """2:30 on the last Sunday of October 2030 happens twice in Paris: the error offers both offsets."""
    with pytest.raises(UsageError) as raised:
        parse_when("2030-10-27 02:30 Europe/Paris", T0)

    assert str(raised.value) == (
        "--at '2030-10-27 02:30 Europe/Paris' happens twice: in Europe/Paris the clocks go back from 03:00"
        " to 02:00 on 2030-10-27; give the offset instead: 2030-10-27T02:30+02:00 (the first) or"
        " 2030-10-27T02:30+01:00 (the second)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2030-01-07 14:05 Europe/Pariss", "unknown time zone 'Europe/Pariss': use an IANA name"),
        ("2030-01-07T14:05+01:00 Europe/Paris", "gives both an offset and a zone"),
    ],
)
def test_a_bad_zone_is_named(text: str, message: str) -> None:
    """An unknown zone, or a zone beside an offset, is a usage error saying so."""
    with pytest.raises(UsageError, match=message):
        parse_when(text, T0)


def test_a_negative_relative_time_is_not_taken_for_an_option() -> None:
    """`--at -5m` reaches argparse as `--at=-5m`; other tokens are left alone."""
    argv = ["list", "--at", "-5m", "--until", "-1.5h", "--limit", "-5m", "--", "--at", "-1m"]

    assert join_negative_times(argv) == [
        "list",
        "--at=-5m",
        "--until=-1.5h",
        "--limit",
        "-5m",
        "--",
        "--at",
        "-1m",
    ]


@pytest.mark.parametrize(
    ("text", "seconds"), [("+5 m", 300), ("-5 m", -300), ("+ 5m", 300), ("+1.5 h", 5400), ("+90 s", 90)]
)
def test_a_space_before_the_unit_is_accepted(text: str, seconds: float) -> None:
    """`+5 m` is `+5m` (issue 17): a space between the number and its unit is fine, in times and durations."""
    assert parse_when(text, T0) == T0 + timedelta(seconds=seconds)
    assert duration_seconds(text.lstrip("+-").strip()) == abs(seconds)


# numbers and durations -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1.5h", 5400)]
)
def test_durations_take_s_m_h_d(text: str, seconds: float) -> None:
    """--timeout and --interval take seconds or s/m/h/d."""
    assert parse_duration(text, "--timeout") == seconds


@pytest.mark.parametrize("text", ["nan", "inf", "-5", "5y", "", "1e3"])
def test_a_bad_duration_is_a_usage_error(text: str) -> None:
    """Anything else, negative, nan and inf included, is refused naming the option and the forms."""
    with pytest.raises(
        UsageError, match=f"^--interval {re.escape(repr(text))} is not a duration: use seconds or 90s, 10m"
    ):
        parse_duration(text, "--interval")


@pytest.mark.parametrize(("text", "workers"), [("1", 1), ("64", 64), ("1000", 1000), (" 7 ", 7), ("007", 7)])
def test_max_workers_takes_a_whole_number_from_1_to_1000(text: str, workers: int) -> None:
    """--max-workers is a whole number from 1 to 1000, blanks around it allowed."""
    assert parse_max_workers(text) == workers


@pytest.mark.parametrize("text", ["0", "1001", "-1", "1e20", "1.5", "many", "", "100000000000000000000"])
def test_a_bad_max_workers_names_the_option_and_the_range(text: str) -> None:
    """Anything else is refused naming --max-workers, the range and an example."""
    with pytest.raises(UsageError) as raised:
        parse_max_workers(text)

    assert str(raised.value) == f"--max-workers {text!r} must be a whole number from 1 to 1000, e.g. 32"


@pytest.mark.parametrize(("text", "lateness"), [("1h", timedelta(hours=1)), ("60", timedelta(minutes=1))])
def test_max_lateness_takes_a_duration_of_a_minute_or_more(text: str, lateness: timedelta) -> None:
    """--max-lateness is a duration of at least a minute: runs a minute apart find events up to a minute late."""
    assert parse_max_lateness(text) == lateness


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10s", "--max-lateness '10s' is under 1m: runs a minute apart find events up to a minute late; use 1m or"),
        ("soon", "--max-lateness 'soon' is not a duration: use seconds or 90s, 10m, 2h, 1d"),
        ("99999999999d", "--max-lateness '99999999999d' is too long: use at most 999999999d"),
    ],
)
def test_a_bad_max_lateness_names_the_option(text: str, message: str) -> None:
    """Too short, not a duration or too long: refused naming --max-lateness and what to write."""
    with pytest.raises(UsageError, match=f"^{re.escape(message)}"):
        parse_max_lateness(text)


@pytest.mark.parametrize(("text", "limit"), [("0", 0), ("20", 20), ("100000000000000000000", 10**20)])
def test_limit_takes_zero_or_more(text: str, limit: int) -> None:
    """--limit is a whole number of zero or more; a huge one is kept as a huge one."""
    assert parse_limit(text) == limit


@pytest.mark.parametrize("text", ["-1", "1e20", "ten", ""])
def test_a_bad_limit_names_the_option(text: str) -> None:
    """Anything else is refused naming --limit with an example."""
    with pytest.raises(UsageError) as raised:
        parse_limit(text)

    assert str(raised.value) == f"--limit {text!r} is not a whole number of zero or more: e.g. --limit 20"


@pytest.mark.parametrize(("text", "shards"), [("1", 1), ("4", 4), ("1000", 1000), (" 8 ", 8), ("016", 16)])
def test_shards_takes_a_whole_number_from_1_to_1000(text: str, shards: int) -> None:
    """--shards is a whole number from 1 to 1000 (keys.MAX_SHARDS), blanks around it allowed."""
    assert parse_shards(text) == shards


@pytest.mark.parametrize("text", ["0", "1001", "-4", "1e3", "4.0", "four", "", "100000000000000000000"])
def test_a_bad_shards_names_the_option_and_the_range(text: str) -> None:
    """Anything else is refused naming --shards, the range and an example."""
    with pytest.raises(UsageError) as raised:
        parse_shards(text)

    assert str(raised.value) == f"--shards {text!r} must be a whole number from 1 to 1000 (1: no shards), e.g. 4"


@pytest.mark.parametrize(("text", "shards", "shard"), [("0", 1, 0), ("0", 4, 0), ("3", 4, 3), (" 999 ", 1000, 999)])
def test_shard_takes_a_shard_of_the_shards(text: str, shards: int, shard: int) -> None:
    """--shard is a whole number from 0 to the number of shards less one."""
    assert parse_shard(text, shards) == shard


@pytest.mark.parametrize(("text", "shards"), [("4", 4), ("1", 1), ("-1", 4), ("x", 4), ("", 2), ("1e1", 20)])
def test_a_bad_shard_names_the_option_and_the_range(text: str, shards: int) -> None:
    """A shard outside 0 to N-1 is refused naming --shard, the range, N and where N comes from."""
    with pytest.raises(UsageError) as raised:
        parse_shard(text, shards)

    assert str(raised.value) == (
        f"--shard {text!r} must be a whole number from 0 to {shards - 1} with {shards} shard(s)"
        " (--shards or S3_SCHEDULER_SHARDS), e.g. 0"
    )


OPTION_TEXTS = st.one_of(
    st.sampled_from(["1", "32", "1000", "1001", "0", "-1", "1e3", "1.5", " 8 ", "60", "1h", "10s", "90 s", "nan", "x"]),
    st.text(alphabet="0123456789 .smhd+-e", min_size=1, max_size=8),
)


@given(text=OPTION_TEXTS.filter(str.strip))
def test_an_option_and_its_variable_take_the_same_forms(text: str) -> None:
    """--max-workers and S3_SCHEDULER_MAX_WORKERS, --max-lateness and S3_SCHEDULER_MAX_LATENESS, --shards and
    S3_SCHEDULER_SHARDS accept the same values (blank aside, which leaves a variable at its default): one rule each,
    in s3_scheduler.settings."""
    for parse, variable, read in (
        (parse_max_workers, "S3_SCHEDULER_MAX_WORKERS", Environment.max_workers),
        (parse_max_lateness, "S3_SCHEDULER_MAX_LATENESS", Environment.max_lateness),
        (parse_shards, "S3_SCHEDULER_SHARDS", Environment.shards),
    ):
        try:
            from_option: object = parse(text)
        except UsageError:
            from_option = None
        try:
            from_variable: object = read(Environment({variable: text}))
        except ConfigurationError:
            from_variable = None

        assert from_option == from_variable, (variable, text)


# names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["bucket/key", "s3://bucket", "s3://bucket/", "s3:///key"])
def test_a_bad_target_is_a_usage_error(text: str) -> None:
    """--to must be s3://bucket/key."""
    with pytest.raises(UsageError, match="s3://bucket/key"):
        parse_target(text)


def test_bucket_endpoint_and_region_options_are_checked_naming_the_option() -> None:
    """--bucket, --endpoint-url and --region are returned when well formed, refused naming the option when not."""
    assert check_bucket("my-schedule-bucket") == "my-schedule-bucket"
    assert check_endpoint("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert check_region("eu-west-3") == "eu-west-3"
    with pytest.raises(UsageError, match=r"^--bucket 'my\.\.bucket' is not a bucket name \(two dots in a row\)"):
        check_bucket("my..bucket")
    with pytest.raises(UsageError, match=r"^--endpoint-url 'localhost:5101' is not a URL: use the form http://"):
        check_endpoint("localhost:5101")
    with pytest.raises(UsageError, match=r"^--region '' is not a region: use a name such as eu-west-3$"):
        check_region("")


# what is sent to S3 ----------------------------------------------------------------------


def test_content_type_and_metadata_are_checked() -> None:
    """A MIME type and NAME=VALUE items pass as they are; a header-breaking one is refused."""
    assert parse_content_type("text/plain; charset=utf-8") == "text/plain; charset=utf-8"
    assert parse_metadata(["order-id=42", "empty="]) == {"order-id": "42", "empty": ""}
    with pytest.raises(UsageError, match="is not a MIME type"):
        parse_content_type("text/plain\r\nX: y")
    with pytest.raises(UsageError, match="given twice"):
        parse_metadata(["id=1", "ID=2"])


def test_an_argument_that_is_not_utf8_is_named_and_content_never_shown() -> None:
    """A lone surrogate in an argument names the option (KEY for keys); --content's text is never echoed; file
    names are left alone."""
    with pytest.raises(UsageError, match=r"^--to 's3://t/\\udcff' is not UTF-8 text"):
        check_text(argparse.Namespace(to="s3://t/\udcff"))
    with pytest.raises(UsageError, match=r"^KEY 'k\\udcff' is not UTF-8 text"):
        check_text(argparse.Namespace(keys=["k\udcff"]))
    with pytest.raises(UsageError, match=r"^--content is not UTF-8 text") as raised:
        check_text(argparse.Namespace(content="secret \udcff"))
    assert "secret" not in str(raised.value)

    check_text(argparse.Namespace(file="\udcff.bin", from_file="\udcff.jsonl", verbose=2))
