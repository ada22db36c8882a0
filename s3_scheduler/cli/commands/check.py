"""``s3-scheduler check``: every name under the prefix that is not an event, or that a run would read late."""

from __future__ import annotations

import argparse
import json
import shlex
from typing import TextIO

from ...report import CheckReport
from ..options import scheduler_for
from . import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add nothing: check takes the global options only."""


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Print each problem with its reason, the summary, and whether legacy offsets are needed; exit 1 on a problem."""
    report: CheckReport = scheduler_for(args).check()
    offsets = len(report.offset_keys)
    if offsets:
        advice = (
            f"{offsets} event(s) named with a UTC offset (as 0.0.3 wrote them) or sorting after their time:"
            " keep legacy offsets on (do not pass --no-legacy-offsets)"
        )
    else:
        advice = "every event sorts at its time: --no-legacy-offsets (S3_SCHEDULER_LEGACY_OFFSETS=0) is safe"
    if args.json:
        out.write(json.dumps({**report.to_dict(), "ok": report.ok, "legacy_offsets_needed": bool(offsets)}) + "\n")
    else:
        for key, reason in report.not_events:
            out.write(f"not an event: {shlex.quote(key)}: {reason}\n")
        for key, reason in report.late:
            out.write(f"read late: {shlex.quote(key)}: {reason}\n")
        out.write(f"{report.summary()}\n{advice}\n")
    return 0 if report.ok else 1


COMMAND = Command(
    summary="report names a run will not read in time",
    description="Read every name under the prefix once and print each one that is not an event, or that a run would"
    " read late, with the reason; then say whether any event is named with a UTC offset (as 0.0.3 wrote"
    " them), which --no-legacy-offsets would read late. Exit 1 when a problem was found.",
    add_arguments=add_arguments,
    run=run,
)
