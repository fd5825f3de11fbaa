"""Shared fixtures: quiet, single-threaded, seeded; paths to ../shared/data when present."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/helpers.py: test-only generators

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def shared_data() -> Path:
    from inputs import require

    require(SHARED_DATA.is_dir(), f"real sample data not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def one_thread():
    """Every test starts single-threaded: `run_one` sets torch's thread count (default min(2, cores)), and CPU
    results (pinned values, Otsu thresholds of attention maps) are repeatable only at a fixed thread count."""
    torch.set_num_threads(1)
    yield
