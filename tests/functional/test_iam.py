"""The documented least-privilege policies, enforced by moto's IAM: each role can do its
job and nothing the other role does, and each grant is needed.

docs/iam/application-policy.json (schedule, cancel, reschedule, list) and
docs/iam/handler-policy.json (deliver), with the schedule in ``my-schedule-bucket`` at
``jobs`` and the targets ``work/*`` and ``reports/in/*``, are attached to IAM users of
moto, and the scheduler runs with those users' keys while moto checks every request.

Exact, both ways (issue 17): every documented call of a role works under its policy
(enough), and taking any one action off any one resource of a policy makes S3 refuse a
request of those calls (needed). The SAM and Zappa roles are checked to hold the
handler policy's statements.

Recurring events (issue 20): the application marks and unmarks series
(``{path}/.series/*``); a handler that delivers them also needs
docs/iam/handler-recurring-policy.json (it writes each next occurrence: s3:PutObject on the
events' names, which the base handler policy never grants). Both are checked the same way,
enough and needed, and the base policy alone fails a series before its delivery.

The handler's calls include a sharded schedule (issue 19): a shard's run, as the Lambda
handler's shard invocation makes it, and the Lambda tick's fan-out, which invokes the
function itself once per shard. moto's IAM cannot judge that invocation: it checks
``lambda:Invoke`` (the API operation's name, not the IAM action
``lambda:InvokeFunction``) on ``*``, never on the function's ARN. So the tick's Lambda
client here is `PolicyLambda`, which evaluates the role's policy with this file's own
evaluator (`allows`, IAM's wildcards as `iam_glob` reads them) for each invoke.

moto's IAM differs from AWS's in five ways that matter here; the fixture below makes it
behave as AWS documents, each change named where it is made:

- it turns a policy's ``Resource`` into a regular expression without escaping it, so the
  ``|`` of ``jobs/|*`` is an alternation and that resource matches *every* ARN;
- from 5.2.6 on, it checks the API operation's name (``s3:ListObjectsV2``) where AWS
  checks the IAM action (``s3:ListBucket``);
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
from typing import Any, Callable, NamedTuple
from urllib.parse import unquote, urlparse

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws, settings

try:
    from moto.core.authorization import ActionAuthenticatorMixin
except ImportError:  # where earlier moto 5 releases kept it
    from moto.core.responses import ActionAuthenticatorMixin  # type: ignore[attr-defined]

from s3_scheduler import Scheduler, aws_lambda
from s3_scheduler.aws_lambda import LambdaHandler
from s3_scheduler.keys import shard_of

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "docs" / "iam"
BUCKET = "my-schedule-bucket"
TARGETS = ("work", "reports")
T0 = datetime(2030, 1, 7, 14, 5, tzinfo=timezone.utc)
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:s3-scheduler"
"""The handler function of the documented policy (and of the SAM template, rendered)."""
SHARD = 2
"""The shard of the handler's sharded calls (with 4 shards): a scheduler at ``jobs/2``."""
SHARDING_SIDS = (
    "InvokeItselfForEachShard",
    "ReadDeleteAndCountAttemptsOfShardEvents",
    "TheShardsRunLeases",
    "KeepTheShardsDeadLetters",
)
"""The handler policy's statements for shards; the Zappa example (one handler, no shards) has none."""


def iam_glob(pattern: str, value: str) -> re.Match[str] | None:
    """IAM's wildcard match: ``*`` any run of characters, ``?`` any one; everything else literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL)


def allows(document: dict[str, Any], action: str, resource: str) -> bool:
    """Whether the policy ``document`` allows ``action`` on ``resource``, as IAM decides for one
    identity policy: an explicit Deny wins; else an Allow whose actions (case-insensitive) and
    resources match, as wildcards."""

    def matches(statement: dict[str, Any]) -> bool:
        actions, resources = _as_list(statement["Action"]), _as_list(statement["Resource"])
        return any(iam_glob(a.lower(), action.lower()) for a in actions) and any(
            iam_glob(r, resource) for r in resources
        )

    statements = document["Statement"]
    if any(s["Effect"] == "Deny" and matches(s) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and matches(s) for s in statements)


def policy(name: str) -> dict[str, Any]:
    """A documented policy: ``application``, ``handler``, or ``handler-recurring`` (the handler
    policy with what docs/iam/handler-recurring-policy.json adds for recurring events)."""
    if name == "handler-recurring":
        extra = json.loads((POLICIES / "handler-recurring-policy.json").read_text())["Statement"]
        base = policy("handler")
        return {**base, "Statement": [*base["Statement"], *extra]}
    document: dict[str, Any] = json.loads((POLICIES / f"{name}-policy.json").read_text())
    return document


RECURRING_SIDS = ("WriteTheNextOccurrenceOfASeries", "MarkTheOccurrencesOfSeries")
"""The statements a handler needs for recurring events (docs/iam/handler-recurring-policy.json)."""


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def sam_handler_policy(*, recurring: bool = False) -> dict[str, Any]:
    """The SAM template's role, its parameters set to the documented ones (targets: ``work/in/*``):
    the function's Policies, then the statements of its ShardsPolicy (what it has with Shards > 1),
    and with ``recurring`` those of its RecurringPolicy (RecurringEvents, "true" by default)."""
    from cfnlint.decode import cfn_yaml

    template = cfn_yaml.loads((ROOT / "examples" / "sam" / "template.yaml").read_text())
    (document,) = template["Resources"]["SchedulerFunction"]["Properties"]["Policies"]
    shards = template["Resources"]["ShardsPolicy"]
    assert shards["Condition"] == "Sharded"
    assert shards["Properties"]["RoleName"] == {"Ref": "SchedulerFunctionRole"}
    values = {
        "ScheduleBucket.Arn": f"arn:aws:s3:::{BUCKET}",
        "SchedulePrefix": "jobs",
        "TargetBucketName": "work",
        "TargetPrefix": "in/",
        "AWS::Partition": "aws",
        "SchedulerFunction.Arn": FUNCTION_ARN,
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

    statements = [*document["Statement"], *shards["Properties"]["PolicyDocument"]["Statement"]]
    series = template["Resources"]["RecurringPolicy"]
    assert series["Condition"] == "Recurring"
    assert series["Properties"]["RoleName"] == {"Ref": "SchedulerFunctionRole"}
    if recurring:
        statements += series["Properties"]["PolicyDocument"]["Statement"]
    return {"Version": "2012-10-17", "Statement": render(statements)}


def zappa_handler_policy(*, recurring: bool = False) -> dict[str, Any]:
    """The role policy shipped beside the Zappa example (with ``recurring``, as shipped; without, less
    its statements for recurring events)."""
    document: dict[str, Any] = json.loads((ROOT / "examples" / "zappa" / "handler-role-policy.json").read_text())
    if not recurring:
        document["Statement"] = [s for s in document["Statement"] if s.get("Sid") not in RECURRING_SIDS]
    return document


HANDLER_POLICIES: dict[str, Callable[[], dict[str, Any]]] = {
    "docs": lambda: policy("handler"),
    "sam": sam_handler_policy,
    "zappa": zappa_handler_policy,
    "docs-recurring": lambda: policy("handler-recurring"),
    "sam-recurring": lambda: sam_handler_policy(recurring=True),
    "zappa-recurring": lambda: zappa_handler_policy(recurring=True),
}


class Without(NamedTuple):
    """A documented policy with one action taken off one resource of one statement."""

    role: str
    sid: str
    action: str
    resource: str

    def apply(self, document: dict[str, Any]) -> dict[str, Any]:
        """Return ``document`` granting everything it grants but ``action`` on ``resource``."""
        statements: list[dict[str, Any]] = []
        for statement in document["Statement"]:
            if statement.get("Sid") != self.sid:
                statements.append(statement)
                continue
            actions, resources = _as_list(statement["Action"]), _as_list(statement["Resource"])
            others = [a for a in actions if a != self.action]
            rest = [r for r in resources if r != self.resource]
            assert (others, rest) != (actions, resources), f"{self} names nothing in its statement"
            if others:
                statements.append({**statement, "Action": others, "Resource": resources})
            if rest:
                statements.append({**statement, "Sid": f"{self.sid}Rest", "Action": [self.action], "Resource": rest})
        return {**document, "Statement": statements}


def grants(role: str) -> list[Without]:
    """Each action on each resource the documented policy of ``role`` grants, as one removal each."""
    return [
        Without(role, statement["Sid"], action, resource)
        for statement in policy(role)["Statement"]
        for action in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
    ]


@dataclass
class Accounts:
    """S3 clients of moto with IAM enforced: one per role, and an admin to set up and look."""

    admin: Any
    application: Any
    handler: Any
    nobody: Any
    handler_policy: dict[str, Any]
    """The policy the handler's user has (the Lambda tick's invocations are judged against it)."""

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
    from moto.iam.access_control import IAMPolicyStatement, IAMRequestBase, S3IAMRequest
    from moto.s3 import responses

    # A Resource is a wildcard pattern, not a regular expression.
    monkeypatch.setattr(IAMPolicyStatement, "_match", staticmethod(iam_glob))
    # HeadBucket needs s3:ListBucket.
    monkeypatch.setitem(responses.ACTION_MAP["BUCKET"]["HEAD"], "DEFAULT", "ListBucket")

    # The action checked is the IAM action moto's S3 responses name for the request
    # (ListObjectsV2 needs s3:ListBucket). moto 5.2.6 checks the API operation's name
    # instead (``s3:ListObjectsV2``, which IAM does not have), so every listing was denied.
    checked = IAMRequestBase.check_action_permitted

    def check_action_permitted(self: Any, resource: str) -> None:
        if isinstance(self, S3IAMRequest) and self._data.get("Action"):
            self._action = f"s3:{self._data['Action']}"
        checked(self, resource)

    monkeypatch.setattr(IAMRequestBase, "check_action_permitted", check_action_permitted)

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

    The policies are the documented ones; parametrized indirectly, the handler's is the
    SAM template's or the Zappa example's (``"sam"``, ``"zappa"``), or a `Without` takes
    one grant off the application's or the handler's.
    """
    param = getattr(request, "param", "docs")
    documents = {"application": policy("application"), "handler": policy("handler")}
    if isinstance(param, Without):
        role = "handler" if param.role == "handler-recurring" else param.role
        documents[role] = param.apply(policy(param.role))
    else:
        documents["handler"] = HANDLER_POLICIES[param]()
    with mock_aws():
        setup = boto3.client("s3", region_name="us-east-1")
        for bucket in (BUCKET, *TARGETS, "elsewhere"):
            setup.create_bucket(Bucket=bucket)
        iam = boto3.client("iam", region_name="us-east-1")
        everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        admin = _user_client(iam, "admin", everything)
        application = _user_client(iam, "application", documents["application"])
        handler = _user_client(iam, "handler", documents["handler"])
        unrelated = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::elsewhere/nothing"}
        nobody = _user_client(iam, "nobody", {"Version": "2012-10-17", "Statement": [unrelated]})
        _as_aws_checks_it(monkeypatch)
        monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
        yield Accounts(admin, application, handler, nobody, documents["handler"])


def denied(call: Any) -> bool:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("AccessDenied", "403")
    return False


def asked_to_grant(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The package's warnings that ask for a permission (the lease's, the attempt counter's)."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("s3_scheduler") and "grant " in r.getMessage()]


class Requests:
    """The S3 requests a client made, as ``(operation, "bucket/key")``: those that succeeded, those forbidden."""

    def __init__(self) -> None:
        self.succeeded: list[tuple[str, str]] = []
        self.denied: list[tuple[str, str]] = []

    @classmethod
    def watch(cls, client: Any) -> Requests:
        requests = cls()
        client.meta.events.register("before-parameter-build.s3", requests._name)
        client.meta.events.register("after-call.s3", requests._record)
        return requests

    def _name(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["iam_test_target"] = f"{params.get('Bucket', '')}/{params.get('Key', '')}".rstrip("/")

    def _record(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        code = parsed.get("Error", {}).get("Code")
        request = (model.name, context.get("iam_test_target", ""))
        if code in ("AccessDenied", "403"):
            self.denied.append(request)
        elif code is None:
            self.succeeded.append(request)
        for error in parsed.get("Errors", ()):  # DeleteObjects answers each key refused on its own
            if error.get("Code") == "AccessDenied":
                self.denied.append(("DeleteObject", f"{request[1]}/{error.get('Key', '')}"))


@dataclass
class Calls:
    """What a role's documented calls did: their results, the calls that raised, the requests S3 answered."""

    results: dict[str, Any]
    raised: list[str]
    requests: Requests


def _attempt(calls: Calls, name: str, call: Any) -> None:
    try:
        calls.results[name] = call()
    except Exception as exc:  # noqa: BLE001 - a call that raises is recorded, the next one still runs
        calls.raised.append(f"{name}: {type(exc).__name__}: {exc}")


def leftover_lease(accounts: Accounts, path: str = "jobs") -> None:
    """A lease that expired before T0 (a run that died): taking the lease must read it, then take it over."""
    body = {"owner": "gone", "expires": (T0 - timedelta(minutes=5)).isoformat()}
    accounts.admin.put_object(Bucket=BUCKET, Key=f"{path}/.lease", Body=json.dumps(body).encode())


def application_calls(accounts: Accounts) -> Calls:
    """The application's documented calls, each on state the admin set up: schedule, pending, reschedule
    of an event near its time (a lease left over) and of one far off, cancel of a pending and of a gone event."""
    admin = accounts.scheduler(accounts.admin)
    near = admin.schedule(T0 + timedelta(minutes=2), "work", "in/near.json", "{}")
    far = admin.schedule(T0 + timedelta(hours=1), "work", "in/far.json", "{}")
    leftover_lease(accounts)
    scheduler = accounts.scheduler(accounts.application)
    calls = Calls({}, [], Requests.watch(accounts.application))

    _attempt(calls, "schedule", lambda: scheduler.schedule(T0 + timedelta(days=2), "reports", "in/new.json", "{}"))
    _attempt(calls, "pending", lambda: [event.key for event in scheduler.pending()])
    _attempt(calls, "reschedule near", lambda: scheduler.reschedule(near, T0 + timedelta(minutes=3)))
    _attempt(calls, "reschedule far", lambda: scheduler.reschedule(far, T0 + timedelta(days=1)))
    _attempt(calls, "cancel", lambda: scheduler.cancel(calls.results["schedule"]))
    _attempt(calls, "cancel again", lambda: scheduler.cancel(calls.results["schedule"]))
    _attempt(calls, "series", lambda: scheduler.schedule(T0, "work", "in/daily.json", "{}", repeat="FREQ=DAILY"))
    _attempt(calls, "cancel series", lambda: scheduler.cancel(calls.results["series"]))
    _sharded_application_calls(accounts, calls)
    return calls


SHARDS = 4
"""The shards of the sharded scheduler the application and the handler also use."""


def _sharded_application_calls(accounts: Accounts, calls: Calls) -> None:
    """The same calls through a scheduler with `SHARDS` shards (its near event's shard with a lease left over)."""
    admin = accounts.scheduler(accounts.admin, shards=SHARDS)
    near = admin.schedule(T0 + timedelta(minutes=2), "work", "in/near-sharded.json", "{}")
    far = admin.schedule(T0 + timedelta(hours=1), "work", "in/far-sharded.json", "{}")
    leftover_lease(accounts, f"jobs/{shard_of('work', 'in/near-sharded.json', SHARDS)}")
    scheduler = accounts.scheduler(accounts.application, shards=SHARDS)
    new = "sharded schedule"

    _attempt(calls, new, lambda: scheduler.schedule(T0 + timedelta(days=2), "reports", "in/new-sharded.json", "{}"))
    _attempt(calls, "sharded pending", lambda: [event.key for event in scheduler.pending()])
    _attempt(calls, "sharded reschedule near", lambda: scheduler.reschedule(near, T0 + timedelta(minutes=3)))
    _attempt(calls, "sharded reschedule far", lambda: scheduler.reschedule(far, T0 + timedelta(days=1)))
    _attempt(calls, "sharded cancel", lambda: scheduler.cancel(calls.results[new]))
    series = "sharded series"
    _attempt(calls, series, lambda: scheduler.schedule(T0, "work", "in/daily-sharded.json", "{}", repeat="FREQ=DAILY"))
    _attempt(calls, "sharded cancel series", lambda: scheduler.cancel(calls.results[series]))


ELSEWHERE_FAILS = ("CopyObject", "elsewhere/fail/y")
"""The one request the handler's calls make that its policy refuses: a delivery outside its targets."""
SHARD_ELSEWHERE_FAILS = ("CopyObject", "elsewhere/fail/z")
"""The same, from the shard's run."""


class FunctionContext:
    """The context of an invocation of the function at ``arn``, with a minute left."""

    def __init__(self, arn: str = FUNCTION_ARN) -> None:
        self.invoked_function_arn = arn

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class PolicyLambda:
    """A Lambda client that lets an invoke through only if ``document`` allows
    ``lambda:InvokeFunction`` on its ``FunctionName`` (moto's IAM cannot judge it: see the
    module's docstring), and records it in ``requests`` as ``("Invoke", arn)``."""

    def __init__(self, document: dict[str, Any], requests: Requests) -> None:
        self.document = document
        self.requests = requests

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: str) -> dict[str, Any]:
        assert (InvocationType, sorted(json.loads(Payload))) == ("Event", ["shard"])
        if not allows(self.document, "lambda:InvokeFunction", FunctionName):
            self.requests.denied.append(("Invoke", FunctionName))
            error = {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}
            raise ClientError(error, "Invoke")
        self.requests.succeeded.append(("Invoke", FunctionName))
        return {"StatusCode": 202}


def lambda_handler(accounts: Accounts, requests: Requests, **environ: str) -> LambdaHandler:
    """The ready Lambda handler at T0 + 1 s, with 4 shards, whose S3 client is the handler user's and
    whose Lambda client is judged by the handler's policy."""
    settings = {"S3_SCHEDULER_BUCKET": BUCKET, "S3_SCHEDULER_SHARDS": "4", "S3_SCHEDULER_METRICS": "0", **environ}
    return LambdaHandler(
        clock=lambda: T0 + timedelta(seconds=1),
        environ=settings,
        lambda_client=PolicyLambda(accounts.handler_policy, requests),
    )


def handler_calls(accounts: Accounts, *, series: bool = False) -> Calls:
    """The handler's documented calls on the admin's events: a run that takes over a lease left over,
    delivers to both targets, counts a failing event's runs in its tags and dead-letters a rejected
    one; then the dead letters' listing. Then the same in shard 2 of 4, as the Lambda handler's
    invocation for that shard runs it, and the Lambda tick, which invokes the function for that shard.
    With ``series``, each also has a recurring event due, which the runs deliver and follow."""
    for path, fails in (("jobs", "fail/y"), (f"jobs/{SHARD}", "fail/z")):
        admin = Scheduler(BUCKET, path, s3_client=accounts.admin, clock=lambda: T0)
        if series:
            admin.schedule(T0, "work", f"in/daily{path[4:]}.json", "{}", repeat="FREQ=DAILY")
        admin.schedule(T0, "work", f"in/a{path[4:]}.json", "{}")
        admin.schedule(T0, "reports", f"in/b{path[4:]}.json", "{}")
        admin.schedule(T0 - timedelta(days=2), "elsewhere", "x", "{}")  # rejected, then dead-lettered
        admin.schedule(T0, "elsewhere", fails, "{}")  # allowed, but outside the policy: fails, counted
        leftover_lease(accounts, path)
    allowed = ["work", "reports/in/", "elsewhere/fail/"]
    scheduler = accounts.scheduler(
        accounts.handler,
        now=T0 + timedelta(seconds=1),
        allowed_targets=allowed,
        dead_letter_after=timedelta(days=1),
    )
    shard = Scheduler(BUCKET, f"jobs/{SHARD}", s3_client=accounts.handler)
    calls = Calls({}, [], Requests.watch(accounts.handler))
    shard_run = lambda_handler(
        accounts, calls.requests, S3_SCHEDULER_ALLOWED_TARGETS=",".join(allowed), S3_SCHEDULER_DEAD_LETTER_AFTER="1d"
    )
    tick = lambda_handler(accounts, calls.requests, S3_SCHEDULER_ALLOWED_TARGETS="work,reports/in/")

    _attempt(calls, "handle", scheduler.handle)
    _attempt(calls, "dead_letters", lambda: [f"{event.bucket}/{event.path}" for event in scheduler.dead_letters()])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aws_lambda, "fast_client", lambda *_, **__: accounts.handler)
        _attempt(calls, "shard", lambda: shard_run({"shard": SHARD}, FunctionContext()))
        _attempt(calls, "shard dead_letters", lambda: [f"{e.bucket}/{e.path}" for e in shard.dead_letters()])
        _attempt(calls, "tick", lambda: tick({}, FunctionContext()))
    return calls


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
    [("work", "x"), ("reports", "in/x"), (BUCKET, "jobs/.dead-letters/x"), (BUCKET, "jobs/x"), (BUCKET, "x")],
)
def test_the_application_cannot_write_targets_or_dead_letters(accounts: Accounts, bucket: str, key: str) -> None:
    """The application policy refuses a PutObject anywhere but on event names and the lease."""
    assert denied(lambda: accounts.application.put_object(Bucket=bucket, Key=key, Body=b"x"))


def test_the_application_holds_the_lease_to_move_an_event_near_its_time(
    accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    """With the application policy, reschedule() of an event within a run's reach takes and releases the lease."""
    scheduler = accounts.scheduler(accounts.application)
    key = scheduler.schedule(T0 + timedelta(minutes=2), "work", "in/report.json", "{}")
    requests = Requests.watch(accounts.application)
    caplog.set_level(logging.WARNING, logger="s3_scheduler")

    moved = scheduler.reschedule(key, T0 + timedelta(minutes=3))

    assert ("PutObject", f"{BUCKET}/jobs/.lease") in requests.succeeded
    assert ("DeleteObject", f"{BUCKET}/jobs/.lease") in requests.succeeded
    assert requests.denied == []
    assert accounts.keys(BUCKET) == [moved]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("s3_scheduler")] == []


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


def test_the_application_policy_is_enough_for_every_documented_call(
    accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    """Under the application policy each of its calls does its job, no request is refused and nothing is warned."""
    caplog.set_level(logging.WARNING, logger="s3_scheduler")

    calls = application_calls(accounts)

    assert calls.raised == []
    assert calls.requests.denied == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("s3_scheduler")] == []
    assert (calls.results["cancel"], calls.results["cancel again"], calls.results["sharded cancel"]) == (
        True,
        False,
        True,
    )
    assert (calls.results["cancel series"], calls.results["sharded cancel series"]) == (True, True)
    near_shard = shard_of("work", "in/near-sharded.json", SHARDS)
    assert ("PutObject", f"{BUCKET}/jobs/.lease") in calls.requests.succeeded
    assert ("PutObject", f"{BUCKET}/jobs/{near_shard}/.lease") in calls.requests.succeeded
    moved = [calls.results[f"{kind}reschedule {which}"] for kind in ("", "sharded ") for which in ("near", "far")]
    assert accounts.keys(BUCKET) == sorted(moved)
    assert all(key.startswith("jobs/|") for key in moved[:2])
    assert moved[2].startswith(f"jobs/{near_shard}/|")
    assert moved[3].startswith(f"jobs/{shard_of('work', 'in/far-sharded.json', SHARDS)}/|")


def test_the_handler_policy_is_enough_for_every_documented_call(
    accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    """Under the handler policy a run delivers, counts, dead-letters, holds the lease; only a foreign target fails."""
    caplog.set_level(logging.WARNING, logger="s3_scheduler")

    calls = handler_calls(accounts)

    report, shard, tick = calls.results["handle"], calls.results["shard"], calls.results["tick"]
    assert calls.raised == []
    assert calls.requests.denied == [ELSEWHERE_FAILS, SHARD_ELSEWHERE_FAILS]
    assert asked_to_grant(caplog) == []
    assert sorted(event.path for event in report.delivered) == ["in/a.json", "in/b.json"]
    assert [failure.event.path for failure in report.failed] == ["fail/y"]
    assert calls.results["dead_letters"] == ["elsewhere/x"]
    assert sorted(event["path"] for event in shard["delivered"]) == [f"in/a/{SHARD}.json", f"in/b/{SHARD}.json"]
    assert [failure["path"] for failure in shard["failed"]] == ["fail/z"]
    assert calls.results["shard dead_letters"] == ["elsewhere/x"]
    assert (tick["invoked"], tick["not_invoked"]) == ([SHARD], [])
    assert ("Invoke", FUNCTION_ARN) in calls.requests.succeeded
    assert ("GetObject", f"{BUCKET}/jobs/.lease") in calls.requests.succeeded
    assert ("GetObject", f"{BUCKET}/jobs/{SHARD}/.lease") in calls.requests.succeeded
    assert "jobs/.lease" not in accounts.keys(BUCKET)
    assert f"jobs/{SHARD}/.lease" not in accounts.keys(BUCKET)


ROLE_CALLS: dict[str, Callable[[Accounts], Calls]] = {
    "application": application_calls,
    "handler": handler_calls,
    "handler-recurring": lambda accounts: handler_calls(accounts, series=True),
}
REFUSED_WITH_EVERY_GRANT = {
    "application": set(),
    "handler": {ELSEWHERE_FAILS, SHARD_ELSEWHERE_FAILS},
    "handler-recurring": {ELSEWHERE_FAILS, SHARD_ELSEWHERE_FAILS},
}
EVERY_GRANT = [
    *grants("application"),
    *grants("handler"),
    *(w for w in grants("handler-recurring") if w.sid in RECURRING_SIDS),
]


@pytest.mark.parametrize(
    ("accounts", "without"),
    [(without, without) for without in EVERY_GRANT],
    ids=[f"{w.role}-{w.action}-{w.resource.rpartition(':')[2]}" for w in EVERY_GRANT],
    indirect=["accounts"],
)
def test_each_grant_of_the_documented_policies_is_needed(accounts: Accounts, without: Without) -> None:
    """Without any one action on any one resource of a documented policy, S3 refuses a request of that role's calls."""
    calls = ROLE_CALLS[without.role](accounts)

    assert set(calls.requests.denied) - REFUSED_WITH_EVERY_GRANT[without.role]


LEASE_ARN = f"arn:aws:s3:::{BUCKET}/jobs/.lease"


@pytest.mark.parametrize("accounts", [Without("handler", "TheRunLease", "s3:GetObject", LEASE_ARN)], indirect=True)
def test_a_handler_that_may_write_the_lease_but_not_read_it_delivers_warned_once(
    accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    """Without s3:GetObject on a lease left over, every run delivers; one line names the action and the key."""
    leftover_lease(accounts)
    scheduler = accounts.scheduler(accounts.handler, now=T0 + timedelta(seconds=1))
    caplog.set_level(logging.WARNING, logger="s3_scheduler")

    reports = []
    for i in range(2):
        accounts.scheduler(accounts.admin).schedule(T0, "work", f"in/{i}.json", "{}")
        reports.append(scheduler.handle())

    assert [len(report.delivered) for report in reports] == [1, 1]
    (line,) = [r.getMessage() for r in caplog.records if r.name.startswith("s3_scheduler")]
    assert "s3:GetObject" in line
    assert "'jobs/.lease'" in line


def test_only_the_lease_and_dead_letters_are_writable_in_the_schedule_by_the_handler() -> None:
    """No statement of the handler policy grants s3:PutObject on an event name or on the whole prefix."""
    writable = [
        resource
        for statement in policy("handler")["Statement"]
        if "s3:PutObject" in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
    ]

    for name in ("jobs/|2030-01-07|work|x", f"jobs/{SHARD}/|2030-01-07|work|x", "jobs/anything", "jobs/7/anything"):
        assert not any(iam_glob(resource, f"arn:aws:s3:::{BUCKET}/{name}") for resource in writable)


def _without_sids(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in statement.items() if key != "Sid"} for statement in statements]


def test_the_sam_role_is_the_handler_policy() -> None:
    """The SAM role's statements (its ShardsPolicy's and RecurringPolicy's included) are the documented
    handler policy's and recurring policy's, its target being the template's parameters and its function
    the one it invokes."""
    documented = _without_sids(policy("handler-recurring")["Statement"])
    sam = _without_sids(sam_handler_policy(recurring=True)["Statement"])
    target = {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::work/in/*"}
    (index,) = [
        i for i, s in enumerate(documented) if s["Resource"] == ["arn:aws:s3:::work/*", "arn:aws:s3:::reports/in/*"]
    ]

    assert sam[index] == target
    assert sam[:index] + sam[index + 1 :] == documented[:index] + documented[index + 1 :]


def test_the_zappa_role_is_the_handler_policy_and_its_logs() -> None:
    """The Zappa role policy holds the handler policy's statements (but those for shards: Zappa runs one
    handler), and beyond them only CloudWatch Logs actions."""
    documented = [s for s in policy("handler")["Statement"] if s["Sid"] not in SHARDING_SIDS]
    recurring = [
        {**s, "Resource": s["Resource"][0]}
        for s in policy("handler-recurring")["Statement"]
        if s["Sid"] in RECURRING_SIDS
    ]
    zappa = zappa_handler_policy(recurring=True)["Statement"]

    assert zappa[: len(documented)] == documented
    assert zappa[len(documented) : len(documented) + 2] == recurring
    documented += recurring
    assert all(action.startswith("logs:") for s in zappa[len(documented) :] for action in _as_list(s["Action"]))


def test_allows_evaluates_iam_wildcards_and_deny() -> None:
    """The evaluator the Lambda grant is judged by: an Allow whose action and resource match (wildcards,
    actions case-insensitive) allows; anything else, or a matching Deny, does not."""
    document = {
        "Statement": [
            {"Effect": "Allow", "Action": "lambda:Invoke*", "Resource": "arn:aws:lambda:*:function:a"},
            {"Effect": "Deny", "Action": "lambda:InvokeAsync", "Resource": "*"},
        ]
    }

    assert allows(document, "lambda:invokefunction", "arn:aws:lambda:eu-west-1:1:function:a")
    assert not allows(document, "lambda:InvokeFunction", "arn:aws:lambda:eu-west-1:1:function:ab")
    assert not allows(document, "lambda:InvokeFunction", "arn:aws:lambda:eu-west-1:1:function:a:live")
    assert not allows(document, "lambda:GetFunction", "arn:aws:lambda:eu-west-1:1:function:a")
    assert not allows(document, "lambda:InvokeAsync", "arn:aws:lambda:eu-west-1:1:function:a")


OTHER_FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:s3-scheduler-other"


@pytest.mark.parametrize("accounts", ["docs", "sam"], indirect=True)
def test_the_tick_may_invoke_the_function_itself_and_nothing_else(accounts: Accounts) -> None:
    """With the documented and the SAM role, the Lambda tick's invocation of its own function for each
    shard is allowed; run as another function (the same role on it), every invocation is refused."""
    Scheduler(BUCKET, "jobs", s3_client=accounts.admin, shards=4).schedule(T0, "work", "in/x", "{}")
    requests = Requests()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aws_lambda, "fast_client", lambda *_, **__: accounts.handler)
        own = lambda_handler(accounts, requests)({}, FunctionContext())
        other = lambda_handler(accounts, requests)({}, FunctionContext(OTHER_FUNCTION))

    assert own["not_invoked"] == other["invoked"] == []
    assert own["invoked"] == other["not_invoked"] != []
    assert requests.succeeded == [("Invoke", FUNCTION_ARN)] * len(own["invoked"])
    assert requests.denied == [("Invoke", OTHER_FUNCTION)] * len(own["invoked"])
    for document in (accounts.handler_policy, policy("handler")):
        assert not allows(document, "lambda:InvokeFunction", OTHER_FUNCTION)
        assert not allows(document, "lambda:InvokeFunction", f"{FUNCTION_ARN}-2")
        assert not allows(document, "lambda:InvokeFunction", "*")


INVOKE_GRANT = Without("handler", "InvokeItselfForEachShard", "lambda:InvokeFunction", FUNCTION_ARN)


@pytest.mark.parametrize("accounts", [INVOKE_GRANT], indirect=True)
def test_without_the_invoke_grant_the_tick_invokes_no_shard(
    accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    """Without lambda:InvokeFunction on itself, each shard's invocation is refused: logged as an error and
    counted, and the tick still delivers the unsharded prefix."""
    Scheduler(BUCKET, "jobs", s3_client=accounts.admin, shards=4).schedule(T0, "work", "in/x", "{}")
    before = accounts.scheduler(accounts.admin).schedule(T0, "work", "in/before-sharding", "{}")
    requests = Requests()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aws_lambda, "fast_client", lambda *_, **__: accounts.handler)
        result = lambda_handler(accounts, requests)({}, FunctionContext())

    assert (result["invoked"], len(result["not_invoked"])) == ([], 1)
    assert requests.denied == [("Invoke", FUNCTION_ARN)]
    assert [e["key"] for e in result["unsharded"]["delivered"]] == [before]
    assert [r.levelno for r in caplog.records if "Could not invoke" in r.getMessage()] == [logging.ERROR]


@pytest.mark.parametrize("accounts", ["docs-recurring", "sam-recurring", "zappa-recurring"], indirect=True)
def test_with_the_recurring_grants_the_handler_delivers_and_follows_a_series(
    accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    """With docs/iam/handler-recurring-policy.json added (SAM's RecurringEvents, Zappa's role as shipped),
    a run delivers a due occurrence of a series, writes the next one and its marker, and removes the
    delivered one and its marker; nothing is refused or warned."""
    caplog.set_level(logging.WARNING, logger="s3_scheduler")
    key = accounts.scheduler(accounts.admin).schedule(T0, "work", "in/daily.json", "{}", repeat="FREQ=DAILY")
    requests = Requests.watch(accounts.handler)

    report = accounts.scheduler(accounts.handler, now=T0 + timedelta(seconds=1)).handle()

    assert [event.key for event in report.delivered] == [key]
    assert requests.denied == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("s3_scheduler")] == []
    (pending,) = list(accounts.scheduler(accounts.admin).pending())
    assert pending.when == T0 + timedelta(days=1)
    assert [k for k in accounts.keys(BUCKET) if "/.series/" in k] == [f"jobs/.series/{pending.key[len('jobs/|') :]}"]


@pytest.mark.parametrize("accounts", ["docs", "sam"], indirect=True)
def test_without_the_recurring_grants_a_series_is_not_delivered_twice(accounts: Accounts) -> None:
    """With the base handler policy (SAM with RecurringEvents "false"), a due occurrence of a series
    fails before its delivery (its next marker is refused): the target is not written, the occurrence
    stays pending and the failure names the refused request."""
    key = accounts.scheduler(accounts.admin).schedule(T0, "work", "in/daily.json", "{}", repeat="FREQ=DAILY")

    report = accounts.scheduler(accounts.handler, now=T0 + timedelta(seconds=1)).handle()

    assert [failure.event.key for failure in report.failed] == [key]
    assert "AccessDenied" in str(report.failed[0].error)
    assert accounts.keys("work") == []
    assert [event.key for event in accounts.scheduler(accounts.admin).pending()] == [key]
