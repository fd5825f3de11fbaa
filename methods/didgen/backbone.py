"""Loading DiDGen's text-to-image backbone and adding the frozen placeholder tokens (thesis section 4.3.2).

``backbone`` is ``mini-sd`` (the package's pixel-space 32 px model: cross-attention at 8x8, self-attention at
16x16, the analogues of SD 2.1-base's 16x16 and 32x32 at 512 px) or a folder in the diffusers Stable Diffusion
layout (paper: ``stable-diffusion-2-1-base``; tests: `bench.diffusion.models.make_tiny_sd`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def load_backbone(backbone: str) -> Any:
    """`SDComponents` of ``backbone`` (``mini-sd`` or a local diffusers folder; nothing is downloaded)."""
    from bench.diffusion.models import load_mini_sd, load_sd

    if backbone == "mini-sd":
        return load_mini_sd()
    if not Path(backbone).expanduser().is_dir():
        raise FileNotFoundError(f"DiDGen backbone folder not found: {backbone} (a diffusers Stable Diffusion folder, "
                                "e.g. stable-diffusion-2-1-base saved with save_pretrained, or 'mini-sd')")
    return load_sd(Path(backbone).expanduser())


def add_frozen_placeholders(parts: Any) -> list[int]:
    """Add ``<lesion>``/``<skin>`` initialised as copies of ``lesion``/``skin`` and keep the whole text encoder
    frozen, as the reference code does; returns their token ids."""
    from bench.diffusion.tokens import add_placeholder_tokens

    from .prompts import LESION, SKIN

    record = add_placeholder_tokens(parts.tokenizer, parts.text_encoder, [LESION, SKIN], ["lesion", "skin"],
                                    trainable=False)
    parts.text_encoder.requires_grad_(False)
    return list(record.ids)
