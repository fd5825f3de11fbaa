"""Resumable training runs: checkpoints, step logs and wall-clock budgets for the foundation recipes.

A run folder holds ``checkpoint.safetensors`` (trainable weights, fp32), ``state.pt`` (optimizer, scheduler
and step; our own file, loaded with ``weights_only=True``) and ``log.jsonl`` (one line per logged step).
Checkpoints are written to a temporary name and renamed, so a killed run resumes from the last good one.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any
from bench.store import atomic_path

logger = logging.getLogger(__name__)


def cosine_lr(step: int, total: int, warmup: int) -> float:
    """Learning-rate multiplier: linear warm-up then cosine decay to 10 %."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def bf16_autocast_pays() -> bool:
    """Whether bf16 autocast speeds training up on this CPU: it halved mini-sd's step time on an AVX-512 machine
    and made it 13x slower on an AVX2-only one (AMD EPYC, 2026-12-05: a batch-32 forward 22 s against 1.1 s)."""
    import torch

    return torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "AVX2", "NO AVX")


def save_checkpoint(run_dir: Path, module: Any, optimizer: Any, step: int, extra: dict[str, Any] | None = None,
                    name: str = "checkpoint") -> None:
    """Atomically write the module's weights and the optimizer state at ``step``."""
    import torch
    from safetensors.torch import save_file

    run_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in module.state_dict().items()}
    # the optimizer state first: a kill between the two renames leaves new state beside old weights, which
    # load_checkpoint detects by their steps (see there), never old state silently resumed on new weights
    with atomic_path(run_dir / f"{name}.state.pt") as tmp_state:
        torch.save({"optimizer": optimizer.state_dict(), "step": step, "extra": extra or {}}, tmp_state)
    with atomic_path(run_dir / f"{name}.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"step": str(step)})


def load_checkpoint(run_dir: Path, module: Any, optimizer: Any | None, name: str = "checkpoint") -> tuple[int, dict]:
    """Load the last checkpoint into ``module`` (and ``optimizer``); returns (step, extra), (0, {}) if none."""
    import torch
    from safetensors.torch import load_file

    weights, state_path = run_dir / f"{name}.safetensors", run_dir / f"{name}.state.pt"
    if not (weights.is_file() and state_path.is_file()):
        return 0, {}
    from safetensors import safe_open

    module.load_state_dict(load_file(str(weights)))
    state = torch.load(state_path, weights_only=True)
    with safe_open(str(weights), framework="pt") as fh:
        weights_step = (fh.metadata() or {}).get("step")
    if weights_step is not None and int(weights_step) != int(state["step"]):
        # killed between save_checkpoint's two renames: the weights are the previous checkpoint's
        logger.warning("%s: weights are from step %s but the optimizer state from step %d; resuming at step %s with "
                       "a fresh optimizer state", run_dir, weights_step, state["step"], weights_step)
        return int(weights_step), dict(state.get("extra", {}))
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    logger.info("resumed %s at step %d", run_dir, state["step"])
    return int(state["step"]), dict(state.get("extra", {}))


class StepLog:
    """Appends one JSON line per logged step to ``log.jsonl`` and tracks wall-clock time across sittings."""

    def __init__(self, run_dir: Path, elapsed_before: float = 0.0) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "log.jsonl"
        self.start = time.time()
        self.elapsed_before = elapsed_before

    @property
    def elapsed(self) -> float:
        """Training seconds over all sittings."""
        return self.elapsed_before + time.time() - self.start

    def write(self, step: int, **values: float) -> None:
        record = {"step": step, "elapsed_s": round(self.elapsed, 1), **{k: round(float(v), 5) for k, v in values.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        logger.info("step %d %s", step, " ".join(f"{k}={v}" for k, v in record.items() if k != "step"))


def training_summary(log_path: Path) -> dict[str, Any]:
    """Last logged step and elapsed minutes of a run's ``log.jsonl`` (several stages: one entry per restart of
    the step counter)."""
    stages: list[dict[str, Any]] = []
    for line in log_path.read_text().splitlines():
        rec = json.loads(line)
        if stages and rec["step"] >= stages[-1]["step"]:
            stages[-1] = rec
        else:
            stages.append(rec)
    return {"stages": [{"steps": s["step"], "minutes": round(s["elapsed_s"] / 60, 1),
                        **{k: v for k, v in s.items() if k not in ("step", "elapsed_s")}} for s in stages]}
