"""Hand-made result records for the table tests (valid against the record schema)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.store import validate_record


def make_record(task: str = "seg-aug", dataset: str = "derm-mini", method: str = "real-only", profile: str = "mini",
                seed: int = 0, metrics: dict[str, float] | None = None, per_model: dict[str, dict[str, float]] | None = None,
                n: dict[str, int] | None = None, protocol: str = "a" * 64, created: str = "2026-11-23T10:00:00Z",
                task_config: dict[str, Any] | None = None, method_config: dict[str, Any] | None = None,
                comparisons: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, Any]:
    """A schema-valid record; ``run_id`` defaults to the runner's naming pattern."""
    metrics = metrics if metrics is not None else {"dice": 0.8, "iou": 0.7}
    record = {
        "schema_version": 1,
        "run_id": run_id or f"{task}__{method}__{dataset}__{profile}__s{seed}__{protocol[:8]}",
        "created": created,
        "task": {"id": task, "version": 1},
        "dataset": {"id": dataset, "splits": {"train": "b" * 64, "test": "c" * 64}},
        "method": {"id": method, "version": "1"},
        "profile": profile,
        "seed": seed,
        "config": {"task": task_config or {}, "method": method_config or {}},
        "protocol_hash": protocol,
        "metrics": metrics,
        "metric_info": {k: {"higher_is_better": True} for k in metrics},
        "per_model": per_model or {},
        "n": n or {"real_train": 200, "generated": 400, "test": 300},
        "timings": {"fit": 1.0},
        "peak_memory_mb": {"fit": 100.0},
        "environment": {"python": "3.11", "device": "cpu", "packages": {}},
    }
    if comparisons is not None:
        record["comparisons"] = comparisons
    validate_record(record)
    return record


def write_records(folder: Path, records: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for rec in records:
        (folder / f"{rec['run_id']}.json").write_text(json.dumps(rec))
    return folder


@pytest.fixture
def record_factory():
    return make_record


@pytest.fixture
def write_record_dir():
    return write_records
