"""What the command line prints: events, reports, metrics lines, JSON, warnings, and the
one line that says what went wrong with S3 or AWS (`describe_error`).

Every function writes whole lines. With ``--json`` (``args.json``) each result is one
JSON object a line (JSON Lines); without, a line for people. Content is never printed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

from ..metrics import emf_line
from ..report import HandleReport, ScheduledEvent
from ..runner import one_line
from ..settings import metrics_dimensions
from .errors import flat


def emit(out: TextIO, args: argparse.Namespace, text: str, data: Any) -> None:
    """Write one result: ``data`` as one JSON line with ``--json``, else ``text``."""
    out.write((json.dumps(data) if args.json else text) + "\n")


def warn(text: str) -> None:
    """Print one line of warning on stderr; the command goes on."""
    print(f"s3-scheduler: warning: {flat(text)}", file=sys.stderr)


def print_events(out: TextIO, args: argparse.Namespace, events: list[ScheduledEvent], now: datetime) -> None:
    """Write ``events``: a table of TIME (UTC), DUE IN, TARGET and the shell-quoted KEY, or one
    JSON object each (with ``due_in`` in seconds), or one JSON array with ``--array``."""
    data = [{**event.to_dict(), "due_in": (event.when - now).total_seconds()} for event in events]
    if getattr(args, "array", False):
        out.write(json.dumps(data) + "\n")
        return
    if args.json:
        out.writelines(json.dumps(item) + "\n" for item in data)
        return
    rows = [("TIME (UTC)", "DUE IN", "TARGET", "KEY")]
    rows += [
        (
            event.when.strftime("%Y-%m-%d %H:%M:%S"),
            _due_in((event.when - now).total_seconds()),
            f"s3://{event.bucket}/{event.path}",
            shlex.quote(event.key),
        )
        for event in events
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3] + "\n")


def _due_in(seconds: float) -> str:
    if seconds <= 0:
        return "due"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def print_delivery(out: TextIO, args: argparse.Namespace, event: ScheduledEvent, late: float) -> None:
    """Write one delivery of ``run`` and flush, so that it shows as it happens."""
    text = f"delivered s3://{event.bucket}/{event.path} ({late:.3f} s late) {shlex.quote(event.key)}"
    emit(out, args, text, {"delivered": event.to_dict(), "late": late})
    out.flush()


def print_report(out: TextIO, args: argparse.Namespace, report: HandleReport) -> None:
    """Write a run's report: its summary, then a line per failed and per expired event."""
    lines = [report.summary()] + [f"failed: {f.event.key!r}: {one_line(f.error)}" for f in report.failed]
    lines += [f"expired: {event.key!r}" for event in report.expired]
    emit(out, args, "\n".join(lines), report.to_dict())


def print_metrics(out: TextIO, args: argparse.Namespace, report: HandleReport, now: datetime) -> None:
    """Write ``report`` as one CloudWatch Embedded Metric Format line, with or without ``--json``."""
    out.write(emf_line(report, now=now, dimensions=metrics_dimensions(args.bucket, args.prefix)) + "\n")


def describe_error(error: BaseException, bucket: str | None) -> str:
    """Return one line saying what went wrong with S3 or AWS and what to check."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        NoCredentialsError,
        NoRegionError,
        ProfileNotFound,
    )

    if isinstance(error, NoCredentialsError):
        return "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
    if isinstance(error, ProfileNotFound):
        profile = error.kwargs.get("profile")
        return f"no AWS profile {profile!r}: check AWS_PROFILE and the profiles in ~/.aws/config"
    if isinstance(error, NoRegionError):
        return "no AWS region: pass --region or set AWS_REGION"
    if isinstance(error, ConnectionError):
        parts = urlsplit(str(error.kwargs.get("endpoint_url", "")))
        return f"cannot reach S3 at {parts.scheme}://{parts.netloc}: check --endpoint-url and the network"
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket" or (code in ("404", "NotFound") and error.operation_name == "HeadBucket"):
            return f"no such bucket {bucket!r}: check --bucket (or S3_SCHEDULER_BUCKET) and --region"
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return f"access denied to bucket {bucket!r} ({code}): check the credentials and the IAM policy"
        return f"S3 refused the request: {flat(error)}"
    if isinstance(error, BotoCoreError):
        return f"AWS error: {flat(error)}"
    return one_line(error)
