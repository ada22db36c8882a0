"""The deployment examples: the SAM template passes cfn-lint, refuses a prefix ending in
``/`` and alarms on the handler's metrics, on the function's errors and on runs that stop
reporting; the Zappa settings use the ready handler, a role of their own and log at INFO;
a delivery reaches the target as ``s3:ObjectCreated:Copy``.

The roles themselves are checked against docs/iam/ and run under moto's IAM in
tests/test_iam.py.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from s3_scheduler import ConfigurationError, Scheduler
from s3_scheduler.aws_lambda import LambdaHandler
from s3_scheduler.metrics import DEFAULT_NAMESPACE, METRICS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def lint(path: Path) -> list[str]:
    from cfnlint.api import lint_file

    return [str(match) for match in lint_file(path)]


def template() -> dict[str, Any]:
    from cfnlint.decode import cfn_yaml

    parsed: dict[str, Any] = cfn_yaml.loads((EXAMPLES / "sam" / "template.yaml").read_text())
    return parsed


def test_the_sam_template_passes_cfn_lint() -> None:
    """cfn-lint finds nothing in examples/sam/template.yaml."""
    assert lint(EXAMPLES / "sam" / "template.yaml") == []


def test_cfn_lint_would_catch_a_broken_template(tmp_path: Path) -> None:
    """The lint is real: a template with a misspelt resource type fails it."""
    broken = tmp_path / "template.yaml"
    text = (EXAMPLES / "sam" / "template.yaml").read_text()
    broken.write_text(text.replace("Type: AWS::S3::Bucket\n", "Type: AWS::S3::Buckt\n"))

    assert lint(broken) != []


def test_the_sam_template_runs_the_ready_handler_every_minute() -> None:
    """The function points at s3_scheduler.aws_lambda.handler on a rate(1 minute) rule."""
    text = (EXAMPLES / "sam" / "template.yaml").read_text()

    assert "Handler: s3_scheduler.aws_lambda.handler" in text
    assert "Schedule: rate(1 minute)" in text


def test_the_sam_template_takes_the_shard_count() -> None:
    """Shards (1 to 1,000, default 1) is the function's S3_SCHEDULER_SHARDS; the role's grants for shards
    (ShardsPolicy, on the function's own role) exist only with more than one."""
    parsed = template()
    shards = parsed["Parameters"]["Shards"]
    function = parsed["Resources"]["SchedulerFunction"]["Properties"]
    policy = parsed["Resources"]["ShardsPolicy"]

    assert (shards["Type"], shards["Default"], shards["MinValue"], shards["MaxValue"]) == ("Number", 1, 1, 1000)
    assert function["Environment"]["Variables"]["S3_SCHEDULER_SHARDS"] == {"Ref": "Shards"}
    assert parsed["Conditions"]["Sharded"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "Shards"}, "1"]}]}
    assert (policy["Type"], policy["Condition"]) == ("AWS::IAM::RolePolicy", "Sharded")
    assert policy["Properties"]["RoleName"] == {"Ref": "SchedulerFunctionRole"}


def translated(parameters: dict[str, str]) -> dict[str, Any]:
    """The template as `sam validate` translates it (aws-sam-translator, the code a local path)."""
    from samtranslator.translator.transform import transform  # type: ignore[import-untyped,unused-ignore]

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    parsed = json.loads(json.dumps(template()))
    parsed["Resources"]["SchedulerFunction"]["Properties"]["CodeUri"] = "s3://bucket/code.zip"
    result: dict[str, Any] = transform(parsed, parameters, NoManagedPolicies())
    return result


def dependencies(resources: dict[str, Any]) -> dict[str, set[str]]:
    """Each resource's references (Ref, GetAtt, Sub, DependsOn) to the other resources."""

    def walk(node: Any, found: set[str]) -> set[str]:
        if isinstance(node, list):
            for item in node:
                walk(item, found)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key == "Ref" and isinstance(value, str):
                    found.add(value)
                elif key == "Fn::GetAtt":
                    found.add(value[0] if isinstance(value, list) else value.split(".")[0])
                elif key == "Fn::Sub":
                    text = value if isinstance(value, str) else value[0]
                    found.update(name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text))
                    walk(value, found)
                else:
                    walk(value, found)
        return found

    graph = {}
    for name, resource in resources.items():
        depends = resource.get("DependsOn", [])
        found = walk(resource.get("Properties", {}), set()) | set([depends] if isinstance(depends, str) else depends)
        graph[name] = found & set(resources)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle of ``graph`` (CloudFormation's "Circular dependency between resources"), or []."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str]:
        if state.get(node) == 1:
            return [*path, node]
        if state.get(node) == 2:
            return []
        state[node] = 1
        for other in sorted(graph[node]):
            found = visit(other, [*path, node])
            if found:
                return found
        state[node] = 2
        return []

    for node in sorted(graph):
        found = visit(node, [])
        if found:
            return found
    return []


def test_the_sam_template_translates_with_shards_and_no_circular_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    """With Shards=4 the template translates as `sam validate` does, the function's role gets the grant to
    invoke the function's own ARN, and no resource depends on itself through the others."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    resources = translated({"Shards": "4", "TargetBucketName": "work"})["Resources"]

    graph = dependencies(resources)
    assert cycle(graph) == []
    assert graph["SchedulerFunction"] == {"ScheduleBucket", "SchedulerFunctionRole"}
    (invoke,) = [
        s
        for s in resources["ShardsPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        if s["Action"] == "lambda:InvokeFunction"
    ]
    assert invoke["Resource"] == {"Fn::GetAtt": ["SchedulerFunction", "Arn"]}


def test_the_cycle_check_finds_a_circular_dependency() -> None:
    """The check is real: a function whose own policy names its ARN, as SAM would give it, is a cycle."""
    graph = dependencies(
        {
            "Function": {"Properties": {"Role": {"Fn::GetAtt": ["FunctionRole", "Arn"]}}},
            "FunctionRole": {"Properties": {"Policies": [{"Resource": {"Fn::Sub": "${Function.Arn}"}}]}},
        }
    )

    assert cycle(graph) == ["Function", "FunctionRole", "Function"]


@pytest.mark.parametrize("setting", ["S3_SCHEDULER_BUCKET", "S3_SCHEDULER_PREFIX", "S3_SCHEDULER_ALLOWED_TARGETS"])
def test_the_zappa_settings_use_the_ready_handler(setting: str) -> None:
    """zappa_settings.json: one event on the ready handler every minute, configured by environment."""
    stage = json.loads((EXAMPLES / "zappa" / "zappa_settings.json").read_text())["production"]

    assert stage["events"] == [{"function": "s3_scheduler.aws_lambda.handler", "expression": "rate(1 minute)"}]
    assert setting in stage["environment_variables"]


@pytest.mark.parametrize(
    ("prefix", "allowed"),
    [("jobs", True), ("team/jobs", True), ("jobs/", False), ("/jobs", False), ("team//jobs", False), ("", False)],
)
def test_the_sam_template_refuses_a_prefix_with_a_stray_slash(prefix: str, allowed: bool) -> None:
    """SchedulePrefix's AllowedPattern (matched whole, as CloudFormation does) takes jobs and refuses jobs/."""
    parameter = template()["Parameters"]["SchedulePrefix"]

    assert (re.fullmatch(parameter["AllowedPattern"], prefix) is not None) == allowed
    assert parameter["ConstraintDescription"]


@pytest.mark.parametrize(("metric", "threshold"), [("Failed", 0), ("OldestDueAgeSeconds", 300)])
def test_the_sam_template_alarms_on_the_handlers_metrics(metric: str, threshold: int) -> None:
    """An alarm fires when the metric exceeds its threshold, in metrics.py's namespace, on Bucket and Prefix."""
    alarms = [r["Properties"] for r in template()["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]

    (alarm,) = [a for a in alarms if a["MetricName"] == metric]

    assert metric in dict(METRICS)
    assert alarm["Namespace"] == DEFAULT_NAMESPACE
    assert [d["Name"] for d in alarm["Dimensions"]] == ["Bucket", "Prefix"]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", threshold)


def alarms() -> dict[str, dict[str, Any]]:
    """The template's alarms' properties, by resource name."""
    resources = template()["Resources"]
    return {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_the_sam_template_alarms_when_the_function_fails() -> None:
    """An alarm on the function's own Errors (AWS/Lambda, by FunctionName) fires on one failed invocation."""
    (alarm,) = [a for a in alarms().values() if a["MetricName"] == "Errors"]

    assert alarm["Namespace"] == "AWS/Lambda"
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "SchedulerFunction"}}]
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == ("Sum", "GreaterThanThreshold", 0)
    assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["TreatMissingData"]) == (60, 1, "notBreaching")


def test_the_sam_template_alarms_when_no_run_reports_for_5_minutes() -> None:
    """An alarm counts the runs' metrics lines and fires after 5 minutes without one, missing data breaching."""
    (alarm,) = [a for a in alarms().values() if a["Statistic"] == "SampleCount"]

    assert alarm["TreatMissingData"] == "breaching"
    assert alarm["Namespace"] == DEFAULT_NAMESPACE
    assert alarm["MetricName"] in dict(METRICS)
    assert [d["Name"] for d in alarm["Dimensions"]] == ["Bucket", "Prefix"]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    assert alarm["Period"] * alarm["EvaluationPeriods"] == 300
    assert alarm["DatapointsToAlarm"] == alarm["EvaluationPeriods"]


class _Context:
    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def test_every_run_reports_the_metric_the_no_run_alarm_counts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle run of the ready handler prints one sample of that metric; a run that fails early prints none."""
    (alarm,) = [a for a in alarms().values() if a["Statistic"] == "SampleCount"]
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="my-schedule-bucket")
        handler = LambdaHandler(environ={"S3_SCHEDULER_BUCKET": "my-schedule-bucket"})

        handler({}, _Context())
        idle = capsys.readouterr().out
        with pytest.raises(ConfigurationError):
            LambdaHandler(environ={})({}, _Context())
        failed = capsys.readouterr().out

    (line,) = idle.splitlines()
    metrics = json.loads(line)
    assert alarm["MetricName"] in [m["Name"] for m in metrics["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert metrics[alarm["MetricName"]] == 0
    assert failed == ""


def test_the_zappa_settings_log_at_info(caplog: pytest.LogCaptureFixture) -> None:
    """Zappa sets the root logger to the stage's log_level (DEBUG when unset): INFO keeps botocore's wire lines out."""
    stage = json.loads((EXAMPLES / "zappa" / "zappa_settings.json").read_text())["production"]

    caplog.set_level(stage.get("log_level", "DEBUG"))  # what Zappa's handler does with the setting

    assert stage["log_level"] == "INFO"
    assert not logging.getLogger("botocore.endpoint").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("s3_scheduler").isEnabledFor(logging.INFO)
    assert '"log_level": "INFO"' in (EXAMPLES / "zappa" / "README.md").read_text()


def test_the_alarms_notify_the_topic_only_when_one_is_given() -> None:
    """AlarmActions name the topic under a condition that holds only for a non-empty AlarmTopicArn."""
    parsed = template()
    condition = parsed["Conditions"]["NotifyAlarms"]
    alarms = [r["Properties"] for r in parsed["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]

    assert parsed["Parameters"]["AlarmTopicArn"]["Default"] == ""
    assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    for alarm in alarms:
        assert alarm["AlarmActions"] == {
            "Fn::If": ["NotifyAlarms", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }


def test_the_sam_function_installs_the_checkout() -> None:
    """src/requirements.txt names the checkout relative to examples/sam, where sam build runs."""
    lines = (EXAMPLES / "sam" / "src" / "requirements.txt").read_text().splitlines()

    (requirement,) = [line for line in lines if line.strip() and not line.startswith("#")]

    assert (EXAMPLES / "sam" / requirement / "setup.py").resolve() == ROOT / "setup.py"


def test_the_zappa_settings_use_a_role_of_their_own() -> None:
    """manage_roles is false and role_name names the role made from the files beside the settings."""
    stage = json.loads((EXAMPLES / "zappa" / "zappa_settings.json").read_text())["production"]
    trust = json.loads((EXAMPLES / "zappa" / "trust-policy.json").read_text())
    readme = (EXAMPLES / "zappa" / "README.md").read_text()

    assert stage["manage_roles"] is False
    assert f"--role-name {stage['role_name']}" in readme
    assert trust["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}


@pytest.mark.parametrize(
    ("notified_on", "expected"), [("s3:ObjectCreated:*", ["ObjectCreated:Copy"]), ("s3:ObjectCreated:Put", [])]
)
def test_a_delivery_arrives_at_the_target_as_a_copy(notified_on: str, expected: list[str]) -> None:
    """The target's notification sees s3:ObjectCreated:Copy: a filter on :* starts the work, one on :Put never does."""
    now = datetime(2030, 1, 7, 14, 5, tzinfo=timezone.utc)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        for bucket in ("my-schedule-bucket", "work"):
            s3.create_bucket(Bucket=bucket)
        queue = sqs.create_queue(QueueName="work-started")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket="work",
            NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": [notified_on]}]},
        )
        sqs.purge_queue(QueueUrl=queue)  # the s3:TestEvent S3 sends when notifications are set
        scheduler = Scheduler("my-schedule-bucket", "jobs", s3_client=s3, clock=lambda: now)
        scheduler.schedule(now - timedelta(seconds=1), "work", "in/report.json", "{}")

        report = scheduler.handle()
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])

    assert len(report.delivered) == 1
    assert [record["eventName"] for m in messages for record in json.loads(m["Body"])["Records"]] == expected


def test_the_notification_examples_filter_on_every_object_created_event() -> None:
    """The Lambda guide's and the SAM example's notifications select s3:ObjectCreated:*, which includes a Copy."""
    readme = (ROOT / "docs" / "guides" / "aws-lambda.md").read_text()
    sam = (EXAMPLES / "sam" / "README.md").read_text()

    assert '"Events": ["s3:ObjectCreated:*"]' in readme
    assert "Events: s3:ObjectCreated:*" in sam
