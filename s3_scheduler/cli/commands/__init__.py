"""The subcommands of ``s3-scheduler``, one module each, listed once in `COMMANDS`.

Each module of this package defines ``COMMAND``, a `Command`: the summary that
``s3-scheduler --help`` lists, the description its own ``--help`` shows, the function
that adds its arguments to its subparser, and the function that runs it.
`s3_scheduler.cli.parser.build_parser` makes one subparser per row of `COMMANDS`, in
order (`load_all`). Adding a command is writing its module here and adding its name to `COMMANDS`.

``run(args, out)`` returns the exit status. ``args`` holds the global options too,
resolved (`s3_scheduler.cli.options.resolve`: ``args.bucket`` is None until
`s3_scheduler.cli.options.scheduler_for` reads it); ``out`` is standard output. A mistake
raises `s3_scheduler.cli.errors.UsageError` (exit status 2), a failure
`s3_scheduler.cli.errors.Failure` (exit status 1), each printed in one line.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Callable, NamedTuple, TextIO, cast

COMMANDS = ("schedule", "list", "show", "cancel", "reschedule", "handle", "run", "check", "dead-letters", "demo")
"""The commands, in the order ``--help`` lists them: each is the module of that name in this package
(`module_of`: a ``-`` of the name is a ``_`` of the module's)."""


class Command(NamedTuple):
    """One subcommand: what the help says of it, the arguments it takes, and what runs it."""

    summary: str
    """One line, in ``s3-scheduler --help``'s list of commands."""

    description: str
    """The paragraph of the command's own ``--help``."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    """Adds the command's arguments to its subparser (the global options are there already)."""

    run: Callable[[argparse.Namespace, TextIO], int]
    """Runs the command on the parsed and resolved arguments, writing to the stream given; returns the exit status."""


def module_of(name: str) -> str:
    """Return the name of the module of this package that holds the command ``name``:
    ``dead-letters`` is in ``dead_letters``."""
    return name.replace("-", "_")


def load(name: str) -> Command:
    """Return the `Command` of the module of this package for ``name`` (a name of `COMMANDS`)."""
    return cast(Command, importlib.import_module(f"{__name__}.{module_of(name)}").COMMAND)


def load_all() -> list[tuple[str, Command]]:
    """Return each name of `COMMANDS`, in order, with its `Command`."""
    return [(name, load(name)) for name in COMMANDS]
