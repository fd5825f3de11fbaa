"""Inputs a test needs from outside the package: skip on a developer machine that lacks them, fail where they must be.

CI has ``../shared`` (the real sample data and the research specs) beside the checkout and installs Chromium, so a
test that would silently skip there is a failure instead: a green CI cannot come from tests that did not run.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(available: bool, what: str, ci_only: bool = False) -> None:
    """Skip the test with ``what`` as the reason when the input is missing, unless it must be there: under CI, or,
    unless ``ci_only``, whenever ``../shared`` is present (then a missing piece of it is a real error)."""
    if available:
        return
    if in_ci() or (not ci_only and SHARED.is_dir()):
        pytest.fail(f"required test input missing: {what}", pytrace=False)
    pytest.skip(what)
