"""s3_scheduler.settings, without S3: each variable's accepted and refused forms, every refusal a
`ConfigurationError` naming the variable and what it accepts, and the value rules the command line shares
(issue 18: one reader of the environment for both front ends)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from s3_scheduler.exceptions import ConfigurationError
from s3_scheduler.keys import MAX_SHARDS
from s3_scheduler.scheduler import Scheduler
from s3_scheduler.settings import (
    BUCKET_RULE,
    DEFAULT_DEAD_LETTER_ATTEMPTS,
    DEFAULT_MAX_WORKERS,
    MAX_WORKERS,
    MAX_WORKERS_LIMIT,
    Environment,
    Settings,
    bucket_problem,
    duration_seconds,
    endpoint_problem,
    flag_value,
    format_duration,
    metrics_dimensions,
    read_settings,
    region_problem,
    text_problem,
    whole_number,
)

YES_OR_NO = "is not yes or no: use 1/0, true/false, yes/no or on/off"
NOT_A_DURATION = "is not a duration: use seconds or 90s, 10m, 2h, 1d"
NOT_A_URL = "is not a URL: use the form http://host:port or https://host"


def read(method: str, env: dict[str, str]) -> Any:
    """Return what the `Environment` method ``method`` reads from ``env``."""
    return getattr(Environment(env), method)()


def refusal(method: str, env: dict[str, str]) -> str:
    """Return the message of the `ConfigurationError` the `Environment` method ``method`` raises on ``env``."""
    with pytest.raises(ConfigurationError) as raised:
        read(method, env)
    return str(raised.value)


# each variable: what it takes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "env", "value"),
    [
        ("bucket", {}, None),
        ("bucket", {"S3_SCHEDULER_BUCKET": ""}, None),
        ("bucket", {"S3_SCHEDULER_BUCKET": "  "}, None),
        ("bucket", {"S3_SCHEDULER_BUCKET": "sched"}, "sched"),
        ("bucket", {"S3_SCHEDULER_BUCKET": " sched\n"}, "sched"),
        ("bucket", {"S3_SCHEDULER_BUCKET": "Legacy_Bucket"}, "Legacy_Bucket"),
        (
            "bucket",
            {"S3_SCHEDULER_BUCKET": "arn:aws:s3:eu-west-3:123456789012:accesspoint/x"},
            "arn:aws:s3:eu-west-3:123456789012:accesspoint/x",
        ),
        ("prefix", {}, "jobs"),
        ("prefix", {"S3_SCHEDULER_PREFIX": ""}, ""),
        ("prefix", {"S3_SCHEDULER_PREFIX": "team/jobs/"}, "team/jobs/"),
        ("allowed_targets", {}, None),
        ("allowed_targets", {"S3_SCHEDULER_ALLOWED_TARGETS": "work"}, ("work",)),
        ("allowed_targets", {"S3_SCHEDULER_ALLOWED_TARGETS": " work/in/, s3://other ,"}, ("work/in/", "s3://other")),
        ("precise", {}, False),
        ("precise", {"S3_SCHEDULER_PRECISE": " "}, False),
        ("precise", {"S3_SCHEDULER_PRECISE": "On"}, True),
        ("legacy_offsets", {}, True),
        ("legacy_offsets", {"S3_SCHEDULER_LEGACY_OFFSETS": "0"}, False),
        ("metrics", {}, True),
        ("metrics", {"S3_SCHEDULER_METRICS": "FALSE"}, False),
        ("dead_letter_after", {}, None),
        ("dead_letter_after", {"S3_SCHEDULER_DEAD_LETTER_AFTER": ""}, None),
        ("dead_letter_after", {"S3_SCHEDULER_DEAD_LETTER_AFTER": "0"}, timedelta(0)),
        ("dead_letter_after", {"S3_SCHEDULER_DEAD_LETTER_AFTER": "1.5 h"}, timedelta(minutes=90)),
        ("max_lateness", {}, None),
        ("max_lateness", {"S3_SCHEDULER_MAX_LATENESS": "60"}, timedelta(minutes=1)),
        ("max_lateness", {"S3_SCHEDULER_MAX_LATENESS": "2d"}, timedelta(days=2)),
        ("max_workers", {}, DEFAULT_MAX_WORKERS),
        ("max_workers", {"S3_SCHEDULER_MAX_WORKERS": ""}, DEFAULT_MAX_WORKERS),
        ("max_workers", {"S3_SCHEDULER_MAX_WORKERS": " 1 "}, 1),
        ("max_workers", {"S3_SCHEDULER_MAX_WORKERS": "1000"}, 1000),
        ("shards", {}, 1),
        ("shards", {"S3_SCHEDULER_SHARDS": " 8 "}, 8),
        ("shards", {"S3_SCHEDULER_SHARDS": "1000"}, 1000),
        ("fanout", {}, True),
        ("fanout", {"S3_SCHEDULER_FANOUT": "off"}, False),
        ("fanout", {"S3_SCHEDULER_FANOUT": "YES"}, True),
        ("dead_letter_attempts", {}, DEFAULT_DEAD_LETTER_ATTEMPTS),
        ("dead_letter_attempts", {"S3_SCHEDULER_DEAD_LETTER_ATTEMPTS": "1"}, 1),
        ("dead_letter_attempts", {"S3_SCHEDULER_DEAD_LETTER_ATTEMPTS": "100000"}, 100000),
        ("log_level", {}, "INFO"),
        ("log_level", {"S3_SCHEDULER_LOG_LEVEL": " debug "}, "DEBUG"),
        ("log_level", {"S3_SCHEDULER_LOG_LEVEL": "Critical"}, "CRITICAL"),
        ("endpoint_url", {}, None),
        ("endpoint_url", {"AWS_ENDPOINT_URL": ""}, None),
        ("endpoint_url", {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}, "http://127.0.0.1:5000"),
        (
            "endpoint_url",
            {"AWS_ENDPOINT_URL_S3": "https://s3.example.com", "AWS_ENDPOINT_URL": "junk"},
            "https://s3.example.com",
        ),
        ("endpoint_url", {"AWS_ENDPOINT_URL_S3": "", "AWS_ENDPOINT_URL": "http://[::1]:9000"}, "http://[::1]:9000"),
        ("region", {}, None),
        ("region", {"AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": "bad region"}, "eu-west-3"),
        ("region", {"AWS_DEFAULT_REGION": "us-east-1"}, None),
        ("region", {"AWS_REGION": "", "AWS_DEFAULT_REGION": "us-east-1"}, None),
    ],
)
def test_each_variable_takes_its_forms_and_its_default(method: str, env: dict[str, str], value: Any) -> None:
    """Each variable, unset, blank or in each of its forms, reads as the value it means; the endpoint and
    region are only checked, as boto3 reads them itself (AWS_ENDPOINT_URL_S3 winning, as it does)."""
    assert read(method, env) == value


SURROGATE = "is not UTF-8 text: '\\udcff' at character {} is a lone surrogate"
NOT_A_BUCKET = f"is not a bucket name: use {BUCKET_RULE}"
TOO_LONG = "is too long: use at most 999999999d"
NOT_ONE_OR_MORE = "is not a whole number of 1 or more, such as"
OVER_1000 = "is over 1000: use a whole number from 1 to 1000, such as 32"
NOT_A_LEVEL = "is not a log level: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
NOT_A_REGION = "is not a region: use a name such as eu-west-3"
UNDER_A_MINUTE = "is under 1m: runs a minute apart find events up to a minute late; use 1m or more, e.g. 1h"
REFUSED = [
    ("bucket", {"S3_SCHEDULER_BUCKET": "Bad_Bucket!"}, f"S3_SCHEDULER_BUCKET: 'Bad_Bucket!' {NOT_A_BUCKET}"),
    (
        "bucket",
        {"S3_SCHEDULER_BUCKET": "my..bucket"},
        f"S3_SCHEDULER_BUCKET: 'my..bucket' is not a bucket name (two dots in a row): use {BUCKET_RULE}",
    ),
    ("bucket", {"S3_SCHEDULER_BUCKET": "arn:x\udcff"}, "S3_SCHEDULER_BUCKET='arn:x\\udcff' " + SURROGATE.format(5)),
    ("prefix", {"S3_SCHEDULER_PREFIX": "jobs\udcff"}, "S3_SCHEDULER_PREFIX='jobs\\udcff' " + SURROGATE.format(4)),
    (
        "allowed_targets",
        {"S3_SCHEDULER_ALLOWED_TARGETS": " , "},
        "S3_SCHEDULER_ALLOWED_TARGETS=' , ' is set but empty, which would reject every event: list 'bucket' or"
        " 'bucket/prefix' entries separated by commas, or unset it to allow any target",
    ),
    (
        "allowed_targets",
        {"S3_SCHEDULER_ALLOWED_TARGETS": "work, bad bucket/x"},
        f"S3_SCHEDULER_ALLOWED_TARGETS entry 'bad bucket/x': 'bad bucket' {NOT_A_BUCKET}; entries are 'bucket' or"
        " 'bucket/prefix'",
    ),
    ("precise", {"S3_SCHEDULER_PRECISE": "2"}, f"S3_SCHEDULER_PRECISE='2' {YES_OR_NO}"),
    ("legacy_offsets", {"S3_SCHEDULER_LEGACY_OFFSETS": "maybe"}, f"S3_SCHEDULER_LEGACY_OFFSETS='maybe' {YES_OR_NO}"),
    ("metrics", {"S3_SCHEDULER_METRICS": "enabled"}, f"S3_SCHEDULER_METRICS='enabled' {YES_OR_NO}"),
    ("fanout", {"S3_SCHEDULER_FANOUT": "sometimes"}, f"S3_SCHEDULER_FANOUT='sometimes' {YES_OR_NO}"),
    (
        "dead_letter_after",
        {"S3_SCHEDULER_DEAD_LETTER_AFTER": "-60"},
        f"S3_SCHEDULER_DEAD_LETTER_AFTER='-60' {NOT_A_DURATION}",
    ),
    (
        "dead_letter_after",
        {"S3_SCHEDULER_DEAD_LETTER_AFTER": "nan"},
        f"S3_SCHEDULER_DEAD_LETTER_AFTER='nan' {NOT_A_DURATION}",
    ),
    (
        "dead_letter_after",
        {"S3_SCHEDULER_DEAD_LETTER_AFTER": "9" * 400},
        f"S3_SCHEDULER_DEAD_LETTER_AFTER='{'9' * 400}' {TOO_LONG}",
    ),
    (
        "dead_letter_after",
        {"S3_SCHEDULER_DEAD_LETTER_AFTER": "99999999999d"},
        f"S3_SCHEDULER_DEAD_LETTER_AFTER='99999999999d' {TOO_LONG}",
    ),
    ("max_lateness", {"S3_SCHEDULER_MAX_LATENESS": "soon"}, f"S3_SCHEDULER_MAX_LATENESS='soon' {NOT_A_DURATION}"),
    ("max_lateness", {"S3_SCHEDULER_MAX_LATENESS": "59"}, f"S3_SCHEDULER_MAX_LATENESS='59' {UNDER_A_MINUTE}"),
    ("max_workers", {"S3_SCHEDULER_MAX_WORKERS": "0"}, f"S3_SCHEDULER_MAX_WORKERS='0' {NOT_ONE_OR_MORE} 32"),
    ("max_workers", {"S3_SCHEDULER_MAX_WORKERS": "1e3"}, f"S3_SCHEDULER_MAX_WORKERS='1e3' {NOT_ONE_OR_MORE} 32"),
    ("max_workers", {"S3_SCHEDULER_MAX_WORKERS": "1001"}, f"S3_SCHEDULER_MAX_WORKERS='1001' {OVER_1000}"),
    ("max_workers", {"S3_SCHEDULER_MAX_WORKERS": "9" * 40}, f"S3_SCHEDULER_MAX_WORKERS='{'9' * 40}' {OVER_1000}"),
    ("shards", {"S3_SCHEDULER_SHARDS": "0"}, f"S3_SCHEDULER_SHARDS='0' {NOT_ONE_OR_MORE} 1"),
    (
        "shards",
        {"S3_SCHEDULER_SHARDS": "1001"},
        "S3_SCHEDULER_SHARDS='1001' is over 1000: use a whole number from 1 to 1000, such as 1",
    ),
    (
        "dead_letter_attempts",
        {"S3_SCHEDULER_DEAD_LETTER_ATTEMPTS": "-1"},
        f"S3_SCHEDULER_DEAD_LETTER_ATTEMPTS='-1' {NOT_ONE_OR_MORE} 3",
    ),
    ("log_level", {"S3_SCHEDULER_LOG_LEVEL": ""}, f"S3_SCHEDULER_LOG_LEVEL='' {NOT_A_LEVEL}"),
    ("log_level", {"S3_SCHEDULER_LOG_LEVEL": "verbose"}, f"S3_SCHEDULER_LOG_LEVEL='verbose' {NOT_A_LEVEL}"),
    ("endpoint_url", {"AWS_ENDPOINT_URL": "localhost:5101"}, f"AWS_ENDPOINT_URL: 'localhost:5101' {NOT_A_URL}"),
    (
        "endpoint_url",
        {"AWS_ENDPOINT_URL_S3": "http://a b", "AWS_ENDPOINT_URL": "http://127.0.0.1:5000"},
        f"AWS_ENDPOINT_URL_S3: 'http://a b' {NOT_A_URL}",
    ),
    ("region", {"AWS_REGION": "not a region"}, f"AWS_REGION='not a region' {NOT_A_REGION}"),
    ("region", {"AWS_REGION": "", "AWS_DEFAULT_REGION": ""}, f"AWS_DEFAULT_REGION='' {NOT_A_REGION}"),
    ("region", {"AWS_DEFAULT_REGION": "-x"}, f"AWS_DEFAULT_REGION='-x' {NOT_A_REGION}"),
]
"""Each variable's refused forms: (the `Environment` method, the environment, the whole message)."""


@pytest.mark.parametrize(("method", "env", "message"), REFUSED)
def test_each_refusal_names_the_variable_and_what_it_takes(method: str, env: dict[str, str], message: str) -> None:
    """A malformed value is a ConfigurationError (a ValueError too) whose message starts with the variable's name
    and says the forms it accepts."""
    assert refusal(method, env) == message
    assert issubclass(ConfigurationError, ValueError)


def test_a_variable_is_read_when_asked_for_and_then_only() -> None:
    """Environment reads a variable at each call, and only the one asked for: a malformed variable the caller
    does not use (as the command line does not use S3_SCHEDULER_PRECISE) is never an error."""
    env = {"S3_SCHEDULER_PRECISE": "junk", "S3_SCHEDULER_MAX_WORKERS": "8"}
    environment = Environment(env)

    first = environment.max_workers()
    env["S3_SCHEDULER_MAX_WORKERS"] = "9"
    second = environment.max_workers()

    assert (first, second) == (8, 9)


# the Lambda handler's settings --------------------------------------------------------------


def test_a_missing_bucket_is_refused_naming_it() -> None:
    """read_settings needs S3_SCHEDULER_BUCKET: unset or blank is a ConfigurationError saying to set it."""
    for env in ({}, {"S3_SCHEDULER_BUCKET": " "}):
        with pytest.raises(ConfigurationError) as raised:
            read_settings(env)

        assert str(raised.value) == "S3_SCHEDULER_BUCKET is not set: set it to the bucket that holds the schedule"


def test_unset_variables_take_their_defaults() -> None:
    """With the bucket alone, every other setting is its default: path jobs, any target, not precise, no dead
    letters, INFO, legacy offsets, 32 workers, 3 attempts, metrics on, no lateness limit."""
    assert read_settings({"S3_SCHEDULER_BUCKET": "sched"}) == Settings(
        bucket="sched",
        prefix="jobs",
        allowed_targets=None,
        precise=False,
        dead_letter_after=None,
        log_level="INFO",
        legacy_offsets=True,
        max_workers=32,
        dead_letter_attempts=3,
        metrics=True,
        max_lateness=None,
        shards=1,
        fanout=True,
    )


def test_the_first_malformed_variable_in_settings_order_is_the_one_named() -> None:
    """With several malformed values, the bucket is named first, then the endpoint, then the settings in order."""
    env = {
        "S3_SCHEDULER_BUCKET": "Bad_Bucket!",
        "AWS_ENDPOINT_URL": "junk",
        "S3_SCHEDULER_PRECISE": "junk",
        "S3_SCHEDULER_MAX_LATENESS": "junk",
    }
    named = []
    for name in ("S3_SCHEDULER_BUCKET", "AWS_ENDPOINT_URL", "S3_SCHEDULER_PRECISE", "S3_SCHEDULER_MAX_LATENESS"):
        with pytest.raises(ConfigurationError) as raised:
            read_settings({"S3_SCHEDULER_BUCKET": "sched", **env})
        named.append(str(raised.value).split("=")[0].split(":")[0])
        env.pop(name)

    assert named == ["S3_SCHEDULER_BUCKET", "AWS_ENDPOINT_URL", "S3_SCHEDULER_PRECISE", "S3_SCHEDULER_MAX_LATENESS"]


@pytest.mark.parametrize(
    ("value", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0), ("1d", 86400.0), ("", None)]
)
def test_dead_letter_after_takes_durations(value: str, seconds: float | None) -> None:
    """S3_SCHEDULER_DEAD_LETTER_AFTER accepts seconds or s/m/h/d; empty means off."""
    settings = read_settings({"S3_SCHEDULER_BUCKET": "sched", "S3_SCHEDULER_DEAD_LETTER_AFTER": value})

    assert settings.dead_letter_after == seconds


@pytest.mark.parametrize(
    ("value", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0), ("1d", 86400.0), ("", None)]
)
def test_max_lateness_takes_durations(value: str, seconds: float | None) -> None:
    """S3_SCHEDULER_MAX_LATENESS accepts seconds or s/m/h/d; unset or empty means off."""
    settings = read_settings({"S3_SCHEDULER_BUCKET": "sched", "S3_SCHEDULER_MAX_LATENESS": value})

    assert settings.max_lateness == seconds
    assert read_settings({"S3_SCHEDULER_BUCKET": "sched"}).max_lateness is None


@pytest.mark.parametrize(
    ("value", "precise"),
    [("1", True), ("TRUE", True), ("yes", True), ("on", True), ("0", False), ("false", False), ("No", False)],
)
def test_precise_takes_the_usual_yes_and_no_words(value: str, precise: bool) -> None:
    """S3_SCHEDULER_PRECISE accepts 1/0, true/false, yes/no and on/off in any case."""
    assert read_settings({"S3_SCHEDULER_BUCKET": "sched", "S3_SCHEDULER_PRECISE": value}).precise is precise


def test_every_setting_is_read() -> None:
    """Each variable lands in its setting."""
    env = {
        "S3_SCHEDULER_BUCKET": "sched",
        "S3_SCHEDULER_PREFIX": "p",
        "S3_SCHEDULER_ALLOWED_TARGETS": "a-bucket, b-bucket/in/",
        "S3_SCHEDULER_PRECISE": "yes",
        "S3_SCHEDULER_DEAD_LETTER_AFTER": "1d",
        "S3_SCHEDULER_LOG_LEVEL": "debug",
        "S3_SCHEDULER_LEGACY_OFFSETS": "off",
        "S3_SCHEDULER_MAX_WORKERS": "64",
        "S3_SCHEDULER_DEAD_LETTER_ATTEMPTS": "5",
        "S3_SCHEDULER_METRICS": "no",
        "S3_SCHEDULER_MAX_LATENESS": "2h",
        "S3_SCHEDULER_SHARDS": "8",
        "S3_SCHEDULER_FANOUT": "off",
    }

    assert read_settings(env) == Settings(
        bucket="sched",
        prefix="p",
        allowed_targets=("a-bucket", "b-bucket/in/"),
        precise=True,
        dead_letter_after=86400.0,
        log_level="DEBUG",
        legacy_offsets=False,
        max_workers=64,
        dead_letter_attempts=5,
        metrics=False,
        max_lateness=7200.0,
        shards=8,
        fanout=False,
    )


@pytest.mark.parametrize(("name", "url"), [("AWS_ENDPOINT_URL", "http://[::1"), ("AWS_ENDPOINT_URL_S3", "localhost:9")])
def test_lambda_settings_refuse_a_malformed_endpoint(name: str, url: str) -> None:
    """A malformed AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3) is a ConfigurationError naming it, not botocore's bare
    ValueError at the first invocation (issue 17)."""
    with pytest.raises(ConfigurationError) as raised:
        read_settings({"S3_SCHEDULER_BUCKET": "sched", name: url})

    assert str(raised.value) == f"{name}: {url!r} is not a URL: use the form http://host:port or https://host"


def test_lambda_settings_refuse_a_max_lateness_under_a_minute() -> None:
    """S3_SCHEDULER_MAX_LATENESS under the Scheduler's least (a minute) is a ConfigurationError naming it, not the
    Scheduler's ValueError at the first invocation."""
    with pytest.raises(ConfigurationError, match=r"^S3_SCHEDULER_MAX_LATENESS='10s' is under 1m: "):
        read_settings({"S3_SCHEDULER_BUCKET": "sched", "S3_SCHEDULER_MAX_LATENESS": "10s"})


# the values both front ends share ----------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["my-bucket", "sched", "a.b-c", "Legacy_Bucket", "arn:aws:s3:eu-west-3:123456789012:accesspoint/x"]
)
def test_bucket_names_s3_may_hold_pass(name: str) -> None:
    """Names S3 (or an older us-east-1 bucket, or an access point) may hold are let through."""
    assert bucket_problem(name) is None


@pytest.mark.parametrize("name", ["Bad_Bucket!", "ab", "a" * 256, "has space", "s3://x", "a/b"])
def test_bucket_names_s3_never_accepts_are_refused(name: str) -> None:
    """A name no S3 can accept is refused with the rule."""
    assert bucket_problem(name) == f"{name!r} is not a bucket name: use {BUCKET_RULE}"


@pytest.mark.parametrize("url", ["http://127.0.0.1:5000", "https://s3.eu-west-3.amazonaws.com", "http://[::1]:9000/"])
def test_a_well_formed_endpoint_passes(url: str) -> None:
    """http and https URLs with a host (a name, an IPv4 or an IPv6 address) and a port are endpoints."""
    assert endpoint_problem(url) is None


@pytest.mark.parametrize(("seconds", "text"), [(900, "15m"), (90, "90s"), (3600, "1h"), (86400, "1d"), (1.5, "1.5s")])
def test_durations_are_printed_as_a_user_writes_them(seconds: float, text: str) -> None:
    """A duration the CLI prints is in the largest whole unit, as one writes it: 15m, not 0:15:00."""
    assert format_duration(seconds) == text
    assert duration_seconds(text) == seconds


def test_the_limits_are_the_schedulers() -> None:
    """The most workers and shards a variable or option takes are the most a Scheduler takes: one more is refused
    by both (checked before any client is made)."""
    assert MAX_WORKERS_LIMIT == MAX_WORKERS == 1000
    with pytest.raises(ValueError, match="max_workers"):
        Scheduler("sched", "jobs", max_workers=MAX_WORKERS_LIMIT + 1)
    with pytest.raises(ValueError, match="shards"):
        Scheduler("sched", "jobs", shards=MAX_SHARDS + 1)
    too_many = Environment({"S3_SCHEDULER_MAX_WORKERS": "1001", "S3_SCHEDULER_SHARDS": str(MAX_SHARDS + 1)})
    for read in (too_many.max_workers, too_many.shards):
        with pytest.raises(ConfigurationError, match="is over"):
            read()


@pytest.mark.parametrize(
    ("text", "value"), [("1", True), ("TRUE", True), (" on ", True), ("No", False), ("off", False)]
)
def test_flags_take_the_usual_words_in_any_case(text: str, value: bool) -> None:
    """A yes/no value is 1/0, true/false, yes/no or on/off, in any case, blanks around it allowed."""
    assert flag_value(text) is value


@pytest.mark.parametrize("text", ["", "2", "y", "enabled", "oui"])
def test_other_flags_are_refused_naming_the_words(text: str) -> None:
    """Anything else is a ValueError listing the words."""
    with pytest.raises(ValueError, match=f"^{text!r} is not yes or no: use 1/0, true/false, yes/no or on/off$"):
        flag_value(text)


@pytest.mark.parametrize(("text", "value"), [("0", 0), (" 20 ", 20), ("007", 7), ("9" * 31, 10**30)])
def test_whole_numbers_are_ascii_digits(text: str, value: int) -> None:
    """A whole number is ASCII digits; one of more than 30 digits is read as 10**30, above every limit."""
    assert whole_number(text) == value


@pytest.mark.parametrize("text", ["", "-1", "+1", "1e3", "1.0", "1_000", "\u0661"])
def test_anything_else_is_not_a_whole_number(text: str) -> None:
    """Signs, exponents, fractions, underscores and non-ASCII digits are refused."""
    with pytest.raises(ValueError, match="is not a whole number"):
        whole_number(text)


def test_regions_and_text_are_checked() -> None:
    """A region is botocore's shape of one; text holding a lone surrogate is not UTF-8 and says where."""
    assert [region_problem(name) is None for name in ("eu-west-3", "us-gov-west-1", "", "-x", "123", "a b")] == [
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    assert text_problem("jobs") is None
    assert text_problem("ab\udcff") == "is not UTF-8 text: '\\udcff' at character 2 is a lone surrogate"


def test_metrics_dimensions_name_the_bucket_and_prefix() -> None:
    """The metrics line's dimensions are Bucket and Prefix, / for the empty prefix (a dimension may not be empty)."""
    assert metrics_dimensions("sched", "jobs") == {"Bucket": "sched", "Prefix": "jobs"}
    assert metrics_dimensions("sched", "") == {"Bucket": "sched", "Prefix": "/"}
