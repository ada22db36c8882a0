"""README.md and the manual in docs/ tell the truth: their Python examples run against moto,
every test they cite exists, and every link between them resolves.

The Python API guide (docs/guides/python-api.md) runs as one script, its blocks in order.
Every other ```python block of README.md and docs/ runs on its own, after the guide's first
block (which builds ``scheduler``), as the manual says. A block that cannot run alone is
marked with an HTML comment on the line before its fence, ``<!-- not run: REASON -->``.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from pathlib import Path
from typing import Any, NamedTuple

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
PYTHON_API = DOCS / "guides" / "python-api.md"
SCALING = DOCS / "guides" / "scaling.md"
BUCKETS = ("my-schedule-bucket", "work", "reports")
FENCE = re.compile(
    r"^(?:<!-- not run: (?P<reason>[^>]*?) -->\n)?```python\n(?P<code>.*?)^```$", re.DOTALL | re.MULTILINE
)


class Block(NamedTuple):
    """One ```python block of a page, and why it is not run (None: it is run)."""

    page: Path
    number: int
    code: str
    not_run: str | None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}#{self.number}"


def blocks(page: Path) -> list[Block]:
    """The ```python blocks of ``page``, in order."""
    text = page.read_text(encoding="utf-8")
    return [Block(page, n, m["code"], m["reason"]) for n, m in enumerate(FENCE.finditer(text), 1)]


def run(block: Block, namespace: dict[str, Any]) -> None:
    """Run ``block`` in ``namespace``, naming its page and number in a traceback."""
    exec(compile(block.code, block.name, "exec"), namespace)


def make_buckets() -> Any:
    client = boto3.client("s3")
    for bucket in BUCKETS:
        client.create_bucket(Bucket=bucket)
    return client


GUIDE = blocks(PYTHON_API)
[SHARDS] = blocks(SCALING)
[README_EXAMPLE] = blocks(README)
OTHERS = [b for page in PAGES if page not in (PYTHON_API, SCALING, README) for b in blocks(page)]


@pytest.fixture(autouse=True)
def _restore_the_package_logger() -> Any:
    """An example may set the package's log level (the logging guide does): put it back."""
    logger = logging.getLogger("s3_scheduler")
    level = logger.level
    yield
    logger.setLevel(level)


def test_the_python_api_guide_runs_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Python block of the Python API guide runs, in order, as one script against moto."""
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8 a photo")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}

    with mock_aws():
        make_buckets()
        for block in GUIDE:
            assert block.not_run is None, f"{block.name} is part of the guide's script: it must run"
            run(block, namespace)

        pending = [e.path for e in namespace["scheduler"].pending()]

    assert len(GUIDE) >= 8
    assert namespace["key"].startswith("jobs/|2030-01-07%2014%3A05%3A00")
    assert len(namespace["keys"]) == 60
    assert namespace["found"].ok
    assert namespace["found"].events == 60
    assert "in/report.json" not in pending  # rescheduled, then cancelled
    assert "in/photo.jpg" in pending


def test_the_shards_snippet_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The Python block of the Shards guide runs against moto and prints what its comment says."""
    namespace: dict[str, Any] = {}
    exec("from datetime import timedelta\nfrom s3_scheduler import Scheduler\n", namespace)

    with mock_aws():
        client = make_buckets()
        run(SHARDS, namespace)
        delivered = client.get_object(Bucket="work", Key="in/report.json")["Body"].read()

    assert namespace["key"].startswith("jobs/3/|")
    assert delivered == b"{}"
    assert capsys.readouterr().out == "1 ['3']\n"


def test_the_readme_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """README's example schedules, lists, cancels and handles against moto, and prints what its comments say."""
    namespace: dict[str, Any] = {}

    with mock_aws():
        client = make_buckets()
        run(README_EXAMPLE, namespace)
        delivered = client.get_object(Bucket="work", Key="in/now.json")["Body"].read()
        left = list(namespace["scheduler"].pending())

    listed, summary = capsys.readouterr().out.splitlines()
    assert listed.endswith("+00:00 s3://work/in/report.json")
    assert summary == "delivered=1 failed=0 skipped=0 deferred=0 vanished=0 rejected=0 dead_lettered=0 expired=0"
    assert delivered == b"{}"
    assert left == []  # cancelled, and delivered


def test_the_other_examples_are_found() -> None:
    """The examples outside the guide's script are collected, and each one not run says why."""
    pages = {block.page.relative_to(DOCS).as_posix() for block in OTHERS}

    assert {"guides/recurring.md", "guides/operations.md", "guides/aws-lambda.md"} <= pages
    assert all(block.not_run is None or block.not_run.strip() for block in OTHERS)


@pytest.mark.parametrize("block", [b for b in OTHERS if b.not_run is None], ids=lambda b: b.name)
def test_every_other_example_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each other Python block of README and docs runs against moto after the guide's first block, raising nothing."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}

    with mock_aws():
        make_buckets()
        run(GUIDE[0], namespace)
        run(block, namespace)


def test_every_test_the_readme_and_the_manual_cite_exists() -> None:
    """Each test named in README or in docs/ is defined somewhere in tests/."""
    cited = {
        name for page in PAGES for name in re.findall(r"`(test_[a-z0-9_]+?)\*?`", page.read_text(encoding="utf-8"))
    }
    defined = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("*.py"))

    missing = sorted(name for name in cited if f"def {name}" not in defined)

    assert len(cited) > 100
    assert missing == []


def slug(heading: str) -> str:
    """The anchor of a heading, as Python-Markdown's toc extension (MkDocs) makes it."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    """The anchors of the headings of ``page`` (outside code blocks)."""
    text = re.sub(r"^```.*?^```$", "", page.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)
    return {slug(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    """Each relative link of README and docs names a file that exists, and a heading of it when it has an anchor."""
    text = re.sub(r"^```.*?^```$", "", page.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)
    targets = re.findall(r"\]\(([^)\s]+)\)", text)

    broken = []
    for target in targets:
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
            broken.append(target)

    assert broken == []


def test_the_readme_is_a_front_page_with_the_commands_ci_runs() -> None:
    """README stays within 200 lines and keeps the demo and test commands that CI runs as written."""
    text = README.read_text(encoding="utf-8")

    assert len(text.splitlines()) <= 200
    assert '    pip install -e ".[local]" && s3-scheduler demo\n' in text
    assert '    pip install -e ".[test]" && pytest\n' in text
