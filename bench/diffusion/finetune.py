"""Fine-tuning helpers: LoRA adapters through peft, and attention-only parameter selection.

* `add_lora` puts LoRA adapters on the UNet's attention projections with diffusers' peft integration
  (``unet.add_adapter``); only adapter weights are then trainable.
* `attention_parameters` selects attention weights for methods that fine-tune them directly: Custom
  Diffusion's cross-attention key/value (``"cross-kv"``), all cross-attention (``"cross"``) or all attention.
* `lesion_pairs` draws the few-shot fine-tuning set (MedDiff-FT's ~30 lesion pairs), the same pairs for every
  generator given the same seed (MedDiff-FT Table 2: ControlNet and T2I-Adapter "trained on the same 30 pairs").
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


def add_lora(unet: Any, rank: int = 4, alpha: float | None = None, targets: tuple[str, ...] = ATTENTION_PROJECTIONS,
             adapter_name: str = "default", dropout: float = 0.0) -> list[Any]:
    """Add a LoRA adapter (peft) to the UNet's attention projections; freeze everything else.

    Args:
        unet: `UNet2DConditionModel`.
        rank: LoRA rank r.
        alpha: LoRA alpha (default = rank, i.e. scale 1).
        targets: module-name suffixes to adapt (default: q, k, v and output projections of every attention).
        adapter_name: peft adapter name.
        dropout: LoRA dropout.

    Returns:
        the trainable (adapter) parameters.
    """
    from peft import LoraConfig

    unet.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, init_lora_weights="gaussian",
                        target_modules=list(targets), lora_dropout=dropout)
    unet.add_adapter(config, adapter_name=adapter_name)
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    logger.info("LoRA rank %d on %s: %d trainable parameters", rank, ",".join(targets), sum(p.numel() for p in params))
    return params


def lora_state_dict(unet: Any, adapter_name: str = "default") -> dict[str, Any]:
    """The adapter's weights (peft's ``get_peft_model_state_dict``), e.g. to save as safetensors."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(unet, adapter_name=adapter_name)


def attention_parameters(unet: Any, which: str = "cross-kv") -> list[Any]:
    """Make only the chosen attention weights trainable and return them.

    Args:
        unet: `UNet2DConditionModel`.
        which: ``"cross-kv"`` (attn2.to_k, attn2.to_v: Custom Diffusion), ``"cross"`` (all of attn2),
            ``"attention"`` (attn1 and attn2).
    """
    choices = {"cross-kv": ("attn2.to_k", "attn2.to_v"), "cross": ("attn2.",), "attention": ("attn1.", "attn2.")}
    if which not in choices:
        raise ValueError(f"unknown attention selection '{which}'; valid: {', '.join(choices)}")
    unet.requires_grad_(False)
    params = []
    for name, p in unet.named_parameters():
        if any(key in name for key in choices[which]):
            p.requires_grad_(True)
            params.append(p)
    if not params:
        raise ValueError(f"no parameters matched attention selection '{which}'")
    return params


def trainable_parameters(module: Any) -> list[Any]:
    """Parameters with ``requires_grad`` (what an optimizer should receive)."""
    return [p for p in module.parameters() if p.requires_grad]


def lesion_pairs(samples: Sequence[Any], n: int | None, generator: Any) -> list[Any]:
    """``n`` image-mask pairs with a non-empty mask, in the order of a permutation drawn from ``generator`` (a
    seeded ``torch.Generator``, advanced by the draw); every lesion pair, in order, when ``n`` is None."""
    import torch

    lesion = [s for s in samples if s.mask is not None and bool(s.mask.any())]
    if n is None:
        return lesion
    return [lesion[i] for i in torch.randperm(len(lesion), generator=generator)[:n].tolist()]
