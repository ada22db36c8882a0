from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent

setup(
    name="s3-scheduler",
    version="0.1.0",
    description="One-time events on plain S3: a fast, faithful drop-in for s3-scheduler 0.0.3",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["s3_scheduler", "s3_scheduler.*"]),
    package_data={"s3_scheduler": ["py.typed"]},
    python_requires=">=3.9",
    # boto3 1.35.69 is the first whose S3 model sends If-Match on PutObject and DeleteObject
    # (the lease, cancel(), the conditional deletes). .ci/oldest.txt runs the tests at each floor.
    install_requires=["boto3>=1.35.69", "python-dateutil>=2.8"],
    extras_require={
        "test": [
            "pytest>=7",
            "pytest-xdist>=3",  # the README's pytest runs on every core (-n auto in pyproject.toml)
            # 5.1.22: honours If-Match on PutObject, which the lease's tests need.
            "moto[s3,server]>=5.1.22",
            "hypothesis>=6.89",
            "cfn-lint>=1.36",  # cfnlint.api.lint_file
            "aws-sam-translator>=1.97",  # what cfn-lint 1.36 needs
        ],
        # An S3-only moto server: moto[server] would pull every AWS service's dependencies.
        "local": ["moto[s3]>=5", "flask", "flask-cors"],
        "bench": ["moto[s3]>=5", "flask", "flask-cors", "matplotlib>=3.5"],
        "lint": ["ruff>=0.6", "mypy>=1.10", "types-python-dateutil"],
        # The manual (mkdocs.yml), built by .ci/run with `mkdocs build --strict`. mkdocs 1.6 is the
        # first to check anchors and absolute links; mkdocstrings 0.26 fails with the mkdocs-autorefs
        # pip picks today, 0.29 builds (tried with mkdocs 1.6.0 and mkdocs-material 9.5.0).
        "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.29"],
    },
    entry_points={"console_scripts": ["s3-scheduler = s3_scheduler.cli:entry_point"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "License :: OSI Approved :: MIT License",
        "Operating System :: OS Independent",
        "Typing :: Typed",
    ],
)
