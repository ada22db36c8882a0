"""``s3-scheduler show``: one pending event or dead letter, named by ``KEY`` or selected with ``--to`` (and
``--at``): its time, target, size, content type, metadata, failed runs, series and when it was written; with
``--content``, its body alone, as it is."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import BinaryIO, TextIO

from ...details import EventDetails
from ...exceptions import EventNotPendingError, InvalidKeyError
from ..errors import Failure, UsageError
from ..options import KEY_EXAMPLE, add_at, add_to, scheduler_for
from ..output import emit
from ..selection import one, selection
from . import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``KEY`` argument, ``--to``, ``--at`` and ``--content``."""
    parser.add_argument(
        "key", nargs="?", metavar="KEY", help=f"an event's or a dead letter's key as list prints it, {KEY_EXAMPLE}"
    )
    add_to(parser)
    add_at(parser, "with --to: the event due at that second, e.g. +1h")
    parser.add_argument(
        "--content",
        action="store_true",
        help="write the event's body to stdout as it is, bytes and all, and nothing else,"
        " e.g. show KEY --content > body.json (no env)",
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Print the details of the event (or write its body); fail in one line when it is not there."""
    select = selection(args, args.at)
    if (select is None) == (args.key is None):
        msg = "show needs either the KEY of an event or dead letter, or --to s3://BUCKET/KEY to select an event"
        raise UsageError(msg)
    scheduler = scheduler_for(args)
    key = args.key if select is None else one(scheduler, args, select, "shown", out)
    into = _binary(out) if args.content else None
    try:
        details = scheduler.show(key, into=into)
    except InvalidKeyError as exc:
        raise UsageError(str(exc)) from None
    except EventNotPendingError:
        msg = f"{key!r} is not there: delivered, cancelled, requeued, purged or never scheduled"
        raise Failure(msg) from None
    if into is not None:
        into.flush()
        return 0
    emit(out, args, _text(details), details.to_dict())
    return 0


def _binary(out: TextIO) -> BinaryIO:
    """Return the binary stream under ``out`` (standard output), flushed of its text first."""
    out.flush()
    buffer = getattr(out, "buffer", None)
    return buffer if buffer is not None else sys.stdout.buffer


def _text(details: EventDetails) -> str:
    """The details as lines of ``name: value`` for people (metadata one line each, content never)."""
    rows = [
        ("key", shlex.quote(details.key)),
        ("kind", "dead letter" if details.dead_letter else "pending event"),
        ("when", details.when.isoformat()),
        ("target", f"s3://{details.bucket}/{details.path}"),
        ("size", f"{details.size} bytes"),
        ("content type", details.content_type or "-"),
        ("written", "-" if details.last_modified is None else details.last_modified.isoformat()),
        (
            "failed runs",
            "unknown (the tags may not be read)" if details.failed_runs is None else str(details.failed_runs),
        ),
    ]
    if details.recurring:
        rows += [("repeat", details.repeat or ""), ("zone", details.zone or "UTC")]
    rows += [(f"metadata {name}", value) for name, value in sorted(details.metadata.items())]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name + ':':<{width + 1}} {value}" for name, value in rows)


COMMAND = Command(
    summary="show one event or dead letter",
    description="Show one pending event, named by KEY or selected with --to (and --at), or one dead letter, named by"
    " KEY: its time, target, size, content type, metadata, failed runs, the rule and zone of its series, and when it"
    " was written. With --json, one JSON object; with --content, its body alone. Exit 1 if it is not there.",
    add_arguments=add_arguments,
    run=run,
)
