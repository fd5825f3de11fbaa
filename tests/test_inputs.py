"""tests/inputs.require: a missing input skips on a developer machine, fails in CI or wherever ../shared is."""
from __future__ import annotations

import pytest

import inputs


@pytest.mark.parametrize("ci,shared_present,ci_only,outcome", [
    ("", False, False, pytest.skip.Exception),
    ("true", False, False, pytest.fail.Exception),
    ("", True, False, pytest.fail.Exception),
    ("", True, True, pytest.skip.Exception),   # Chromium: required under CI only
    ("1", True, True, pytest.fail.Exception),
])
def test_a_missing_input_skips_only_where_it_may_be_missing(tmp_path, monkeypatch, ci, shared_present, ci_only,
                                                           outcome):
    monkeypatch.setenv("CI", ci)
    shared = tmp_path / "shared"
    if shared_present:
        shared.mkdir()
    monkeypatch.setattr(inputs, "SHARED", shared)
    with pytest.raises(outcome, match="the thing"):
        inputs.require(False, "the thing", ci_only=ci_only)
    inputs.require(True, "the thing", ci_only=ci_only)  # a present input never skips nor fails
