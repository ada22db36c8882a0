"""A run's report as CloudWatch metrics: one Embedded Metric Format (EMF) log line.

A Lambda function's stdout goes to CloudWatch Logs, and CloudWatch turns a log line in
EMF into metrics with no API call and no dependency. So printing this line after each
run is all it takes to graph and alarm on the scheduler::

    report = scheduler.handle()
    print(emf_line(report, now=scheduler.now(), dimensions={"Bucket": "my-schedule-bucket", "Prefix": "jobs"}))

The dimensions are the schedule's bucket and scheduler path (``Bucket`` and ``Prefix``:
what the SAM example's alarms select on). The metrics, one value each per run:

============================ ======= ====================================================
name                         unit    what it counts
============================ ======= ====================================================
``Delivered``                Count   events copied to their target and removed
``Failed``                   Count   events whose copy or delete failed (they stay)
``Rejected``                 Count   events whose target is outside ``allowed_targets``
``DeadLettered``             Count   events moved to the dead letters
``Expired``                  Count   events found past ``max_lateness``: not delivered
``Skipped``                  Count   names under the prefix that are not events
``Deferred``                 Count   events of the run's window not started in its time
``MaxLatenessSeconds``       Seconds the largest lateness of a delivery of the run
``DueBacklog``               Count   events due by ``now`` and still pending after the
                                     run: failed, deferred and rejected, less those
                                     dead-lettered
``OldestDueAgeSeconds``      Seconds ``now`` less the time of the oldest of those (0 when
                                     there is none)
============================ ======= ====================================================

Standard library only: this module imports neither boto3 nor anything outside the
package's report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Union

from .report import HandleReport, ScheduledEvent

DEFAULT_NAMESPACE = "S3Scheduler"
"""The CloudWatch namespace the metrics go to unless told otherwise."""

MAX_DIMENSIONS = 30
"""EMF allows at most 30 dimensions in a dimension set."""

MAX_DIMENSION_NAME = 255
MAX_DIMENSION_VALUE = 1024
"""CloudWatch's limits on a dimension's name and value, in characters."""

METRICS: tuple[tuple[str, str], ...] = (
    ("Delivered", "Count"),
    ("Failed", "Count"),
    ("Rejected", "Count"),
    ("DeadLettered", "Count"),
    ("Expired", "Count"),
    ("Skipped", "Count"),
    ("Deferred", "Count"),
    ("MaxLatenessSeconds", "Seconds"),
    ("DueBacklog", "Count"),
    ("OldestDueAgeSeconds", "Seconds"),
)
"""Each metric's name and unit, in the order they are written."""

Number = Union[int, float]


def emf_line(
    report: HandleReport,
    *,
    now: datetime,
    namespace: str = DEFAULT_NAMESPACE,
    dimensions: Mapping[str, str],
) -> str:
    """Return ``report`` as one line of CloudWatch Embedded Metric Format JSON.

    ``now`` is the time the run ended (naive means UTC): the metrics' timestamp, and the
    time the due backlog's age is measured from. ``dimensions`` maps each dimension's
    name to its value, both non-empty strings, at most 30 of them; pass the schedule's
    ``{"Bucket": ..., "Prefix": ...}``. A name may not be one of the metrics' names nor
    ``_aws``. Bad input raises `TypeError` or `ValueError` before anything is written.

    >>> from datetime import datetime, timezone
    >>> line = emf_line(HandleReport(), now=datetime(2030, 1, 7, tzinfo=timezone.utc),
    ...                 dimensions={"Bucket": "b", "Prefix": "jobs"})
    >>> json.loads(line)["Delivered"], json.loads(line)["_aws"]["Timestamp"]
    (0, 1893974400000)
    """
    if not isinstance(now, datetime):
        msg = f"now must be a datetime, not {type(now).__name__}"
        raise TypeError(msg)
    now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now
    if not isinstance(namespace, str) or not namespace.strip():
        msg = f"namespace must be a non-empty str such as {DEFAULT_NAMESPACE!r}, not {namespace!r}"
        raise ValueError(msg)
    dims = _check_dimensions(dimensions)
    values = metric_values(report, now=now)
    document: dict[str, object] = {
        "_aws": {
            "Timestamp": int(now.timestamp() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dims)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit in METRICS],
                }
            ],
        },
        **dims,
        **values,
    }
    return json.dumps(document, separators=(",", ":"))


def metric_values(report: HandleReport, *, now: datetime) -> dict[str, Number]:
    """Return each metric's value for ``report``, the run having ended at ``now`` (aware)."""
    backlog = due_backlog(report, now=now)
    oldest = min((event.when for event in backlog), default=None)
    lateness = report.worst_lateness if math.isfinite(report.worst_lateness) else 0.0
    return {
        "Delivered": len(report.delivered),
        "Failed": len(report.failed),
        "Rejected": len(report.rejected),
        "DeadLettered": len(report.dead_lettered),
        "Expired": len(report.expired),
        "Skipped": len(report.skipped),
        "Deferred": len(report.deferred),
        "MaxLatenessSeconds": round(max(0.0, lateness), 3),
        "DueBacklog": len(backlog),
        "OldestDueAgeSeconds": 0.0 if oldest is None else round(max(0.0, (now - oldest).total_seconds()), 3),
    }


def due_backlog(report: HandleReport, *, now: datetime) -> list[ScheduledEvent]:
    """Return the events of ``report`` due by ``now`` that are still pending after the run.

    Those are the failed, deferred and rejected events, less the ones moved to the dead
    letters, each once. A deferred event of an ``until`` window not yet due at ``now`` is
    not part of it.
    """
    moved = {event.key for event in report.dead_lettered}
    seen: set[str] = set()
    backlog: list[ScheduledEvent] = []
    for event in [*(failure.event for failure in report.failed), *report.deferred, *report.rejected]:
        if event.key in moved or event.key in seen or event.when > now:
            continue
        seen.add(event.key)
        backlog.append(event)
    return backlog


def _check_dimensions(dimensions: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(dimensions, Mapping):
        kind = type(dimensions).__name__
        msg = f"dimensions must be a mapping of names to values such as {{'Bucket': ..., 'Prefix': ...}}, not {kind}"
        raise TypeError(msg)
    if len(dimensions) > MAX_DIMENSIONS:
        msg = f"at most {MAX_DIMENSIONS} dimensions are allowed, not {len(dimensions)}"
        raise ValueError(msg)
    reserved = {name for name, _ in METRICS} | {"_aws"}
    checked: dict[str, str] = {}
    for name, value in dimensions.items():
        if not isinstance(name, str) or not name or len(name) > MAX_DIMENSION_NAME:
            msg = f"a dimension name must be a str of 1 to {MAX_DIMENSION_NAME} characters, not {name!r}"
            raise ValueError(msg)
        if name in reserved:
            msg = f"dimension name {name!r} is taken: it may not be a metric's name or '_aws'"
            raise ValueError(msg)
        if not isinstance(value, str) or not value or len(value) > MAX_DIMENSION_VALUE:
            msg = f"dimension {name!r} must have a str value of 1 to {MAX_DIMENSION_VALUE} characters, not {value!r}"
            raise ValueError(msg)
        checked[name] = value
    return checked
