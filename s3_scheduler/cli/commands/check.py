"""``s3-scheduler check``: every name under the prefix that is not an event, or that a run would read late;
with ``--shards N``, also every event written unsharded or in a shard numbered N or more."""

from __future__ import annotations

import argparse
import json
import shlex
from typing import TextIO

from ...report import CheckReport
from ..errors import Failure
from ..options import scheduler_for
from . import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add nothing: check takes the global options only."""


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Print each problem with its reason (with shards, each event outside them too), the summary, and
    whether legacy offsets are needed; on a problem, exit 1 with one line on stderr counting them. With
    ``--json``, one object: the report's fields (with shards, ``unsharded`` and ``outside_shards`` among
    them), ``ok`` and ``legacy_offsets_needed``."""
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
        for key in report.unsharded:
            out.write(f"unsharded: {shlex.quote(key)}: written without shards; run, handle and list still cover it\n")
        for key in report.outside_shards:
            out.write(
                f"outside the shards: {shlex.quote(key)}: in a shard numbered {args.shards} or more;"
                " run, handle and list still cover it\n"
            )
        out.write(f"{report.summary()}\n{advice}\n")
    if not report.ok:
        found = len(report.not_events) + len(report.late) + len(report.unsharded) + len(report.outside_shards)
        msg = f"check found {found} name(s) to look at, listed on stdout: {report.summary()}"
        raise Failure(msg)
    return 0


COMMAND = Command(
    summary="report names a run will not read in time",
    description="Read every name under the prefix once and print each one that is not an event, or that a run would"
    " read late, with the reason; then say whether any event is named with a UTC offset (as 0.0.3 wrote"
    " them), which --no-legacy-offsets would read late. With --shards N, every shard found is read, and each"
    " event written unsharded or in a shard numbered N or more is printed too. Exit 1 when a problem was found,"
    " with one line on stderr counting them.",
    add_arguments=add_arguments,
    run=run,
)
