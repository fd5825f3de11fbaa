"""Issue 24: a killed downstream training resumes from its last epoch in seg-aug, derm-cls and lowcontrast.

Each task's evaluation is interrupted inside one arm's training (the progress callback raises after a few epochs),
started again in the same folders (the kill comes after epoch 2's progress tick, before its checkpoint), and must end with exactly the scores of an uninterrupted evaluation, having
resumed (not restarted) the interrupted arm; the checkpoints are gone afterwards.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bench.interface import RunContext
from bench.runner import RunConfig, resolve


class Killed(Exception):
    pass


def _ctx(folder: Path, kill: str | None = None, after: int = 2) -> RunContext:
    def progress(desc: str, total: int | None = None):
        calls = {"n": 0}

        def advance(n: int = 1) -> None:
            calls["n"] += 1
            if kill and desc.startswith(kill) and calls["n"] > after:
                raise Killed(desc)
        return advance

    return RunContext(work_dir=folder / "eval", cache_dir=folder / "cache", progress=progress)


@pytest.mark.parametrize("task_id,sets,kill", [
    ("seg-aug", ["task.max_epochs=4", "task.patience=4", "task.transfer_dataset=null", "task.mask_lpips=false",
                 "task.grid_size=0", "task.dataset_options={sizes: {train: 16, val: 8, test: 8}}"], "augmented"),
    ("derm-cls", ["task.max_epochs=4", "task.patience=4", "task.transfer_dataset=null",
                  "task.dataset_options={sizes: {train: 60, val: 12, test: 12}}"], "real-only"),
    ("lowcontrast", ["task.max_epochs=4", "task.patience=4", "task.finetune_max_epochs=2", "task.quality=false",
                     "task.mask_lpips=false"], "pretrain"),
])
def test_a_killed_arm_resumes_from_its_last_epoch(tmp_path, caplog, task_id, sets, kill) -> None:
    task = resolve(RunConfig(task=task_id, method="real-only", profile="smoke", sets=sets)).task
    data = task.load(RunContext())
    train = data.splits["train"]
    synthetic = [train[i] for i in range(6)]
    clean = task.evaluate(data, synthetic, _ctx(tmp_path / "a"), "x")
    with pytest.raises(Killed):
        task.evaluate(data, synthetic, _ctx(tmp_path / "b", kill=kill), "x")
    saved = list((tmp_path / "b").rglob("*.pt")) + list((tmp_path / "b").rglob("*.ckpt"))
    assert saved, "no checkpoint was written before the kill"
    with caplog.at_level(logging.INFO, logger="bench.downstream.loop"):
        resumed = task.evaluate(data, synthetic, _ctx(tmp_path / "b"), "x")
    assert "resuming training at epoch 2" in caplog.text
    assert resumed.metrics == clean.metrics
    assert resumed.per_sample == clean.per_sample
    leftover = list((tmp_path / "b").rglob("*.pt")) + list((tmp_path / "b").rglob("*.ckpt"))
    assert not leftover, leftover
