"""Every ``S3_SCHEDULER_*`` variable, read and checked once, for both front ends.

The command line (`s3_scheduler.cli`) and the Lambda handler (`s3_scheduler.aws_lambda`)
read the environment only through `Environment`: one method per variable, reading it
from the mapping it was given (``os.environ``, or a test's dict) when called. A variable
that is unset, or set to blanks, takes its default (``S3_SCHEDULER_LOG_LEVEL`` excepted:
blank is not a level). A malformed value raises `ConfigurationError` naming the variable
and the forms it accepts, before any request to S3. `read_settings` reads every variable
the Lambda handler uses, in one `Settings`; the command line reads only those its options
fall back on, and only for the options not given.

==================================  =========================================================
variable                            accepted (default)
==================================  =========================================================
S3_SCHEDULER_BUCKET                 a bucket name (`bucket_problem`), blanks around it stripped
S3_SCHEDULER_PREFIX                 UTF-8 text (``jobs``)
S3_SCHEDULER_ALLOWED_TARGETS        ``bucket`` or ``bucket/prefix`` entries, comma-separated
S3_SCHEDULER_PRECISE                yes/no: 1/0, true/false, yes/no, on/off, any case (no)
S3_SCHEDULER_DEAD_LETTER_AFTER      a duration: 90, 90s, 10m, 2h, 1d (off)
S3_SCHEDULER_DEAD_LETTER_ATTEMPTS   a whole number of 1 or more (3)
S3_SCHEDULER_MAX_LATENESS           a duration of 1m or more (off)
S3_SCHEDULER_MAX_WORKERS            a whole number from 1 to 1000 (32)
S3_SCHEDULER_SHARDS                 a whole number from 1 to 1000 (1: no shards)
S3_SCHEDULER_FANOUT                 yes/no: the Lambda tick invokes one function per shard (yes)
S3_SCHEDULER_LEGACY_OFFSETS         yes/no (yes)
S3_SCHEDULER_METRICS                yes/no (yes)
S3_SCHEDULER_LOG_LEVEL              DEBUG, INFO, WARNING, ERROR or CRITICAL, any case (INFO)
AWS_ENDPOINT_URL_S3                 an http(s)://host[:port] URL (read by boto3)
AWS_ENDPOINT_URL                    the same, when AWS_ENDPOINT_URL_S3 is not set
AWS_REGION                          a region name; else AWS_DEFAULT_REGION (read by boto3)
==================================  =========================================================

The value parsers behind the methods (`flag_value`, `duration_seconds`, `whole_number`,
`bucket_problem`, `endpoint_problem`, `region_problem`, `lateness_problem`,
`text_problem`) also check the command line's options, so that an option and its
variable accept the same forms.

>>> env = Environment({"S3_SCHEDULER_MAX_WORKERS": "64", "S3_SCHEDULER_PRECISE": "on"})
>>> env.max_workers(), env.precise(), env.prefix(), env.max_lateness()
(64, True, 'jobs', None)
>>> try:
...     Environment({"S3_SCHEDULER_MAX_WORKERS": "lots"}).max_workers()
... except ConfigurationError as exc:
...     print(exc)
S3_SCHEDULER_MAX_WORKERS='lots' is not a whole number of 1 or more, such as 32
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import NamedTuple
from urllib.parse import urlsplit

from .exceptions import ConfigurationError
from .keys import MAX_SHARDS, check_bucket_name

DEFAULT_PREFIX = "jobs"
"""The scheduler path when neither ``--prefix`` nor ``S3_SCHEDULER_PREFIX`` is given."""

MAX_WORKERS = 1000
"""The most copies in flight at once (a client's connection pool is made that large)."""

DEFAULT_MAX_WORKERS = 32
"""Copies in flight at once by default (S3's round trips of 20-50 ms want many)."""

MIN_MAX_LATENESS = timedelta(seconds=60)
"""The least ``max_lateness``: runs a minute apart deliver on time events up to a minute
late (EventBridge Scheduler's ``MaximumEventAgeInSeconds`` starts at 60 too)."""

DEFAULT_DEAD_LETTER_ATTEMPTS = 3
"""Runs that must have failed to deliver an event before it may be dead-lettered."""

MAX_WORKERS_LIMIT = MAX_WORKERS
"""The most concurrent deliveries ``--max-workers`` and ``S3_SCHEDULER_MAX_WORKERS``
accept (`MAX_WORKERS`): each is a thread, and the pool is made whole at once."""

FLAG_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
"""The words accepted for a yes/no setting, in any case."""

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""The values of ``S3_SCHEDULER_LOG_LEVEL``, in any case."""

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 1}
"""The seconds in each unit of a duration; a bare number is seconds."""

BUCKET_RULE = "3 to 63 lowercase letters, digits, dots and hyphens, such as my-schedule-bucket"
"""How a bucket name is written, as the errors say it."""

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
"""The variables boto3 takes the S3 endpoint from, the first one set winning."""

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?) *([smhd]?)")
_WHOLE = re.compile(r"[0-9]+")
_AWS_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_REGION = re.compile(r"(?![0-9]+$)(?!-)[a-zA-Z0-9-]{1,63}(?<!-)")  # botocore's rule, empty refused
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_YES_OR_NO = "is not yes or no: use 1/0, true/false, yes/no or on/off"


# the values ------------------------------------------------------------------------------


def flag_value(text: str) -> bool:
    """Return the yes/no ``text`` means: 1/0, true/false, yes/no, on/off, in any case.

    Raises `ValueError` for anything else.

    >>> flag_value(" Yes"), flag_value("0")
    (True, False)
    """
    try:
        return FLAG_WORDS[text.strip().lower()]
    except KeyError:
        msg = f"{text!r} {_YES_OR_NO}"
        raise ValueError(msg) from None


def duration_seconds(text: str) -> float:
    """Return the seconds ``text`` names: ``90``, ``90s``, ``10m``, ``2h``, ``1d`` (or ``1.5h``;
    a space before the unit is fine: ``5 m``).

    Raises `ValueError` for anything else, negative, ``nan`` and ``inf`` included, and for
    a number too large for a float.
    """
    match = _DURATION.fullmatch(text.strip())
    if not match:
        msg = f"{text!r} is not a duration: use seconds or 90s, 10m, 2h, 1d"
        raise ValueError(msg)
    seconds = float(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds == float("inf"):
        msg = f"{text!r} is too long: use at most 999999999d"
        raise ValueError(msg)
    return seconds


def duration_timedelta(text: str) -> timedelta:
    """Return the duration ``text`` names (see `duration_seconds`) as a `timedelta`.

    Raises `ValueError` for anything `duration_seconds` refuses, and for a duration
    ``timedelta`` cannot hold (over 999,999,999 days).
    """
    seconds = duration_seconds(text)
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        msg = f"{text!r} is too long: use at most 999999999d"
        raise ValueError(msg) from None


def format_duration(seconds: float) -> str:
    """Return ``seconds`` as a user writes a duration: in the largest whole unit.

    >>> format_duration(900), format_duration(90), format_duration(86400), format_duration(0.5)
    ('15m', '90s', '1d', '0.5s')
    """
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def whole_number(text: str) -> int:
    """Return the whole number ``text`` writes in ASCII digits, e.g. ``20``.

    Raises `ValueError` for anything else (a sign, an exponent, a fraction). A number of
    more than 30 digits is returned as ``10**30``: every limit here is far below it.
    """
    digits = text.strip()
    if not _WHOLE.fullmatch(digits):
        msg = f"{text!r} is not a whole number"
        raise ValueError(msg)
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 30 else 10**30


def lateness_problem(lateness: timedelta) -> str | None:
    """Return why ``lateness`` cannot be a ``max_lateness`` (under `MIN_MAX_LATENESS`), or None."""
    if lateness >= MIN_MAX_LATENESS:
        return None
    least = format_duration(MIN_MAX_LATENESS.total_seconds())
    return f"is under {least}: runs a minute apart find events up to a minute late; use {least} or more, e.g. 1h"


def bucket_problem(name: str) -> str | None:
    """Return why S3 can never accept the bucket name ``name``, or None if it may.

    AWS names buckets with 3 to 63 lowercase letters, digits, dots and hyphens, starting
    and ending with a letter or digit, with no two dots in a row, not shaped as an IP
    address, and without the prefixes (``xn--``, ``sthree-``, ``amzn-s3-demo-``) and
    suffixes (``-s3alias``, ``--ol-s3``, ``.mrap``, ``--x-s3``, ``--table-s3``) AWS keeps
    for itself. A name holding a capital or an underscore can only be an older bucket
    of us-east-1 (or of an S3-compatible store): those are let through up to 255
    characters, as `s3_scheduler.keys.check_bucket_name` lets them. An ARN (``arn:...``)
    must be one botocore takes for a bucket (an access point's or an Outposts access
    point's), as botocore checks it before any request.
    """
    if name.startswith("arn:"):
        from botocore.handlers import VALID_S3_ARN

        return None if VALID_S3_ARN.search(name) else f"{name!r} is not an access point ARN: use {BUCKET_RULE}"
    try:
        check_bucket_name(name)
    except ValueError:
        return f"{name!r} is not a bucket name: use {BUCKET_RULE}"
    if name != name.lower() or "_" in name:  # a legacy us-east-1 name: its rules were looser
        return None
    reason = None
    if not _AWS_BUCKET.fullmatch(name):
        reason = "it must be 3 to 63 characters, starting and ending with a letter or digit"
    elif ".." in name:
        reason = "two dots in a row"
    elif _IP_ADDRESS.fullmatch(name):
        reason = "it is shaped as an IP address"
    elif name.startswith(_RESERVED_BUCKET_PREFIXES) or name.endswith(_RESERVED_BUCKET_SUFFIXES):
        reason = "AWS keeps that prefix or suffix for itself"
    return None if reason is None else f"{name!r} is not a bucket name ({reason}): use {BUCKET_RULE}"


def endpoint_problem(url: str) -> str | None:
    """Return why ``url`` is not an endpoint URL (``http://host:port``), or None.

    What is refused here botocore would refuse when the client is made (or the request
    sent): a scheme other than http or https, no host or a malformed one, a port that is
    not a number from 0 to 65535, characters that are not printable ASCII.
    """
    from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port >= 0  # reading the port checks it
        valid = (
            url.isascii()
            and url.isprintable()
            and " " not in url
            and port_ok
            and parts.scheme in ("http", "https")
            and bool(parts.netloc)
            and bool(is_valid_endpoint_url(url) or is_valid_ipv6_endpoint_url(url))
        )
    except ValueError:  # a malformed IPv6 address or port
        valid = False
    return None if valid else f"{url!r} is not a URL: use the form http://host:port or https://host"


def region_problem(name: str) -> str | None:
    """Return why ``name`` is not a region botocore can make an endpoint of, or None.

    >>> region_problem("eu-west-3") is None, region_problem("")
    (True, 'is not a region: use a name such as eu-west-3')
    """
    return None if _REGION.fullmatch(name) else "is not a region: use a name such as eu-west-3"


def text_problem(text: str) -> str | None:
    """Return why ``text`` cannot be sent to S3 as UTF-8, or None.

    A byte that is not UTF-8 in an argument or a variable reaches Python as a lone
    surrogate (``\\udcff`` for ``\\xff``), which no UTF-8 text holds.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not UTF-8 text: {exc.object[exc.start : exc.end]!r} at character {exc.start} is a lone surrogate"
    return None


def metrics_dimensions(bucket: str, prefix: str) -> dict[str, str]:
    """Return the metrics line's dimensions, ``Bucket`` and ``Prefix`` (``/`` for an empty
    prefix: a dimension's value may not be empty).

    >>> metrics_dimensions("my-schedule-bucket", "")
    {'Bucket': 'my-schedule-bucket', 'Prefix': '/'}
    """
    return {"Bucket": bucket, "Prefix": prefix or "/"}


# the variables ---------------------------------------------------------------------------


class Environment:
    """The variables of one environment, each read and checked by the method of its name.

    ``env`` is a mapping such as ``os.environ``, read at each call. Every method raises
    `ConfigurationError` naming its variable and the forms it accepts.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def bucket(self) -> str | None:
        """``S3_SCHEDULER_BUCKET``, blanks around it stripped; None when it is unset or blank.

        A name no S3 accepts (see `bucket_problem`) is refused, and so is one holding a
        byte that is not UTF-8.
        """
        name = "S3_SCHEDULER_BUCKET"
        bucket = self._env.get(name, "").strip()
        if not bucket:
            return None
        bucket = self._text(name, bucket)
        problem = bucket_problem(bucket)
        if problem:
            msg = f"{name}: {problem}"
            raise ConfigurationError(msg)
        return bucket

    def prefix(self) -> str:
        """``S3_SCHEDULER_PREFIX``, the scheduler path, as it is (`DEFAULT_PREFIX` when unset; set but empty is
        the empty path). A byte that is not UTF-8 is refused."""
        return self._text("S3_SCHEDULER_PREFIX", self._env.get("S3_SCHEDULER_PREFIX", DEFAULT_PREFIX))

    def allowed_targets(self) -> tuple[str, ...] | None:
        """``S3_SCHEDULER_ALLOWED_TARGETS``: its comma-separated ``bucket`` or ``bucket/prefix``
        entries (an ``s3://`` before one is fine), or None when unset.

        Set but without an entry is refused: it would reject every event. So is an entry
        whose bucket is not a bucket name.
        """
        name = "S3_SCHEDULER_ALLOWED_TARGETS"
        text = self._env.get(name)
        if text is None:
            return None
        entries = tuple(entry.strip() for entry in text.split(",") if entry.strip())
        if not entries:
            msg = (
                f"{name}={text!r} is set but empty, which would reject every event: list"
                " 'bucket' or 'bucket/prefix' entries separated by commas, or unset it to allow any target"
            )
            raise ConfigurationError(msg)
        for entry in entries:
            bucket = (entry[len("s3://") :] if entry.startswith("s3://") else entry).partition("/")[0]
            problem = bucket_problem(bucket)
            if problem:
                msg = f"{name} entry {entry!r}: {problem}; entries are 'bucket' or 'bucket/prefix'"
                raise ConfigurationError(msg)
        return entries

    def precise(self) -> bool:
        """``S3_SCHEDULER_PRECISE``: yes/no (`flag_value`), default no."""
        return self._flag("S3_SCHEDULER_PRECISE", default=False)

    def legacy_offsets(self) -> bool:
        """``S3_SCHEDULER_LEGACY_OFFSETS``: yes/no (`flag_value`), default yes."""
        return self._flag("S3_SCHEDULER_LEGACY_OFFSETS", default=True)

    def metrics(self) -> bool:
        """``S3_SCHEDULER_METRICS``: yes/no (`flag_value`), default yes."""
        return self._flag("S3_SCHEDULER_METRICS", default=True)

    def dead_letter_after(self) -> timedelta | None:
        """``S3_SCHEDULER_DEAD_LETTER_AFTER``: a duration (`duration_seconds`), None when unset."""
        return self._duration("S3_SCHEDULER_DEAD_LETTER_AFTER")

    def max_lateness(self) -> timedelta | None:
        """``S3_SCHEDULER_MAX_LATENESS``: a duration of a minute or more (`lateness_problem`), None when unset."""
        name = "S3_SCHEDULER_MAX_LATENESS"
        lateness = self._duration(name)
        problem = None if lateness is None else lateness_problem(lateness)
        if problem:
            msg = f"{name}={self._env[name]!r} {problem}"
            raise ConfigurationError(msg)
        return lateness

    def max_workers(self) -> int:
        """``S3_SCHEDULER_MAX_WORKERS``: a whole number from 1 to `MAX_WORKERS_LIMIT`, default
        `DEFAULT_MAX_WORKERS`."""
        return self._count("S3_SCHEDULER_MAX_WORKERS", DEFAULT_MAX_WORKERS, most=MAX_WORKERS_LIMIT)

    def shards(self) -> int:
        """``S3_SCHEDULER_SHARDS``: a whole number from 1 to `keys.MAX_SHARDS`, default 1 (no shards)."""
        return self._count("S3_SCHEDULER_SHARDS", 1, most=MAX_SHARDS)

    def fanout(self) -> bool:
        """``S3_SCHEDULER_FANOUT``: yes/no, default yes. With shards, whether the Lambda
        handler's tick invokes the function once per shard (no: it handles every shard itself)."""
        return self._flag("S3_SCHEDULER_FANOUT", default=True)

    def dead_letter_attempts(self) -> int:
        """``S3_SCHEDULER_DEAD_LETTER_ATTEMPTS``: a whole number of 1 or more, default
        `DEFAULT_DEAD_LETTER_ATTEMPTS`."""
        return self._count("S3_SCHEDULER_DEAD_LETTER_ATTEMPTS", DEFAULT_DEAD_LETTER_ATTEMPTS)

    def log_level(self) -> str:
        """``S3_SCHEDULER_LOG_LEVEL``: one of `LOG_LEVELS` in any case, returned in capitals; ``INFO``
        when unset. Set but blank is refused."""
        text = self._env.get("S3_SCHEDULER_LOG_LEVEL", "INFO")
        level = text.strip().upper()
        if level not in LOG_LEVELS:
            msg = f"S3_SCHEDULER_LOG_LEVEL={text!r} is not a log level: use one of {', '.join(LOG_LEVELS)}"
            raise ConfigurationError(msg)
        return level

    def endpoint_url(self) -> str | None:
        """The endpoint boto3 will read (``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``), or
        None when neither is set.

        One that is not an ``http(s)://host[:port]`` URL (`endpoint_problem`) is refused:
        botocore would fail every request with a bare ``ValueError``.
        """
        for name in ENDPOINT_VARIABLES:
            url = self._env.get(name)
            if url:
                problem = endpoint_problem(url)
                if problem:
                    msg = f"{name}: {problem}"
                    raise ConfigurationError(msg)
                return url
        return None

    def region(self) -> str | None:
        """``AWS_REGION``, or None when it is unset or empty (boto3 then reads ``AWS_DEFAULT_REGION``
        and its configuration file).

        A malformed ``AWS_REGION``, or else a set but malformed ``AWS_DEFAULT_REGION`` (empty
        included), is refused: botocore would make an endpoint of it that fails with a bare
        ``ValueError``.
        """
        name = "AWS_REGION" if self._env.get("AWS_REGION") else "AWS_DEFAULT_REGION"
        region = self._env.get(name)
        problem = None if region is None else region_problem(region)
        if problem:
            msg = f"{name}={region!r} {problem}"
            raise ConfigurationError(msg)
        return region if name == "AWS_REGION" else None

    def _text(self, name: str, text: str) -> str:
        problem = text_problem(text)
        if problem:
            msg = f"{name}={text!r} {problem}"
            raise ConfigurationError(msg)
        return text

    def _flag(self, name: str, *, default: bool) -> bool:
        text = self._env.get(name)
        if text is None or not text.strip():
            return default
        try:
            return flag_value(text)
        except ValueError:
            msg = f"{name}={text!r} {_YES_OR_NO}"
            raise ConfigurationError(msg) from None

    def _duration(self, name: str) -> timedelta | None:
        text = self._env.get(name)
        if text is None or not text.strip():
            return None
        try:
            return duration_timedelta(text)
        except ValueError as exc:  # not a duration, or longer than a timedelta holds
            msg = f"{name}={exc}"
            raise ConfigurationError(msg) from None

    def _count(self, name: str, default: int, *, most: int | None = None) -> int:
        text = self._env.get(name)
        if text is None or not text.strip():
            return default
        try:
            value = whole_number(text)
        except ValueError:
            value = 0
        if value < 1:
            msg = f"{name}={text!r} is not a whole number of 1 or more, such as {default}"
            raise ConfigurationError(msg)
        if most is not None and value > most:
            msg = f"{name}={text!r} is over {most}: use a whole number from 1 to {most}, such as {default}"
            raise ConfigurationError(msg)
        return value


# the Lambda handler's settings -----------------------------------------------------------


class Settings(NamedTuple):
    """The Lambda handler's configuration, read from the environment by `read_settings`.

    Durations are in seconds.
    """

    bucket: str
    prefix: str
    allowed_targets: tuple[str, ...] | None
    precise: bool
    dead_letter_after: float | None
    log_level: str = "INFO"
    legacy_offsets: bool = True
    max_workers: int = DEFAULT_MAX_WORKERS
    dead_letter_attempts: int = DEFAULT_DEAD_LETTER_ATTEMPTS
    metrics: bool = True
    max_lateness: float | None = None
    shards: int = 1
    fanout: bool = True


def read_settings(env: Mapping[str, str]) -> Settings:
    """Return the Lambda handler's settings read from ``env``.

    Raises `ConfigurationError` naming the variable and the accepted forms for a
    missing bucket or any malformed value, ``AWS_ENDPOINT_URL_S3`` and
    ``AWS_ENDPOINT_URL`` (read by boto3) included. The variables are checked in the
    order of `Settings`, bucket and endpoint first.
    """
    environment = Environment(env)
    bucket = environment.bucket()
    if bucket is None:
        msg = "S3_SCHEDULER_BUCKET is not set: set it to the bucket that holds the schedule"
        raise ConfigurationError(msg)
    environment.endpoint_url()
    return Settings(
        bucket=bucket,
        prefix=environment.prefix(),
        allowed_targets=environment.allowed_targets(),
        precise=environment.precise(),
        dead_letter_after=_seconds(environment.dead_letter_after()),
        log_level=environment.log_level(),
        legacy_offsets=environment.legacy_offsets(),
        max_workers=environment.max_workers(),
        dead_letter_attempts=environment.dead_letter_attempts(),
        metrics=environment.metrics(),
        max_lateness=_seconds(environment.max_lateness()),
        shards=environment.shards(),
        fanout=environment.fanout(),
    )


def _seconds(duration: timedelta | None) -> float | None:
    return None if duration is None else duration.total_seconds()
