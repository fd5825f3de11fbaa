"""What the conditional (image-to-image) GAN baselines share: Pix2Pix (baselines/pix2pix) and Pix2PixHD
(baselines/pix2pixhd) start from G and D initialised from one seed, train them with one Adam each, set one lr on both
per epoch, and keep only their generator after training, as safetensors beside a JSON state."""
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


def initialised_pair(build_generator: Callable[[], torch.nn.Module], build_discriminator: Callable[[], torch.nn.Module],
                     init_weights: Callable[[torch.nn.Module, float, torch.Generator], None], gain: float,
                     seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """G and D as a fit starts: built, then initialised by ``init_weights(module, gain, generator)`` from one
    generator seeded with ``seed`` (G first)."""
    draw = torch.Generator().manual_seed(seed)
    generator, discriminator = build_generator(), build_discriminator()
    init_weights(generator, gain, draw)
    init_weights(discriminator, gain, draw)
    return generator, discriminator


def adam_pair(generator: torch.nn.Module, discriminator: torch.nn.Module, config: Any
              ) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """One Adam for G and one for D with the config's ``lr``, ``beta1`` and ``beta2`` (the pix2pix family's 2e-4,
    (0.5, 0.999))."""
    betas = (config.beta1, config.beta2)
    return (torch.optim.Adam(generator.parameters(), lr=config.lr, betas=betas),
            torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=betas))
