"""The repo's quality gates, run as part of the test suite so one command checks all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ["meshlib", "controlplane"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize("target", [[*SHIPPED, "tests", "bench", "examples"]])
def test_ruff_lint_is_clean(target: list[str]) -> None:
    result = _run("ruff", "check", *target)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = _run("ruff", "format", "--check", *SHIPPED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = _run("mypy", "--strict", *SHIPPED)
    assert result.returncode == 0, result.stdout + result.stderr
