"""The parser of the ``s3-scheduler`` command, built from the command table.

One subparser per row of `s3_scheduler.cli.commands.COMMANDS`, in order, each with the
global options (`s3_scheduler.cli.options.add_global_options`), the command's own arguments,
and the function that runs it (``args.func``). argparse's own errors are one line naming
``--help``, exit status 2. Options are not abbreviated: ``--shard`` (one shard) must not
be read as ``--shards`` (how many) by a command without ``--shard``.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from .. import __version__
from .argtypes import WHEN_FORMS
from .commands import load_all
from .errors import flat
from .options import add_global_options


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with its errors in one line (its own prints the usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {flat(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``s3-scheduler`` command, each subcommand with its function (``func``)."""
    common = _Parser(add_help=False, allow_abbrev=False)
    add_global_options(common)
    parser = _Parser(
        prog="s3-scheduler",
        description="One-time events on plain S3: schedule, inspect and deliver them.",
        epilog=(
            f"WHEN is {WHEN_FORMS}. Durations: 90, 90s, 10m, 2h, 1d.\n"
            "Exit status: 0 done, 1 failed (one line on stderr), 2 usage error (nothing was sent to S3)."
        ),
        parents=[common],
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in load_all():
        sub = subparsers.add_parser(
            name, help=command.summary, description=command.description, parents=[common], allow_abbrev=False
        )
        command.add_arguments(sub)
        sub.set_defaults(func=command.run)
    return parser
