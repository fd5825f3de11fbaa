"""baselines/real_lowcontrast: returns the real pair a condition names."""
from __future__ import annotations

import pytest
import torch

from baselines.real_lowcontrast import RealLowContrast
from bench.interface import Condition, RunContext


def test_returns_the_condition_pair_unchanged() -> None:
    img, mask = torch.rand(3, 8, 8), torch.rand(8, 8) > 0.5
    out = list(RealLowContrast().generate([Condition(mask=mask, reference=img, meta={"index": 3, "source_id": "x"})], RunContext()))
    assert len(out) == 1 and torch.equal(out[0].image, img) and torch.equal(out[0].mask, mask)
    assert out[0].meta["source_id"] == "x"
    with pytest.raises(ValueError, match="differ in size"):
        list(RealLowContrast().generate([Condition(mask=mask, reference=torch.rand(3, 4, 4), meta={"index": 0})], RunContext()))
