"""The deployment examples: the SAM template passes cfn-lint, the Zappa settings use the ready handler."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def lint(path: Path) -> list[str]:
    from cfnlint.api import lint_file

    return [str(match) for match in lint_file(path)]


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


@pytest.mark.parametrize("setting", ["S3_SCHEDULER_BUCKET", "S3_SCHEDULER_PREFIX", "S3_SCHEDULER_ALLOWED_TARGETS"])
def test_the_zappa_settings_use_the_ready_handler(setting: str) -> None:
    """zappa_settings.json: one event on the ready handler every minute, configured by environment."""
    stage = json.loads((EXAMPLES / "zappa" / "zappa_settings.json").read_text())["production"]

    assert stage["events"] == [{"function": "s3_scheduler.aws_lambda.handler", "expression": "rate(1 minute)"}]
    assert setting in stage["environment_variables"]
