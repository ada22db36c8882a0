"""The manual matches the code: the CLI reference is what the parser prints, the
configuration table names every option and variable with its default, the API
reference covers every public name, and ``mkdocs build --strict`` passes."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from s3_scheduler import Scheduler
from s3_scheduler.cli.parser import build_parser
from s3_scheduler.settings import Environment

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "guides" / "configuration.md"
REGENERATE = "python scripts/gen_cli_reference.py"
VARIABLE = re.compile(r"S3_SCHEDULER_[A-Z_]+")
CODE = re.compile(r"`([^`]+)`")


def load_script(name: str) -> ModuleType:
    """Import ``scripts/{name}.py``, which is not part of the package."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def configuration_rows() -> list[dict[str, str]]:
    """Return the rows of configuration.md's table, each a dict from column title to cell text."""
    lines = CONFIGURATION.read_text(encoding="utf-8").splitlines()
    header, *rows = [split_row(line) for line in lines if line.startswith("|") and not line.startswith("|-")]
    assert all(len(row) == len(header) for row in rows), "a row of the table has a stray '|'"
    return [dict(zip(header, row)) for row in rows]


def split_row(line: str) -> list[str]:
    """Return the cells of the Markdown table row ``line``; a ``|`` inside a code span is text."""
    cells, cell, in_code = [], "", False
    for char in line.strip()[1:-1]:
        if char == "|" and not in_code:
            cells.append(cell.strip())
            cell = ""
            continue
        in_code ^= char == "`"
        cell += char
    return [*cells, cell.strip()]


def code_of(cell: str) -> str | None:
    """Return the text of ``cell``'s first code span, or None when it has none."""
    found = CODE.search(cell)
    return found.group(1) if found else None


def variables_read_by_settings() -> set[str]:
    """Return every ``S3_SCHEDULER_*`` name that s3_scheduler/settings.py holds as a string of its code."""
    tree = ast.parse((ROOT / "s3_scheduler" / "settings.py").read_text(encoding="utf-8"))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and VARIABLE.fullmatch(node.value)
    }


def as_written(value: Any) -> str:
    """Return a variable's default as the table writes it: yes/no, a number, or text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# the command-line reference --------------------------------------------------------------


@pytest.mark.skipif(
    not (3, 10) <= sys.version_info[:2] <= (3, 13),
    reason="the page holds argparse's help as Python 3.10 to 3.13 lay it out (3.9 heads it 'optional arguments')",
)
def test_cli_reference_is_what_the_parser_prints() -> None:
    """docs/reference/cli.md is exactly what scripts/gen_cli_reference.py makes from today's parser."""
    generator = load_script("gen_cli_reference")

    page = generator.render()

    assert (DOCS / "reference" / "cli.md").read_text(encoding="utf-8") == page, (
        f"docs/reference/cli.md is out of date: run `{REGENERATE}` and commit the page"
    )


def test_cli_reference_has_every_command() -> None:
    """The generated page holds the help of the command and of each command of COMMANDS, in order."""
    from s3_scheduler.cli.commands import COMMANDS

    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")

    titles = re.findall(r"^## `(s3-scheduler[a-z -]*)`$", page, flags=re.MULTILINE)
    assert titles == ["s3-scheduler", *(f"s3-scheduler {name}" for name in COMMANDS)], (
        f"run `{REGENERATE}` and commit the page"
    )


# the configuration table ------------------------------------------------------------------


def test_configuration_names_every_scheduler_option_and_no_other() -> None:
    """The table's first column is exactly the arguments of Scheduler.__init__."""
    parameters = set(inspect.signature(Scheduler.__init__).parameters) - {"self"}

    named = {code_of(row["`Scheduler` option"]) for row in configuration_rows()} - {None}

    assert named == parameters


def test_configuration_defaults_are_the_schedulers() -> None:
    """Each option's default in the table is the default of Scheduler.__init__ ('required' for none)."""
    parameters = inspect.signature(Scheduler.__init__).parameters
    rows = [row for row in configuration_rows() if code_of(row["`Scheduler` option"])]

    for row in rows:
        parameter = parameters[str(code_of(row["`Scheduler` option"]))]
        written = row["default"]
        if parameter.default is inspect.Parameter.empty:
            assert written == "required", parameter.name
        else:
            assert eval(str(code_of(written)), {"timedelta": timedelta}) == parameter.default, parameter.name


def test_configuration_names_every_variable_and_no_other() -> None:
    """The table names exactly the S3_SCHEDULER_* variables that s3_scheduler/settings.py reads."""
    read = variables_read_by_settings()

    named = {name for row in configuration_rows() for name in VARIABLE.findall(row["variable"])}

    assert len(read) >= 13
    assert named == read


def test_configuration_variable_defaults_are_the_environments() -> None:
    """Each variable's 'unset' cell is what Environment reads from an empty environment:
    the value itself in code, or words (required, off, ...) where it reads None."""
    rows = [row for row in configuration_rows() if VARIABLE.fullmatch(code_of(row["variable"]) or "")]

    for row in rows:
        name = str(code_of(row["variable"]))
        value = getattr(Environment({}), name[len("S3_SCHEDULER_") :].lower())()
        written = code_of(row["unset"])
        assert (None if value is None else as_written(value)) == written, name


def test_configuration_command_line_options_fall_back_on_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each global option's variable, as its --help says it, is the one the table gives it, and a
    variable the table gives no option is named by no option's help."""
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: argparse would break --no-legacy-offsets at a '-'
    text = " ".join(build_parser().format_help().split("global options", 1)[1].split())
    from_help = {
        re.findall(r"(--[a-z-]+)", text[: found.start()])[-1]: found.group(1)
        for found in re.finditer(r"\(env ([A-Z0-9_]+)", text)
    }

    from_table = {
        str(code_of(row["command-line option"])): str(code_of(row["variable"]))
        for row in configuration_rows()
        if code_of(row["command-line option"])
    }

    assert len(from_help) >= 8
    assert from_table == from_help


def test_configuration_python_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python example of configuration.md runs against moto and makes the scheduler it describes."""
    [block] = re.findall(r"```python\n(.*?)```", CONFIGURATION.read_text(encoding="utf-8"), flags=re.DOTALL)
    namespace: dict[str, Any] = {}

    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="my-schedule-bucket")
        exec(compile(block, str(CONFIGURATION), "exec"), namespace)

    scheduler = namespace["scheduler"]
    assert (scheduler.bucket, scheduler.prefix) == ("my-schedule-bucket", "jobs/|")


# the API reference and the build ----------------------------------------------------------


def test_api_reference_covers_every_public_name() -> None:
    """docs/reference/api.md renders every name of s3_scheduler.__all__."""
    import s3_scheduler

    page = (DOCS / "reference" / "api.md").read_text(encoding="utf-8")

    missing = [name for name in s3_scheduler.__all__ if f"\n::: s3_scheduler.{name}\n" not in page]
    assert missing == []


def test_griffe_extension_fences_doctest_and_literal_blocks() -> None:
    """The API reference's docstring filter turns a doctest block and a ``::`` literal block into
    fenced code, and leaves the prose as written."""
    pytest.importorskip("griffe", reason="griffe comes with the docs extra: pip install -e '.[docs]'")
    rest = load_script("griffe_rest")
    text = "Stored under::\n\n    {path}/|{when}\n\nThen:\n\n>>> 1 + 1\n2\n\nThe end, `name`."

    markdown = rest.rest_to_markdown(text)

    assert markdown == (
        "Stored under:\n\n```\n{path}/|{when}\n```\n\nThen:\n\n```pycon\n>>> 1 + 1\n2\n```\n\nThe end, `name`."
    )


def test_mkdocs_build_strict_passes(tmp_path: Path) -> None:
    """``mkdocs build --strict`` builds the manual: no broken link, no missing page, no unresolved reference."""
    pytest.importorskip("mkdocs", reason="mkdocs comes with the docs extra (pip install -e '.[docs]'); CI builds it")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONDONTWRITEBYTECODE": "1"}

    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "reference" / "api" / "index.html").exists()
