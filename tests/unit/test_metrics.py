"""The report as one CloudWatch Embedded Metric Format line: valid EMF, the right values."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from s3_scheduler.metrics import METRICS, emf_line
from s3_scheduler.report import FailedDelivery, HandleReport, ScheduledEvent

NOW = datetime(2030, 1, 7, 14, 5, 0, tzinfo=timezone.utc)
DIMENSIONS = {"Bucket": "my-schedule-bucket", "Prefix": "jobs"}
UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
}  # fmt: skip


def event(name: str, seconds_ago: float) -> ScheduledEvent:
    return ScheduledEvent(f"jobs/|{name}", NOW - timedelta(seconds=seconds_ago), "work", f"in/{name}")


def emf_errors(line: str) -> list[str]:
    """Return what is wrong with ``line`` as an EMF document (the rules CloudWatch Logs applies)."""
    if "\n" in line:
        return ["not one line"]
    doc = json.loads(line)
    errors: list[str] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("_aws"), dict):
        return ["no _aws metadata object"]
    meta = doc["_aws"]
    timestamp = meta.get("Timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 10**12:
        errors.append(f"Timestamp {timestamp!r} is not an int of milliseconds since the epoch")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        return [*errors, "CloudWatchMetrics is not a non-empty array"]
    for directive in directives:
        if not isinstance(directive.get("Namespace"), str) or not directive["Namespace"]:
            errors.append("a directive has no Namespace string")
        for dimension_set in directive.get("Dimensions", []):
            if len(dimension_set) > 30:
                errors.append(f"a dimension set has {len(dimension_set)} dimensions, over 30")
            for name in dimension_set:
                if not isinstance(doc.get(name), str):
                    errors.append(f"dimension {name!r} has no string value at the top level")
        metrics = directive.get("Metrics", [])
        if len(metrics) > 100:
            errors.append(f"{len(metrics)} metrics, over 100")
        for metric in metrics:
            value = doc.get(metric.get("Name"))
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                errors.append(f"metric {metric.get('Name')!r} has no numeric value at the top level")
            if "Unit" in metric and metric["Unit"] not in UNITS:
                errors.append(f"metric {metric['Name']!r} has unit {metric['Unit']!r}, not a CloudWatch unit")
    return errors


def full_report() -> HandleReport:
    """Something in every field: 2 delivered, 2 failed (1 dead-lettered), 2 deferred, 1 rejected, 1 expired."""
    failed_old = event("failed-old", 600)
    report = HandleReport(
        failed=[FailedDelivery(failed_old, RuntimeError("copy")), FailedDelivery(event("failed", 120), OSError())],
        skipped=["jobs/|not-an-event"],
        worst_lateness=2.5,
    )
    for field, events in [
        (report.delivered, [event("a", 3), event("b", 1)]),
        (report.deferred, [event("deferred", 30), event("future", -20)]),
        (report.vanished, [event("gone", 5)]),
        (report.rejected, [event("rejected", 400)]),
        (report.dead_lettered, [failed_old]),
        (report.expired, [event("expired", 7200)]),
    ]:
        for each in events:
            field.append(each)
    return report


def test_the_line_is_valid_emf() -> None:
    """The line parses as JSON and every metric and dimension it declares has a value of the right type."""
    line = emf_line(full_report(), now=NOW, dimensions=DIMENSIONS)

    assert emf_errors(line) == []


def test_the_validator_catches_broken_documents() -> None:
    """The validation is real: a missing metric value, a numeric dimension and a float timestamp are reported."""
    doc: dict[str, Any] = json.loads(emf_line(full_report(), now=NOW, dimensions=DIMENSIONS))
    del doc["Failed"]
    doc["Bucket"] = 7
    doc["_aws"]["Timestamp"] = 1.5

    errors = emf_errors(json.dumps(doc))

    assert len(errors) == 3


def test_the_values_follow_the_report() -> None:
    """Counts come from the report; the due backlog leaves out dead letters and events not yet due."""
    doc = json.loads(emf_line(full_report(), now=NOW, dimensions=DIMENSIONS))

    values = {name: doc[name] for name, _ in METRICS}

    assert values == {
        "Delivered": 2,
        "Failed": 2,
        "Rejected": 1,
        "DeadLettered": 1,
        "Expired": 1,
        "Skipped": 1,
        "Deferred": 2,
        "MaxLatenessSeconds": 2.5,
        "DueBacklog": 3,  # failed (120 s), deferred (30 s), rejected (400 s)
        "OldestDueAgeSeconds": 400.0,
    }


def test_the_metadata_names_the_namespace_dimensions_and_units() -> None:
    """_aws holds the Timestamp in ms, the namespace, one dimension set of the given names, and each unit."""
    doc = json.loads(emf_line(HandleReport(), now=NOW, namespace="Mine", dimensions=DIMENSIONS))

    (directive,) = doc["_aws"]["CloudWatchMetrics"]

    assert doc["_aws"]["Timestamp"] == int(NOW.timestamp()) * 1000
    assert directive["Namespace"] == "Mine"
    assert directive["Dimensions"] == [["Bucket", "Prefix"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]}["OldestDueAgeSeconds"] == "Seconds"
    assert (doc["Bucket"], doc["Prefix"]) == ("my-schedule-bucket", "jobs")


def test_an_idle_run_reports_zeros() -> None:
    """With nothing due, every metric is 0, the oldest due age included."""
    doc = json.loads(emf_line(HandleReport(), now=NOW, dimensions=DIMENSIONS))

    assert {doc[name] for name, _ in METRICS} == {0}


def test_a_naive_now_is_utc() -> None:
    """A naive ``now`` gives the same line as the aware UTC time."""
    naive = emf_line(full_report(), now=NOW.replace(tzinfo=None), dimensions=DIMENSIONS)

    assert naive == emf_line(full_report(), now=NOW, dimensions=DIMENSIONS)


@pytest.mark.parametrize(
    ("dimensions", "message"),
    [
        ({f"D{i}": "x" for i in range(31)}, "at most 30 dimensions"),
        ({"Bucket": ""}, "must have a str value"),
        ({"Bucket": 7}, "must have a str value"),
        ({"Failed": "x"}, "is taken"),
        ({"": "x"}, "dimension name"),
    ],
)
def test_bad_dimensions_are_refused(dimensions: dict[str, Any], message: str) -> None:
    """Over 30 dimensions, an empty or non-string value, or a name taken by a metric raise ValueError."""
    with pytest.raises(ValueError, match=message):
        emf_line(HandleReport(), now=NOW, dimensions=dimensions)


def test_now_must_be_a_datetime() -> None:
    """A timestamp given as a number raises TypeError naming the type."""
    with pytest.raises(TypeError, match="now must be a datetime, not float"):
        emf_line(HandleReport(), now=NOW.timestamp(), dimensions=DIMENSIONS)  # type: ignore[arg-type]


def test_the_module_needs_only_the_standard_library() -> None:
    """metrics.py imports nothing outside the standard library and the package's report."""
    import ast
    from pathlib import Path

    import s3_scheduler.metrics as module

    tree = ast.parse(Path(module.__file__).read_text())
    absolute = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
    plain = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}

    assert absolute | plain <= {"__future__", "json", "math", "collections.abc", "datetime", "typing"}
