"""Allowed targets: the buckets and key prefixes a scheduler may deliver to."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from .exceptions import TargetNotAllowedError


class AllowedTarget(NamedTuple):
    """A bucket, and the key prefix within it (``""``: the whole bucket)."""

    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket


def parse_allowed_targets(entries: Iterable[str]) -> tuple[AllowedTarget, ...]:
    """Return the entries (``"bucket"`` or ``"bucket/key-prefix"``, ``s3://`` optional) parsed.

    Raises `TypeError` for a bare string or a non-string entry and `ValueError` for an
    empty entry or bucket.
    """
    if isinstance(entries, (str, bytes)):
        msg = "allowed_targets must be a list of 'bucket' or 'bucket/key-prefix' entries, not one string"
        raise TypeError(msg)
    parsed = []
    for entry in entries:
        if not isinstance(entry, str):
            msg = f"allowed_targets entries must be str ('bucket' or 'bucket/key-prefix'), not {entry!r}"
            raise TypeError(msg)
        text = entry[len("s3://") :] if entry.startswith("s3://") else entry
        bucket, _, prefix = text.partition("/")
        if not bucket:
            msg = f"allowed_targets entry {entry!r} names no bucket: use 'bucket' or 'bucket/key-prefix'"
            raise ValueError(msg)
        parsed.append(AllowedTarget(bucket, prefix))
    return tuple(parsed)


def is_allowed(allowed: tuple[AllowedTarget, ...], bucket: str, key: str) -> bool:
    """Whether ``bucket``/``key`` falls under one of ``allowed``."""
    return any(bucket == a.bucket and key.startswith(a.prefix) for a in allowed)


def check_allowed(allowed: tuple[AllowedTarget, ...] | None, bucket: str, key: str) -> None:
    """Raise `TargetNotAllowedError` unless ``allowed`` is None or holds ``bucket``/``key``."""
    if allowed is not None and not is_allowed(allowed, bucket, key):
        listed = ", ".join(repr(str(a)) for a in allowed) or "nothing"
        msg = f"the target s3://{bucket}/{key} is not in allowed_targets ({listed})"
        raise TargetNotAllowedError(msg)
