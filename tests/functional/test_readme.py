"""The README tells the truth: its Usage snippets run in order, and every test it cites exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.index("\n## ", start + 1)
    return README[start:end]


def test_readme_usage_runs_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Python snippet of README's Usage section runs, in order, as one script against moto."""
    blocks = re.findall(r"```python\n(.*?)```", section("Usage"), flags=re.DOTALL)
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8 a photo")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}

    with mock_aws():
        client = boto3.client("s3")
        for bucket in ("my-schedule-bucket", "work"):
            client.create_bucket(Bucket=bucket)
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)

        pending = [e.path for e in namespace["scheduler"].pending()]

    assert len(blocks) >= 8
    assert namespace["key"].startswith("jobs/|2030-01-07%2014%3A05%3A00")
    assert len(namespace["keys"]) == 60
    assert namespace["found"].ok
    assert namespace["found"].events == 60
    assert "in/report.json" not in pending  # rescheduled, then cancelled
    assert "in/photo.jpg" in pending


def test_readme_shards_snippet_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The Python snippet of README's Shards section runs against moto and prints what it says."""
    [block] = re.findall(r"```python\n(.*?)```", section("Shards: more than one handler"), flags=re.DOTALL)
    namespace: dict[str, Any] = {}
    exec("from datetime import timedelta\nfrom s3_scheduler import Scheduler\n", namespace)

    with mock_aws():
        client = boto3.client("s3")
        for bucket in ("my-schedule-bucket", "work"):
            client.create_bucket(Bucket=bucket)
        exec(compile(block, "README.md", "exec"), namespace)
        delivered = client.get_object(Bucket="work", Key="in/report.json")["Body"].read()

    assert namespace["key"].startswith("jobs/3/|")
    assert delivered == b"{}"
    assert capsys.readouterr().out == "1 ['3']\n"


def test_every_test_the_readme_cites_exists() -> None:
    """Each test named in the README is defined somewhere in tests/."""
    cited = set(re.findall(r"`(test_[a-z0-9_]+?)\*?`", README))
    defined = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("*.py"))

    missing = sorted(name for name in cited if f"def {name}" not in defined)

    assert missing == []
