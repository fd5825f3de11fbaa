"""The training loop every downstream model shares: shuffled mini-batches, early stopping, best-epoch restore."""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from bench.store import atomic_path

logger = logging.getLogger(__name__)


@dataclass
class EarlyStopped:
    """Outcome of `train_with_early_stopping`: the model is already restored to its best epoch."""

    best_epoch: int
    best_score: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


def train_with_early_stopping(model: nn.Module, n_samples: int, batch_size: int, max_epochs: int, patience: int,
                              generator: torch.Generator, step: Callable[[torch.Tensor], torch.Tensor],
                              optimizer: torch.optim.Optimizer, score: Callable[[], float],
                              advance: Callable[..., None] | None = None,
                              checkpoint: Path | None = None) -> EarlyStopped:
    """Train for up to ``max_epochs``, stop after ``patience`` epochs without a higher ``score``.

    Args:
        n_samples: size of the training set; each epoch visits a fresh permutation of it.
        step: ``step(indices) -> loss`` for one mini-batch (the caller builds inputs and augments).
        score: validation score after an epoch, higher is better; ties keep the earliest epoch.
        advance: progress callback, called once per epoch.
        checkpoint: file holding the loop's whole state after each epoch (model, optimizer, best epoch so far,
            random generators); when it exists, training continues after its last epoch and ends exactly as an
            uninterrupted run would. The caller deletes it once the result is stored.
    """
    best_state, best, best_epoch, stale = copy.deepcopy(model.state_dict()), -1.0, -1, 0
    history: list[dict[str, float]] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        saved = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        best_state, best, best_epoch, stale, history = (saved["best_state"], saved["best"], saved["best_epoch"],
                                                         saved["stale"], saved["history"])
        start = saved["epoch"] + 1
        logger.info("resuming training at epoch %d from %s", start, checkpoint)
        if advance is not None:
            advance(start)
        if saved["stopped"]:
            start = max_epochs
    for epoch in range(start, max_epochs):
        model.train()
        order = torch.randperm(n_samples, generator=generator)
        total, batches = 0.0, 0
        for i in range(0, n_samples, batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            loss = step(idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
        value = score()
        history.append({"epoch": epoch, "loss": total / max(batches, 1), "score": value})
        if advance is not None:
            advance()
        improved = value > best
        if improved:
            best, best_epoch, stale = value, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        stopped = not improved and stale >= patience
        if checkpoint is not None:
            _save_checkpoint(Path(checkpoint), {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(), "best_state": best_state, "best": best, "best_epoch": best_epoch,
                "stale": stale, "history": history, "epoch": epoch, "stopped": stopped})
        if stopped:
            break
    model.load_state_dict(best_state)
    return EarlyStopped(best_epoch, best, len(history), history)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def random_flips(x: torch.Tensor, *others: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Flip ``x`` (and ``others`` alike) horizontally and vertically, each with probability 1/2."""
    flip = torch.rand(2, generator=generator)
    tensors = (x, *others)
    if flip[0] < 0.5:
        tensors = tuple(t.flip(-1) for t in tensors)
    if flip[1] < 0.5:
        tensors = tuple(t.flip(-2) for t in tensors)
    return tensors
