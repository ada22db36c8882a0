"""The helpers of s3-scheduler 0.0.3, kept under their names and signatures.

``nowut``, ``add_utc_tz``, ``move_file``, ``UnableToMoveFileError``, ``info``, ``warn``
and ``logger`` are imported from here by code written for 0.0.3; they keep working.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from .exceptions import UnableToMoveFileError

__all__ = ["UnableToMoveFileError", "add_utc_tz", "info", "logger", "move_file", "nowut", "warn"]

logger = logging.getLogger("s3_scheduler")
"""The logger of the whole package, named ``"s3_scheduler"``."""


def nowut() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(tz=timezone.utc)


def add_utc_tz(to_this: datetime) -> datetime:
    """Return ``to_this`` with UTC as its zone when it is naive, else unchanged."""
    return to_this if to_this.tzinfo else to_this.replace(tzinfo=timezone.utc)


def move_file(
    source_bucket: str,
    target_bucket: str,
    source_file: str,
    s3_client: Any,
    target_file: str | None = None,
) -> None:
    """Copy ``source_bucket``/``source_file`` to ``target_bucket``/``target_file``, then
    delete the source.

    ``target_file`` defaults to ``source_file``. The source is deleted only after the
    copy succeeded, so a failure never loses it: whatever the client raises propagates.
    The source is named to S3 as a bucket and a key, never as one ``bucket/key``
    string, so any character in the key (``?``, ``%``, ``+``, unicode) is copied right.
    Raises `UnableToMoveFileError` when a bucket or the source key is missing.
    """
    if not target_file:
        target_file = source_file
    if not (source_bucket and source_file and target_bucket):
        raise UnableToMoveFileError()
    s3_client.copy_object(
        Bucket=target_bucket,
        CopySource={"Bucket": source_bucket, "Key": source_file},
        Key=target_file,
    )
    s3_client.delete_object(Bucket=source_bucket, Key=source_file)


def info(msg: str, *args: Any, **kwargs: Any) -> None:
    """Log ``msg`` at INFO on the ``s3_scheduler`` logger."""
    logger.info(msg, *args, **kwargs)


def warn(msg: str, *args: Any, **kwargs: Any) -> None:
    """Log ``msg`` at WARNING on the ``s3_scheduler`` logger."""
    logger.warning(msg, *args, **kwargs)
