"""The documented least-privilege policies, enforced by moto's IAM: each role can do its
job and nothing the other role does.

docs/iam/application-policy.json (schedule, cancel, reschedule, list) and
docs/iam/handler-policy.json (deliver), with the schedule in ``my-schedule-bucket`` at
``jobs`` and the targets ``work/*`` and ``reports/in/*``, are attached to IAM users of
moto, and the scheduler runs with those users' keys while moto checks every request.

moto's IAM differs from AWS's in four ways that matter here; the fixture below makes it
behave as AWS documents, each change named where it is made:

- it turns a policy's ``Resource`` into a regular expression without escaping it, so the
  ``|`` of ``jobs/|*`` is an alternation and that resource matches *every* ARN;
- it checks HeadBucket as an action ``s3:HeadBucket``, which IAM does not have (AWS
  checks ``s3:ListBucket``);
- it checks a DeleteObjects request as ``s3:DeleteObject`` on the bucket, where AWS
  checks it on each key;
- it checks no ``s3:GetObject`` on a copy's source.

And one it does not check at all: ``Condition`` operators other than ``StringEquals``
are ignored, and no request carries ``s3:prefix``; so a ``ListBucket`` limited by a
condition on ``s3:prefix`` could not be tested here. The policies grant ``ListBucket``
on the whole (dedicated) schedule bucket.
"""

from __future__ import annotations

import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws, settings
from moto.core.authorization import ActionAuthenticatorMixin

from s3_scheduler import Scheduler

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "docs" / "iam"
BUCKET = "my-schedule-bucket"
TARGETS = ("work", "reports")
T0 = datetime(2030, 1, 7, 14, 5, tzinfo=timezone.utc)


def iam_glob(pattern: str, value: str) -> re.Match[str] | None:
    """IAM's wildcard match: ``*`` any run of characters, ``?`` any one; everything else literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL)


def policy(name: str) -> dict[str, Any]:
    """A documented policy: ``application`` or ``handler``."""
    document: dict[str, Any] = json.loads((POLICIES / f"{name}-policy.json").read_text())
    return document


def sam_handler_policy() -> dict[str, Any]:
    """The SAM template's role, its parameters set to the documented ones (targets: ``work/in/*``)."""
    from cfnlint.decode import cfn_yaml

    template = cfn_yaml.loads((ROOT / "examples" / "sam" / "template.yaml").read_text())
    (document,) = template["Resources"]["SchedulerFunction"]["Properties"]["Policies"]
    values = {
        "ScheduleBucket.Arn": f"arn:aws:s3:::{BUCKET}",
        "SchedulePrefix": "jobs",
        "TargetBucketName": "work",
        "TargetPrefix": "in/",
        "AWS::Partition": "aws",
    }

    def render(node: Any) -> Any:
        if isinstance(node, list):
            return [render(item) for item in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Fn::Sub"}:
            return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], node["Fn::Sub"])
        if set(node) == {"Fn::GetAtt"}:
            return values[".".join(node["Fn::GetAtt"])]
        if set(node) == {"Ref"}:
            return values[node["Ref"]]
        return {key: render(value) for key, value in node.items()}

    return {"Version": "2012-10-17", "Statement": render(document["Statement"])}


def zappa_handler_policy() -> dict[str, Any]:
    """The role policy shipped beside the Zappa example."""
    document: dict[str, Any] = json.loads((ROOT / "examples" / "zappa" / "handler-role-policy.json").read_text())
    return document


HANDLER_POLICIES = {"docs": lambda: policy("handler"), "sam": sam_handler_policy, "zappa": zappa_handler_policy}


@dataclass
class Accounts:
    """S3 clients of moto with IAM enforced: one per role, and an admin to set up and look."""

    admin: Any
    application: Any
    handler: Any
    nobody: Any

    def scheduler(self, client: Any, now: datetime = T0, **options: Any) -> Scheduler:
        return Scheduler(BUCKET, "jobs", s3_client=client, clock=lambda: now, **options)

    def keys(self, bucket: str) -> list[str]:
        return [o["Key"] for o in self.admin.list_objects_v2(Bucket=bucket).get("Contents", ())]


def _user_client(iam: Any, name: str, document: dict[str, Any]) -> Any:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )


def _as_aws_checks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's IAM check S3 requests the way AWS documents (see the module's docstring)."""
    from moto.iam.access_control import IAMPolicyStatement
    from moto.s3 import responses

    # A Resource is a wildcard pattern, not a regular expression.
    monkeypatch.setattr(IAMPolicyStatement, "_match", staticmethod(iam_glob))
    # HeadBucket needs s3:ListBucket.
    monkeypatch.setitem(responses.ACTION_MAP["BUCKET"]["HEAD"], "DEFAULT", "ListBucket")

    original = responses.S3Response._authenticate_and_authorize_s3_action

    def authorize(self: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        action = self.data.get("Action")
        if key_name is None and bucket_name and action == "DeleteObject" and self.is_delete_keys():
            # DeleteObjects needs s3:DeleteObject on each key.
            body = self.body if isinstance(self.body, bytes) else str(self.body).encode()
            for element in ET.fromstring(body).iter():
                if element.tag.rsplit("}", 1)[-1] == "Key" and element.text:
                    original(self, bucket_name=bucket_name, key_name=element.text)
            return
        original(self, bucket_name=bucket_name, key_name=key_name)
        source = self.headers.get("x-amz-copy-source")
        if key_name is not None and action == "PutObject" and source:
            # A copy also needs s3:GetObject on its source.
            source_bucket, source_key = unquote(urlparse(source).path).lstrip("/").split("/", 1)
            self.data["Action"] = "GetObject"
            try:
                original(self, bucket_name=source_bucket, key_name=source_key)
            finally:
                self.data["Action"] = action

    monkeypatch.setattr(responses.S3Response, "_authenticate_and_authorize_s3_action", authorize)


@pytest.fixture
def accounts(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Accounts]:
    """moto with the schedule and target buckets, one IAM user per policy, and IAM enforced.

    The handler's policy is the documented one, or (parametrized indirectly) the SAM
    template's or the Zappa example's.
    """
    handler_policy = HANDLER_POLICIES[getattr(request, "param", "docs")]()
    with mock_aws():
        setup = boto3.client("s3", region_name="us-east-1")
        for bucket in (BUCKET, *TARGETS, "elsewhere"):
            setup.create_bucket(Bucket=bucket)
        iam = boto3.client("iam", region_name="us-east-1")
        everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        admin = _user_client(iam, "admin", everything)
        application = _user_client(iam, "application", policy("application"))
        handler = _user_client(iam, "handler", handler_policy)
        unrelated = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::elsewhere/nothing"}
        nobody = _user_client(iam, "nobody", {"Version": "2012-10-17", "Statement": [unrelated]})
        _as_aws_checks_it(monkeypatch)
        monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
        yield Accounts(admin, application, handler, nobody)


def denied(call: Any) -> bool:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("AccessDenied", "403")
    return False


def asked_to_grant(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The package's warnings that ask for a permission (the lease's, the attempt counter's)."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("s3_scheduler") and "grant " in r.getMessage()]


def test_iam_is_enforced(accounts: Accounts) -> None:
    """The fixture is real: a user whose policy grants no listing is refused one the admin may make."""
    assert denied(lambda: accounts.nobody.list_objects_v2(Bucket=BUCKET))
    assert not denied(lambda: accounts.admin.list_objects_v2(Bucket=BUCKET))


def test_resources_match_as_iam_wildcards() -> None:
    """``jobs/|*`` matches event names only (moto's own matcher lets it match any ARN); ``?`` is one character."""
    resource = f"arn:aws:s3:::{BUCKET}/jobs/|*"

    assert iam_glob(resource, f"arn:aws:s3:::{BUCKET}/jobs/|2030-01-07|work|x")
    assert not iam_glob(resource, "arn:aws:s3:::work/x")
    assert not iam_glob(resource, f"arn:aws:s3:::{BUCKET}/jobs/.lease")
    assert iam_glob("arn:aws:s3:::a?c", "arn:aws:s3:::abc")
    assert not iam_glob("arn:aws:s3:::a.c", "arn:aws:s3:::abc")


def test_the_application_schedules_lists_reschedules_and_cancels(accounts: Accounts) -> None:
    """With the application policy: schedule, pending, reschedule, cancel, and cancel of a gone event all work."""
    scheduler = accounts.scheduler(accounts.application)

    key = scheduler.schedule(T0 + timedelta(hours=1), "work", "in/report.json", '{"report": 7}')
    listed = [event.key for event in scheduler.pending()]
    moved = scheduler.reschedule(key, T0 + timedelta(days=1))
    cancelled = scheduler.cancel(moved)
    again = scheduler.cancel(moved)

    assert listed == [key]
    assert (cancelled, again) == (True, False)
    assert accounts.keys(BUCKET) == []


@pytest.mark.parametrize(
    ("bucket", "key"),
    [("work", "x"), ("reports", "in/x"), (BUCKET, "jobs/.lease"), (BUCKET, "jobs/.dead-letters/x"), (BUCKET, "x")],
)
def test_the_application_cannot_write_targets_the_lease_or_dead_letters(
    accounts: Accounts, bucket: str, key: str
) -> None:
    """The application policy refuses a PutObject anywhere but on event names."""
    assert denied(lambda: accounts.application.put_object(Bucket=bucket, Key=key, Body=b"x"))


@pytest.mark.parametrize("accounts", ["docs", "sam", "zappa"], indirect=True)
def test_the_handler_delivers_a_due_event_with_the_lease(accounts: Accounts, caplog: pytest.LogCaptureFixture) -> None:
    """With each handler policy, handle() takes the lease, copies the event to its target, removes it, warns nothing."""
    key = accounts.scheduler(accounts.application).schedule(T0, "work", "in/report.json", b'{"report": 7}')
    lease_writes: list[str] = []
    accounts.handler.meta.events.register(
        "before-parameter-build.s3.PutObject", lambda params, **_: lease_writes.append(params["Key"])
    )
    caplog.set_level(logging.WARNING, logger="s3_scheduler")

    report = accounts.scheduler(accounts.handler, now=T0 + timedelta(seconds=1)).handle()

    assert [event.key for event in report.delivered] == [key]
    assert report.ok
    assert "jobs/.lease" in lease_writes
    assert [r.getMessage() for r in caplog.records if r.name.startswith("s3_scheduler")] == []
    assert accounts.admin.get_object(Bucket="work", Key="in/report.json")["Body"].read() == b'{"report": 7}'
    assert accounts.keys(BUCKET) == []


def test_the_handler_dead_letters_a_rejected_event(accounts: Accounts, caplog: pytest.LogCaptureFixture) -> None:
    """With the handler policy, an event outside allowed_targets past dead_letter_after is moved to the dead letters."""
    caplog.set_level(logging.WARNING, logger="s3_scheduler")
    key = accounts.scheduler(accounts.admin).schedule(T0, "elsewhere", "x", b"x")
    handler = accounts.scheduler(
        accounts.handler,
        now=T0 + timedelta(days=2),
        allowed_targets=["work", "reports/in/"],
        dead_letter_after=timedelta(days=1),
    )

    report = handler.handle()

    assert [event.key for event in report.dead_lettered] == [key]
    assert [event.bucket for event in handler.dead_letters()] == ["elsewhere"]
    assert accounts.keys("elsewhere") == []
    assert asked_to_grant(caplog) == []


def test_the_handler_cannot_deliver_outside_its_targets(accounts: Accounts, caplog: pytest.LogCaptureFixture) -> None:
    """A due event for a bucket the role may not write fails and stays pending; counting the failure is allowed."""
    caplog.set_level(logging.WARNING, logger="s3_scheduler")
    key = accounts.scheduler(accounts.admin).schedule(T0, "elsewhere", "x", b"x")

    handler = accounts.scheduler(accounts.handler, now=T0 + timedelta(seconds=1), dead_letter_after=timedelta(days=1))

    report = handler.handle()  # with dead_letter_after, a failed run is counted in the event's tags

    assert [failure.event.key for failure in report.failed] == [key]
    assert key in accounts.keys(BUCKET)
    assert accounts.keys("elsewhere") == []
    assert asked_to_grant(caplog) == []


@pytest.mark.parametrize("accounts", ["docs", "sam", "zappa"], indirect=True)
def test_the_handler_cannot_write_an_event(accounts: Accounts) -> None:
    """Each handler policy refuses a PutObject on an event name, by hand or through schedule()."""
    scheduler = accounts.scheduler(accounts.handler)

    assert denied(lambda: accounts.handler.put_object(Bucket=BUCKET, Key="jobs/|2030-01-07|work|x", Body=b"x"))
    assert denied(lambda: scheduler.schedule(T0, "work", "in/x", "x"))
    assert accounts.keys(BUCKET) == []


def test_only_the_lease_and_dead_letters_are_writable_in_the_schedule_by_the_handler() -> None:
    """No statement of the handler policy grants s3:PutObject on an event name or on the whole prefix."""
    writable = [
        resource
        for statement in policy("handler")["Statement"]
        if "s3:PutObject" in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
    ]

    assert not any(iam_glob(resource, f"arn:aws:s3:::{BUCKET}/jobs/|2030-01-07|work|x") for resource in writable)
    assert not any(iam_glob(resource, f"arn:aws:s3:::{BUCKET}/jobs/anything") for resource in writable)


def _without_sids(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in statement.items() if key != "Sid"} for statement in statements]


def test_the_sam_role_is_the_handler_policy() -> None:
    """The SAM role's statements are the documented handler policy's, its target being the template's parameters."""
    documented = _without_sids(policy("handler")["Statement"])
    sam = _without_sids(sam_handler_policy()["Statement"])

    assert sam[:-1] == documented[:-1]
    assert sam[-1] == {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::work/in/*"}


def test_the_zappa_role_is_the_handler_policy_and_its_logs() -> None:
    """The Zappa role policy holds the handler policy's statements, and beyond them only CloudWatch Logs actions."""
    documented = policy("handler")["Statement"]
    zappa = zappa_handler_policy()["Statement"]

    assert zappa[: len(documented)] == documented
    assert all(action.startswith("logs:") for s in zappa[len(documented) :] for action in _as_list(s["Action"]))


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value
