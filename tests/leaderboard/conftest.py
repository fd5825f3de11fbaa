"""Records for the leaderboard tests: one with a protocol hash valid under the current seg-aug definition."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bench.store import validate_record, with_provenance


def base_record(**over: Any) -> dict[str, Any]:
    record = {
        "schema_version": 1,
        "run_id": "seg-aug__classic-aug__derm-mini__mini__s0__00000000",
        "created": "2026-11-23T10:00:00Z",
        "task": {"id": "seg-aug", "version": 1},
        "dataset": {"id": "derm-mini", "splits": {"train": "b" * 64, "val": "c" * 64, "test": "d" * 64}},
        "method": {"id": "classic-aug", "version": "1", "target": "baselines.classic_aug:ClassicAug"},
        "profile": "mini",
        "seed": 0,
        "config": {"task": {}, "method": {}},
        "protocol_hash": "0" * 64,
        "metrics": {"dice": 0.81, "iou": 0.70},
        "metric_info": {"dice": {"higher_is_better": True}, "iou": {"higher_is_better": True}},
        "per_model": {"unet": {"dice": 0.80, "iou": 0.69}, "attention-unet": {"dice": 0.82, "iou": 0.71}},
        "comparisons": {"reference": "real-only", "paired_ttest": {"dice": {"t": 1.0, "p": 0.3, "n": 600, "mean_diff": 0.01}}},
        "n": {"real_train": 200, "generated": 400, "test": 300},
        "artifacts": {},
        "timings": {"fit": 0.1, "generate": 3.2, "evaluate": 120.0},
        "peak_memory_mb": {"fit": 700.0},
        "environment": {"python": "3.11.9", "device": "cpu", "packages": {"torch": "2.14.1"}, "git_commit": None},
    }
    record.update(over)
    return record


@pytest.fixture(scope="session")
def seg_mini_record() -> dict[str, Any]:
    """A hand-made mini seg-aug record whose protocol hash the runner recomputes to the same value."""
    from bench import config as cfg
    from bench.runner import RunConfig, expected_split_checksums, recompute_protocol_hash, resolve

    resolved = resolve(RunConfig(task="seg-aug", method="classic-aug", profile="mini"))
    task_config = json.loads(json.dumps(cfg.to_dict(resolved.task_config)))
    record = base_record(config={"task": task_config, "method": json.loads(json.dumps(cfg.to_dict(resolved.method_config)))})
    record["dataset"]["splits"] = expected_split_checksums(resolved.task_config, ("train", "val", "test"))
    record["protocol_hash"] = recompute_protocol_hash(record)
    _add_consistent_scores(record, resolved.task_config)
    validate_record(record)
    return record


#: run id -> per-sample CSV text of the hand-made records; `dump` writes it beside the record.
SCORES: dict[str, str] = {}


def _add_consistent_scores(record: dict[str, Any], task_config: Any) -> None:
    """Per-sample scores on the protocol's test ids, with headline, per-model values and comparisons computed from
    them as seg-aug computes them (what `bench submit` recomputes)."""
    import pandas as pd

    from bench.metrics.stats import paired_ttest, relative_gain
    from bench.registry import DATASETS

    ds = DATASETS.get(task_config.dataset)(root=None, image_size=task_config.image_size, **task_config.dataset_options)
    ids = ds.split_ids("test")
    rng = np.random.default_rng(0)
    rows, arms = [], {"augmented": {}, "real-only": {}}
    for k, model in enumerate(("unet", "attention-unet")):
        base = np.clip(rng.normal(0.8, 0.1, len(ids)), 0, 1)
        for arm, shift in (("real-only", 0.0), ("augmented", 0.02 + 0.01 * k)):
            dice = np.clip(base + shift + rng.normal(0, 0.01, len(ids)), 0, 1)
            iou = dice / (2 - dice)
            arms[arm][model] = {"dice": dice, "iou": iou}
            rows += [{"model": model, "arm": arm, "id": i, "dice": float(d), "iou": float(j)} for i, d, j in zip(ids, dice, iou)]
    mean = {arm: {m: {c: float(np.mean(v[c])) for c in ("dice", "iou")} for m, v in by.items()} for arm, by in arms.items()}
    record["per_model"] = mean["augmented"]
    record["metrics"] = {c: float(np.mean([v[c] for v in mean["augmented"].values()])) for c in ("dice", "iou")}
    record["comparisons"] = {
        "reference": "real-only", "reference_per_model": mean["real-only"],
        "relative_gain": {c: relative_gain({m: v[c] for m, v in mean["augmented"].items()},
                                           {m: v[c] for m, v in mean["real-only"].items()}) for c in ("dice", "iou")},
        "paired_ttest": {c: paired_ttest(np.concatenate([arms["augmented"][m][c] for m in arms["augmented"]]),
                                         np.concatenate([arms["real-only"][m][c] for m in arms["real-only"]]))
                         for c in ("dice", "iou")}}
    record["per_sample_file"] = f"{record['run_id']}.scores.csv"
    SCORES[record["run_id"]] = pd.DataFrame(rows).to_csv(index=False)


@pytest.fixture
def valid_record(seg_mini_record) -> dict[str, Any]:
    return copy.deepcopy(seg_mini_record)


def dump(path: Path, record: dict[str, Any]) -> Path:
    """Write the per-sample scores of a hand-made record that names them, then the record with its content hashes
    (`bench run` writes both; a forged record is resealed, since anyone can recompute the hashes)."""
    name = record.get("per_sample_file")
    if isinstance(name, str) and record.get("run_id") in SCORES and not (path.parent / name).exists():
        (path.parent / name).write_text(SCORES[record["run_id"]], encoding="utf-8")
    path.write_text(json.dumps(with_provenance(record, path.parent)), encoding="utf-8")
    return path


@pytest.fixture
def dump_record():
    return dump


@pytest.fixture
def record_template():
    """``record_template(**overrides)``: a schema-valid mini seg-aug record (protocol hash not checked)."""
    return base_record


def rec(run: str, method: str, seed: int, dice: float, protocol: str = "a" * 64, **over):
    return base_record(run_id=run, method={"id": method, "version": "1"}, seed=seed, protocol_hash=protocol,
                       metrics={"dice": dice, "iou": dice - 0.1}, **over)


def png(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (16, 32, 3), dtype=np.uint8)).save(path)


def make_site_records(folder: Path) -> Path:
    """Five records (two protocols of seg-aug, one lowcontrast with per-sample ITA scores) and their artefacts."""
    folder.mkdir(parents=True)
    png(folder / "grid.png")
    (folder / "fake.png").write_text("not a png")
    records = [
        rec("r-a-0", "classic-aug", 0, 0.80, artifacts={"samples": "grid.png", "fake": "fake.png", "escape": "../outside.png"}),
        rec("r-a-1", "classic-aug", 1, 0.84),
        rec("r-b-0", "real-only", 0, 0.78),
        rec("r-c-0", "real-only", 0, 0.50, protocol="b" * 64, created="2026-11-24T08:00:00Z"),
    ]
    rng = np.random.default_rng(0)
    ita = rng.uniform(-20, 80, 60)
    iou = np.clip(0.3 + ita / 100 + rng.normal(0, 0.05, 60), 0, 1)
    lines = ["model,arm,id,ita_difference,iou"] + [f"unet,real-only,{i},{a:.3f},{j:.3f}" for i, (a, j) in enumerate(zip(ita, iou))]
    (folder / "lc.scores.csv").write_text("\n".join(lines) + "\n")
    records.append(base_record(run_id="r-lc-0", task={"id": "lowcontrast", "version": 1}, per_sample_file="lc.scores.csv",
                               metrics={"iou": 0.7, "iou[S_0.6]": 0.4}))
    for r in records:
        (folder / f"{r['run_id']}.json").write_text(json.dumps(r))
    png(folder.parent / "outside.png", 1)
    return folder


@pytest.fixture
def site_records():
    """``site_records(folder)`` writes the records of `make_site_records` and returns the folder."""
    return make_site_records
