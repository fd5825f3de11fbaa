"""What the conditional (image-to-image) GAN baselines share: Pix2Pix (baselines/pix2pix) and Pix2PixHD
(baselines/pix2pixhd) keep only their generator after training, as safetensors beside a JSON state, and set one lr on
their G and D optimisers per epoch."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch


def save_generator(generator: torch.nn.Module | None, folder: Path, weights_file: str, state_file: str,
                   state: dict[str, Any], owner: str) -> None:
    """Write G's state dict to ``folder/weights_file`` and ``state`` (config, log) as JSON to ``folder/state_file``."""
    from safetensors.torch import save_file

    if generator is None:
        raise RuntimeError(f"{owner}: nothing to save, the generator was never fitted or loaded")
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}, str(folder / weights_file))
    (folder / state_file).write_text(json.dumps(state))


def load_generator(build: Callable[[], torch.nn.Module], folder: Path, weights_file: str, state_file: str,
                   owner: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A generator from ``build()`` with the weights `save_generator` wrote (frozen) and the saved state ({} when the
    state file is absent)."""
    from safetensors.torch import load_file

    file = folder / weights_file
    if not file.is_file():
        raise FileNotFoundError(f"no trained {owner} generator in {folder} (expected {weights_file})")
    generator = build()
    generator.load_state_dict(load_file(str(file)))
    state = folder / state_file
    return generator.requires_grad_(False), (json.loads(state.read_text()) if state.is_file() else {})


def set_lr(optimizers: Iterable[torch.optim.Optimizer], lr: float) -> None:
    """Set every parameter group of ``optimizers`` to ``lr``."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr
