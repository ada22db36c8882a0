"""``s3-scheduler demo``: a local S3 and a handful of events delivered on their second (`s3_scheduler.demo`)."""

from __future__ import annotations

import argparse
from typing import TextIO

from . import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--keep``."""
    parser.add_argument(
        "--keep", action="store_true", help="leave the local S3 running and show commands to try, e.g. --keep (no env)"
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the demo (`s3_scheduler.demo`, imported only now); return its exit status."""
    from ...demo import run_demo

    return run_demo(out, keep=args.keep)


COMMAND = Command(
    summary="a local S3 and a handful of events delivered on their second",
    description="Start an S3 on 127.0.0.1 (moto, from the local extra), schedule a handful of events a second or two"
    " apart, and print each delivery as it happens. Needs no AWS account.",
    add_arguments=add_arguments,
    run=run,
)
