"""Install and deploy from the checkout: the wheel installs in a fresh virtual environment
and brings the command and the Lambda handler; SAM's build step installs the checkout
from examples/sam/src/requirements.txt.

Slow (a fresh virtual environment, a wheel build, boto3 from the package index: about
30 s), so they are marked ``slow``: they run with ``S3_SCHEDULER_FULL_CAMPAIGNS=1``, as
.ci/run sets it.
They work on a copy of the checkout, since building a wheel writes ``build/`` and
``*.egg-info`` into the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import s3_scheduler

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

SAM_BUILD = """
import os, sys
from aws_lambda_builders.builder import LambdaBuilder

artifacts, scratch = sys.argv[1:]
LambdaBuilder(language="python", dependency_manager="pip", application_framework=None).build(
    "src", artifacts, scratch, "src/requirements.txt",
    runtime="python%d.%d" % sys.version_info[:2],
    executable_search_paths=[os.path.dirname(sys.executable)],
)
"""


@dataclass
class Venv:
    """A fresh virtual environment and a copy of the checkout beside it."""

    path: Path
    checkout: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def run(self, *args: str | Path, cwd: Path, timeout: float = 300) -> str:
        """Run ``args`` (a program of the environment, or ``python`` ...) and return its stdout; fail on an error."""
        program = self.path / "bin" / str(args[0])
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        result = subprocess.run(
            [str(program), *map(str, args[1:])],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """``python -m venv`` in a temporary folder, and the working tree copied without its caches."""
    base = tmp_path_factory.mktemp("packaging")
    checkout = base / "checkout"
    shutil.copytree(
        ROOT,
        checkout,
        ignore=shutil.ignore_patterns(
            ".git", "__pycache__", ".venv", ".tox", "build", "dist", "*.egg-info", ".*_cache", ".hypothesis"
        ),
    )
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, timeout=120)
    return Venv(base / "venv", checkout)


@pytest.fixture(scope="module")
def wheel(venv: Venv) -> Path:
    """The wheel ``pip wheel --no-deps -w dist .`` builds in the checkout, as the README says."""
    venv.run("python", "-m", "pip", "wheel", "--no-deps", "-w", "dist", ".", cwd=venv.checkout)
    (built,) = (venv.checkout / "dist").glob("s3_scheduler-*.whl")
    return built


def test_the_wheel_holds_the_package_and_its_metadata(wheel: Path) -> None:
    """The wheel is s3-scheduler at the package's version, with py.typed, the command, and boto3 as a dependency."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(f"s3_scheduler-{s3_scheduler.__version__}.dist-info/METADATA").decode()
        entry_points = archive.read(f"s3_scheduler-{s3_scheduler.__version__}.dist-info/entry_points.txt").decode()

    assert {"s3_scheduler/aws_lambda.py", "s3_scheduler/metrics.py", "s3_scheduler/py.typed"} <= set(names)
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/", "examples/"))]
    assert "Name: s3-scheduler\n" in metadata
    assert f"Version: {s3_scheduler.__version__}\n" in metadata
    assert "Requires-Dist: boto3" in metadata
    assert "s3-scheduler = s3_scheduler.cli:entry_point" in entry_points


def test_the_installed_wheel_brings_the_handler_and_the_command(venv: Venv, wheel: Path, tmp_path: Path) -> None:
    """pip install of the wheel in a fresh environment: the Lambda handler imports and s3-scheduler --version runs."""
    venv.run("python", "-m", "pip", "install", wheel, cwd=tmp_path)

    script = "import s3_scheduler.aws_lambda as h; print(h.__file__); print(callable(h.handler))"
    where = venv.run("python", "-c", script, cwd=tmp_path)
    version = venv.run("s3-scheduler", "--version", cwd=tmp_path, timeout=60)

    assert where.splitlines()[0].startswith(str(venv.path))
    assert where.splitlines()[1] == "True"
    assert version.strip() == f"s3-scheduler {s3_scheduler.__version__}"


def test_sam_builds_the_function_from_the_checkout(venv: Venv, tmp_path: Path) -> None:
    """SAM's Python build (aws-lambda-builders), run in examples/sam, installs the checkout and its dependencies."""
    venv.run("python", "-m", "pip", "install", "aws-lambda-builders", cwd=tmp_path)
    artifacts = tmp_path / "artifacts"

    venv.run("python", "-c", SAM_BUILD, artifacts, tmp_path / "scratch", cwd=venv.checkout / "examples" / "sam")

    assert (artifacts / "s3_scheduler" / "aws_lambda.py").is_file()
    assert (artifacts / "s3_scheduler" / "metrics.py").is_file()
    assert (artifacts / "boto3").is_dir()
    assert (artifacts / "dateutil").is_dir()
