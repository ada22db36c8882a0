"""The command line's two mistakes: `UsageError` (exit status 2) and `Failure` (exit status 1).

Each is printed by `s3_scheduler.cli.main` as one line on stderr (`flat`), never as a traceback.
"""

from __future__ import annotations


class UsageError(Exception):
    """A mistake in the command line or its environment, found before any request: exit status 2."""


class Failure(Exception):
    """A failure to report in one line: exit status 1."""


def flat(error: BaseException | str) -> str:
    """Return ``error``'s text on one line: every run of blanks (newlines included) becomes one space.

    >>> flat("no such\\nbucket  'x'")
    "no such bucket 'x'"
    """
    return " ".join(str(error).split())
